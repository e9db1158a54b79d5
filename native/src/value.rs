//! The record value every stage works on (`V`, from the decoder), its field access, and its
//! crossings: to and from Python objects, to and from JSON text (written as orjson writes it).
use crate::decode::V;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDateTime, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple, PyTzInfo};
use std::sync::Arc;

impl V {
    /// A field of a record or map (`None` for any other value or an absent key).
    pub fn get(&self, key: &str) -> Option<&V> {
        match self {
            V::Rec(kv) => kv.iter().find(|(k, _)| &**k == key).map(|(_, v)| v),
            V::Map(kv) => kv.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        match self {
            V::Rec(kv) => kv.iter_mut().find(|(k, _)| &**k == key).map(|(_, v)| v),
            V::Map(kv) => kv.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Set a field: replaced in place when present, appended otherwise (as a Python dict does).
    pub fn set(&mut self, key: &str, value: V) {
        if let Some(slot) = self.get_mut(key) {
            *slot = value;
            return;
        }
        match self {
            V::Rec(kv) => kv.push((Arc::from(key), value)),
            V::Map(kv) => kv.push((key.to_string(), value)),
            _ => {}
        }
    }

    /// Remove a field (as `dict.pop(key, None)`).
    pub fn remove(&mut self, key: &str) -> Option<V> {
        match self {
            V::Rec(kv) => kv.iter().position(|(k, _)| &**k == key).map(|i| kv.remove(i).1),
            V::Map(kv) => kv.iter().position(|(k, _)| k == key).map(|i| kv.remove(i).1),
            _ => None,
        }
    }

    /// An event time in microseconds (a timestamp or an integer; 0 for anything else).
    pub fn micros(v: Option<&V>) -> i64 {
        match v {
            Some(V::Ts(n)) | Some(V::Int(n)) => *n,
            _ => 0,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            V::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A string field, `None` when absent or not a string.
    pub fn str_at(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(V::as_str)
    }

    pub fn is_null(&self) -> bool {
        matches!(self, V::Null)
    }

    /// Python truthiness.
    pub fn truthy(&self) -> bool {
        match self {
            V::Null => false,
            V::Bool(b) => *b,
            V::Int(n) => *n != 0,
            V::Float(f) => *f != 0.0,
            V::Bytes(b) => !b.is_empty(),
            V::Str(s) => !s.is_empty(),
            V::Ts(_) => true,
            V::Arr(a) => !a.is_empty(),
            V::Map(m) => !m.is_empty(),
            V::Rec(r) => !r.is_empty(),
        }
    }

    /// The entries of a record or map, keys as `&str`.
    pub fn entries(&self) -> Vec<(&str, &V)> {
        match self {
            V::Rec(kv) => kv.iter().map(|(k, v)| (&**k, v)).collect(),
            V::Map(kv) => kv.iter().map(|(k, v)| (k.as_str(), v)).collect(),
            _ => Vec::new(),
        }
    }

    pub fn is_object(&self) -> bool {
        matches!(self, V::Rec(_) | V::Map(_))
    }

    /// A deep copy.
    pub fn dup(&self) -> V {
        match self {
            V::Null => V::Null,
            V::Bool(b) => V::Bool(*b),
            V::Int(n) => V::Int(*n),
            V::Float(f) => V::Float(*f),
            V::Bytes(b) => V::Bytes(b.clone()),
            V::Str(s) => V::Str(s.clone()),
            V::Ts(n) => V::Ts(*n),
            V::Arr(a) => V::Arr(a.iter().map(V::dup).collect()),
            V::Map(m) => V::Map(m.iter().map(|(k, v)| (k.clone(), v.dup())).collect()),
            V::Rec(r) => V::Rec(r.iter().map(|(k, v)| (k.clone(), v.dup())).collect()),
        }
    }

    /// An object from `(key, value)` pairs, in order.
    pub fn obj<I: IntoIterator<Item = (&'static str, V)>>(pairs: I) -> V {
        V::Map(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }

    pub fn s(text: impl Into<String>) -> V {
        V::Str(text.into())
    }
}

// --- Python ---------------------------------------------------------------------------------

/// A Python value as `V`: dict -> Map, list/tuple -> Arr, aware or naive (taken as UTC) datetime -> Ts.
pub fn from_py(obj: &Bound<'_, PyAny>) -> PyResult<V> {
    if obj.is_none() {
        return Ok(V::Null);
    }
    if let Ok(b) = obj.downcast::<PyBool>() {
        return Ok(V::Bool(b.is_true()));
    }
    if let Ok(s) = obj.downcast::<PyString>() {
        return Ok(V::Str(s.to_str()?.to_string()));
    }
    if obj.is_instance_of::<PyInt>() {
        return Ok(V::Int(obj.extract::<i64>()?));
    }
    if let Ok(f) = obj.downcast::<PyFloat>() {
        return Ok(V::Float(f.value()));
    }
    if let Ok(d) = obj.downcast::<PyDict>() {
        let mut kv = Vec::with_capacity(d.len());
        for (k, v) in d.iter() {
            kv.push((k.extract::<String>()?, from_py(&v)?));
        }
        return Ok(V::Map(kv));
    }
    if let Ok(l) = obj.downcast::<PyList>() {
        return Ok(V::Arr(l.iter().map(|x| from_py(&x)).collect::<PyResult<_>>()?));
    }
    if let Ok(t) = obj.downcast::<PyTuple>() {
        return Ok(V::Arr(t.iter().map(|x| from_py(&x)).collect::<PyResult<_>>()?));
    }
    if let Ok(b) = obj.downcast::<PyBytes>() {
        return Ok(V::Bytes(b.as_bytes().to_vec()));
    }
    if obj.is_instance_of::<PyDateTime>() {
        let micros: i64 = obj.py().import("lineage.graph")?.getattr("to_micros")?.call1((obj,))?.extract()?;
        return Ok(V::Ts(micros));
    }
    Err(pyo3::exceptions::PyTypeError::new_err(format!(
        "cannot take a {} into the compiled event path",
        obj.get_type().name()?
    )))
}

/// `V` as Python objects; `Ts` becomes an aware UTC datetime.
pub fn to_py(py: Python<'_>, v: &V) -> PyResult<PyObject> {
    Ok(match v {
        V::Null => py.None(),
        V::Bool(b) => b.into_pyobject(py)?.to_owned().into_any().unbind(),
        V::Int(n) => n.into_pyobject(py)?.into_any().unbind(),
        V::Float(f) => f.into_pyobject(py)?.into_any().unbind(),
        V::Bytes(b) => PyBytes::new(py, b).into_any().unbind(),
        V::Str(s) => s.into_pyobject(py)?.into_any().unbind(),
        V::Ts(n) => {
            let (y, mo, d, h, mi, s, us) = crate::civil(*n);
            let utc = pyo3::types::timezone_utc(py);
            let tz = utc.downcast::<PyTzInfo>()?;
            PyDateTime::new(py, y, mo, d, h, mi, s, us, Some(tz))?.into_any().unbind()
        }
        V::Arr(items) => {
            let l = PyList::empty(py);
            for x in items {
                l.append(to_py(py, x)?)?;
            }
            l.into_any().unbind()
        }
        V::Map(kv) => {
            let d = PyDict::new(py);
            for (k, x) in kv {
                d.set_item(k, to_py(py, x)?)?;
            }
            d.into_any().unbind()
        }
        V::Rec(kv) => {
            let d = PyDict::new(py);
            for (k, x) in kv {
                d.set_item(&**k, to_py(py, x)?)?;
            }
            d.into_any().unbind()
        }
    })
}

// --- JSON -----------------------------------------------------------------------------------

/// JSON text of `v` byte for byte as `orjson.dumps` writes it (compact, UTF-8, shortest floats,
/// NaN and infinities as null); `Ts` as orjson writes an aware UTC datetime
/// (`2026-05-28T20:26:40.000120+00:00`), bytes as an error.
pub fn to_json(v: &V) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(256);
    write_json(v, &mut out, false)?;
    Ok(out)
}

/// As [`to_json`], object keys sorted (`orjson.OPT_SORT_KEYS`).
pub fn to_json_sorted(v: &V) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(256);
    write_json(v, &mut out, true)?;
    Ok(out)
}

pub fn write_json(v: &V, out: &mut Vec<u8>, sort: bool) -> Result<(), String> {
    match v {
        V::Null => out.extend_from_slice(b"null"),
        V::Bool(true) => out.extend_from_slice(b"true"),
        V::Bool(false) => out.extend_from_slice(b"false"),
        V::Int(n) => out.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes()),
        V::Ts(n) => {
            let (y, mo, d, h, mi, s, us) = crate::civil(*n);
            let frac = if us == 0 { String::new() } else { format!(".{us:06}") };
            out.extend_from_slice(format!("\"{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}+00:00\"").as_bytes());
        }
        V::Float(f) => write_float(*f, out),
        V::Str(s) => write_str(s, out),
        V::Bytes(_) => return Err("Type is not JSON serializable: bytes".into()),
        V::Arr(items) => {
            out.push(b'[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(x, out, sort)?;
            }
            out.push(b']');
        }
        V::Map(_) | V::Rec(_) => {
            let mut entries = v.entries();
            if sort {
                entries.sort_by(|a, b| a.0.cmp(b.0));
            }
            out.push(b'{');
            for (i, (k, x)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(k, out);
                out.push(b':');
                write_json(x, out, sort)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// A float as orjson writes it: ryu's shortest digits, `e+` for positive exponents.
pub fn write_float(f: f64, out: &mut Vec<u8>) {
    if !f.is_finite() {
        out.extend_from_slice(b"null");
        return;
    }
    let mut buf = ryu::Buffer::new();
    let text = buf.format_finite(f);
    match text.find('e') {
        Some(i) if text.as_bytes().get(i + 1) != Some(&b'-') => {
            out.extend_from_slice(&text.as_bytes()[..=i]);
            out.push(b'+');
            out.extend_from_slice(&text.as_bytes()[i + 1..]);
        }
        _ => out.extend_from_slice(text.as_bytes()),
    }
}

pub fn write_str(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let first = first_escape(bytes);
    if first == bytes.len() {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate().skip(first) {
        let esc: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0x08 => Some(b"\\b"),
            0x0c => Some(b"\\f"),
            0..=0x1f => None,
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        match esc {
            Some(e) => out.extend_from_slice(e),
            None => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Index of the first byte JSON must escape (a control character, `"` or `\\`), or the length.
/// Eight bytes at a time: a byte below 0x20, or equal to one of the two, shows as its top bit in
/// the word's test (the classic has-zero-byte and has-less-than tricks).
fn first_escape(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGH;
    let mut i = 0;
    while i + 8 <= bytes.len() {
        let w = u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap_or([0; 8]));
        let below = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
        if below | has_zero(w ^ (ONES * b'"' as u64)) | has_zero(w ^ (ONES * b'\\' as u64)) != 0 {
            break; // somewhere in these eight (a false alarm past the first hit is resolved below)
        }
        i += 8;
    }
    i + bytes[i..].iter().position(|&b| b < 0x20 || b == b'"' || b == b'\\').unwrap_or(bytes.len() - i)
}

/// JSON text as `V` (objects as `Map`, keys in document order, a repeated key keeps its first
/// place and its last value, as `orjson.loads` gives them). Integers beyond 64 bits are an error.
pub fn from_json(text: &[u8]) -> Result<V, String> {
    let j: serde_json::Value = serde_json::from_slice(text).map_err(|e| e.to_string())?;
    Ok(from_serde(j))
}

pub fn from_serde(j: serde_json::Value) -> V {
    use serde_json::Value as J;
    match j {
        J::Null => V::Null,
        J::Bool(b) => V::Bool(b),
        J::Number(n) => match n.as_i64() {
            Some(i) => V::Int(i),
            None => V::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => V::Str(s),
        J::Array(a) => V::Arr(a.into_iter().map(from_serde).collect()),
        J::Object(m) => V::Map(m.into_iter().map(|(k, v)| (k, from_serde(v))).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(v: &V) -> String {
        String::from_utf8(to_json(v).unwrap()).unwrap()
    }

    #[test]
    fn first_escape_finds_what_a_byte_scan_finds() {
        let naive = |b: &[u8]| b.iter().position(|&c| c < 0x20 || c == b'"' || c == b'\\').unwrap_or(b.len());
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let alphabet: &[u8] = b"ab\"\\\n\x1f\x00 ~\x7f\xc3\xa9\xff\x20\x21\x5b\x5d";
        for len in 0..40 {
            for _ in 0..200 {
                let text: Vec<u8> = (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        // mostly plain bytes, now and then one that needs escaping
                        if state % 7 == 0 { alphabet[(state >> 8) as usize % alphabet.len()] } else { b'a' + (state >> 16) as u8 % 26 }
                    })
                    .collect();
                assert_eq!(first_escape(&text), naive(&text), "{text:?}");
            }
        }
    }

    #[test]
    fn floats_as_orjson_writes_them() {
        let cases = [
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (0.1, "0.1"),
            (1.0, "1.0"),
            (1e-5, "0.00001"),
            (1e-6, "1e-6"),
            (1.2345678901234568e20, "1.2345678901234568e+20"),
            (-0.0, "-0.0"),
            (f64::NAN, "null"),
        ];
        for (f, want) in cases {
            assert_eq!(j(&V::Float(f)), want, "{f}");
        }
    }

    #[test]
    fn strings_and_order() {
        let v = V::Map(vec![("b".into(), V::s("é\u{1f}\"\n")), ("a".into(), V::Int(-3))]);
        assert_eq!(j(&v), "{\"b\":\"é\\u001f\\\"\\n\",\"a\":-3}");
        assert_eq!(String::from_utf8(to_json_sorted(&v).unwrap()).unwrap(), "{\"a\":-3,\"b\":\"é\\u001f\\\"\\n\"}");
        assert_eq!(j(&V::Ts(1_780_000_000_000_120)), "\"2026-05-28T20:26:40.000120+00:00\"");
        assert_eq!(j(&V::Ts(1_780_000_000_000_000)), "\"2026-05-28T20:26:40+00:00\"");
        let back = from_json(b"{\"z\":1,\"a\":[true,null,2.5]}").unwrap();
        assert_eq!(j(&back), "{\"z\":1,\"a\":[true,null,2.5]}");
    }
}

/// A message the event path refuses: a dead-letter reason code and its detail text.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub reason: &'static str,
    pub detail: String,
}

impl Refusal {
    pub fn new(reason: &'static str, detail: impl Into<String>) -> Self {
        Refusal { reason, detail: detail.into() }
    }
}

//! Text as Python writes it for JSON-shaped values: `json.dumps` (ensure_ascii), `repr`/`str`,
//! `float.__repr__`, and the number parsing of `float(str)` and `int(str, 16)`.
use crate::decode::V;
use std::fmt::Write;

/// `float.__repr__`: shortest round-trip digits; exponent form below 1e-4 and from 1e16.
pub fn float_repr(f: f64, out: &mut String) {
    if f.is_nan() {
        out.push_str("nan");
        return;
    }
    if f.is_infinite() {
        out.push_str(if f > 0.0 { "inf" } else { "-inf" });
        return;
    }
    let mut buf = ryu::Buffer::new();
    let text = buf.format_finite(f);
    let (neg, text) = match text.strip_prefix('-') {
        Some(t) => (true, t),
        None => (false, text),
    };
    let (mant, exp) = match text.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (text, 0),
    };
    let (ip, fp) = mant.split_once('.').unwrap_or((mant, ""));
    let mut digits: String = format!("{ip}{fp}");
    let mut decpt = ip.len() as i32 + exp;
    let lead = digits.len() - digits.trim_start_matches('0').len();
    digits.drain(..lead);
    decpt -= lead as i32;
    let trimmed = digits.trim_end_matches('0').len();
    digits.truncate(trimmed);
    if neg {
        out.push('-');
    }
    if digits.is_empty() {
        out.push_str("0.0");
        return;
    }
    if decpt > -4 && decpt <= 16 {
        if decpt <= 0 {
            out.push_str("0.");
            for _ in 0..(-decpt) {
                out.push('0');
            }
            out.push_str(&digits);
        } else if decpt as usize >= digits.len() {
            out.push_str(&digits);
            for _ in 0..(decpt as usize - digits.len()) {
                out.push('0');
            }
            out.push_str(".0");
        } else {
            out.push_str(&digits[..decpt as usize]);
            out.push('.');
            out.push_str(&digits[decpt as usize..]);
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let e = decpt - 1;
        let _ = write!(out, "e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
    }
}

/// `json.dumps(v, sort_keys=sort, separators=(",", ":") if compact else default)`.
pub fn json_dumps(v: &V, sort: bool, compact: bool) -> String {
    let mut out = String::with_capacity(64);
    dumps_into(v, sort, compact, &mut out);
    out
}

fn dumps_into(v: &V, sort: bool, compact: bool, out: &mut String) {
    let (item_sep, key_sep) = if compact { (",", ":") } else { (", ", ": ") };
    match v {
        V::Null => out.push_str("null"),
        V::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        V::Int(n) => {
            let _ = write!(out, "{n}");
        }
        V::Float(f) => {
            if f.is_nan() {
                out.push_str("NaN");
            } else if f.is_infinite() {
                out.push_str(if *f > 0.0 { "Infinity" } else { "-Infinity" });
            } else {
                float_repr(*f, out);
            }
        }
        V::Str(s) => json_str(s, out),
        V::Ts(_) | V::Bytes(_) => {
            // Not produced from JSON input; written as their `str()` would be (`default=str`).
            json_str(&py_str(v), out)
        }
        V::Arr(items) => {
            out.push('[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                dumps_into(x, sort, compact, out);
            }
            out.push(']');
        }
        V::Map(_) | V::Rec(_) => {
            let mut entries = v.entries();
            if sort {
                entries.sort_by(|a, b| a.0.cmp(b.0));
            }
            out.push('{');
            for (i, (k, x)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                json_str(k, out);
                out.push_str(key_sep);
                dumps_into(x, sort, compact, out);
            }
            out.push('}');
        }
    }
}

/// A JSON string with `ensure_ascii`: everything outside printable ASCII as `\uXXXX`.
fn json_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{:04x}", u);
                }
            }
        }
    }
    out.push('"');
}

/// Python's `str(v)` for a JSON-shaped value (`repr` inside containers).
pub fn py_str(v: &V) -> String {
    match v {
        V::Str(s) => s.clone(),
        _ => {
            let mut out = String::new();
            repr_into(v, &mut out);
            out
        }
    }
}

/// `str(d.get(key))`: Python's `str` of a value that may be absent (`None`).
pub fn py_str_opt(v: Option<&V>) -> String {
    v.map(py_str).unwrap_or_else(|| "None".into())
}

/// Python's `repr(v)`.
pub fn py_repr(v: &V) -> String {
    let mut out = String::new();
    repr_into(v, &mut out);
    out
}

fn repr_into(v: &V, out: &mut String) {
    match v {
        V::Null => out.push_str("None"),
        V::Bool(b) => out.push_str(if *b { "True" } else { "False" }),
        V::Int(n) => {
            let _ = write!(out, "{n}");
        }
        V::Float(f) => float_repr(*f, out),
        V::Str(s) => str_repr(s, out),
        V::Bytes(b) => {
            out.push_str("b'");
            for &x in b {
                match x {
                    b'\\' => out.push_str("\\\\"),
                    b'\'' => out.push_str("\\'"),
                    b'\n' => out.push_str("\\n"),
                    b'\r' => out.push_str("\\r"),
                    b'\t' => out.push_str("\\t"),
                    0x20..=0x7e => out.push(x as char),
                    _ => {
                        let _ = write!(out, "\\x{x:02x}");
                    }
                }
            }
            out.push('\'');
        }
        V::Ts(n) => {
            let (y, mo, d, h, mi, s, us) = crate::civil(*n);
            let _ = write!(out, "datetime.datetime({y}, {mo}, {d}, {h}, {mi}");
            if s != 0 || us != 0 {
                let _ = write!(out, ", {s}");
            }
            if us != 0 {
                let _ = write!(out, ", {us}");
            }
            out.push_str(", tzinfo=datetime.timezone.utc)");
        }
        V::Arr(items) => {
            out.push('[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                repr_into(x, out);
            }
            out.push(']');
        }
        V::Map(_) | V::Rec(_) => {
            out.push('{');
            for (i, (k, x)) in v.entries().into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                str_repr(k, out);
                out.push_str(": ");
                repr_into(x, out);
            }
            out.push('}');
        }
    }
}

#[path = "py_printable.rs"]
mod py_printable;

/// Whether Python's `str.isprintable` holds for `c` (the table of the Python this port matches).
fn printable(c: char) -> bool {
    if c.is_ascii() {
        return (' '..='~').contains(&c);
    }
    let n = c as u32;
    let table = py_printable::NOT_PRINTABLE;
    // The last range starting at or before `n`.
    let i = table.partition_point(|&(a, _)| a <= n);
    !(i > 0 && n <= table[i - 1].1)
}

/// `repr(str)`: single quotes unless the text holds a single quote and no double quote.
pub fn str_repr(s: &str, out: &mut String) {
    let q = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    out.push(q);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            _ if c == q => {
                out.push('\\');
                out.push(c);
            }
            _ if printable(c) => out.push(c),
            _ => {
                let n = c as u32;
                let _ = if n <= 0xff {
                    write!(out, "\\x{n:02x}")
                } else if n <= 0xffff {
                    write!(out, "\\u{n:04x}")
                } else {
                    write!(out, "\\U{n:08x}")
                };
            }
        }
    }
    out.push(q);
}

/// Python's `str.isspace` for one character (the characters `str.strip()` removes).
pub fn py_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | '\u{1c}'..='\u{1f}' | ' ' | '\u{85}' | '\u{a0}' | '\u{1680}'
            | '\u{2000}'..='\u{200a}' | '\u{2028}' | '\u{2029}' | '\u{202f}' | '\u{205f}' | '\u{3000}'
    )
}

/// Digits with single underscores between them (`1_000`), as Python's number parsers accept.
fn underscored_digits(s: &str, hex: bool) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut prev_digit = false;
    for c in s.chars() {
        if c == '_' {
            if !prev_digit {
                return None;
            }
            prev_digit = false;
        } else if if hex { c.is_ascii_hexdigit() } else { c.is_ascii_digit() } {
            out.push(c);
            prev_digit = true;
        } else {
            return None;
        }
    }
    if !prev_digit {
        return None;
    }
    Some(out)
}

/// Python's `float(v)` for a JSON-shaped value; `None` where Python raises TypeError/ValueError.
/// Strings: surrounding whitespace, a sign, underscores between digits, `inf`/`infinity`/`nan`.
/// Non-ASCII decimal digits (which Python also accepts) are refused.
pub fn py_float(v: &V) -> Option<f64> {
    match v {
        V::Int(n) => Some(*n as f64),
        V::Float(f) => Some(*f),
        V::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        V::Str(s) => parse_float(s),
        _ => None,
    }
}

fn parse_float(s: &str) -> Option<f64> {
    let t = s.trim_matches(py_space);
    let (sign, body) = match t.as_bytes().first() {
        Some(b'-') => (-1.0, &t[1..]),
        Some(b'+') => (1.0, &t[1..]),
        _ => (1.0, t),
    };
    let lower = body.to_ascii_lowercase();
    match lower.as_str() {
        "inf" | "infinity" => return Some(sign * f64::INFINITY),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    // mantissa [e[sign]digits]
    let (mant, exp) = match lower.find('e') {
        Some(i) => (&lower[..i], Some(&lower[i + 1..])),
        None => (lower.as_str(), None),
    };
    let (ip, fp) = match mant.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (mant, None),
    };
    let ipd = if ip.is_empty() { Some(String::new()) } else { underscored_digits(ip, false) }?;
    let fpd = match fp {
        None => String::new(),
        Some("") => String::new(),
        Some(f) => underscored_digits(f, false)?,
    };
    if ipd.is_empty() && fpd.is_empty() {
        return None;
    }
    let mut text = format!("{ipd}.{fpd}");
    if text == "." {
        return None;
    }
    if text.ends_with('.') {
        text.push('0');
    }
    if text.starts_with('.') {
        text.insert(0, '0');
    }
    if let Some(e) = exp {
        let (es, ed) = match e.as_bytes().first() {
            Some(b'-') => ("-", &e[1..]),
            Some(b'+') => ("", &e[1..]),
            _ => ("", e),
        };
        let ed = underscored_digits(ed, false)?;
        text.push('e');
        text.push_str(es);
        text.push_str(&ed);
    }
    text.parse::<f64>().ok().map(|f| sign * f)
}

/// Whether `uuid.UUID(text)` accepts `text`.
pub fn is_uuid(text: &str) -> bool {
    let h = text.replace("urn:", "").replace("uuid:", "");
    let h = h.trim_matches(|c| c == '{' || c == '}').replace('-', "");
    if h.chars().count() != 32 {
        return false;
    }
    // int(h, 16): whitespace, a sign, an optional 0x prefix, underscores between digits; >= 0.
    let t = h.trim_matches(py_space);
    let (neg, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let body = if body.len() >= 2 && (body.starts_with("0x") || body.starts_with("0X")) {
        let rest = &body[2..];
        // After a prefix a single underscore may come first (`0x_1`).
        rest.strip_prefix('_').unwrap_or(rest)
    } else {
        body
    };
    match underscored_digits(body, true) {
        None => false,
        Some(d) => !neg || d.bytes().all(|b| b == b'0'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(f: f64) -> String {
        let mut s = String::new();
        float_repr(f, &mut s);
        s
    }

    #[test]
    fn floats_as_python_writes_them() {
        for (f, want) in [
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5, "1.5"),
            (-0.0, "-0.0"),
            (123456.789, "123456.789"),
            (1.2345678901234568e20, "1.2345678901234568e+20"),
            (5e-324, "5e-324"),
            (0.1, "0.1"),
        ] {
            assert_eq!(r(f), want);
        }
    }

    #[test]
    fn uuid_forms() {
        assert!(is_uuid("0190c3a2-1111-7000-8000-000000000001"));
        assert!(is_uuid("{0190c3a2111170008000000000000001}"));
        assert!(is_uuid("urn:uuid:0190c3a2-1111-7000-8000-000000000001"));
        assert!(!is_uuid("run-42"));
        assert!(!is_uuid("0190c3a2-1111-7000-8000-00000000000g"));
    }

    #[test]
    fn float_strings() {
        assert_eq!(parse_float(" 1_0.5 "), Some(10.5));
        assert_eq!(parse_float("1__0"), None);
        assert_eq!(parse_float("-Infinity"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_float("."), None);
        assert_eq!(parse_float("5."), Some(5.0));
        assert_eq!(parse_float(".5e1"), Some(5.0));
    }
}

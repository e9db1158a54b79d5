//! Avro binary encoding of a record (fastavro's writer as `lineage.codec.Codec.encode` uses it),
//! and the explanation of a record that does not fit its schema, word for word the codec's.
use crate::decode::V;
use crate::schema::{Arena, Node};
use serde_json::Value as J;

/// The Avro body of `v` written with schema node `root` of `arena` (no framing header). Unions
/// take the first branch the value fits; a missing field with a default gets the default;
/// `timestamp-micros` takes integer microseconds or a timestamp. Err is [`explain`]'s text.
pub fn encode(arena: &Arena, root: usize, v: &V) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(256);
    if write(arena, root, v, &mut out) {
        Ok(out)
    } else {
        Err(explain(arena, root, v))
    }
}

fn long(n: i64, out: &mut Vec<u8>) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn bytes(b: &[u8], out: &mut Vec<u8>) {
    long(b.len() as i64, out);
    out.extend_from_slice(b);
}

/// A field default (JSON) as a value.
fn from_default(d: &J) -> V {
    crate::value::from_serde(d.clone())
}

/// Write `v` as type `t`; false when it does not fit (the output is then garbage).
fn write(a: &Arena, t: usize, v: &V, out: &mut Vec<u8>) -> bool {
    match (&a.nodes[t], v) {
        (Node::Null, V::Null) => true,
        (Node::Bool, V::Bool(b)) => {
            out.push(*b as u8);
            true
        }
        (Node::Int, V::Int(n)) if i32::try_from(*n).is_ok() => {
            long(*n, out);
            true
        }
        (Node::Long, V::Int(n)) | (Node::TsMicros, V::Int(n)) | (Node::TsMicros, V::Ts(n)) => {
            long(*n, out);
            true
        }
        (Node::Float, V::Int(n)) => {
            out.extend_from_slice(&(*n as f32).to_le_bytes());
            true
        }
        (Node::Float, V::Float(f)) => {
            out.extend_from_slice(&(*f as f32).to_le_bytes());
            true
        }
        (Node::Double, V::Int(n)) => {
            out.extend_from_slice(&(*n as f64).to_le_bytes());
            true
        }
        (Node::Double, V::Float(f)) => {
            out.extend_from_slice(&f.to_le_bytes());
            true
        }
        (Node::Str, V::Str(s)) => {
            bytes(s.as_bytes(), out);
            true
        }
        (Node::Bytes, V::Bytes(b)) => {
            bytes(b, out);
            true
        }
        (Node::Fixed { size, .. }, V::Bytes(b)) if b.len() == *size => {
            out.extend_from_slice(b);
            true
        }
        (Node::Enum { symbols, .. }, V::Str(s)) => match symbols.iter().position(|x| **x == **s) {
            Some(i) => {
                long(i as i64, out);
                true
            }
            None => false,
        },
        (Node::Array(i), V::Arr(items)) => {
            if !items.is_empty() {
                long(items.len() as i64, out);
                for x in items {
                    if !write(a, *i, x, out) {
                        return false;
                    }
                }
            }
            out.push(0);
            true
        }
        (Node::Map(i), V::Map(_) | V::Rec(_)) => {
            let entries = v.entries();
            if !entries.is_empty() {
                long(entries.len() as i64, out);
                for (k, x) in entries {
                    bytes(k.as_bytes(), out);
                    if !write(a, *i, x, out) {
                        return false;
                    }
                }
            }
            out.push(0);
            true
        }
        (Node::Record { fields, .. }, V::Map(_) | V::Rec(_)) => {
            // Strict: a key the schema does not name is an error.
            if v.entries().iter().any(|(k, _)| !fields.iter().any(|f| &*f.name == *k)) {
                return false;
            }
            for f in fields {
                let ok = match v.get(&f.name) {
                    Some(x) => write(a, f.ty, x, out),
                    None => match &f.default {
                        Some(d) => write(a, f.ty, &from_default(d), out),
                        None => false,
                    },
                };
                if !ok {
                    return false;
                }
            }
            true
        }
        (Node::Union(branches), _) => match branches.iter().position(|b| fits(a, *b, v)) {
            Some(i) => {
                long(i as i64, out);
                write(a, branches[i], v, out)
            }
            None => false,
        },
        _ => false,
    }
}

/// Whether `v` fits type `t` (fastavro's strict validation).
fn fits(a: &Arena, t: usize, v: &V) -> bool {
    match (&a.nodes[t], v) {
        (Node::Null, V::Null) | (Node::Bool, V::Bool(_)) | (Node::Str, V::Str(_)) | (Node::Bytes, V::Bytes(_)) => true,
        (Node::Int, V::Int(n)) => i32::try_from(*n).is_ok(),
        (Node::Long, V::Int(_)) | (Node::TsMicros, V::Int(_) | V::Ts(_)) => true,
        (Node::Float | Node::Double, V::Int(_) | V::Float(_)) => true,
        (Node::Fixed { size, .. }, V::Bytes(b)) => b.len() == *size,
        (Node::Enum { symbols, .. }, V::Str(s)) => symbols.iter().any(|x| **x == **s),
        (Node::Array(i), V::Arr(items)) => items.iter().all(|x| fits(a, *i, x)),
        (Node::Map(i), V::Map(_) | V::Rec(_)) => v.entries().iter().all(|(_, x)| fits(a, *i, x)),
        (Node::Record { fields, .. }, V::Map(_) | V::Rec(_)) => {
            v.entries().iter().all(|(k, _)| fields.iter().any(|f| &*f.name == *k))
                && fields.iter().all(|f| match v.get(&f.name) {
                    Some(x) => fits(a, f.ty, x),
                    None => f.default.is_some(),
                })
        }
        (Node::Union(b), _) => b.iter().any(|x| fits(a, *x, v)),
        _ => false,
    }
}

/// How the codec names a type in an explanation (`_describe`).
pub fn describe(a: &Arena, t: usize) -> String {
    match &a.nodes[t] {
        Node::Null => "null".into(),
        Node::Bool => "boolean".into(),
        Node::Int => "int".into(),
        Node::Long => "long".into(),
        Node::Float => "float".into(),
        Node::Double => "double".into(),
        Node::Bytes => "bytes".into(),
        Node::Str => "string".into(),
        Node::TsMicros => "timestamp-micros".into(),
        Node::Record { name, .. } | Node::Enum { name, .. } | Node::Fixed { name, .. } => name.clone(),
        Node::Array(_) => "array".into(),
        Node::Map(_) => "map".into(),
        Node::Union(b) => b.iter().map(|x| describe(a, *x)).collect::<Vec<_>>().join(" | "),
        Node::Placeholder => "?".into(),
    }
}

/// Why `v` does not fit `root`: up to five `path: problem` entries joined by `; ` (`_explain`).
pub fn explain(arena: &Arena, root: usize, v: &V) -> String {
    let problems = locate(arena, root, v, "");
    if problems.is_empty() {
        return "ValueError: the record does not fit its schema".into();
    }
    problems.into_iter().take(5).collect::<Vec<_>>().join("; ")
}

fn locate(a: &Arena, t: usize, v: &V, path: &str) -> Vec<String> {
    let where_ = if path.is_empty() { "record" } else { path };
    let type_name = crate::openlineage::type_name;
    if let Node::Record { fields, .. } = &a.nodes[t] {
        if !v.is_object() {
            return vec![format!("{where_}: expected a {} record, got {}", describe(a, t), type_name(v))];
        }
        let dot = if path.is_empty() { "" } else { "." };
        let mut problems: Vec<String> = v
            .entries()
            .into_iter()
            .filter(|(k, _)| !fields.iter().any(|f| &*f.name == *k))
            .map(|(k, _)| format!("{path}{dot}{k}: not in the schema"))
            .collect();
        for f in fields {
            let sub = if path.is_empty() { f.name.to_string() } else { format!("{path}.{}", f.name) };
            match v.get(&f.name) {
                None => {
                    if f.default.is_none() {
                        problems.push(format!("{sub}: required field missing"));
                    }
                }
                Some(x) => problems.extend(locate(a, f.ty, x, &sub)),
            }
        }
        return problems;
    }
    if fits(a, t, v) {
        return Vec::new();
    }
    match (&a.nodes[t], v) {
        (Node::Union(b), V::Map(_) | V::Rec(_)) => {
            let records: Vec<usize> = b.iter().copied().filter(|x| matches!(a.nodes[*x], Node::Record { .. })).collect();
            if records.len() == 1 {
                return locate(a, records[0], v, path);
            }
        }
        (Node::Array(i), V::Arr(items)) => {
            return items.iter().enumerate().flat_map(|(k, x)| locate(a, *i, x, &format!("{path}[{k}]"))).collect();
        }
        (Node::Map(i), V::Map(_) | V::Rec(_)) => {
            return v.entries().into_iter().flat_map(|(k, x)| locate(a, *i, x, &format!("{path}[{k}]"))).collect();
        }
        _ => {}
    }
    let shown = crate::openlineage::pytext::py_repr(v);
    let shown = if shown.chars().count() <= 60 { shown } else { format!("{}...", shown.chars().take(57).collect::<String>()) };
    vec![format!("{where_}: expected {}, got {} {shown}", describe(a, t), type_name(v))]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag() {
        let mut o = Vec::new();
        for n in [0i64, -1, 1, 63, -64, 64, i64::MAX, i64::MIN] {
            o.clear();
            long(n, &mut o);
            let mut c = crate::decode::Cur { b: &o, p: 0 };
            let (a, r) = Arena::parse_text("\"long\"").unwrap();
            match crate::decode::read(&mut c, &a, r, &a, None) {
                Ok(V::Int(m)) => assert_eq!(m, n),
                _ => panic!("{n}"),
            }
        }
    }

    #[test]
    fn explains_a_union_mismatch() {
        let (a, r) = Arena::parse_text(
            r#"{"type":"record","name":"X","fields":[{"name":"s","type":"string"},{"name":"u","type":["null","string"],"default":null}]}"#,
        )
        .unwrap();
        let v = V::Map(vec![("s".into(), V::s("a")), ("u".into(), V::Int(5))]);
        assert_eq!(encode(&a, r, &v), Err("u: expected null | string, got int 5".into()));
        let ok = V::Map(vec![("s".into(), V::s("a"))]);
        assert_eq!(encode(&a, r, &ok), Ok(vec![2, b'a', 0]));
    }
}

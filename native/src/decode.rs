//! Avro binary decoding with writer/reader schema resolution, into plain Rust values (no GIL).
use crate::schema::{Arena, Node};
use serde_json::Value as J;
use std::sync::Arc;

pub enum V {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Bytes(Vec<u8>),
    Str(String),
    Ts(i64),
    Arr(Vec<V>),
    Map(Vec<(String, V)>),
    Rec(Vec<(Arc<str>, V)>),
}

/// Why a body failed: `Eof` maps to the `truncated` reason, `Bad` to `undecodable`.
pub enum E {
    Eof(String),
    Bad(String),
}

// datetime's range (year 1 to 9999) in microseconds from the Unix epoch.
const TS_MIN: i64 = -62_135_596_800_000_000;
const TS_MAX: i64 = 253_402_300_799_999_999;

pub struct Cur<'a> {
    pub b: &'a [u8],
    pub p: usize,
}

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], E> {
        if self.b.len() - self.p < n {
            return Err(E::Eof(format!("Expected {n} bytes, read {}", self.b.len() - self.p)));
        }
        let s = &self.b[self.p..self.p + n];
        self.p += n;
        Ok(s)
    }
    fn byte(&mut self) -> Result<u8, E> {
        Ok(self.take(1)?[0])
    }
    fn long(&mut self) -> Result<i64, E> {
        let mut n: u64 = 0;
        let mut shift = 0u32;
        loop {
            // EOF on a number's first byte is a short body; inside a number it is garbage.
            let b = if shift == 0 {
                self.byte()?
            } else {
                *self.b.get(self.p).ok_or_else(|| E::Bad("IndexError: string index out of range".into()))?
            };
            if shift > 0 {
                self.p += 1;
            }
            if shift < 64 {
                n |= ((b & 0x7f) as u64) << shift;
            }
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        Ok(((n >> 1) as i64) ^ -((n & 1) as i64))
    }
    fn len(&mut self) -> Result<usize, E> {
        let n = self.long()?;
        if n < 0 {
            return Err(E::Eof(format!("Expected {n} bytes, read {}", self.b.len() - self.p)));
        }
        Ok(n as usize)
    }
    fn bytes(&mut self) -> Result<Vec<u8>, E> {
        let n = self.len()?;
        Ok(self.take(n)?.to_vec())
    }
    fn string(&mut self) -> Result<String, E> {
        let n = self.len()?;
        let s = self.take(n)?;
        String::from_utf8(s.to_vec()).map_err(|e| E::Bad(format!("UnicodeDecodeError: {e}")))
    }
    /// Block-encoded array/map item count; a negative count is followed by the block's byte size.
    fn block(&mut self) -> Result<u64, E> {
        let n = self.long()?;
        if n < 0 {
            self.long()?;
            Ok(n.unsigned_abs())
        } else {
            Ok(n as u64)
        }
    }
}

fn ts(n: i64) -> Result<V, E> {
    if !(TS_MIN..=TS_MAX).contains(&n) {
        return Err(E::Bad("OverflowError: date value out of range".into()));
    }
    Ok(V::Ts(n))
}

/// Decode one value of writer type `w`, resolved to reader type `r` (None: no resolution).
pub fn read(c: &mut Cur, wa: &Arena, w: usize, ra: &Arena, r: Option<usize>) -> Result<V, E> {
    let wn = &wa.nodes[w];
    // Writer unions pick their branch first; reader unions pick the first branch that fits.
    if let Node::Union(br) = wn {
        let i = c.long()?;
        let b = *pick(br, i)
            .ok_or_else(|| E::Bad(format!("IndexError: union index {i} out of range")))?;
        return read(c, wa, b, ra, r);
    }
    let r = match r {
        None => None,
        Some(ri) => match &ra.nodes[ri] {
            Node::Union(rb) => Some(
                *rb.iter()
                    .find(|&&x| matches(wn, &ra.nodes[x]))
                    .ok_or_else(|| E::Bad("SchemaResolutionError: no reader union branch fits the writer".into()))?,
            ),
            rn => {
                if !matches(wn, rn) {
                    return Err(E::Bad("SchemaResolutionError: writer and reader types differ".into()));
                }
                Some(ri)
            }
        },
    };
    let rn = r.map(|x| &ra.nodes[x]);
    Ok(match wn {
        Node::Null => V::Null,
        Node::Bool => V::Bool(c.byte()? != 0),
        Node::Int | Node::Long => {
            let n = c.long()?;
            match rn {
                Some(Node::Float) | Some(Node::Double) => V::Float(n as f64),
                Some(Node::TsMicros) => ts(n)?,
                _ => V::Int(n),
            }
        }
        Node::TsMicros => {
            let n = c.long()?;
            match rn {
                Some(Node::Long) => V::Int(n),
                _ => ts(n)?,
            }
        }
        Node::Float => {
            let s = c.take(4)?;
            V::Float(f32::from_le_bytes([s[0], s[1], s[2], s[3]]) as f64)
        }
        Node::Double => {
            let s = c.take(8)?;
            V::Float(f64::from_le_bytes(s.try_into().unwrap()))
        }
        Node::Bytes => match rn {
            Some(Node::Str) => V::Str(c.string()?),
            _ => V::Bytes(c.bytes()?),
        },
        Node::Str => match rn {
            Some(Node::Bytes) => V::Bytes(c.bytes()?),
            _ => V::Str(c.string()?),
        },
        Node::Fixed { size, .. } => V::Bytes(c.take(*size)?.to_vec()),
        Node::Enum { symbols, .. } => {
            let i = c.long()?;
            let sym = pick(symbols, i)
                .ok_or_else(|| E::Bad(format!("IndexError: enum index {i} out of range")))?;
            match rn {
                Some(Node::Enum { symbols: rs, default, .. }) => {
                    if rs.iter().any(|s| s == sym) {
                        V::Str(sym.to_string())
                    } else if let Some(d) = default {
                        V::Str(d.clone())
                    } else {
                        return Err(E::Bad(format!("SchemaResolutionError: {sym} not in the reader's symbols")));
                    }
                }
                _ => V::Str(sym.to_string()),
            }
        }
        Node::Array(wi) => {
            let ri = match rn {
                Some(Node::Array(x)) => Some(*x),
                _ => None,
            };
            let mut out = Vec::new();
            loop {
                let n = c.block()?;
                if n == 0 {
                    break;
                }
                for _ in 0..n {
                    out.push(read(c, wa, *wi, ra, ri)?);
                }
            }
            V::Arr(out)
        }
        Node::Map(wi) => {
            let ri = match rn {
                Some(Node::Map(x)) => Some(*x),
                _ => None,
            };
            let mut out: Vec<(String, V)> = Vec::new();
            loop {
                let n = c.block()?;
                if n == 0 {
                    break;
                }
                for _ in 0..n {
                    let k = c.string()?;
                    let v = read(c, wa, *wi, ra, ri)?;
                    out.push((k, v));
                }
            }
            V::Map(out)
        }
        Node::Record { fields: wf, .. } => match rn {
            Some(Node::Record { fields: rf, .. }) => {
                let mut out = Vec::with_capacity(rf.len());
                let mut seen = vec![false; rf.len()];
                for f in wf {
                    let hit = rf.iter().position(|x| x.name == f.name || x.aliases.iter().any(|a| **a == *f.name));
                    match hit {
                        Some(k) => {
                            seen[k] = true;
                            out.push((rf[k].name.clone(), read(c, wa, f.ty, ra, Some(rf[k].ty))?));
                        }
                        None => {
                            read(c, wa, f.ty, wa, None)?;
                        }
                    }
                }
                for (k, f) in rf.iter().enumerate() {
                    if !seen[k] {
                        let d = f.default.as_ref().ok_or_else(|| {
                            E::Bad(format!("SchemaResolutionError: no value and no default for {}", f.name))
                        })?;
                        out.push((f.name.clone(), default(ra, f.ty, d)?));
                    }
                }
                V::Rec(out)
            }
            _ => {
                let mut out = Vec::with_capacity(wf.len());
                for f in wf {
                    out.push((f.name.clone(), read(c, wa, f.ty, wa, None)?));
                }
                V::Rec(out)
            }
        },
        Node::Union(_) | Node::Placeholder => return Err(E::Bad("schema node cannot be read".into())),
    })
}

/// Branch or symbol `i` as the Python codec picks it: a negative index counts from the end.
fn pick<T>(items: &[T], i: i64) -> Option<&T> {
    let n = items.len() as i64;
    let k = if i < 0 { i.checked_add(n)? } else { i };
    if (0..n).contains(&k) {
        items.get(k as usize)
    } else {
        None
    }
}

fn matches(w: &Node, r: &Node) -> bool {
    use Node::*;
    match (w, r) {
        (Null, Null) | (Bool, Bool) | (Float, Float) | (Double, Double) => true,
        (Int | Long | TsMicros, Int | Long | TsMicros) => true,
        (Int | Long, Float | Double) | (Float, Double) => true,
        (Bytes | Str, Bytes | Str) => true,
        (Record { name: a, .. }, Record { name: b, .. })
        | (Enum { name: a, .. }, Enum { name: b, .. })
        | (Fixed { name: a, .. }, Fixed { name: b, .. }) => short(a) == short(b),
        (Array(_), Array(_)) | (Map(_), Map(_)) => true,
        _ => false,
    }
}

fn short(n: &str) -> &str {
    n.rsplit('.').next().unwrap_or(n)
}

/// A field default (JSON) as a value of reader type `t`; a union's default is its first branch's.
fn default(a: &Arena, t: usize, d: &J) -> Result<V, E> {
    let bad = || E::Bad("SchemaResolutionError: default does not fit its type".into());
    Ok(match &a.nodes[t] {
        Node::Union(b) => return default(a, *b.first().ok_or_else(bad)?, d),
        Node::Null => V::Null,
        Node::Bool => V::Bool(d.as_bool().ok_or_else(bad)?),
        Node::Int | Node::Long => V::Int(d.as_i64().ok_or_else(bad)?),
        Node::TsMicros => ts(d.as_i64().ok_or_else(bad)?)?,
        Node::Float | Node::Double => V::Float(d.as_f64().ok_or_else(bad)?),
        Node::Str | Node::Enum { .. } => V::Str(d.as_str().ok_or_else(bad)?.to_string()),
        Node::Bytes | Node::Fixed { .. } => V::Bytes(d.as_str().ok_or_else(bad)?.chars().map(|c| c as u8).collect()),
        Node::Array(i) => V::Arr(d.as_array().ok_or_else(bad)?.iter().map(|x| default(a, *i, x)).collect::<Result<_, _>>()?),
        Node::Map(i) => V::Map(
            d.as_object()
                .ok_or_else(bad)?
                .iter()
                .map(|(k, x)| Ok((k.clone(), default(a, *i, x)?)))
                .collect::<Result<_, E>>()?,
        ),
        Node::Record { fields, .. } => {
            let o = d.as_object().ok_or_else(bad)?;
            let mut out = Vec::new();
            for f in fields {
                let v = o.get(&*f.name).or(f.default.as_ref()).ok_or_else(bad)?;
                out.push((f.name.clone(), default(a, f.ty, v)?));
            }
            V::Rec(out)
        }
        Node::Placeholder => return Err(bad()),
    })
}

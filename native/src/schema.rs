//! Avro schemas parsed from their JSON text into an arena of nodes (named types by index).
use serde_json::Value as J;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug)]
pub struct Field {
    pub name: Arc<str>,
    pub aliases: Vec<String>,
    pub ty: usize,
    pub default: Option<J>,
}

#[derive(Debug)]
pub enum Node {
    Null,
    Bool,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    Str,
    TsMicros,
    Record { name: String, fields: Vec<Field> },
    Enum { name: String, symbols: Vec<Arc<str>>, default: Option<String> },
    Array(usize),
    Map(usize),
    Union(Vec<usize>),
    Fixed { name: String, size: usize },
    Placeholder,
}

#[derive(Debug, Default)]
pub struct Arena {
    pub nodes: Vec<Node>,
    names: HashMap<String, usize>,
}

fn full(name: &str, ns: &str) -> String {
    if name.contains('.') || ns.is_empty() {
        name.to_string()
    } else {
        format!("{ns}.{name}")
    }
}

impl Arena {
    /// Parse a schema's JSON text; returns the arena and the root node.
    pub fn parse_text(text: &str) -> Result<(Arena, usize), String> {
        let j: J = serde_json::from_str(text).map_err(|e| format!("schema is not JSON: {e}"))?;
        let mut a = Arena::default();
        let root = a.parse(&j, "")?;
        Ok((a, root))
    }

    fn push(&mut self, n: Node) -> usize {
        self.nodes.push(n);
        self.nodes.len() - 1
    }

    fn primitive(name: &str) -> Option<Node> {
        Some(match name {
            "null" => Node::Null,
            "boolean" => Node::Bool,
            "int" => Node::Int,
            "long" => Node::Long,
            "float" => Node::Float,
            "double" => Node::Double,
            "bytes" => Node::Bytes,
            "string" => Node::Str,
            _ => return None,
        })
    }

    fn parse(&mut self, j: &J, ns: &str) -> Result<usize, String> {
        match j {
            J::String(s) => {
                if let Some(p) = Self::primitive(s) {
                    return Ok(self.push(p));
                }
                let f = full(s, ns);
                self.names
                    .get(&f)
                    .or_else(|| self.names.get(s.as_str()))
                    .copied()
                    .ok_or_else(|| format!("unknown type name {s}"))
            }
            J::Array(branches) => {
                let mut idx = Vec::with_capacity(branches.len());
                for b in branches {
                    idx.push(self.parse(b, ns)?);
                }
                Ok(self.push(Node::Union(idx)))
            }
            J::Object(o) => {
                let ty = o.get("type").ok_or("type without \"type\"")?;
                let ty_s = match ty {
                    J::String(s) => s.as_str(),
                    other => return self.parse(other, ns),
                };
                if ty_s == "long" && o.get("logicalType").and_then(J::as_str) == Some("timestamp-micros") {
                    return Ok(self.push(Node::TsMicros));
                }
                if let Some(p) = Self::primitive(ty_s) {
                    return Ok(self.push(p));
                }
                let name_of = |o: &serde_json::Map<String, J>| -> Result<(String, String), String> {
                    let n = o.get("name").and_then(J::as_str).ok_or("named type without a name")?;
                    let own_ns = o.get("namespace").and_then(J::as_str).unwrap_or(ns);
                    let f = full(n, own_ns);
                    let new_ns = f.rsplit_once('.').map(|(a, _)| a.to_string()).unwrap_or_default();
                    Ok((f, new_ns))
                };
                match ty_s {
                    "record" | "error" => {
                        let (f, new_ns) = name_of(o)?;
                        let me = self.push(Node::Placeholder);
                        self.names.insert(f.clone(), me);
                        let mut fields = Vec::new();
                        for fj in o.get("fields").and_then(J::as_array).ok_or("record without fields")? {
                            let name = fj.get("name").and_then(J::as_str).ok_or("field without a name")?;
                            let ty = self.parse(fj.get("type").ok_or("field without a type")?, &new_ns)?;
                            let aliases = fj
                                .get("aliases")
                                .and_then(J::as_array)
                                .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
                                .unwrap_or_default();
                            fields.push(Field { name: Arc::from(name), aliases, ty, default: fj.get("default").cloned() });
                        }
                        self.nodes[me] = Node::Record { name: f, fields };
                        Ok(me)
                    }
                    "enum" => {
                        let (f, _) = name_of(o)?;
                        let symbols = o
                            .get("symbols")
                            .and_then(J::as_array)
                            .ok_or("enum without symbols")?
                            .iter()
                            .map(|s| s.as_str().map(Arc::from).ok_or("enum symbol is not a string"))
                            .collect::<Result<Vec<_>, _>>()?;
                        let default = o.get("default").and_then(J::as_str).map(str::to_string);
                        let me = self.push(Node::Enum { name: f.clone(), symbols, default });
                        self.names.insert(f, me);
                        Ok(me)
                    }
                    "fixed" => {
                        let (f, _) = name_of(o)?;
                        let size = o.get("size").and_then(J::as_u64).ok_or("fixed without size")? as usize;
                        let me = self.push(Node::Fixed { name: f.clone(), size });
                        self.names.insert(f, me);
                        Ok(me)
                    }
                    "array" => {
                        let items = self.parse(o.get("items").ok_or("array without items")?, ns)?;
                        Ok(self.push(Node::Array(items)))
                    }
                    "map" => {
                        let values = self.parse(o.get("values").ok_or("map without values")?, ns)?;
                        Ok(self.push(Node::Map(values)))
                    }
                    other => {
                        let f = full(other, ns);
                        self.names
                            .get(&f)
                            .or_else(|| self.names.get(other))
                            .copied()
                            .ok_or_else(|| format!("unknown type {other}"))
                    }
                }
            }
            _ => Err("schema must be a string, array or object".into()),
        }
    }
}

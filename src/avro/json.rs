//! Avro binary → Avro JSON encoding (specification, "JSON Encoding"), for routes with
//! `output: json`: a union value is `null` or `{"<branch type name>": value}`, bytes and fixed
//! are strings whose code points 0-255 are the bytes, enums are their symbol, logical types are
//! their underlying type's value.
//!
//! Owns: walking reader-encoded bytes against the reader schema. Must not: resolve (the input is
//! already in the reader's encoding), do I/O, or panic on any input.

use std::collections::HashMap;

use apache_avro::Schema;
use apache_avro::schema::{Name, UnionSchema};
use serde_json::{Map, Number, Value};

/// Renders one reader-encoded datum as Avro JSON.
pub fn to_json(schema: &Schema, bytes: &[u8]) -> Result<Value, String> {
    let mut names = HashMap::new();
    collect(schema, None, &mut names);
    let mut w = Walker {
        names,
        buf: bytes,
        pos: 0,
        depth: 0,
    };
    let v = w.value(schema, None)?;
    if w.pos != bytes.len() {
        return Err(format!("{} bytes after the datum", bytes.len() - w.pos));
    }
    Ok(v)
}

fn full(name: &Name, ns: Option<&str>) -> String {
    name.fullname(ns)
}

fn collect<'s>(schema: &'s Schema, ns: Option<&str>, names: &mut HashMap<String, &'s Schema>) {
    match schema {
        Schema::Record(r) => {
            names.insert(full(&r.name, ns), schema);
            let inner = r.name.namespace().or(ns);
            for f in &r.fields {
                collect(&f.schema, inner, names);
            }
        }
        Schema::Enum(e) => {
            names.insert(full(&e.name, ns), schema);
        }
        Schema::Fixed(f) | Schema::Duration(f) => {
            names.insert(full(&f.name, ns), schema);
        }
        Schema::Array(a) => collect(&a.items, ns, names),
        Schema::Map(m) => collect(&m.types, ns, names),
        Schema::Union(u) => u.variants().iter().for_each(|v| collect(v, ns, names)),
        _ => {}
    }
}

const MAX_DEPTH: u32 = 256;

struct Walker<'s, 'b> {
    names: HashMap<String, &'s Schema>,
    buf: &'b [u8],
    pos: usize,
    depth: u32,
}

impl<'s> Walker<'s, '_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len());
        let end = end.ok_or_else(|| format!("truncated at byte {}", self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn long(&mut self) -> Result<i64, String> {
        let mut rest = self.buf.get(self.pos..).unwrap_or(&[]);
        let before = rest.len();
        let v = super::read_long(&mut rest)
            .map_err(|e| format!("bad varint at byte {} ({e:?})", self.pos))?;
        self.pos += before - rest.len();
        Ok(v)
    }

    fn len(&mut self) -> Result<usize, String> {
        let n = self.long()?;
        usize::try_from(n)
            .ok()
            .filter(|n| *n <= self.buf.len() - self.pos)
            .ok_or_else(|| format!("bad length {n} at byte {}", self.pos))
    }

    fn bytes_string(&mut self, n: usize) -> Result<Value, String> {
        Ok(Value::String(
            self.take(n)?.iter().map(|&b| char::from(b)).collect(),
        ))
    }

    fn float(f: f64) -> Value {
        Number::from_f64(f).map_or_else(|| Value::String(f.to_string()), Value::Number)
    }

    fn value(&mut self, schema: &'s Schema, ns: Option<&str>) -> Result<Value, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("nested too deeply".into());
        }
        let v = self.value_inner(schema, ns);
        self.depth -= 1;
        v
    }

    fn value_inner(&mut self, schema: &'s Schema, ns: Option<&str>) -> Result<Value, String> {
        Ok(match schema {
            Schema::Null => Value::Null,
            Schema::Boolean => Value::Bool(self.take(1)?[0] != 0),
            Schema::Int
            | Schema::Long
            | Schema::Date
            | Schema::TimeMillis
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => Value::from(self.long()?),
            Schema::Float => {
                let b = self.take(4)?;
                Self::float(f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            }
            Schema::Double => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                Self::float(f64::from_le_bytes(a))
            }
            Schema::Bytes | Schema::BigDecimal => {
                let n = self.len()?;
                self.bytes_string(n)?
            }
            Schema::Decimal(d) => match &d.inner {
                apache_avro::schema::InnerDecimalSchema::Fixed(f) => self.bytes_string(f.size)?,
                apache_avro::schema::InnerDecimalSchema::Bytes => {
                    let n = self.len()?;
                    self.bytes_string(n)?
                }
            },
            Schema::String | Schema::Uuid(_) => {
                let n = self.len()?;
                let s = std::str::from_utf8(self.take(n)?).map_err(|e| e.to_string())?;
                Value::String(s.to_string())
            }
            Schema::Fixed(f) | Schema::Duration(f) => self.bytes_string(f.size)?,
            Schema::Enum(e) => {
                let i = self.long()?;
                let s = usize::try_from(i).ok().and_then(|i| e.symbols.get(i));
                Value::String(
                    s.ok_or_else(|| format!("enum index {i} out of range"))?
                        .clone(),
                )
            }
            Schema::Array(a) => {
                let mut items = Vec::new();
                while let Some(n) = self.block()? {
                    for _ in 0..n {
                        items.push(self.value(&a.items, ns)?);
                    }
                }
                Value::Array(items)
            }
            Schema::Map(m) => {
                let mut map = Map::new();
                while let Some(n) = self.block()? {
                    for _ in 0..n {
                        let k = self.len()?;
                        let key = std::str::from_utf8(self.take(k)?)
                            .map_err(|e| e.to_string())?
                            .to_string();
                        let v = self.value(&m.types, ns)?;
                        map.insert(key, v);
                    }
                }
                Value::Object(map)
            }
            Schema::Union(u) => self.union(u, ns)?,
            Schema::Record(r) => {
                let inner = r.name.namespace().or(ns).map(str::to_string);
                let mut map = Map::new();
                for f in &r.fields {
                    let v = self.value(&f.schema, inner.as_deref())?;
                    map.insert(f.name.clone(), v);
                }
                Value::Object(map)
            }
            Schema::Ref { name } => {
                let target = self
                    .names
                    .get(&full(name, ns))
                    .copied()
                    .ok_or_else(|| format!("unknown named type {}", name.name()))?;
                self.value(target, ns)?
            }
        })
    }

    /// Next block's item count; `None` at the terminating zero.
    fn block(&mut self) -> Result<Option<u64>, String> {
        let n = self.long()?;
        if n == 0 {
            return Ok(None);
        }
        if n < 0 {
            self.long()?; // byte size of the block
        }
        let n = n.unsigned_abs();
        if n > (self.buf.len() - self.pos) as u64 + 1_048_576 {
            return Err(format!("block count {n} too large"));
        }
        Ok(Some(n))
    }

    fn union(&mut self, u: &'s UnionSchema, ns: Option<&str>) -> Result<Value, String> {
        let i = self.long()?;
        let branch = usize::try_from(i)
            .ok()
            .and_then(|i| u.variants().get(i))
            .ok_or_else(|| format!("union branch {i} out of range"))?;
        if matches!(branch, Schema::Null) {
            return Ok(Value::Null);
        }
        let name = branch_name(branch, ns);
        let v = self.value(branch, ns)?;
        let mut map = Map::new();
        map.insert(name, v);
        Ok(Value::Object(map))
    }
}

/// The name a union branch is keyed by in Avro JSON: a named type's full name, else the
/// (underlying) primitive type name.
fn branch_name(schema: &Schema, ns: Option<&str>) -> String {
    match schema {
        Schema::Record(r) => full(&r.name, ns),
        Schema::Enum(e) => full(&e.name, ns),
        Schema::Fixed(f) | Schema::Duration(f) => full(&f.name, ns),
        Schema::Ref { name } => full(name, ns),
        Schema::Null => "null".into(),
        Schema::Boolean => "boolean".into(),
        Schema::Int | Schema::Date | Schema::TimeMillis => "int".into(),
        Schema::Long
        | Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => "long".into(),
        Schema::Float => "float".into(),
        Schema::Double => "double".into(),
        Schema::Bytes | Schema::BigDecimal => "bytes".into(),
        Schema::Decimal(d) => match &d.inner {
            apache_avro::schema::InnerDecimalSchema::Fixed(f) => full(&f.name, ns),
            apache_avro::schema::InnerDecimalSchema::Bytes => "bytes".into(),
        },
        Schema::String | Schema::Uuid(_) => "string".into(),
        Schema::Array(_) => "array".into(),
        Schema::Map(_) => "map".into(),
        Schema::Union(_) => "union".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unions_bytes_enums_and_records_follow_the_avro_json_encoding() {
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"R","namespace":"n","fields":[
                {"name":"a","type":["null","string"]},
                {"name":"b","type":["null","string"]},
                {"name":"c","type":"bytes"},
                {"name":"d","type":{"type":"enum","name":"E","symbols":["X","Y"]}},
                {"name":"e","type":["null",{"type":"record","name":"In","fields":[{"name":"v","type":"int"}]}]},
                {"name":"f","type":{"type":"map","values":"long"}},
                {"name":"g","type":{"type":"array","items":"double"}}]}"#,
        )
        .unwrap();
        let bytes = [
            0x00, // a: null
            0x02, 0x04, b'h', b'i', // b: string "hi"
            0x04, 0x00, 0xff, // c: bytes [0, 255]
            0x02, // d: Y
            0x02, 0x0e, // e: In{v: 7}
            0x02, 0x02, b'k', 0x06, 0x00, // f: {k: 3}
            0x01, 0x10, 0, 0, 0, 0, 0, 0, 0xf8, 0x3f,
            0x00, // g: [1.5] as a negative-count block
        ];
        let v = to_json(&schema, &bytes).unwrap();
        assert_eq!(
            v,
            json!({"a": null, "b": {"string": "hi"}, "c": "\u{0}\u{ff}", "d": "Y",
                   "e": {"n.In": {"v": 7}}, "f": {"k": 3}, "g": [1.5]})
        );
        assert!(to_json(&schema, &bytes[..5]).is_err());
    }
}

//! The comparison form shared with tests/support/fastavro_oracle.py: an apache-avro value as
//! JSON, with floats by their bit patterns and bytes/fixed as hex, so values from the two
//! implementations compare exactly.

use apache_avro::types::Value;
use serde_json::{Value as Json, json};

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// apache-avro value (decoded with the reader schema) in the oracle's normalized JSON form.
pub fn normalize(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Boolean(b) => json!(b),
        Value::Int(i) | Value::Date(i) | Value::TimeMillis(i) => json!(i),
        Value::Long(i)
        | Value::TimeMicros(i)
        | Value::TimestampMillis(i)
        | Value::TimestampMicros(i)
        | Value::TimestampNanos(i)
        | Value::LocalTimestampMillis(i)
        | Value::LocalTimestampMicros(i)
        | Value::LocalTimestampNanos(i) => json!(i),
        Value::Float(f) => json!({"$f64": f64::from(*f).to_bits()}),
        Value::Double(f) => json!({"$f64": f.to_bits()}),
        Value::Bytes(b) | Value::Fixed(_, b) => json!({"$bytes": hex(b)}),
        Value::String(s) => json!(s),
        Value::Enum(_, s) => json!(s),
        Value::Union(_, v) => normalize(v),
        Value::Array(items) => Json::Array(items.iter().map(normalize).collect()),
        Value::Map(m) => Json::Object(m.iter().map(|(k, v)| (k.clone(), normalize(v))).collect()),
        Value::Record(fields) => Json::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), normalize(v)))
                .collect(),
        ),
        other => panic!("value kind the oracle comparison does not cover: {other:?}"),
    }
}

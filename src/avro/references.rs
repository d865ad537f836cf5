//! Avro schema references, as the Confluent serializers register them: a schema names a type
//! (`"com.acme.Money"`) that is defined in another subject, listed in its `references`.
//!
//! Owns: turning a schema plus the texts of the named types it references into one
//! self-contained schema text, by putting each referenced definition in place of the first use of
//! its name (in the order an Avro parser walks the schema; later uses stay name references, as
//! the specification requires). A referenced definition keeps its own namespace (an explicit
//! `""` when it has none, so it does not take the enclosing one). Must not: fetch anything (the
//! caller hands over every reference's text, its own references included).

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

const PRIMITIVES: [&str; 8] = [
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

/// `main` with the named types of `references` (each the JSON text of a record, enum or fixed)
/// defined where they are first used. Errors name the reference that is not a named type.
pub fn inline_references(main: &str, references: &[String]) -> Result<String, String> {
    let mut defs: HashMap<String, Value> = HashMap::new();
    for (i, text) in references.iter().enumerate() {
        let mut def: Value =
            serde_json::from_str(text).map_err(|e| format!("reference {i} is not JSON: {e}"))?;
        let Some(obj) = def.as_object_mut() else {
            return Err(format!("reference {i} is not a named Avro type"));
        };
        let name = obj.get("name").and_then(Value::as_str).unwrap_or_default();
        if name.is_empty() || !matches!(kind(obj), Some("record" | "enum" | "fixed")) {
            return Err(format!(
                "reference {i} is not a named Avro type (record, enum or fixed)"
            ));
        }
        let full = full_name(name, obj.get("namespace").and_then(Value::as_str), "");
        if !obj.contains_key("namespace") && !name.contains('.') {
            obj.insert("namespace".into(), Value::String(String::new()));
        }
        defs.insert(full, def);
    }
    let mut root: Value =
        serde_json::from_str(main).map_err(|e| format!("the schema is not JSON: {e}"))?;
    let mut inliner = Inliner {
        defs,
        defined: HashSet::new(),
    };
    inliner.walk(&mut root, "");
    serde_json::to_string(&root).map_err(|e| e.to_string())
}

struct Inliner {
    defs: HashMap<String, Value>,
    defined: HashSet<String>,
}

impl Inliner {
    /// Walks a type position under namespace `ns`.
    fn walk(&mut self, v: &mut Value, ns: &str) {
        match v {
            Value::String(name) if !PRIMITIVES.contains(&name.as_str()) => {
                let full = full_name(name, None, ns);
                if self.defined.contains(&full) {
                    return;
                }
                // A name may also be given relative to the enclosing namespace.
                let key = [full.clone(), name.clone()]
                    .into_iter()
                    .find(|k| self.defs.contains_key(k));
                if let Some(key) = key
                    && let Some(mut def) = self.defs.remove(&key)
                {
                    self.walk(&mut def, ns);
                    *v = def;
                }
            }
            Value::Array(branches) => branches.iter_mut().for_each(|b| self.walk(b, ns)),
            Value::Object(obj) => self.walk_object(obj, ns),
            _ => {}
        }
    }

    fn walk_object(&mut self, obj: &mut Map<String, Value>, ns: &str) {
        match kind(obj) {
            Some("record" | "error" | "enum" | "fixed") => {
                let name = obj.get("name").and_then(Value::as_str).unwrap_or_default();
                let explicit = obj.get("namespace").and_then(Value::as_str);
                let full = full_name(name, explicit, ns);
                let inner_ns = full.rsplit_once('.').map_or("", |(n, _)| n).to_string();
                self.defined.insert(full);
                if let Some(Value::Array(fields)) = obj.get_mut("fields") {
                    for field in fields {
                        if let Some(t) = field.get_mut("type") {
                            self.walk(t, &inner_ns);
                        }
                    }
                }
            }
            Some("array") => {
                if let Some(items) = obj.get_mut("items") {
                    self.walk(items, ns);
                }
            }
            Some("map") => {
                if let Some(values) = obj.get_mut("values") {
                    self.walk(values, ns);
                }
            }
            _ => {
                // `{"type": <type>}` (a primitive with a logical type, or a wrapped type).
                if let Some(t) = obj.get_mut("type") {
                    self.walk(t, ns);
                }
            }
        }
    }
}

fn kind(obj: &Map<String, Value>) -> Option<&str> {
    obj.get("type").and_then(Value::as_str)
}

/// A name's full name: as is when dotted, else in `explicit` or the enclosing `ns`.
fn full_name(name: &str, explicit: Option<&str>, ns: &str) -> String {
    if name.contains('.') {
        return name.to_string();
    }
    match explicit.unwrap_or(ns) {
        "" => name.to_string(),
        ns => format!("{ns}.{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MONEY: &str = r#"{"type":"record","name":"Money","namespace":"com.acme","fields":[{"name":"cents","type":"long"},{"name":"currency","type":"string"}]}"#;
    const STATUS: &str = r#"{"type":"enum","name":"Status","symbols":["NEW","PAID"]}"#;

    #[test]
    fn the_first_use_gets_the_definition_and_later_uses_stay_names() {
        let main = r#"{"type":"record","name":"Order","namespace":"com.shop","fields":[
            {"name":"total","type":"com.acme.Money"},
            {"name":"refunds","type":{"type":"array","items":"com.acme.Money"}},
            {"name":"status","type":["null","Status"]}]}"#;
        let text = inline_references(main, &[MONEY.to_string(), STATUS.to_string()]).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["fields"][0]["type"]["name"], "Money");
        assert_eq!(v["fields"][1]["type"]["items"], "com.acme.Money");
        // The enum without a namespace keeps the null namespace inside com.shop.
        assert_eq!(v["fields"][2]["type"][1]["namespace"], "");
        let schema = apache_avro::Schema::parse_str(&text).expect("self-contained");
        let apache_avro::Schema::Record(r) = schema else {
            panic!("record")
        };
        assert_eq!(r.fields.len(), 3);
    }

    #[test]
    fn a_reference_that_is_not_a_named_type_is_an_error() {
        let err = inline_references(r#""string""#, &[r#""long""#.to_string()]).unwrap_err();
        assert!(
            err.contains("reference 0 is not a named Avro type"),
            "{err}"
        );
    }
}

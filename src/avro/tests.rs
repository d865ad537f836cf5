//! Unit tests of the resolution engine: one rule per test, content asserted by decoding the
//! output with the reader schema (apache-avro, no resolution), plus hostile input.

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;

use super::codec::write_long;
use super::*;

const V1: &str = include_str!("../../proto/orders/order_v1.avsc");
const V2: &str = include_str!("../../proto/orders/order_v2.avsc");

fn schema(json: &str) -> Schema {
    match Schema::parse_str(json) {
        Ok(s) => s,
        Err(e) => panic!("bad test schema: {e}\n{json}"),
    }
}

fn plan(writer: &str, reader: &str) -> Plan {
    match compile(&schema(writer), &schema(reader)) {
        Ok(p) => p,
        Err(e) => panic!("compile failed: {e}"),
    }
}

fn plan_err(writer: &str, reader: &str) -> PlanError {
    match compile(&schema(writer), &schema(reader)) {
        Ok(p) => panic!("expected a plan error, got {p:?}"),
        Err(e) => e,
    }
}

fn encode(writer: &str, value: Value) -> Vec<u8> {
    let writer = schema(writer);
    GenericDatumWriter::builder(&writer)
        .build()
        .and_then(|w| w.write_value_to_vec(value))
        .expect("test value fits the writer schema")
}

fn decode(reader: &str, bytes: &[u8]) -> Value {
    let mut slice = bytes;
    let reader = schema(reader);
    let v = GenericDatumReader::builder(&reader)
        .build()
        .and_then(|r| r.read_value(&mut slice))
        .expect("output decodes with reader");
    assert!(
        slice.is_empty(),
        "output has {} trailing bytes",
        slice.len()
    );
    v
}

/// Transcodes `value` written with `writer` and decodes the output with `reader`.
fn resolve(writer: &str, reader: &str, value: Value) -> (Value, Lossiness) {
    let p = plan(writer, reader);
    let input = encode(writer, value);
    let mut out = Vec::new();
    let lossy = p
        .transcode(&input, &mut out)
        .unwrap_or_else(|e| panic!("transcode failed: {e}"));
    (decode(reader, &out), lossy)
}

fn transcode_err(p: &Plan, input: &[u8]) -> TranscodeError {
    let mut out = vec![0xAA];
    match p.transcode(input, &mut out) {
        Ok(_) => panic!("expected a transcode error"),
        Err(e) => {
            assert_eq!(out, vec![0xAA], "out must be left as it was on error");
            e
        }
    }
}

fn rec(fields: &[(&str, Value)]) -> Value {
    Value::Record(
        fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    )
}

fn s(v: &str) -> Value {
    Value::String(v.into())
}

// ---------------------------------------------------------------------------------------------
// Fields: added with defaults, missing, removed, reordered, aliases
// ---------------------------------------------------------------------------------------------

#[test]
fn added_fields_take_pre_encoded_defaults_of_every_type() {
    let writer = r#"{"type":"record","name":"R","fields":[{"name":"id","type":"long"}]}"#;
    let reader = r#"{"type":"record","name":"R","fields":[
        {"name":"n","type":"null","default":null},
        {"name":"id","type":"long"},
        {"name":"b","type":"boolean","default":true},
        {"name":"i","type":"int","default":-7},
        {"name":"l","type":"long","default":1234567890123},
        {"name":"f","type":"float","default":1.5},
        {"name":"d","type":"double","default":-2.25},
        {"name":"by","type":"bytes","default":"\u00ff\u0000A"},
        {"name":"st","type":"string","default":"héllo"},
        {"name":"e","type":{"type":"enum","name":"E","symbols":["X","Y","Z"]},"default":"Z"},
        {"name":"fx","type":{"type":"fixed","name":"F2","size":2},"default":"\u0001\u00fe"},
        {"name":"a","type":{"type":"array","items":"int"},"default":[1,2,3]},
        {"name":"ea","type":{"type":"array","items":"int"},"default":[]},
        {"name":"m","type":{"type":"map","values":"string"},"default":{"k":"v"}},
        {"name":"r","type":{"type":"record","name":"Inner","fields":[
            {"name":"x","type":"int"},{"name":"y","type":"string","default":"dy"}]},
         "default":{"x":5}},
        {"name":"u1","type":["null","string"],"default":null},
        {"name":"u2","type":["string","null"],"default":"first"},
        {"name":"u3","type":[{"type":"record","name":"P","fields":[{"name":"q","type":"int"}]},"null"],
         "default":{"q":9}}
    ]}"#;
    let (v, lossy) = resolve(writer, reader, rec(&[("id", Value::Long(42))]));
    assert!(!lossy.is_lossy());
    let expected = rec(&[
        ("n", Value::Null),
        ("id", Value::Long(42)),
        ("b", Value::Boolean(true)),
        ("i", Value::Int(-7)),
        ("l", Value::Long(1234567890123)),
        ("f", Value::Float(1.5)),
        ("d", Value::Double(-2.25)),
        ("by", Value::Bytes(vec![0xff, 0x00, b'A'])),
        ("st", s("héllo")),
        ("e", Value::Enum(2, "Z".into())),
        ("fx", Value::Fixed(2, vec![0x01, 0xfe])),
        (
            "a",
            Value::Array(vec![Value::Int(1), Value::Int(2), Value::Int(3)]),
        ),
        ("ea", Value::Array(vec![])),
        (
            "m",
            Value::Map([("k".to_string(), s("v"))].into_iter().collect()),
        ),
        ("r", rec(&[("x", Value::Int(5)), ("y", s("dy"))])),
        ("u1", Value::Union(0, Box::new(Value::Null))),
        ("u2", Value::Union(0, Box::new(s("first")))),
        (
            "u3",
            Value::Union(0, Box::new(rec(&[("q", Value::Int(9))]))),
        ),
    ]);
    assert_eq!(v, expected);
}

#[test]
fn reader_field_without_default_missing_in_writer_is_a_plan_error_naming_it() {
    let writer = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}"#;
    let reader = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"},
        {"name":"sub","type":{"type":"record","name":"S","fields":[{"name":"x","type":"int"}]},"default":{"x":1}},
        {"name":"b","type":"string","aliases":["bee"]}]}"#;
    let e = plan_err(writer, reader);
    assert!(
        matches!(&e, PlanError::MissingField { path, field, .. } if path == "R.b" && field == "b")
    );
    assert_eq!(
        e.to_string(),
        r#"R.b: reader field has no default and the writer has no field named "b" nor any of its aliases ["bee"]"#
    );
}

#[test]
fn invalid_default_is_a_plan_error_with_path() {
    let writer = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}"#;
    // A union default must be for the first branch (Avro 1.11).
    let reader = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"},
        {"name":"u","type":["null","string"],"default":"x"}]}"#;
    let e = plan_err(writer, reader);
    assert!(
        matches!(&e, PlanError::InvalidDefault { path, .. } if path == "R.u"),
        "{e}"
    );
    // A fixed default of the wrong length.
    let reader = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"},
        {"name":"f","type":{"type":"fixed","name":"F","size":3},"default":"ab"}]}"#;
    // apache-avro's parser may already reject this one; either way it is an error.
    if let Ok(r) = Schema::parse_str(reader) {
        let e = compile(&schema(writer), &r).unwrap_err();
        assert!(
            matches!(&e, PlanError::InvalidDefault { path, .. } if path == "R.f"),
            "{e}"
        );
    }
}

#[test]
fn removed_fields_are_skipped_reported_and_lossiness_compares_with_writer_default() {
    let writer = r#"{"type":"record","name":"R","fields":[
        {"name":"keep","type":"string"},
        {"name":"email","type":["null","string"],"default":null},
        {"name":"score","type":"float","default":0.5},
        {"name":"hash","type":{"type":"fixed","name":"H","size":4}},
        {"name":"tags","type":{"type":"array","items":"string"}},
        {"name":"tail","type":"long"}]}"#;
    let reader = r#"{"type":"record","name":"R","fields":[
        {"name":"keep","type":"string"},{"name":"tail","type":"long"}]}"#;
    let p = plan(writer, reader);
    assert_eq!(p.dropped_fields(), ["email", "score", "hash", "tags"]);

    // Every dropped field at its default / zero value: not lossy.
    let quiet = rec(&[
        ("keep", s("k")),
        ("email", Value::Union(0, Box::new(Value::Null))),
        ("score", Value::Float(0.5)),
        ("hash", Value::Fixed(4, vec![0; 4])),
        ("tags", Value::Array(vec![])),
        ("tail", Value::Long(-3)),
    ]);
    let (v, lossy) = resolve(writer, reader, quiet.clone());
    assert_eq!(v, rec(&[("keep", s("k")), ("tail", Value::Long(-3))]));
    assert!(!lossy.is_lossy());
    assert_eq!(lossy.fields().count(), 0);

    // email and hash carry data: lossy at their indexes.
    let loud = rec(&[
        ("keep", s("k")),
        ("email", Value::Union(1, Box::new(s("a@b.c")))),
        ("score", Value::Float(0.5)),
        ("hash", Value::Fixed(4, vec![1, 2, 3, 4])),
        ("tags", Value::Array(vec![])),
        ("tail", Value::Long(-3)),
    ]);
    let (v, lossy) = resolve(writer, reader, loud);
    assert_eq!(v, rec(&[("keep", s("k")), ("tail", Value::Long(-3))]));
    assert!(lossy.is_lossy());
    assert_eq!(lossy.fields().collect::<Vec<_>>(), vec![0, 2]);
}

#[test]
fn reordered_fields_are_written_in_reader_order() {
    let writer = r#"{"type":"record","name":"R","fields":[
        {"name":"a","type":"int"},{"name":"gone","type":"string"},{"name":"b","type":"string"},
        {"name":"c","type":{"type":"array","items":{"type":"record","name":"I","fields":[
            {"name":"x","type":"int"},{"name":"y","type":"string"}]}}}]}"#;
    let reader = r#"{"type":"record","name":"R","fields":[
        {"name":"c","type":{"type":"array","items":{"type":"record","name":"I","fields":[
            {"name":"y","type":"string"},{"name":"new","type":"int","default":7},{"name":"x","type":"long"}]}}},
        {"name":"added","type":"string","default":"dflt"},
        {"name":"b","type":"string"},{"name":"a","type":"int"}]}"#;
    let value = rec(&[
        ("a", Value::Int(1)),
        ("gone", s("zzz")),
        ("b", s("bee")),
        (
            "c",
            Value::Array(vec![
                rec(&[("x", Value::Int(10)), ("y", s("ten"))]),
                rec(&[("x", Value::Int(20)), ("y", s("twenty"))]),
            ]),
        ),
    ]);
    let (v, lossy) = resolve(writer, reader, value);
    let expected = rec(&[
        (
            "c",
            Value::Array(vec![
                rec(&[
                    ("y", s("ten")),
                    ("new", Value::Int(7)),
                    ("x", Value::Long(10)),
                ]),
                rec(&[
                    ("y", s("twenty")),
                    ("new", Value::Int(7)),
                    ("x", Value::Long(20)),
                ]),
            ]),
        ),
        ("added", s("dflt")),
        ("b", s("bee")),
        ("a", Value::Int(1)),
    ]);
    assert_eq!(v, expected);
    assert!(lossy.is_lossy(), "`gone` held a non-empty string");
}

#[test]
fn field_aliases_and_named_type_aliases() {
    let writer = r#"{"type":"record","name":"Old","namespace":"w.ns","fields":[
        {"name":"total_cents","type":"long"},
        {"name":"kind","type":{"type":"enum","name":"OldKind","symbols":["A","B"]}},
        {"name":"h","type":{"type":"fixed","name":"Hash","size":2}}]}"#;
    let reader = r#"{"type":"record","name":"New","namespace":"r.ns","aliases":["w.ns.Old"],"fields":[
        {"name":"amount_cents","aliases":["total_cents"],"type":"long"},
        {"name":"kind","type":{"type":"enum","name":"Kind","aliases":["OldKind"],"symbols":["B","A"]}},
        {"name":"h","type":{"type":"fixed","name":"Hash","size":2}}]}"#;
    let value = rec(&[
        ("total_cents", Value::Long(995)),
        ("kind", Value::Enum(0, "A".into())),
        ("h", Value::Fixed(2, vec![7, 8])),
    ]);
    let (v, _) = resolve(writer, reader, value);
    assert_eq!(
        v,
        rec(&[
            ("amount_cents", Value::Long(995)),
            ("kind", Value::Enum(1, "A".into())),
            ("h", Value::Fixed(2, vec![7, 8])),
        ])
    );
    // Without the alias the names differ: a plan error naming both.
    let e = plan_err(writer, &reader.replace(r#""aliases":["w.ns.Old"],"#, ""));
    assert!(
        matches!(&e, PlanError::NameMismatch { writer, reader, .. } if writer == "w.ns.Old" && reader == "r.ns.New"),
        "{e}"
    );
}

#[test]
fn alias_matching_no_writer_field_falls_back_to_default() {
    let writer = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}"#;
    let reader = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"},
        {"name":"x","aliases":["nope","also_nope"],"type":"int","default":3}]}"#;
    let (v, _) = resolve(writer, reader, rec(&[("a", Value::Int(1))]));
    assert_eq!(v, rec(&[("a", Value::Int(1)), ("x", Value::Int(3))]));
}

#[test]
fn names_match_unqualified_across_namespaces() {
    let writer =
        r#"{"type":"record","name":"R","namespace":"one","fields":[{"name":"a","type":"int"}]}"#;
    let reader =
        r#"{"type":"record","name":"R","namespace":"two","fields":[{"name":"a","type":"long"}]}"#;
    let (v, _) = resolve(writer, reader, rec(&[("a", Value::Int(-9))]));
    assert_eq!(v, rec(&[("a", Value::Long(-9))]));
}

// ---------------------------------------------------------------------------------------------
// Promotions
// ---------------------------------------------------------------------------------------------

fn promote(w: &str, r: &str, value: Value) -> Value {
    resolve(w, r, value).0
}

#[test]
fn numeric_and_string_promotions() {
    assert_eq!(
        promote(r#""int""#, r#""long""#, Value::Int(-123456)),
        Value::Long(-123456)
    );
    assert_eq!(
        promote(r#""int""#, r#""float""#, Value::Int(16777217)),
        Value::Float(16777216.0)
    );
    assert_eq!(
        promote(r#""int""#, r#""double""#, Value::Int(i32::MIN)),
        Value::Double(f64::from(i32::MIN))
    );
    assert_eq!(
        promote(r#""long""#, r#""float""#, Value::Long(1 << 40)),
        Value::Float((1u64 << 40) as f32)
    );
    assert_eq!(
        promote(r#""long""#, r#""double""#, Value::Long(-(1 << 53))),
        Value::Double(-(2f64.powi(53)))
    );
    assert_eq!(
        promote(r#""float""#, r#""double""#, Value::Float(0.1)),
        Value::Double(f64::from(0.1f32))
    );
    assert_eq!(
        promote(r#""string""#, r#""bytes""#, s("añb")),
        Value::Bytes("añb".as_bytes().to_vec())
    );
    assert_eq!(
        promote(r#""bytes""#, r#""string""#, Value::Bytes(b"xyz".to_vec())),
        s("xyz")
    );
}

#[test]
fn no_demotion_and_invalid_utf8_bytes_cannot_become_a_string() {
    let e = plan_err(
        r#"{"type":"record","name":"OrderPlaced","fields":[{"name":"shipping","type":{"type":"record","name":"Address","fields":[{"name":"postcode","type":"string"}]}}]}"#,
        r#"{"type":"record","name":"OrderPlaced","fields":[{"name":"shipping","type":{"type":"record","name":"Address","fields":[{"name":"postcode","type":"long"}]}}]}"#,
    );
    assert_eq!(
        e.to_string(),
        "OrderPlaced.shipping.postcode: writer type string cannot be read as reader type long"
    );
    assert!(matches!(
        plan_err(r#""long""#, r#""int""#),
        PlanError::TypeMismatch { .. }
    ));
    assert!(matches!(
        plan_err(r#""double""#, r#""float""#),
        PlanError::TypeMismatch { .. }
    ));

    let p = plan(r#""bytes""#, r#""string""#);
    let input = encode(r#""bytes""#, Value::Bytes(vec![0xff, 0xfe]));
    assert!(matches!(
        transcode_err(&p, &input),
        TranscodeError::InvalidUtf8 { .. }
    ));
}

// ---------------------------------------------------------------------------------------------
// Enums
// ---------------------------------------------------------------------------------------------

const ENUM_W: &str = r#"{"type":"record","name":"R","fields":[{"name":"status","type":{"type":"enum","name":"S","symbols":["A","B","C","NEW"]}}]}"#;

#[test]
fn enum_symbols_are_remapped_and_unknown_ones_fall_back_to_reader_default() {
    let reader = r#"{"type":"record","name":"R","fields":[{"name":"status","type":{"type":"enum","name":"S","symbols":["C","B","A"],"default":"B"}}]}"#;
    let p = plan(ENUM_W, reader);
    for (wi, sym, expected) in [
        (0, "A", (2, "A")),
        (1, "B", (1, "B")),
        (2, "C", (0, "C")),
        (3, "NEW", (1, "B")),
    ] {
        let input = encode(ENUM_W, rec(&[("status", Value::Enum(wi, sym.into()))]));
        let mut out = Vec::new();
        let lossy = p.transcode(&input, &mut out).unwrap();
        assert_eq!(
            decode(reader, &out),
            rec(&[("status", Value::Enum(expected.0, expected.1.into()))])
        );
        assert_eq!(lossy.enum_default_used(), sym == "NEW");
        assert!(!lossy.is_lossy());
    }
}

#[test]
fn enum_symbol_without_reader_default_fails_only_when_it_appears() {
    let reader = r#"{"type":"record","name":"R","fields":[{"name":"status","type":{"type":"enum","name":"S","symbols":["A","B","C"]}}]}"#;
    let p = plan(ENUM_W, reader); // compiles: the spec makes this a per-datum error
    let ok = encode(ENUM_W, rec(&[("status", Value::Enum(2, "C".into()))]));
    let mut out = Vec::new();
    p.transcode(&ok, &mut out).unwrap();
    assert_eq!(
        decode(reader, &out),
        rec(&[("status", Value::Enum(2, "C".into()))])
    );

    let bad = encode(ENUM_W, rec(&[("status", Value::Enum(3, "NEW".into()))]));
    let e = transcode_err(&p, &bad);
    assert!(matches!(&e, TranscodeError::UnknownEnumSymbol { symbol, .. } if symbol == "NEW"));
    assert_eq!(e.location().path, "R.status");
    assert_eq!(e.location().offset, 0);
    assert!(
        e.to_string()
            .starts_with("R.status (byte 0): writer enum symbol \"NEW\""),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// Unions
// ---------------------------------------------------------------------------------------------

#[test]
fn union_to_union_remaps_branches_and_fails_at_runtime_on_a_missing_branch() {
    let w = r#"["null","string","long",{"type":"record","name":"P","fields":[{"name":"x","type":"int"}]}]"#;
    let r =
        r#"[{"type":"record","name":"P","fields":[{"name":"x","type":"long"}]},"double","null"]"#;
    let p = plan(w, r);
    let cases = [
        (
            Value::Union(0, Box::new(Value::Null)),
            Value::Union(2, Box::new(Value::Null)),
        ),
        (
            Value::Union(2, Box::new(Value::Long(5))),
            Value::Union(1, Box::new(Value::Double(5.0))),
        ),
        (
            Value::Union(3, Box::new(rec(&[("x", Value::Int(3))]))),
            Value::Union(0, Box::new(rec(&[("x", Value::Long(3))]))),
        ),
    ];
    for (input, expected) in cases {
        let mut out = Vec::new();
        p.transcode(&encode(w, input), &mut out).unwrap();
        assert_eq!(decode(r, &out), expected);
    }
    let e = transcode_err(&p, &encode(w, Value::Union(1, Box::new(s("no")))));
    assert!(
        matches!(&e, TranscodeError::UnresolvableBranch { index: 1, writer_type, .. } if writer_type == "string"),
        "{e}"
    );
}

#[test]
fn union_to_non_union_fails_only_for_branches_that_do_not_resolve() {
    let w = r#"["null","int","string"]"#;
    let p = plan(w, r#""long""#);
    let mut out = Vec::new();
    p.transcode(
        &encode(w, Value::Union(1, Box::new(Value::Int(77)))),
        &mut out,
    )
    .unwrap();
    assert_eq!(decode(r#""long""#, &out), Value::Long(77));
    assert!(matches!(
        transcode_err(&p, &encode(w, Value::Union(0, Box::new(Value::Null)))),
        TranscodeError::UnresolvableBranch { index: 0, .. }
    ));
    assert!(matches!(
        transcode_err(&p, &encode(w, Value::Union(2, Box::new(s("x"))))),
        TranscodeError::UnresolvableBranch { index: 2, .. }
    ));
}

#[test]
fn non_union_to_union_prefers_exact_type_over_promotion() {
    // int writer, reader ["long","int"]: the exact int branch, not the promotion that comes first.
    assert_eq!(
        promote(r#""int""#, r#"["null","long","int"]"#, Value::Int(4)),
        Value::Union(2, Box::new(Value::Int(4)))
    );
    // No exact branch: first promotion.
    assert_eq!(
        promote(
            r#""int""#,
            r#"["null","string","double","long"]"#,
            Value::Int(4)
        ),
        Value::Union(2, Box::new(Value::Double(4.0)))
    );
    // Named types by name.
    let w = r#"{"type":"record","name":"B","fields":[{"name":"v","type":"int"}]}"#;
    let r = r#"[{"type":"record","name":"A","fields":[{"name":"v","type":"int"}]},{"type":"record","name":"B","fields":[{"name":"v","type":"int"}]}]"#;
    assert_eq!(
        promote(w, r, rec(&[("v", Value::Int(1))])),
        Value::Union(1, Box::new(rec(&[("v", Value::Int(1))])))
    );
    // Nothing matches: a plan error.
    assert!(matches!(
        plan_err(r#""string""#, r#"["null","long"]"#),
        PlanError::TypeMismatch { .. }
    ));
}

// ---------------------------------------------------------------------------------------------
// Arrays, maps, blocks
// ---------------------------------------------------------------------------------------------

/// Hand-encodes an array of longs as blocks; negative counts carry a byte size.
fn long_blocks(blocks: &[(bool, &[i64])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (negative, items) in blocks {
        let mut body = Vec::new();
        for v in *items {
            write_long(&mut body, *v);
        }
        if *negative {
            write_long(&mut out, -(items.len() as i64));
            write_long(&mut out, body.len() as i64);
        } else {
            write_long(&mut out, items.len() as i64);
        }
        out.extend_from_slice(&body);
    }
    out.push(0);
    out
}

#[test]
fn arrays_with_negative_block_counts_resolve_and_copy() {
    let input = long_blocks(&[(false, &[1, 2]), (true, &[3, -4, 500]), (false, &[6])]);
    // Promotion path (items resolved one by one).
    let p = plan(
        r#"{"type":"array","items":"long"}"#,
        r#"{"type":"array","items":"double"}"#,
    );
    let mut out = Vec::new();
    p.transcode(&input, &mut out).unwrap();
    let expected: Vec<Value> = [1.0, 2.0, 3.0, -4.0, 500.0, 6.0]
        .into_iter()
        .map(Value::Double)
        .collect();
    assert_eq!(
        decode(r#"{"type":"array","items":"double"}"#, &out),
        Value::Array(expected)
    );
    // Copy path (identity: skipped by byte size, copied verbatim).
    let p = plan(
        r#"{"type":"array","items":"long"}"#,
        r#"{"type":"array","items":"long"}"#,
    );
    assert!(p.is_identity());
    let mut out = Vec::new();
    p.transcode(&input, &mut out).unwrap();
    assert_eq!(out, input);
    let expected: Vec<Value> = [1, 2, 3, -4, 500, 6].into_iter().map(Value::Long).collect();
    assert_eq!(
        decode(r#"{"type":"array","items":"long"}"#, &out),
        Value::Array(expected)
    );
}

#[test]
fn block_byte_sizes_must_match_the_items_they_hold() {
    // Two items of one byte each in a block that claims three bytes (the third byte would
    // otherwise be jumped over, unchecked, and copied).
    let mut lying = Vec::new();
    write_long(&mut lying, -2);
    write_long(&mut lying, 3);
    lying.extend_from_slice(&[2, 4, 0xff]);
    lying.push(0);
    let arr = |items: &str| format!(r#"{{"type":"array","items":{items}}}"#);
    let rec = |items: &str| {
        format!(
            r#"{{"type":"record","name":"R","fields":[{{"name":"a","type":{{"type":"array","items":{items}}}}},{{"name":"t","type":"int"}}]}}"#
        )
    };
    let wrapped = |body: &[u8]| {
        let mut v = body.to_vec();
        v.push(2); // t
        v
    };
    let item_rec = r#"{"type":"record","name":"I","fields":[{"name":"x","type":"long"}]}"#;
    let item_rec_r = r#"{"type":"record","name":"I","fields":[{"name":"x","type":"double"}]}"#;
    for (w, r, input) in [
        // Copied: the whole value, items skipped in place.
        (arr(r#""long""#), arr(r#""long""#), lying.clone()),
        // Copied inside a record: a run item of primitives.
        (
            rec(r#""long""#),
            rec(r#""long""#).replace(r#""R""#, r#""R2","aliases":["R"]"#),
            wrapped(&lying),
        ),
        // Copied, items that are records: skipped by a skip program.
        (arr(item_rec), arr(item_rec), lying.clone()),
        // Resolved item by item in an inline loop.
        (arr(r#""long""#), arr(r#""double""#), lying.clone()),
        // Resolved in a called loop (an array inside an inline loop's item).
        (arr(&arr(item_rec)), arr(&arr(item_rec_r)), {
            let mut v = Vec::new();
            write_long(&mut v, 1);
            v.extend_from_slice(&lying);
            v.push(0);
            v
        }),
    ] {
        let p = plan(&w, &r);
        let e = transcode_err(&p, &input);
        assert!(
            matches!(e, TranscodeError::InconsistentBlock { .. }),
            "{w} -> {r}: {e}"
        );
        // With the right size, the same input transcodes.
        let honest: Vec<u8> = input
            .iter()
            .copied()
            .enumerate()
            .filter(|&(i, _)| input.get(i) != Some(&0xff))
            .map(|(_, b)| if b == 6 { 4 } else { b })
            .collect();
        let mut out = Vec::new();
        p.transcode(&honest, &mut out)
            .unwrap_or_else(|e| panic!("{w} -> {r}: {e}"));
        decode(&r, &out);
    }
}

#[test]
fn error_paths_inside_loops_maps_and_nested_arrays() {
    // An array item's field (inline loop over records).
    let p = plan(V2, V1);
    let mut input = encode(V2, order_v2(1, false));
    let pos = input.windows(4).position(|w| w == b"SKU-").unwrap();
    input.truncate(pos + 1);
    let e = transcode_err(&p, &input);
    assert_eq!(e.location().path, "OrderPlaced.items[].sku", "{e}");

    // A map value's field, and a field of an item of an array nested in an array item.
    let w = r#"{"type":"record","name":"R","fields":[
        {"name":"m","type":{"type":"map","values":{"type":"record","name":"V","fields":[
            {"name":"x","type":"long"},{"name":"gone","type":"string"}]}}},
        {"name":"n","type":{"type":"array","items":{"type":"array","items":
            {"type":"record","name":"I","fields":[{"name":"y","type":"int"}]}}}}]}"#;
    let r = r#"{"type":"record","name":"R","fields":[
        {"name":"m","type":{"type":"map","values":{"type":"record","name":"V","fields":[
            {"name":"x","type":"double"}]}}},
        {"name":"n","type":{"type":"array","items":{"type":"array","items":
            {"type":"record","name":"I","fields":[{"name":"y","type":"float"}]}}}}]}"#;
    let p = plan(w, r);
    let mut good = Vec::new();
    write_long(&mut good, 1); // one map entry
    write_long(&mut good, 1);
    good.push(b'k');
    write_long(&mut good, 5); // x
    write_long(&mut good, 0); // gone: ""
    good.push(0);
    write_long(&mut good, 1); // n: one inner array
    write_long(&mut good, 1); // with one item
    write_long(&mut good, 7); // y
    good.extend_from_slice(&[0, 0]);
    let mut out = Vec::new();
    p.transcode(&good, &mut out).unwrap();
    let v = decode(r, &out);
    let Value::Record(fields) = v else {
        panic!("{v:?}")
    };
    assert_eq!(
        fields[1].1,
        Value::Array(vec![Value::Array(vec![rec(&[("y", Value::Float(7.0))])])])
    );

    // x: a varint that never ends.
    let mut bad = good.clone();
    bad[3] = 0xff;
    bad[4] = 0xff;
    let e = transcode_err(&p, &bad[..5]);
    assert_eq!(e.location().path, "R.m{}.x", "{e}");
    // y: an int out of range.
    let at = good.len() - 3;
    let mut bad = good[..at].to_vec();
    write_long(&mut bad, 1 << 40);
    bad.extend_from_slice(&[0, 0]);
    let e = transcode_err(&p, &bad);
    assert!(matches!(e, TranscodeError::IntOutOfRange { .. }), "{e}");
    assert_eq!(e.location().path, "R.n[][].y", "{e}");
}

#[test]
fn maps_resolve_values_across_blocks() {
    let w = r#"{"type":"map","values":"int"}"#;
    let r = r#"{"type":"map","values":"long"}"#;
    let mut input = Vec::new();
    write_long(&mut input, -2);
    let mut body = Vec::new();
    for (k, v) in [("a", 1), ("bb", -2)] {
        write_long(&mut body, k.len() as i64);
        body.extend_from_slice(k.as_bytes());
        write_long(&mut body, v);
    }
    write_long(&mut input, body.len() as i64);
    input.extend_from_slice(&body);
    write_long(&mut input, 1);
    write_long(&mut input, 1);
    input.push(b'c');
    write_long(&mut input, 3);
    input.push(0);
    let p = plan(w, r);
    let mut out = Vec::new();
    p.transcode(&input, &mut out).unwrap();
    let expected: std::collections::HashMap<String, Value> = [("a", 1), ("bb", -2), ("c", 3)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), Value::Long(v)))
        .collect();
    assert_eq!(decode(r, &out), Value::Map(expected));
}

#[test]
fn dropped_fields_inside_arrays_and_maps_have_paths_and_lossiness() {
    let w = r#"{"type":"record","name":"R","fields":[
        {"name":"items","type":{"type":"array","items":{"type":"record","name":"I","fields":[
            {"name":"sku","type":"string"},{"name":"gift_wrap","type":"boolean","default":false}]}}},
        {"name":"attrs","type":{"type":"map","values":{"type":"record","name":"V","fields":[
            {"name":"v","type":"int"},{"name":"note","type":"string"}]}}}]}"#;
    let r = r#"{"type":"record","name":"R","fields":[
        {"name":"items","type":{"type":"array","items":{"type":"record","name":"I","fields":[{"name":"sku","type":"string"}]}}},
        {"name":"attrs","type":{"type":"map","values":{"type":"record","name":"V","fields":[{"name":"v","type":"int"}]}}}]}"#;
    let p = plan(w, r);
    assert_eq!(p.dropped_fields(), ["items[].gift_wrap", "attrs{}.note"]);
    let item = |sku: &str, gw: bool| rec(&[("sku", s(sku)), ("gift_wrap", Value::Boolean(gw))]);
    let value = rec(&[
        (
            "items",
            Value::Array(vec![item("a", false), item("b", true)]),
        ),
        (
            "attrs",
            Value::Map(
                [(
                    "k".to_string(),
                    rec(&[("v", Value::Int(1)), ("note", s(""))]),
                )]
                .into_iter()
                .collect(),
            ),
        ),
    ]);
    let (v, lossy) = resolve(w, r, value);
    assert_eq!(lossy.fields().collect::<Vec<_>>(), vec![0]);
    assert_eq!(
        v,
        rec(&[
            (
                "items",
                Value::Array(vec![rec(&[("sku", s("a"))]), rec(&[("sku", s("b"))])])
            ),
            (
                "attrs",
                Value::Map(
                    [("k".to_string(), rec(&[("v", Value::Int(1))]))]
                        .into_iter()
                        .collect()
                )
            ),
        ])
    );
}

// ---------------------------------------------------------------------------------------------
// Fixed, recursion, logical types, identity
// ---------------------------------------------------------------------------------------------

#[test]
fn fixed_sizes_and_names_must_match() {
    let e = plan_err(
        r#"{"type":"fixed","name":"F","size":4}"#,
        r#"{"type":"fixed","name":"F","size":8}"#,
    );
    assert!(matches!(
        e,
        PlanError::FixedSizeMismatch {
            writer: 4,
            reader: 8,
            ..
        }
    ));
    let e = plan_err(
        r#"{"type":"fixed","name":"F","size":4}"#,
        r#"{"type":"fixed","name":"G","size":4}"#,
    );
    assert!(matches!(e, PlanError::NameMismatch { kind: "fixed", .. }));
    assert_eq!(
        promote(
            r#"{"type":"fixed","name":"F","size":3}"#,
            r#"{"type":"fixed","name":"F","size":3}"#,
            Value::Fixed(3, vec![1, 2, 3])
        ),
        Value::Fixed(3, vec![1, 2, 3])
    );
}

const LIST_W: &str = r#"{"type":"record","name":"Node","fields":[
    {"name":"value","type":"int"},{"name":"label","type":"string","default":""},
    {"name":"next","type":["null","Node"]}]}"#;
const LIST_R: &str = r#"{"type":"record","name":"Node","fields":[
    {"name":"next","type":["null","Node"]},{"name":"value","type":"long"},
    {"name":"extra","type":"boolean","default":true}]}"#;

fn list(values: &[(i32, &str)]) -> Value {
    let mut v = Value::Union(0, Box::new(Value::Null));
    for (n, label) in values.iter().rev() {
        v = Value::Union(
            1,
            Box::new(rec(&[
                ("value", Value::Int(*n)),
                ("label", s(label)),
                ("next", v),
            ])),
        );
    }
    match v {
        Value::Union(_, inner) => *inner,
        other => other,
    }
}

#[test]
fn recursive_linked_list_with_reorder_drop_promotion_and_default() {
    let p = plan(LIST_W, LIST_R);
    assert_eq!(p.dropped_fields(), ["label"]);
    let mut out = Vec::new();
    let lossy = p
        .transcode(
            &encode(LIST_W, list(&[(1, ""), (2, "two"), (3, "")])),
            &mut out,
        )
        .unwrap();
    assert!(lossy.is_lossy());
    let node = |next: Value, v: i64| {
        rec(&[
            ("next", next),
            ("value", Value::Long(v)),
            ("extra", Value::Boolean(true)),
        ])
    };
    let null = Value::Union(0, Box::new(Value::Null));
    let expected = node(
        Value::Union(
            1,
            Box::new(node(Value::Union(1, Box::new(node(null, 3))), 2)),
        ),
        1,
    );
    assert_eq!(decode(LIST_R, &out), expected);
}

#[test]
fn recursive_tree_with_same_encoding_collapses_to_one_copy() {
    let tree = r#"{"type":"record","name":"Tree","namespace":"a","fields":[{"name":"v","type":"long"},
        {"name":"kids","type":{"type":"array","items":"Tree"}}]}"#;
    // Another namespace: not the same canonical form, but the same bytes. The greatest-fixed-point
    // collapse must see through the recursion and make the whole plan one copy.
    let other = tree.replace(r#""namespace":"a""#, r#""namespace":"b""#);
    let p = plan(tree, &other);
    assert!(!p.is_identity());
    assert!(
        matches!(p.nodes.get(p.root as usize), Some(Node::Copy(_))),
        "{:?}",
        p.nodes
    );
    let leaf = |v: i64| rec(&[("v", Value::Long(v)), ("kids", Value::Array(vec![]))]);
    let value = rec(&[
        ("v", Value::Long(1)),
        (
            "kids",
            Value::Array(vec![
                leaf(2),
                rec(&[("v", Value::Long(3)), ("kids", Value::Array(vec![leaf(4)]))]),
            ]),
        ),
    ]);
    let input = encode(tree, value.clone());
    let mut out = Vec::new();
    p.transcode(&input, &mut out).unwrap();
    assert_eq!(out, input);
    assert_eq!(decode(&other, &out), value);
}

#[test]
fn logical_types_resolve_on_their_underlying_type() {
    let w = r#"{"type":"record","name":"R","fields":[
        {"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}},
        {"name":"day","type":{"type":"int","logicalType":"date"}},
        {"name":"id","type":{"type":"string","logicalType":"uuid"}}]}"#;
    let r = r#"{"type":"record","name":"R","fields":[
        {"name":"ts","type":{"type":"long","logicalType":"timestamp-micros"}},
        {"name":"day","type":"long"},
        {"name":"id","type":"string"}]}"#;
    let p = plan(w, r);
    // Hand-encode: apache-avro wants logical Values for logical schemas.
    let mut input = Vec::new();
    write_long(&mut input, 1_700_000_000_000);
    write_long(&mut input, 19_000);
    let uuid = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";
    write_long(&mut input, uuid.len() as i64);
    input.extend_from_slice(uuid.as_bytes());
    let mut out = Vec::new();
    p.transcode(&input, &mut out).unwrap();
    assert_eq!(
        decode(r, &out),
        rec(&[
            ("ts", Value::TimestampMicros(1_700_000_000_000)),
            ("day", Value::Long(19_000)),
            ("id", s(uuid))
        ])
    );
}

#[test]
fn identity_fast_path_ignores_docs_aliases_and_defaults() {
    let a = r#"{"type":"record","name":"R","doc":"x","fields":[{"name":"a","type":"int","default":1}]}"#;
    let b = r#"{"type":"record","name":"R","fields":[{"name":"a","aliases":["z"],"type":"int"}]}"#;
    assert!(plan(a, b).is_identity());
    assert!(plan(V2, V2).is_identity());
    assert!(!plan(V2, V1).is_identity());
    let p = plan(V2, V2);
    assert!(matches!(p.nodes.get(p.root as usize), Some(Node::Copy(_))));
    let input = encode(V2, order_v2(3, true));
    let mut out = b"prefix".to_vec();
    p.transcode(&input, &mut out).unwrap();
    assert_eq!(&out[..6], b"prefix", "transcode appends");
    assert_eq!(&out[6..], &input[..]);
}

// ---------------------------------------------------------------------------------------------
// The reference pair
// ---------------------------------------------------------------------------------------------

fn order_v2(i: i64, loud: bool) -> Value {
    let geo = if loud {
        Value::Union(
            1,
            Box::new(rec(&[
                ("lat", Value::Double(52.5)),
                ("lon", Value::Double(13.4)),
            ])),
        )
    } else {
        Value::Union(0, Box::new(Value::Null))
    };
    let item = |sku: &str, qty: i32, gw: bool| {
        rec(&[
            ("sku", s(sku)),
            ("qty", Value::Int(qty)),
            ("unit_cents", Value::Long(250)),
            ("gift_wrap", Value::Boolean(gw)),
        ])
    };
    rec(&[
        ("order_id", s(&format!("ord-{i}"))),
        ("customer_id", Value::Long(1000 + i)),
        ("placed_at", Value::TimestampMillis(1_700_000_000_000 + i)),
        (
            "status",
            if loud {
                Value::Enum(4, "REFUNDED".into())
            } else {
                Value::Enum(1, "PAID".into())
            },
        ),
        ("total_cents", Value::Long(750)),
        ("currency", s("EUR")),
        ("quantity", Value::Int(3)),
        ("discount", Value::Union(1, Box::new(Value::Double(0.25)))),
        (
            "email",
            if loud {
                Value::Union(1, Box::new(s("a@example.com")))
            } else {
                Value::Union(0, Box::new(Value::Null))
            },
        ),
        (
            "shipping",
            rec(&[
                ("line1", s("1 Main St")),
                ("city", s("Lisbon")),
                ("postcode", s("1000")),
                ("country", s("PT")),
                ("geo", geo),
            ]),
        ),
        (
            "items",
            Value::Array(vec![item("SKU-1", 1, false), item("SKU-2", 2, loud)]),
        ),
        ("tags", Value::Array(vec![s("alpha")])),
        (
            "attributes",
            Value::Map([("k0".to_string(), s("v"))].into_iter().collect()),
        ),
        ("loyalty_tier", Value::Union(0, Box::new(Value::Null))),
        ("fraud_score", Value::Float(if loud { 0.9 } else { 0.0 })),
        (
            "payload_hash",
            Value::Fixed(32, if loud { vec![7; 32] } else { vec![0; 32] }),
        ),
        ("notes", Value::Bytes(vec![])),
        ("channel", s(if loud { "ios" } else { "web" })),
    ])
}

#[test]
fn reference_pair_v2_to_v1() {
    let p = plan(V2, V1);
    assert_eq!(
        p.dropped_fields(),
        [
            "email",
            "shipping.geo",
            "items[].gift_wrap",
            "loyalty_tier",
            "fraud_score",
            "payload_hash",
            "notes",
            "channel"
        ]
    );
    let expected = |i: i64, status: (u32, &str)| {
        let item = |sku: &str, qty: i32| {
            rec(&[
                ("sku", s(sku)),
                ("qty", Value::Int(qty)),
                ("unit_cents", Value::Long(250)),
            ])
        };
        rec(&[
            ("order_id", s(&format!("ord-{i}"))),
            ("customer_id", Value::Long(1000 + i)),
            ("placed_at", Value::TimestampMillis(1_700_000_000_000 + i)),
            ("status", Value::Enum(status.0, status.1.into())),
            ("amount_cents", Value::Long(750)),
            ("currency", s("EUR")),
            ("quantity", Value::Long(3)),
            ("discount", Value::Union(1, Box::new(Value::Double(0.25)))),
            (
                "shipping",
                rec(&[
                    ("line1", s("1 Main St")),
                    ("city", s("Lisbon")),
                    ("postcode", s("1000")),
                    ("country", s("PT")),
                ]),
            ),
            (
                "items",
                Value::Array(vec![item("SKU-1", 1), item("SKU-2", 2)]),
            ),
            ("tags", Value::Array(vec![s("alpha")])),
            (
                "attributes",
                Value::Map([("k0".to_string(), s("v"))].into_iter().collect()),
            ),
            ("source", s("unknown")),
        ])
    };

    let mut out = Vec::new();
    let lossy = p
        .transcode(&encode(V2, order_v2(1, false)), &mut out)
        .unwrap();
    assert_eq!(decode(V1, &out), expected(1, (1, "PAID")));
    assert!(
        !lossy.is_lossy(),
        "{:?}",
        lossy
            .fields()
            .map(|i| &p.dropped_fields()[i])
            .collect::<Vec<_>>()
    );
    assert!(!lossy.enum_default_used());

    out.clear();
    let lossy = p
        .transcode(&encode(V2, order_v2(2, true)), &mut out)
        .unwrap();
    assert_eq!(
        decode(V1, &out),
        expected(2, (0, "PENDING")),
        "REFUNDED falls back to the reader default"
    );
    let names: Vec<&str> = lossy
        .fields()
        .map(|i| p.dropped_fields()[i].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "email",
            "shipping.geo",
            "items[].gift_wrap",
            "fraud_score",
            "payload_hash",
            "channel"
        ]
    );
    assert!(lossy.enum_default_used());
}

#[test]
fn reference_pair_v1_to_v2_cannot_upcast() {
    // Aliases are a reader-side feature: v2 reading v1 finds no `total_cents` (v1 calls it
    // `amount_cents`), and `payload_hash` has no default either.
    let e = plan_err(V1, V2);
    assert!(
        matches!(&e, PlanError::MissingField { path, .. } if path == "OrderPlaced.total_cents"),
        "{e}"
    );
    let v2_with_alias = V2.replace(
        r#"{"name": "total_cents", "type": "long"}"#,
        r#"{"name": "total_cents", "aliases": ["amount_cents"], "type": "long"}"#,
    );
    assert_ne!(v2_with_alias, V2);
    let e = plan_err(V1, &v2_with_alias);
    assert!(
        matches!(&e, PlanError::MissingField { path, .. } if path == "OrderPlaced.payload_hash"),
        "{e}"
    );
}

#[test]
fn transcode_error_paths_name_nested_fields() {
    let p = plan(V2, V1);
    let mut input = encode(V2, order_v2(1, false));
    // Truncate inside shipping.city ("Lisbon").
    let pos = input.windows(6).position(|w| w == b"Lisbon").unwrap();
    input.truncate(pos + 2);
    let e = transcode_err(&p, &input);
    // The length prefix (6) already exceeds what is left: reported before reading the payload.
    assert!(
        matches!(
            e,
            TranscodeError::HostileLength {
                value: 6,
                remaining: 2,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.location().path, "OrderPlaced.shipping.city");
    assert_eq!(e.location().offset, pos - 1);

    // Trailing bytes.
    let mut input = encode(V2, order_v2(1, false));
    let n = input.len();
    input.extend_from_slice(&[1, 2]);
    let e = transcode_err(&p, &input);
    assert!(matches!(e, TranscodeError::TrailingBytes { extra: 2, .. }));
    assert_eq!(e.location().offset, n);
}

// ---------------------------------------------------------------------------------------------
// Hostile input
// ---------------------------------------------------------------------------------------------

#[test]
fn every_truncation_of_a_valid_datum_is_an_error() {
    for (w, r) in [(V2, V1), (V2, V2), (LIST_W, LIST_R)] {
        let p = plan(w, r);
        let input = if w == V2 {
            encode(V2, order_v2(9, true))
        } else {
            encode(LIST_W, list(&[(1, "a"), (2, "")]))
        };
        for cut in 0..input.len() {
            let e = transcode_err(&p, &input[..cut]);
            assert!(
                matches!(
                    e,
                    TranscodeError::Truncated { .. } | TranscodeError::HostileLength { .. }
                ),
                "cut {cut}: {e}"
            );
        }
    }
}

#[test]
fn huge_lengths_and_counts_are_rejected_quickly() {
    // String length far beyond the input.
    let p = plan(r#""string""#, r#""bytes""#);
    let mut input = Vec::new();
    write_long(&mut input, i64::MAX);
    assert!(matches!(
        transcode_err(&p, &input),
        TranscodeError::HostileLength { .. }
    ));

    // Array of longs claiming 2^60 items: more items than bytes left.
    let p = plan(
        r#"{"type":"array","items":"long"}"#,
        r#"{"type":"array","items":"double"}"#,
    );
    let mut input = Vec::new();
    write_long(&mut input, 1 << 60);
    input.extend_from_slice(&[2; 16]);
    assert!(matches!(
        transcode_err(&p, &input),
        TranscodeError::HostileLength {
            what: "block count",
            ..
        }
    ));

    // i64::MIN as a negative block count.
    let mut input = Vec::new();
    write_long(&mut input, i64::MIN);
    write_long(&mut input, 0);
    assert!(matches!(
        transcode_err(&p, &input),
        TranscodeError::HostileLength { .. }
    ));
}

#[test]
fn zero_byte_items_are_capped() {
    for (w, r) in [
        (
            r#"{"type":"array","items":"null"}"#,
            r#"{"type":"array","items":"null"}"#,
        ),
        (
            r#"{"type":"array","items":"null"}"#,
            r#"{"type":"array","items":["null","int"]}"#,
        ),
        (
            r#"{"type":"array","items":{"type":"record","name":"E","fields":[]}}"#,
            r#"{"type":"array","items":{"type":"record","name":"E","fields":[{"name":"x","type":"int","default":1}]}}"#,
        ),
    ] {
        let p = plan(w, r);
        let mut input = Vec::new();
        write_long(&mut input, 1 << 60);
        input.push(0);
        let t = std::time::Instant::now();
        assert!(matches!(
            transcode_err(&p, &input),
            TranscodeError::TooManyItems { .. }
        ));
        // Many small blocks adding up past the cap fail too.
        let mut input = Vec::new();
        for _ in 0..1100 {
            write_long(&mut input, 1000);
        }
        input.push(0);
        assert!(matches!(
            transcode_err(&p, &input),
            TranscodeError::TooManyItems { .. }
        ));
        assert!(t.elapsed().as_secs() < 10);
    }
    // Within the cap it works and the output decodes.
    let (w, r) = (
        r#"{"type":"array","items":"null"}"#,
        r#"{"type":"array","items":["int","null"]}"#,
    );
    let p = plan(w, r);
    let mut input = Vec::new();
    write_long(&mut input, 3);
    input.push(0);
    let mut out = Vec::new();
    p.transcode(&input, &mut out).unwrap();
    assert_eq!(
        decode(r, &out),
        Value::Array(vec![Value::Union(1, Box::new(Value::Null)); 3])
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let p = plan(LIST_W, LIST_R);
    let identity = plan(LIST_W, LIST_W);
    // 100_000 nested nodes: value=0, label="", next=branch 1 (another node), ..., then null.
    let mut input = Vec::new();
    for _ in 0..100_000 {
        input.extend_from_slice(&[0, 0, 2]);
    }
    input.extend_from_slice(&[0, 0, 0]);
    for p in [&p, &identity] {
        let e = transcode_err(p, &input);
        assert!(
            matches!(
                e,
                TranscodeError::TooDeep {
                    limit: MAX_DEPTH,
                    ..
                }
            ),
            "{e}"
        );
    }
    // 100 levels are fine.
    let values: Vec<(i32, &str)> = (0..100).map(|i| (i, "")).collect();
    let mut out = Vec::new();
    p.transcode(&encode(LIST_W, list(&values)), &mut out)
        .unwrap();
}

#[test]
fn bad_indexes_and_booleans_are_errors() {
    let w = r#"{"type":"record","name":"R","fields":[{"name":"u","type":["null","int"]},{"name":"b","type":"boolean"},
        {"name":"e","type":{"type":"enum","name":"E","symbols":["A"]}}]}"#;
    let r = r#"{"type":"record","name":"R","fields":[{"name":"u","type":["null","long"]},{"name":"b","type":"boolean"},
        {"name":"e","type":{"type":"enum","name":"E","symbols":["A"]}}]}"#;
    for p in [plan(w, r), plan(w, w)] {
        assert!(matches!(
            transcode_err(&p, &[4, 0, 0]),
            TranscodeError::BadUnionIndex { index: 2, .. }
        ));
        assert!(matches!(
            transcode_err(&p, &[1, 2]),
            TranscodeError::BadUnionIndex { index: -1, .. }
        ));
        assert!(matches!(
            transcode_err(&p, &[0, 2, 0]),
            TranscodeError::InvalidBoolean { value: 2, .. }
        ));
        let e = transcode_err(&p, &[0, 1, 2]);
        assert!(
            matches!(e, TranscodeError::BadEnumIndex { index: 1, .. }),
            "{e}"
        );
        assert_eq!(e.location().offset, 2);
        assert_eq!(e.location().path, "R.e");
        let mut out = Vec::new();
        p.transcode(&[2, 8, 1, 0], &mut out).unwrap();
    }
}

#[test]
fn random_bytes_never_panic() {
    let plans = [
        plan(V2, V1),
        plan(V2, V2),
        plan(LIST_W, LIST_R),
        plan(ENUM_W, ENUM_W),
    ];
    let valid = encode(V2, order_v2(5, true));
    // Deterministic xorshift: no dev-dependency needed.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out = Vec::new();
    for round in 0..3000 {
        let input: Vec<u8> = if round % 2 == 0 {
            (0..(next() % 200)).map(|_| next() as u8).collect()
        } else {
            // Mutate a valid datum in a few places.
            let mut v = valid.clone();
            for _ in 0..(1 + next() % 4) {
                let i = (next() as usize) % v.len();
                v[i] = next() as u8;
            }
            v
        };
        for p in &plans {
            out.clear();
            let _ = p.transcode(&input, &mut out);
        }
    }
}

#[test]
fn lossiness_beyond_64_dropped_fields() {
    let fields: Vec<String> = (0..70)
        .map(|i| format!(r#"{{"name":"f{i}","type":"int"}}"#))
        .collect();
    let w = format!(
        r#"{{"type":"record","name":"R","fields":[{},{{"name":"keep","type":"int"}}]}}"#,
        fields.join(",")
    );
    let r = r#"{"type":"record","name":"R","fields":[{"name":"keep","type":"int"}]}"#;
    let p = plan(&w, r);
    assert_eq!(p.dropped_fields().len(), 70);
    let mut input = Vec::new();
    for i in 0..70 {
        write_long(&mut input, if i == 3 || i == 69 { 1 } else { 0 });
    }
    write_long(&mut input, 5);
    let mut out = Vec::new();
    let lossy = p.transcode(&input, &mut out).unwrap();
    assert_eq!(lossy.fields().collect::<Vec<_>>(), vec![3, 69]);
    assert_eq!(decode(r, &out), rec(&[("keep", Value::Int(5))]));
}

/// `L0 { a: L1, b: L1 }`, `L1 { a: L2, b: L2 }`, ...: every level doubles the uses of the next.
fn doubling_dag(levels: usize, leaf: &str) -> String {
    let mut t = format!(r#"{{"type":"record","name":"L{levels}","fields":[{leaf}]}}"#);
    for k in (0..levels).rev() {
        t = format!(
            r#"{{"type":"record","name":"L{k}","fields":[{{"name":"a","type":{t}}},{{"name":"b","type":"L{}"}}]}}"#,
            k + 1
        );
    }
    t
}

#[test]
fn exponential_type_reuse_compiles_in_shared_mode() {
    let w = doubling_dag(
        20,
        r#"{"name":"x","type":"int"},{"name":"gone","type":"int"}"#,
    );
    let r = doubling_dag(20, r#"{"name":"x","type":"long"}"#);
    let p = plan(&w, &r);
    assert!(p.nodes.len() < 1000, "{} nodes", p.nodes.len());
    // Shared mode: one dropped entry, with the path of its first use.
    assert_eq!(p.dropped_fields().len(), 1);
    assert!(
        p.dropped_fields()[0].starts_with("a.a.a."),
        "{}",
        p.dropped_fields()[0]
    );
    // 2^20 leaves; transcode a small instance to check the shared plan is right.
    let small_w = doubling_dag(
        2,
        r#"{"name":"x","type":"int"},{"name":"gone","type":"int"}"#,
    );
    let small_r = doubling_dag(2, r#"{"name":"x","type":"long"}"#);
    let p = plan(&small_w, &small_r);
    let mut input = Vec::new();
    for i in 0..4 {
        write_long(&mut input, i);
        write_long(&mut input, 0);
    }
    let mut out = Vec::new();
    let lossy = p.transcode(&input, &mut out).unwrap();
    assert!(!lossy.is_lossy());
    let leaf = |i: i64| rec(&[("x", Value::Long(i))]);
    let l1 = |i: i64| rec(&[("a", leaf(i)), ("b", leaf(i + 1))]);
    assert_eq!(decode(&small_r, &out), rec(&[("a", l1(0)), ("b", l1(2))]));
    // Identical schemas never compile per use at all.
    let p = plan(&w, &w);
    assert!(p.is_identity());
    assert_eq!(p.nodes.len(), 1);
}

#[test]
fn plan_is_shareable_and_errors_are_cloneable() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Plan>();
    let e = plan_err(r#""string""#, r#""int""#);
    assert_eq!(e.clone().to_string(), e.to_string());
}

// ---------------------------------------------------------------------------------------------
// Validation of datums forwarded unchanged (identical schemas)
// ---------------------------------------------------------------------------------------------

/// `validate` on an identity plan gives exactly `transcode`'s verdict (same error, same path and
/// offset) without writing anything.
fn assert_validate_agrees(p: &Plan, input: &[u8]) -> Result<(), TranscodeError> {
    assert!(p.is_identity());
    let mut out = Vec::new();
    let transcoded = p.transcode(input, &mut out).map(|_| ());
    let validated = p.validate(input);
    assert_eq!(validated, transcoded, "input {input:02x?}");
    if validated.is_ok() {
        assert_eq!(out, input, "an identity transcode copies");
    }
    validated
}

#[test]
fn validate_accepts_whole_datums_and_names_truncation_and_trailing_bytes() {
    let p = plan(V2, V2);
    let input = encode(V2, order_v2(4, true));
    assert_validate_agrees(&p, &input).unwrap();
    for cut in 0..input.len() {
        let e = assert_validate_agrees(&p, &input[..cut]).unwrap_err();
        assert!(
            matches!(
                e,
                TranscodeError::Truncated { .. } | TranscodeError::HostileLength { .. }
            ),
            "cut {cut}: {e}"
        );
        assert!(e.location().path.starts_with("OrderPlaced"), "{e}");
    }
    // The whole datum is one byte short: the error names the last field (a string whose length
    // runs past the end) and the bytes missing.
    let e = p.validate(&input[..input.len() - 1]).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "OrderPlaced.channel (byte {}): length 3 is invalid or exceeds the 2 byte(s) left in the input",
            input.len() - 4
        )
    );
    // Cut inside a fixed-size value: "truncated".
    let e = p.validate(&input[..input.len() - 7]).unwrap_err();
    assert!(e.to_string().contains("input truncated"), "{e}");
    assert_eq!(e.location().path, "OrderPlaced.payload_hash", "{e}");
    for garbage in [&[0u8][..], &[0xde, 0xad, 0xbe, 0xef][..]] {
        let mut padded = input.clone();
        padded.extend_from_slice(garbage);
        let e = assert_validate_agrees(&p, &padded).unwrap_err();
        assert_eq!(
            e,
            TranscodeError::TrailingBytes {
                at: Location {
                    path: "OrderPlaced".into(),
                    offset: input.len()
                },
                extra: garbage.len()
            }
        );
        assert!(e.to_string().contains("trailing byte(s)"), "{e}");
    }
}

#[test]
fn validate_checks_what_a_copy_checks_at_every_depth() {
    // Bad union, boolean and enum values, in place and inside arrays, maps and recursion.
    let w = r#"{"type":"record","name":"R","fields":[{"name":"u","type":["null","int"]},{"name":"b","type":"boolean"},
        {"name":"e","type":{"type":"enum","name":"E","symbols":["A"]}}]}"#;
    let p = plan(w, w);
    assert_validate_agrees(&p, &[2, 8, 1, 0]).unwrap();
    for bad in [
        &[4u8, 0, 0][..],
        &[1, 2],
        &[0, 2, 0],
        &[0, 1, 2],
        &[0, 1, 0, 0],
    ] {
        assert_validate_agrees(&p, bad).unwrap_err();
    }
    let linked = plan(LIST_W, LIST_W);
    let input = encode(LIST_W, list(&[(1, "a"), (2, "bc"), (3, "")]));
    assert_validate_agrees(&linked, &input).unwrap();
    let mut deep = Vec::new();
    for _ in 0..100_000 {
        deep.extend_from_slice(&[0, 0, 2]);
    }
    deep.extend_from_slice(&[0, 0, 0]);
    let e = assert_validate_agrees(&linked, &deep).unwrap_err();
    assert!(matches!(e, TranscodeError::TooDeep { .. }), "{e}");
    // Non-record roots and block byte sizes.
    let arr = r#"{"type":"array","items":{"type":"map","values":"long"}}"#;
    let p = plan(arr, arr);
    let mut input = Vec::new();
    write_long(&mut input, -1); // one item, with a byte size
    write_long(&mut input, 5);
    input.extend_from_slice(&[2, 2, b'k', 4, 0]); // {k: 2}
    input.push(0);
    assert_validate_agrees(&p, &input).unwrap();
    input[1] = 8; // byte size 4: wrong
    assert!(matches!(
        assert_validate_agrees(&p, &input).unwrap_err(),
        TranscodeError::InconsistentBlock { .. }
    ));
}

#[test]
fn validate_of_any_plan_checks_the_writer_datum() {
    // A resolving plan validates against its writer schema: what `transcode` reads.
    let p = plan(V2, V1);
    let input = encode(V2, order_v2(2, false));
    p.validate(&input).unwrap();
    let e = p.validate(&input[..input.len() - 2]).unwrap_err();
    assert!(
        matches!(
            e,
            TranscodeError::Truncated { .. } | TranscodeError::HostileLength { .. }
        ),
        "{e}"
    );
    let mut padded = input.clone();
    padded.push(0);
    assert!(matches!(
        p.validate(&padded).unwrap_err(),
        TranscodeError::TrailingBytes { extra: 1, .. }
    ));
}

#[test]
fn validate_agrees_with_an_identity_transcode_on_random_and_mutated_input() {
    let plans = [
        plan(V2, V2),
        plan(LIST_W, LIST_W),
        plan(ENUM_W, ENUM_W),
        plan(r#""string""#, r#""string""#),
    ];
    let seeds = [
        encode(V2, order_v2(5, true)),
        encode(LIST_W, list(&[(7, "x"), (8, "")])),
    ];
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut ok, mut failed) = (0, 0);
    for round in 0..4000 {
        let input: Vec<u8> = if round % 3 == 0 {
            (0..(next() % 100)).map(|_| next() as u8).collect()
        } else {
            let mut v = seeds[round % 2].clone();
            for _ in 0..(next() % 3) {
                let i = (next() as usize) % v.len();
                v[i] = next() as u8;
            }
            v
        };
        for p in &plans {
            match assert_validate_agrees(p, &input) {
                Ok(()) => ok += 1,
                Err(_) => failed += 1,
            }
        }
    }
    assert!(ok > 100 && failed > 100, "{ok} accepted, {failed} rejected");
}

// ---- the resolution report (`Plan::changes`) ----

use crate::resolution::{Change, ChangeKind};

fn kept(path: &str) -> Change {
    Change::new(path, ChangeKind::Kept)
}

fn dropped(path: &str, optional: bool) -> Change {
    Change::new(
        path,
        ChangeKind::Dropped {
            optional,
            preserved: false,
        },
    )
}

fn branch(
    path: &str,
    writer: &str,
    writer_index: Option<u32>,
    to: Option<(&str, Option<u32>)>,
) -> Change {
    Change::new(
        path,
        ChangeKind::UnionBranch {
            writer: writer.into(),
            writer_index,
            to: to.map(|(t, _)| t.to_string()),
            to_index: to.and_then(|(_, i)| i),
        },
    )
}

#[test]
fn report_of_the_reference_pair_lists_every_field_in_writer_order() {
    let p = plan(V2, V1);
    let expected = vec![
        kept("order_id"),
        kept("customer_id"),
        kept("placed_at"),
        Change::new(
            "status",
            ChangeKind::EnumSymbol {
                symbol: "REFUNDED".into(),
                to: Some("PENDING".into()),
            },
        ),
        Change::new(
            "amount_cents",
            ChangeKind::Renamed {
                from: "total_cents".into(),
            },
        ),
        kept("currency"),
        Change::new(
            "quantity",
            ChangeKind::Promoted {
                from: "int".into(),
                to: "long".into(),
            },
        ),
        kept("discount"),
        dropped("email", true),
        kept("shipping"),
        kept("shipping.line1"),
        kept("shipping.city"),
        kept("shipping.postcode"),
        kept("shipping.country"),
        dropped("shipping.geo", true),
        kept("items"),
        kept("items[].sku"),
        kept("items[].qty"),
        kept("items[].unit_cents"),
        dropped("items[].gift_wrap", true),
        kept("tags"),
        kept("attributes"),
        dropped("loyalty_tier", true),
        dropped("fraud_score", true),
        dropped("payload_hash", false),
        dropped("notes", true),
        dropped("channel", true),
        Change::new(
            "source",
            ChangeKind::Defaulted {
                value: serde_json::json!("unknown"),
            },
        ),
    ];
    assert_eq!(p.changes(), expected.as_slice());
    // Every dropped field of the plan is in the report, with the same path.
    let from_report: Vec<&str> = p
        .changes()
        .iter()
        .filter(|c| matches!(c.kind, ChangeKind::Dropped { .. }))
        .map(|c| c.path.as_str())
        .collect();
    assert_eq!(from_report, p.dropped_fields());
}

#[test]
fn report_of_an_identity_plan_keeps_every_field() {
    let p = plan(V1, V1);
    assert!(p.is_identity());
    let paths: Vec<&str> = p.changes().iter().map(|c| c.path.as_str()).collect();
    assert!(p.changes().iter().all(|c| c.kind == ChangeKind::Kept));
    assert_eq!(paths.len(), 20, "{paths:?}");
    assert!(paths.contains(&"shipping.country") && paths.contains(&"items[].unit_cents"));
}

#[test]
fn report_of_promotions_renames_and_defaults_in_nested_places() {
    let w = r#"{"type":"record","name":"R","fields":[
        {"name":"xs","type":{"type":"array","items":"int"}},
        {"name":"m","type":{"type":"map","values":"float"}},
        {"name":"old","type":"bytes"},
        {"name":"u","type":["null","long"]}]}"#;
    let r = r#"{"type":"record","name":"R","fields":[
        {"name":"xs","type":{"type":"array","items":"double"}},
        {"name":"m","type":{"type":"map","values":"double"}},
        {"name":"new","aliases":["old"],"type":"string"},
        {"name":"u","type":["null","double"]},
        {"name":"added","type":{"type":"array","items":"int"},"default":[1,2]}]}"#;
    let promoted = |path: &str, from: &str, to: &str| {
        Change::new(
            path,
            ChangeKind::Promoted {
                from: from.into(),
                to: to.into(),
            },
        )
    };
    assert_eq!(
        plan(w, r).changes(),
        [
            kept("xs"),
            promoted("xs[]", "int", "double"),
            kept("m"),
            promoted("m{}", "float", "double"),
            Change::new("new", ChangeKind::Renamed { from: "old".into() }),
            promoted("new", "bytes", "string"),
            promoted("u", "long", "double"),
            Change::new(
                "added",
                ChangeKind::Defaulted {
                    value: serde_json::json!([1, 2])
                }
            ),
        ]
    );
}

#[test]
fn report_of_enum_symbols_without_a_reader_default() {
    let w = r#"{"type":"enum","name":"E","symbols":["A","B","C"]}"#;
    let r = r#"{"type":"enum","name":"E","symbols":["C","A"]}"#;
    assert_eq!(
        plan(w, r).changes(),
        [Change::new(
            "",
            ChangeKind::EnumSymbol {
                symbol: "B".into(),
                to: None
            }
        )]
    );
}

#[test]
fn report_of_union_branches_remapped_missing_and_one_sided() {
    let rec = |reader_u: &str, writer_u: &str| {
        (
            format!(
                r#"{{"type":"record","name":"R","fields":[{{"name":"u","type":{writer_u}}}]}}"#
            ),
            format!(
                r#"{{"type":"record","name":"R","fields":[{{"name":"u","type":{reader_u}}}]}}"#
            ),
        )
    };
    // Union to union: reordered, and one writer branch the reader lacks.
    let (w, r) = rec(r#"["string","null"]"#, r#"["null","string","boolean"]"#);
    assert_eq!(
        plan(&w, &r).changes(),
        [
            branch("u", "null", Some(0), Some(("null", Some(1)))),
            branch("u", "string", Some(1), Some(("string", Some(0)))),
            branch("u", "boolean", Some(2), None),
        ]
    );
    // Same union: nothing but kept.
    let (w, r) = rec(r#"["null","string"]"#, r#"["null","string"]"#);
    assert_eq!(plan(&w, &r).changes(), [kept("u")]);
    // Union to a non-union: every branch, the null one failing.
    let (w, r) = rec(r#""string""#, r#"["null","string"]"#);
    assert_eq!(
        plan(&w, &r).changes(),
        [
            branch("u", "null", Some(0), None),
            branch("u", "string", Some(1), Some(("string", None))),
        ]
    );
    // A non-union into a union.
    let (w, r) = rec(r#"["null","long"]"#, r#""int""#);
    assert_eq!(
        plan(&w, &r).changes(),
        [
            branch("u", "int", None, Some(("long", Some(1)))),
            Change::new(
                "u",
                ChangeKind::Promoted {
                    from: "int".into(),
                    to: "long".into()
                }
            ),
        ]
    );
}

#[test]
fn report_is_rolled_back_with_a_union_branch_that_cannot_compile() {
    // The writer's record branch resolves its first field, then fails on the second: the
    // branch is a runtime failure, and neither its kept field nor its dropped one is reported.
    let w = r#"{"type":"record","name":"Top","fields":[{"name":"u","type":["null",
        {"type":"record","name":"R","fields":[{"name":"a","type":"int"},
         {"name":"gone","type":"int"},{"name":"b","type":"string"}]}]}]}"#;
    let r = r#"{"type":"record","name":"Top","fields":[{"name":"u","type":["null",
        {"type":"record","name":"R","fields":[{"name":"a","type":"int"},
         {"name":"b","type":"int"}]}]}]}"#;
    let p = plan(w, r);
    assert!(p.dropped_fields().is_empty());
    assert_eq!(p.changes(), [branch("u", "record R", Some(1), None)]);
}

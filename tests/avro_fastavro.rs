//! Differential test of the Avro resolution engine against fastavro, an independent
//! implementation (apache-avro's own resolution is incomplete: reader field aliases fail).
//!
//! For each case, `tests/support/fastavro_oracle.py` writes the records with the writer schema
//! and resolves them with fastavro. The Rust side transcodes the same writer bytes, decodes its
//! output with the reader schema (no resolution) and must produce the same value; a record
//! fastavro rejects must be an error in Rust too, and the other way round.
//!
//! Known, deliberate difference kept out of the cases: a writer non-union read as a reader union
//! takes the same-type branch before an earlier promotable one in Rust (Java's rule), the first
//! match in fastavro; it only shows for unions like `["double","int"]`.

use crate::support::avro_values;
use crate::support::python;

use avro_values::normalize;

use std::io::Write;
use std::process::{Command, Stdio};

use schemabridge::avro::{Schema, compile};
use serde_json::{Value as Json, json};

const V1: &str = include_str!("../proto/orders/order_v1.avsc");
const V2: &str = include_str!("../proto/orders/order_v2.avsc");

/// What a case must show, so that no case passes vacuously.
struct Expect {
    ok: usize,
    err: usize,
}

enum Input {
    Records(Vec<Json>),
    Generate {
        count: usize,
        seed: u64,
        schema: Json,
    },
}

fn oracle(writer: &Json, reader: &Json, input: &Input) -> Json {
    let python = python::fastavro_python();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/fastavro_oracle.py"
    );
    let mut case = json!({"writer": writer, "reader": reader});
    match input {
        Input::Records(r) => case["records"] = json!(r),
        Input::Generate {
            count,
            seed,
            schema,
        } => case["generate"] = json!({"count": count, "seed": seed, "schema": schema}),
    }
    let mut child = Command::new(&python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(case.to_string().as_bytes())
        .expect("write case to oracle");
    let out = child.wait_with_output().expect("oracle runs");
    assert!(
        out.status.success(),
        "oracle failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("oracle prints JSON")
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn check(name: &str, writer: Json, reader: Json, input: Input, expect: Expect) {
    let answer = oracle(&writer, &reader, &input);
    let w =
        Schema::parse_str(&writer.to_string()).unwrap_or_else(|e| panic!("{name}: writer: {e}"));
    let r =
        Schema::parse_str(&reader.to_string()).unwrap_or_else(|e| panic!("{name}: reader: {e}"));
    if let Some(e) = answer.get("schema_error") {
        panic!("{name}: fastavro rejected a schema: {e}");
    }
    let results = answer["results"].as_array().expect("results");
    let plan = compile(&w, &r);
    let (mut ok, mut err, mut failures, mut samples) = (0, 0, Vec::new(), Vec::new());
    for (i, res) in results.iter().enumerate() {
        let input = hex_decode(res["writer_hex"].as_str().expect("writer_hex"));
        let rust = match &plan {
            Err(e) => Err(e.to_string()),
            Ok(p) => {
                let mut out = Vec::new();
                p.transcode(&input, &mut out)
                    .map_err(|e| e.to_string())
                    .map(|_| {
                        let mut slice = &out[..];
                        let v = apache_avro::reader::datum::GenericDatumReader::builder(&r)
                            .build()
                            .and_then(|d| d.read_value(&mut slice))
                            .unwrap_or_else(|e| {
                                panic!("{name} #{i}: output does not decode with the reader: {e}")
                            });
                        assert!(slice.is_empty(), "{name} #{i}: output has trailing bytes");
                        normalize(&v)
                    })
            }
        };
        match (rust, res.get("ok"), res.get("error")) {
            (Ok(got), Some(want), _) => {
                if got == *want {
                    ok += 1;
                } else {
                    failures.push(format!(
                        "#{i}: values differ\n  rust:     {got}\n  fastavro: {want}"
                    ));
                }
            }
            (Err(e), None, Some(fe)) => {
                err += 1;
                if samples.len() < 2 {
                    samples.push(format!("#{i}: rust: {e}\n  fastavro: {fe}"));
                }
            }
            (Ok(got), None, Some(e)) => {
                failures.push(format!("#{i}: fastavro failed ({e}) but Rust gave {got}"))
            }
            (Err(e), Some(want), _) => {
                failures.push(format!("#{i}: Rust failed ({e}) but fastavro gave {want}"))
            }
            (_, None, None) => panic!("{name} #{i}: oracle result has neither ok nor error"),
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: {} of {} records disagree with fastavro:\n{}",
        failures.len(),
        results.len(),
        failures
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        ok >= expect.ok && err >= expect.err,
        "{name}: expected at least {} resolved and {} rejected records, got {ok} and {err}; \
         rejections agreed on look like:\n{}",
        expect.ok,
        expect.err,
        samples.join("\n")
    );
    if let Err(e) = &plan {
        eprintln!("{name}: plan error (fastavro agrees on all {err} records): {e}");
    }
}

fn schema_json(s: &str) -> Json {
    serde_json::from_str(s).expect("schema file is JSON")
}

// -------------------------------------------------------------------------------------------------
// The reference pair
// -------------------------------------------------------------------------------------------------

#[test]
fn reference_v2_to_v1_on_600_generated_orders() {
    let (v2, v1) = (schema_json(V2), schema_json(V1));
    let input = Input::Generate {
        count: 600,
        seed: 42,
        schema: v2.clone(),
    };
    check("v2->v1", v2, v1, input, Expect { ok: 600, err: 0 });
}

#[test]
fn reference_v1_to_v2_is_rejected_by_both() {
    // v2 has no alias for v1's amount_cents, no default for payload_hash, and an int quantity
    // where v1 has a long: every record fails.
    let (v2, v1) = (schema_json(V2), schema_json(V1));
    let input = Input::Generate {
        count: 50,
        seed: 7,
        schema: v2,
    };
    check(
        "v1->v2",
        v1,
        schema_json(V2),
        input,
        Expect { ok: 0, err: 50 },
    );
}

/// v2 made readable from v1: `total_cents` aliased to v1's `amount_cents`, `quantity` widened
/// to v1's `long` (long -> int is no promotion), a default for `payload_hash`. Exercises
/// upcasting with defaults of many types (union, float, fixed, bytes, string, a union inside
/// `shipping`, a boolean inside every array item).
fn v2_upcastable() -> Json {
    let mut v2 = schema_json(V2);
    for f in v2["fields"].as_array_mut().expect("fields") {
        match f["name"].as_str() {
            Some("total_cents") => f["aliases"] = json!(["amount_cents"]),
            Some("quantity") => f["type"] = json!("long"),
            Some("payload_hash") => f["default"] = json!("\u{0}".repeat(31) + "\u{ff}"),
            _ => {}
        }
    }
    v2
}

#[test]
fn reference_v1_to_v2_upcast_with_defaults() {
    let input = Input::Generate {
        count: 500,
        seed: 11,
        schema: schema_json(V2),
    };
    check(
        "v1->v2'",
        schema_json(V1),
        v2_upcastable(),
        input,
        Expect { ok: 500, err: 0 },
    );
}

// -------------------------------------------------------------------------------------------------
// Evolution cases
// -------------------------------------------------------------------------------------------------

fn records(v: Json) -> Input {
    Input::Records(v.as_array().expect("records array").clone())
}

#[test]
fn added_and_removed_fields_with_defaults_of_every_type() {
    let writer = json!({"type":"record","name":"User","namespace":"acme","fields":[
        {"name":"id","type":"long"},
        {"name":"legacy","type":"string","default":""},
        {"name":"created","type":{"type":"long","logicalType":"timestamp-millis"}},
        {"name":"blob","type":"bytes"},
        {"name":"name","type":"string"}]});
    let reader = json!({"type":"record","name":"User","namespace":"acme","fields":[
        {"name":"id","type":"long"},
        {"name":"created","type":{"type":"long","logicalType":"timestamp-millis"}},
        {"name":"name","type":"string"},
        {"name":"nick","type":["null","string"],"default":null},
        {"name":"lang","type":["string","null"],"default":"en"},
        {"name":"active","type":"boolean","default":true},
        {"name":"score","type":"double","default":1.5},
        {"name":"ratio","type":"float","default":0.1},
        {"name":"level","type":"int","default":-3},
        {"name":"salt","type":"bytes","default":"\u{ff}\u{0}A"},
        {"name":"tag","type":{"type":"fixed","name":"Tag","size":2},"default":"\u{1}\u{fe}"},
        {"name":"tier","type":{"type":"enum","name":"Tier","symbols":["FREE","PRO"]},"default":"PRO"},
        {"name":"roles","type":{"type":"array","items":"string"},"default":["a","b"]},
        {"name":"prefs","type":{"type":"map","values":"long"},"default":{"x":1}},
        {"name":"home","type":{"type":"record","name":"Addr","fields":[
            {"name":"city","type":"string"},{"name":"zip","type":"string","default":"00000"}]},
         "default":{"city":"Nowhere"}}]});
    let recs = json!([
        {"id":1,"legacy":"","created":1700000000000i64,"blob":{"$hex":""},"name":"ann"},
        {"id":-2,"legacy":"old data","created":0,"blob":{"$hex":"00ff10"},"name":"bob ü"},
        {"id":9007199254740993i64,"legacy":"x","created":-1,"blob":{"$hex":"41"},"name":""}
    ]);
    check(
        "added/removed",
        writer,
        reader,
        records(recs),
        Expect { ok: 3, err: 0 },
    );
}

#[test]
fn renamed_fields_and_types_via_aliases() {
    let writer = json!({"type":"record","name":"Payment","namespace":"old.ns","fields":[
        {"name":"total_cents","type":"long"},
        {"name":"payer","type":{"type":"record","name":"Party","fields":[{"name":"nm","type":"string"}]}},
        {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["CARD","CASH"]}}]});
    let reader = json!({"type":"record","name":"Transfer","namespace":"new.ns","aliases":["old.ns.Payment"],"fields":[
        {"name":"kind","type":{"type":"enum","name":"Method","aliases":["old.ns.Kind"],"symbols":["CASH","CARD","WIRE"]}},
        {"name":"amount_cents","aliases":["total_cents"],"type":"long"},
        {"name":"payer","type":{"type":"record","name":"Person","aliases":["old.ns.Party"],"fields":[
            {"name":"name","aliases":["nm"],"type":"string"}]}}]});
    let recs = json!([
        {"total_cents":995,"payer":{"nm":"Ann"},"kind":"CARD"},
        {"total_cents":-1,"payer":{"nm":""},"kind":"CASH"}
    ]);
    check(
        "aliases",
        writer,
        reader,
        records(recs),
        Expect { ok: 2, err: 0 },
    );
}

#[test]
fn promotions() {
    let writer = json!({"type":"record","name":"P","fields":[
        {"name":"i2l","type":"int"},{"name":"i2f","type":"int"},{"name":"i2d","type":"int"},
        {"name":"l2f","type":"long"},{"name":"l2d","type":"long"},{"name":"f2d","type":"float"},
        {"name":"s2b","type":"string"},{"name":"b2s","type":"bytes"},
        {"name":"arr","type":{"type":"array","items":"int"}},
        {"name":"m","type":{"type":"map","values":"float"}}]});
    let reader = json!({"type":"record","name":"P","fields":[
        {"name":"i2l","type":"long"},{"name":"i2f","type":"float"},{"name":"i2d","type":"double"},
        {"name":"l2f","type":"float"},{"name":"l2d","type":"double"},{"name":"f2d","type":"double"},
        {"name":"s2b","type":"bytes"},{"name":"b2s","type":"string"},
        {"name":"arr","type":{"type":"array","items":"double"}},
        {"name":"m","type":{"type":"map","values":"double"}}]});
    let recs = json!([
        {"i2l":-5,"i2f":16777217,"i2d":2147483647,"l2f":1099511627777i64,"l2d":9007199254740993i64,
         "f2d":0.1,"s2b":"añb","b2s":{"$hex":"68c3a9"},"arr":[1,-2,3],"m":{"a":1.25,"b":-0.1}},
        {"i2l":0,"i2f":0,"i2d":-2147483648,"l2f":-1,"l2d":0,"f2d":3.4e38,"s2b":"","b2s":{"$hex":""},"arr":[],"m":{}}
    ]);
    check(
        "promotions",
        writer,
        reader,
        records(recs),
        Expect { ok: 2, err: 0 },
    );
}

#[test]
fn bytes_that_are_not_utf8_cannot_become_strings() {
    let writer = json!({"type":"record","name":"B","fields":[{"name":"b","type":"bytes"}]});
    let reader = json!({"type":"record","name":"B","fields":[{"name":"b","type":"string"}]});
    let recs = json!([{"b":{"$hex":"6f6b"}},{"b":{"$hex":"ff"}}]);
    check(
        "bytes->string",
        writer,
        reader,
        records(recs),
        Expect { ok: 1, err: 1 },
    );
}

#[test]
fn enum_symbols_remapped_with_default_fallback() {
    let writer = json!({"type":"record","name":"E","fields":[
        {"name":"s","type":{"type":"enum","name":"Status","symbols":["NEW","PAID","SHIPPED","REFUNDED","LOST"]}}]});
    let reader = json!({"type":"record","name":"E","fields":[
        {"name":"s","type":{"type":"enum","name":"Status","symbols":["SHIPPED","UNKNOWN","PAID","NEW"],"default":"UNKNOWN"}}]});
    let recs = json!([{"s":"NEW"},{"s":"PAID"},{"s":"SHIPPED"},{"s":"REFUNDED"},{"s":"LOST"}]);
    check(
        "enum default",
        writer,
        reader,
        records(recs),
        Expect { ok: 5, err: 0 },
    );
}

#[test]
fn enum_symbol_missing_without_default_fails_only_that_record() {
    let writer = json!({"type":"record","name":"E","fields":[
        {"name":"s","type":{"type":"enum","name":"Status","symbols":["A","B","C"]}}]});
    let reader = json!({"type":"record","name":"E","fields":[
        {"name":"s","type":{"type":"enum","name":"Status","symbols":["C","A"]}}]});
    let recs = json!([{"s":"A"},{"s":"B"},{"s":"C"}]);
    check(
        "enum no default",
        writer,
        reader,
        records(recs),
        Expect { ok: 2, err: 1 },
    );
}

#[test]
fn unions_widened_reordered_and_narrowed() {
    let writer = json!({"type":"record","name":"U","fields":[
        {"name":"a","type":["null","string"]},
        {"name":"b","type":["null","string","long"]},
        {"name":"c","type":["null",{"type":"record","name":"Geo","fields":[{"name":"lat","type":"float"}]}]}]});
    let reader = json!({"type":"record","name":"U","fields":[
        {"name":"a","type":["string","bytes","null"]},
        {"name":"b","type":["null","string"]},
        {"name":"c","type":[{"type":"record","name":"Geo","fields":[{"name":"lat","type":"double"},
            {"name":"lon","type":"double","default":0.0}]},"null"]}]});
    let recs = json!([
        {"a":null,"b":null,"c":null},
        {"a":"x","b":"y","c":{"lat":1.5}},
        {"a":"x","b":42,"c":null}
    ]);
    check(
        "union widen/narrow",
        writer,
        reader,
        records(recs),
        Expect { ok: 2, err: 1 },
    );
}

#[test]
fn non_union_to_union_and_union_to_non_union() {
    let writer = json!({"type":"record","name":"N","fields":[
        {"name":"s","type":"string"},
        {"name":"i","type":"int"},
        {"name":"r","type":{"type":"record","name":"Inner","fields":[{"name":"v","type":"int"}]}},
        {"name":"opt","type":["null","long"]},
        {"name":"num","type":["int","long"]}]});
    let reader = json!({"type":"record","name":"N","fields":[
        {"name":"s","type":["null","string"]},
        {"name":"i","type":["null","string","double"]},
        {"name":"r","type":["null",{"type":"record","name":"Inner","fields":[{"name":"v","type":"long"}]}]},
        {"name":"opt","type":"long"},
        {"name":"num","type":"double"}]});
    let recs = json!([
        {"s":"a","i":7,"r":{"v":1},"opt":5,"num":3},
        {"s":"","i":-7,"r":{"v":-1},"opt":null,"num":4}
    ]);
    check(
        "non-union<->union",
        writer,
        reader,
        records(recs),
        Expect { ok: 1, err: 1 },
    );
}

#[test]
fn nested_records_reordered_inside_arrays_and_maps() {
    let writer = json!({"type":"record","name":"Order","fields":[
        {"name":"id","type":"string"},
        {"name":"items","type":{"type":"array","items":{"type":"record","name":"Item","fields":[
            {"name":"sku","type":"string"},{"name":"qty","type":"int"},{"name":"wrap","type":"boolean"},
            {"name":"price","type":{"type":"record","name":"Money","fields":[
                {"name":"cents","type":"long"},{"name":"cur","type":"string"}]}}]}}},
        {"name":"by_region","type":{"type":"map","values":"Money"}},
        {"name":"note","type":"string"}]});
    let reader = json!({"type":"record","name":"Order","fields":[
        {"name":"note","type":"string"},
        {"name":"by_region","type":{"type":"map","values":{"type":"record","name":"Money","fields":[
            {"name":"cur","type":"string"},{"name":"cents","type":"double"}]}}},
        {"name":"items","type":{"type":"array","items":{"type":"record","name":"Item","fields":[
            {"name":"price","type":"Money"},{"name":"qty","type":"long"},
            {"name":"sku","type":"string"},{"name":"gift","type":"boolean","default":false}]}}},
        {"name":"id","type":"string"}]});
    let money = |c: i64| json!({"cents": c, "cur": "EUR"});
    let recs = json!([
        {"id":"o1","items":[{"sku":"a","qty":1,"wrap":true,"price":money(100)},{"sku":"b","qty":2,"wrap":false,"price":money(-5)}],
         "by_region":{"eu":money(1),"us":money(2)},"note":"n"},
        {"id":"o2","items":[],"by_region":{},"note":""}
    ]);
    check(
        "nested reorder",
        writer,
        reader,
        records(recs),
        Expect { ok: 2, err: 0 },
    );
}

#[test]
fn recursive_linked_list_and_tree() {
    let writer = json!({"type":"record","name":"Node","fields":[
        {"name":"value","type":"int"},{"name":"label","type":"string"},
        {"name":"next","type":["null","Node"]},
        {"name":"kids","type":{"type":"array","items":"Node"}}]});
    let reader = json!({"type":"record","name":"Node","fields":[
        {"name":"kids","type":{"type":"array","items":"Node"}},
        {"name":"next","type":["null","Node"]},
        {"name":"value","type":"double"},
        {"name":"weight","type":"int","default":1}]});
    let leaf = |v: i32| json!({"value": v, "label": "leaf", "next": null, "kids": []});
    let recs = json!([
        {"value":1,"label":"a","next":{"value":2,"label":"b","next":{"value":3,"label":"","next":null,"kids":[]},"kids":[leaf(9)]},
         "kids":[leaf(4),{"value":5,"label":"","next":leaf(6),"kids":[leaf(7),leaf(8)]}]},
        leaf(0)
    ]);
    check(
        "recursive",
        writer,
        reader,
        records(recs),
        Expect { ok: 2, err: 0 },
    );
}

#[test]
fn fixed_size_change_and_type_mismatch_are_rejected_by_both() {
    let writer = json!({"type":"record","name":"F","fields":[{"name":"h","type":{"type":"fixed","name":"H","size":4}}]});
    let reader = json!({"type":"record","name":"F","fields":[{"name":"h","type":{"type":"fixed","name":"H","size":8}}]});
    let recs = json!([{"h":{"$hex":"01020304"}}]);
    check(
        "fixed size",
        writer,
        reader,
        records(recs),
        Expect { ok: 0, err: 1 },
    );

    let writer = json!({"type":"record","name":"T","fields":[{"name":"postcode","type":"string"}]});
    let reader = json!({"type":"record","name":"T","fields":[{"name":"postcode","type":"long"}]});
    let recs = json!([{"postcode":"12345"}]);
    check(
        "string->long",
        writer,
        reader,
        records(recs),
        Expect { ok: 0, err: 1 },
    );

    let writer = json!({"type":"record","name":"M","fields":[{"name":"a","type":"int"}]});
    let reader = json!({"type":"record","name":"M","fields":[{"name":"a","type":"int"},{"name":"b","type":"int"}]});
    check(
        "missing field",
        writer,
        reader,
        records(json!([{"a":1}])),
        Expect { ok: 0, err: 1 },
    );
}

#[test]
fn fixed_passthrough_and_identity() {
    let s = json!({"type":"record","name":"Id","fields":[
        {"name":"h","type":{"type":"fixed","name":"H","size":4}},
        {"name":"m","type":{"type":"map","values":{"type":"array","items":["null","bytes"]}}}]});
    let recs = json!([
        {"h":{"$hex":"deadbeef"},"m":{"k":[null,{"$hex":"00"}],"z":[]}},
        {"h":{"$hex":"00000000"},"m":{}}
    ]);
    let plan = compile(
        &Schema::parse_str(&s.to_string()).expect("schema"),
        &Schema::parse_str(&s.to_string()).expect("schema"),
    )
    .expect("identity compiles");
    assert!(plan.is_identity());
    check(
        "identity",
        s.clone(),
        s,
        records(recs),
        Expect { ok: 2, err: 0 },
    );
}

//! Archive output files read back by independent readers: Parquet written from records of
//! several writer schemas (normalised to one reader schema through the compiled plan) read by
//! pyarrow and by duckdb, and Avro container output read by fastavro, each compared value by
//! value with fastavro's own resolution of the same input datums
//! (tests/support/parquet_oracle.py), and the Arrow types pyarrow sees.

use crate::support;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use apache_avro::Schema;
use apache_avro::types::Value;
use schemabridge::archive::output::{self, FileFormat, ReaderSchema};
use schemabridge::archive::{AvroCodec, ParquetCompression, ParquetOptions};
use serde_json::json;
use support::orders::{ORDER_V1, ORDER_V2, SplitMix, encode, order_v1, order_v2};

const PYARROW: (&str, &str) = ("pyarrow==26.0.1", "pyarrow");
const DUCKDB: (&str, &str) = ("duckdb==2.0.1", "duckdb");

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("archive_parquet-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Writes `datums` (each `(writer index, writer-encoded bytes)`), resolved to `reader` through
/// the compiled plan, to a file of `format` at `path`.
fn write(
    writers: &[&str],
    reader: &str,
    datums: &[(usize, Vec<u8>)],
    format: FileFormat,
    path: &Path,
) {
    let reader_schema = Schema::parse_str(reader).expect("reader");
    let plans: Vec<_> = writers
        .iter()
        .map(|w| {
            let w = Schema::parse_str(w).expect("writer");
            schemabridge::avro::compile(&w, &reader_schema).expect("plan")
        })
        .collect();
    let schema = ReaderSchema::new(reader_schema).expect("reader schema");
    let sink = File::create(path).expect("create");
    let mut file = output::open(format, &schema, sink).expect("open");
    let mut buf = Vec::new();
    for (i, (w, d)) in datums.iter().enumerate() {
        buf.clear();
        plans[*w].transcode(d, &mut buf).expect("transcode");
        file.append(&buf)
            .unwrap_or_else(|e| panic!("append record {i}: {e}"));
    }
    assert_eq!(file.records(), datums.len() as u64);
    assert!(file.bytes() > 0);
    file.finish().expect("finish");
}

/// The oracle's answer for one case.
fn oracle(
    writers: &[&str],
    reader: &str,
    datums: &[(usize, Vec<u8>)],
    parquet: Option<&Path>,
    avro: Option<&Path>,
) -> serde_json::Value {
    let python =
        support::python::python_with(&[(support::python::FASTAVRO, "fastavro"), PYARROW, DUCKDB]);
    let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).expect("schema json");
    let case = json!({
        "reader": parse(reader),
        "writers": writers.iter().map(|w| parse(w)).collect::<Vec<_>>(),
        "datums": datums.iter().map(|(w, d)| json!([w, hex(d)])).collect::<Vec<_>>(),
        "parquet": parquet.map(|p| p.display().to_string()),
        "avro": avro.map(|p| p.display().to_string()),
    });
    let dir = parquet.or(avro).and_then(Path::parent).expect("dir");
    let input = dir.join("case.json");
    std::fs::write(&input, case.to_string()).expect("case");
    let (stdout, stderr) = (dir.join("oracle.out"), dir.join("oracle.err"));
    let status = Command::new(&python)
        .arg(repo("tests/support/parquet_oracle.py"))
        .stdin(File::open(&input).expect("case"))
        .stdout(File::create(&stdout).expect("out"))
        .stderr(File::create(&stderr).expect("err"))
        .status()
        .expect("run the oracle");
    assert!(
        status.success(),
        "oracle failed: {}",
        std::fs::read_to_string(&stderr).unwrap_or_default()
    );
    serde_json::from_str(&std::fs::read_to_string(&stdout).expect("out")).expect("oracle json")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Every reader saw every row, and each row equals fastavro's resolution.
fn assert_same_values(answer: &serde_json::Value, rows: usize, readers: &[&str]) {
    assert_eq!(answer["rows"], rows, "{answer}");
    for r in readers {
        assert_eq!(answer["counts"][r], rows, "{r}: {answer}");
        assert_eq!(
            answer["mismatches"][r],
            json!([]),
            "{r} differs from fastavro"
        );
    }
}

/// Each field's pyarrow type is the expected one (a map's is checked up to its value type).
fn assert_types(types: &BTreeMap<String, String>, expect: &[(&str, &str)]) {
    assert_eq!(types.len(), expect.len(), "{types:?}");
    for (field, ty) in expect {
        let got = types.get(*field).map(String::as_str).unwrap_or("(missing)");
        let ok = if ty.starts_with("map<") {
            got.starts_with(ty)
        } else {
            got == *ty
        };
        assert!(ok, "{field}: {got}, expected {ty}");
    }
}

/// The reference records: v2 and v1 writers interleaved, `n` in all.
fn reference_datums(n: usize) -> Vec<(usize, Vec<u8>)> {
    let v2 = Schema::parse_str(ORDER_V2).expect("v2");
    let v1 = Schema::parse_str(ORDER_V1).expect("v1");
    let mut rng = SplitMix(11);
    (0..n)
        .map(|i| {
            if i % 2 == 0 {
                (0, encode(&v2, order_v2(i, &mut rng)))
            } else {
                (1, encode(&v1, order_v1(i, &mut rng)))
            }
        })
        .collect()
}

#[test]
fn reference_orders_to_parquet_read_back_by_pyarrow_and_duckdb_as_fastavro_resolves_them() {
    let dir = temp_dir("orders");
    let datums = reference_datums(3000);
    let path = dir.join("orders.parquet");
    let options = ParquetOptions {
        compression: ParquetCompression::Zstd(3),
        // Small row groups: the file holds several.
        row_group_bytes: 32 * 1024,
        ..ParquetOptions::default()
    };
    write(
        &[ORDER_V2, ORDER_V1],
        ORDER_V1,
        &datums,
        FileFormat::Parquet(options),
        &path,
    );
    let answer = oracle(&[ORDER_V2, ORDER_V1], ORDER_V1, &datums, Some(&path), None);
    assert_same_values(&answer, datums.len(), &["pyarrow", "duckdb"]);

    let types: BTreeMap<String, String> =
        serde_json::from_value(answer["types"].clone()).expect("types");
    let expect = [
        ("order_id", "string"),
        ("customer_id", "int64"),
        ("placed_at", "timestamp[ms, tz=UTC]"),
        (
            "status",
            "dictionary<values=string, indices=int32, ordered=0>",
        ),
        ("amount_cents", "int64"),
        ("currency", "string"),
        ("quantity", "int64"),
        ("discount", "double"),
        (
            "shipping",
            "struct<line1: string not null, city: string not null, postcode: string not null, \
             country: string not null>",
        ),
        (
            "items",
            "list<item: struct<sku: string not null, qty: int32 not null, unit_cents: int64 not \
             null> not null>",
        ),
        ("tags", "list<item: string not null>"),
        // (pyarrow names the map's value field after the column: `map<string, string ('attributes')>`)
        ("attributes", "map<string, string"),
        ("source", "string"),
    ];
    assert_types(&types, &expect);
    let meta: serde_json::Value = serde_json::from_str(
        answer["avro_schema_metadata"]
            .as_str()
            .expect("avro.schema metadata"),
    )
    .expect("metadata is JSON");
    assert_eq!(meta["name"], "OrderPlaced");
    assert_eq!(meta["fields"].as_array().map(Vec::len), Some(13));

    // Dictionary pages, as pyarrow's metadata reports them (the default
    // `ParquetDictionary::Auto`): strings whose values repeat and enums (and map keys) have one;
    // strings mostly distinct in the first 3,000 rows (unique order ids, SKUs of 100,000,
    // postcodes of 90,000) are plain, as are numbers and timestamps.
    let dictionary: BTreeMap<String, bool> =
        serde_json::from_value(answer["dictionary"].clone()).expect("dictionary");
    let leaf = |name: &str| {
        dictionary
            .iter()
            .find(|(path, _)| *path == name || path.ends_with(&format!(".{name}")))
            .map(|(_, on)| *on)
            .unwrap_or_else(|| panic!("no column {name} in {dictionary:?}"))
    };
    for text in ["status", "currency", "city", "country", "key", "source"] {
        assert!(leaf(text), "{text} has no dictionary page: {dictionary:?}");
    }
    for plain in [
        "order_id",
        "sku",
        "postcode",
        "customer_id",
        "placed_at",
        "amount_cents",
        "quantity",
        "discount",
        "qty",
    ] {
        assert!(
            !leaf(plain),
            "{plain} has a dictionary page: {dictionary:?}"
        );
    }
}

#[test]
fn reference_orders_to_avro_container_read_back_by_fastavro_as_it_resolves_them() {
    let dir = temp_dir("avro");
    let datums = reference_datums(1000);
    for codec in [AvroCodec::Null, AvroCodec::Deflate] {
        let path = dir.join(format!("orders-{codec:?}.avro"));
        write(
            &[ORDER_V2, ORDER_V1],
            ORDER_V1,
            &datums,
            FileFormat::Avro { codec },
            &path,
        );
        let answer = oracle(&[ORDER_V2, ORDER_V1], ORDER_V1, &datums, None, Some(&path));
        assert_same_values(&answer, datums.len(), &["avro"]);
    }
}

/// Every logical type, a non-null union, a nullable union of a record, a map, a nested array of
/// records, a fixed and an enum. The writer differs from the reader (an int promoted to long, a
/// field the reader adds with a default) so the plan resolves.
const LOGICAL_READER: &str = r#"{"type":"record","name":"Everything","namespace":"t","fields":[
  {"name":"day","type":{"type":"int","logicalType":"date"}},
  {"name":"tm","type":{"type":"int","logicalType":"time-millis"}},
  {"name":"tu","type":{"type":"long","logicalType":"time-micros"}},
  {"name":"tsm","type":{"type":"long","logicalType":"timestamp-millis"}},
  {"name":"tsu","type":{"type":"long","logicalType":"timestamp-micros"}},
  {"name":"ltm","type":{"type":"long","logicalType":"local-timestamp-millis"}},
  {"name":"ltu","type":{"type":"long","logicalType":"local-timestamp-micros"}},
  {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}},
  {"name":"big","type":{"type":"fixed","name":"Big","size":12,"logicalType":"decimal","precision":28,"scale":4}},
  {"name":"id","type":{"type":"string","logicalType":"uuid"}},
  {"name":"hash","type":{"type":"fixed","name":"Hash","size":4}},
  {"name":"blob","type":"bytes"},
  {"name":"color","type":{"type":"enum","name":"Color","symbols":["RED","GREEN","BLUE"]}},
  {"name":"choice","type":["long","string"]},
  {"name":"maybe","type":["null","long","string"]},
  {"name":"note","type":[{"type":"record","name":"Note","fields":[{"name":"text","type":"string"}]},"null"]},
  {"name":"counts","type":{"type":"map","values":"long"}},
  {"name":"groups","type":{"type":"array","items":{"type":"record","name":"Group","fields":[
    {"name":"label","type":"string"},
    {"name":"members","type":{"type":"array","items":{"type":"record","name":"Member","fields":[
      {"name":"n","type":"long"},{"name":"ok","type":"boolean"},{"name":"f","type":"float"}]}}}]}}},
  {"name":"extra","type":"string","default":"none"}
]}"#;

fn logical_writer() -> String {
    let mut v: serde_json::Value = serde_json::from_str(LOGICAL_READER).expect("json");
    let fields = v["fields"].as_array_mut().expect("fields");
    fields.retain(|f| f["name"] != "extra");
    // Members' n written as int, read as long.
    let groups = fields
        .iter_mut()
        .find(|f| f["name"] == "groups")
        .expect("groups");
    groups["type"]["items"]["fields"][1]["type"]["items"]["fields"][0]["type"] = json!("int");
    v.to_string()
}

/// Big-endian two's complement of `x` in `size` bytes.
fn be(x: i128, size: usize) -> Vec<u8> {
    x.to_be_bytes()[16 - size..].to_vec()
}

fn logical_datum(i: usize, rng: &mut SplitMix, writer: &Schema) -> Vec<u8> {
    let r = |rng: &mut SplitMix, n: u64| rng.below(n) as i64;
    let uuid = format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        r(rng, 1 << 32),
        r(rng, 1 << 16),
        r(rng, 1 << 12),
        r(rng, 1 << 12),
        r(rng, 1 << 48)
    );
    let sign = if i % 3 == 0 { -1 } else { 1 };
    let members: Vec<Value> = (0..r(rng, 3))
        .map(|k| {
            Value::Record(vec![
                ("n".into(), Value::Int(k as i32 - 1)),
                ("ok".into(), Value::Boolean(rng.below(2) == 1)),
                ("f".into(), Value::Float(rng.below(1000) as f32 / 8.0)),
            ])
        })
        .collect();
    let groups = (0..r(rng, 3))
        .map(|g| {
            Value::Record(vec![
                ("label".into(), Value::String(format!("g{g}"))),
                (
                    "members".into(),
                    Value::Array(if g == 0 { members.clone() } else { vec![] }),
                ),
            ])
        })
        .collect();
    let choice = if rng.below(2) == 0 {
        Value::Union(0, Box::new(Value::Long(r(rng, 1 << 40) - (1 << 39))))
    } else {
        Value::Union(1, Box::new(Value::String(format!("c{i}"))))
    };
    let maybe = match rng.below(3) {
        0 => Value::Union(0, Box::new(Value::Null)),
        1 => Value::Union(1, Box::new(Value::Long(r(rng, 1000)))),
        _ => Value::Union(2, Box::new(Value::String(format!("m{i}")))),
    };
    let note = if rng.below(2) == 0 {
        Value::Union(1, Box::new(Value::Null))
    } else {
        Value::Union(
            0,
            Box::new(Value::Record(vec![(
                "text".into(),
                Value::String(format!("note {i}")),
            )])),
        )
    };
    let counts = (0..r(rng, 4))
        .map(|k| (format!("k{k}"), Value::Long(r(rng, 100) - 50)))
        .collect();
    let v = Value::Record(vec![
        ("day".into(), Value::Int(19_000 + r(rng, 2000) as i32)),
        ("tm".into(), Value::Int(r(rng, 86_400_000) as i32)),
        ("tu".into(), Value::Long(r(rng, 86_400_000_000))),
        (
            "tsm".into(),
            Value::Long(1_700_000_000_000 + r(rng, 1 << 36)),
        ),
        (
            "tsu".into(),
            Value::Long(1_700_000_000_000_000 + r(rng, 1 << 46)),
        ),
        (
            "ltm".into(),
            Value::Long(1_600_000_000_000 + r(rng, 1 << 36)),
        ),
        (
            "ltu".into(),
            Value::Long(1_600_000_000_000_000 + r(rng, 1 << 46)),
        ),
        (
            "price".into(),
            Value::Decimal(be(sign * i128::from(r(rng, 1 << 30)), 5).into()),
        ),
        (
            "big".into(),
            Value::Decimal(be(sign * (i128::from(r(rng, 1 << 62)) << 20), 12).into()),
        ),
        ("id".into(), Value::String(uuid)),
        (
            "hash".into(),
            Value::Fixed(4, (r(rng, 1 << 32) as u32).to_be_bytes().to_vec()),
        ),
        (
            "blob".into(),
            Value::Bytes((0..r(rng, 6)).map(|b| b as u8 * 51).collect()),
        ),
        ("color".into(), {
            let c = rng.below(3) as u32;
            Value::Enum(c, ["RED", "GREEN", "BLUE"][c as usize].into())
        }),
        ("choice".into(), choice),
        ("maybe".into(), maybe),
        ("note".into(), note),
        ("counts".into(), Value::Map(counts)),
        ("groups".into(), Value::Array(groups)),
    ]);
    encode(writer, v)
}

#[test]
fn every_logical_type_union_map_nested_array_fixed_and_enum_read_back_by_pyarrow_and_duckdb() {
    let dir = temp_dir("logical");
    let writer_text = logical_writer();
    let writer = Schema::parse_str(&writer_text).expect("writer");
    let mut rng = SplitMix(5);
    let datums: Vec<(usize, Vec<u8>)> = (0..600)
        .map(|i| (0, logical_datum(i, &mut rng, &writer)))
        .collect();
    let path = dir.join("everything.parquet");
    for compression in [ParquetCompression::Snappy, ParquetCompression::None] {
        let options = ParquetOptions {
            compression,
            row_group_bytes: 16 * 1024,
            ..ParquetOptions::default()
        };
        write(
            &[&writer_text],
            LOGICAL_READER,
            &datums,
            FileFormat::Parquet(options),
            &path,
        );
        let answer = oracle(&[&writer_text], LOGICAL_READER, &datums, Some(&path), None);
        assert_same_values(&answer, datums.len(), &["pyarrow", "duckdb"]);
        let types: BTreeMap<String, String> =
            serde_json::from_value(answer["types"].clone()).expect("types");
        let expect = [
            ("day", "date32[day]"),
            ("tm", "time32[ms]"),
            ("tu", "time64[us]"),
            ("tsm", "timestamp[ms, tz=UTC]"),
            ("tsu", "timestamp[us, tz=UTC]"),
            ("ltm", "timestamp[ms]"),
            ("ltu", "timestamp[us]"),
            ("price", "decimal128(10, 2)"),
            ("big", "decimal128(28, 4)"),
            ("id", "extension<arrow.uuid>"),
            ("hash", "fixed_size_binary[4]"),
            ("blob", "binary"),
            (
                "color",
                "dictionary<values=string, indices=int32, ordered=0>",
            ),
            ("choice", "struct<long: int64, string: string>"),
            ("maybe", "struct<long: int64, string: string>"),
            ("note", "struct<text: string not null>"),
            ("counts", "map<string, int64"),
            (
                "groups",
                "list<item: struct<label: string not null, members: list<item: struct<n: int64 \
                 not null, ok: bool not null, f: float not null> not null> not null> not null>",
            ),
            ("extra", "string"),
        ];
        assert_types(&types, &expect);
    }
}

#[test]
fn recursive_schemas_are_refused_for_parquet_but_written_as_avro() {
    let dir = temp_dir("recursive");
    let schema = r#"{"type":"record","name":"Node","fields":[{"name":"v","type":"int"},
        {"name":"next","type":["null","Node"]}]}"#;
    let reader = ReaderSchema::new(Schema::parse_str(schema).expect("schema")).expect("reader");
    let sink = File::create(dir.join("n.parquet")).expect("create");
    let err = output::open(
        FileFormat::Parquet(ParquetOptions::default()),
        &reader,
        sink,
    )
    .err()
    .expect("recursive schema refused");
    assert!(err.to_string().contains("recursive type Node"), "{err}");
    let sink = File::create(dir.join("n.avro")).expect("create");
    let mut file = output::open(
        FileFormat::Avro {
            codec: AvroCodec::Null,
        },
        &reader,
        sink,
    )
    .expect("avro");
    file.append(&[0x02, 0x02, 0x04, 0x00]).expect("append");
    let mut f = file.finish().expect("finish");
    f.flush().expect("flush");
}

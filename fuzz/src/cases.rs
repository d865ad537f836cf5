//! The body of the `transcode` fuzz target, shared with `tests/avro_fuzz_smoke.rs` (which
//! includes this file by path and provides `avro` and `bench` at its crate root, as the fuzz
//! crate does).
//!
//! One input: byte 0 picks a plan, the rest is a writer-encoded datum. Whatever the bytes, the
//! executor must not panic, hang or allocate without bound (the harness and the fuzzer's
//! limits catch those), and `run` checks the promises it makes:
//! - on error, `out` is left as it was;
//! - `transcode` succeeds exactly when `transcode_prefix` does and uses the whole input, with
//!   the same output and lossiness;
//! - lossy field indexes are within `dropped_fields()`;
//! - an output is valid reader data: when the input decodes with the writer schema, the output
//!   decodes with the reader schema, to its end. (The executor copies strings without checking
//!   their UTF-8, by design, so an input that apache-avro rejects only for a bad string may
//!   transcode.)

use apache_avro::reader::datum::GenericDatumReader;

use super::avro::{Plan, Schema, compile};

/// One fixed plan, and decoders for its two schemas (built once: apache-avro resolves a
/// schema's names each time a decoder is made).
pub struct Case {
    pub name: &'static str,
    pub writer: &'static Schema,
    pub reader: &'static Schema,
    pub plan: Plan,
    writer_decoder: GenericDatumReader<'static>,
    reader_decoder: GenericDatumReader<'static>,
}

pub struct Targets {
    pub cases: Vec<Case>,
}

const V1: &str = include_str!("../../proto/orders/order_v1.avsc");
const V2: &str = include_str!("../../proto/orders/order_v2.avsc");

/// A linked list whose reader reorders fields, drops one, promotes one and adds one.
const LIST_W: &str = r#"{"type":"record","name":"Node","fields":[
    {"name":"value","type":"int"},{"name":"label","type":"string","default":""},
    {"name":"next","type":["null","Node"]}]}"#;
const LIST_R: &str = r#"{"type":"record","name":"Node","fields":[
    {"name":"next","type":["null","Node"]},{"name":"value","type":"long"},
    {"name":"extra","type":"boolean","default":true}]}"#;

/// A tree through an array, read with a promoted value and an added field.
const TREE_W: &str = r#"{"type":"record","name":"Tree","fields":[
    {"name":"v","type":"int"},{"name":"kids","type":{"type":"array","items":"Tree"}},
    {"name":"tag","type":["null","string"]}]}"#;
const TREE_R: &str = r#"{"type":"record","name":"Tree","fields":[
    {"name":"v","type":"double"},{"name":"kids","type":{"type":"array","items":"Tree"}},
    {"name":"tag","type":["null","bytes"]},{"name":"n","type":"int","default":0}]}"#;

/// Maps, arrays and unions nested in each other, with branch remapping, enum defaults, fixed,
/// promotions and dropped union branches.
const MIX_W: &str = r#"{"type":"record","name":"Mix","fields":[
    {"name":"m","type":{"type":"map","values":{"type":"array","items":
        ["null","int","string",{"type":"record","name":"P","fields":[
            {"name":"x","type":"long"},{"name":"gone","type":"bytes"}]}]}}},
    {"name":"u","type":["null","long","string","bytes",
        {"type":"enum","name":"E","symbols":["A","B","C","D"]},
        {"type":"fixed","name":"F","size":3}]},
    {"name":"a","type":{"type":"array","items":{"type":"map","values":"float"}}},
    {"name":"b","type":"boolean"},
    {"name":"deep","type":{"type":"array","items":{"type":"array","items":
        {"type":"map","values":["null","Mix"]}}}}]}"#;
const MIX_R: &str = r#"{"type":"record","name":"Mix","fields":[
    {"name":"u","type":[
        {"type":"enum","name":"E","symbols":["C","A","B"],"default":"A"},
        {"type":"fixed","name":"F","size":3},"bytes","string","double","null"]},
    {"name":"m","type":{"type":"map","values":{"type":"array","items":
        [{"type":"record","name":"P","fields":[{"name":"x","type":"double"},
            {"name":"y","type":"string","default":"y"}]},"string","long","null"]}}},
    {"name":"a","type":{"type":"array","items":{"type":"map","values":"double"}}},
    {"name":"deep","type":{"type":"array","items":{"type":"array","items":
        {"type":"map","values":["null","Mix"]}}}}]}"#;

/// Items that encode to zero bytes: the per-datum item cap is all that bounds them.
const ZERO_W: &str = r#"{"type":"record","name":"Z","fields":[
    {"name":"n","type":{"type":"array","items":"null"}},
    {"name":"e","type":{"type":"array","items":{"type":"record","name":"Empty","fields":[]}}},
    {"name":"f","type":{"type":"map","values":{"type":"fixed","name":"F0","size":0}}}]}"#;
const ZERO_R: &str = r#"{"type":"record","name":"Z","fields":[
    {"name":"n","type":{"type":"array","items":["int","null"]}},
    {"name":"e","type":{"type":"array","items":{"type":"record","name":"Empty","fields":[
        {"name":"d","type":"long","default":5}]}}},
    {"name":"f","type":{"type":"map","values":{"type":"fixed","name":"F0","size":0}}}]}"#;

/// The plans, compiled once. (The schemas are leaked: the targets live as long as the process.)
pub fn targets() -> Targets {
    let pairs = [
        ("order v2 -> v1", V2, V1),
        ("order v2 identity", V2, V2),
        ("linked list", LIST_W, LIST_R),
        ("linked list identity", LIST_W, LIST_W),
        ("tree", TREE_W, TREE_R),
        ("maps, arrays, unions", MIX_W, MIX_R),
        ("zero-byte items", ZERO_W, ZERO_R),
    ];
    let cases = pairs
        .into_iter()
        .map(|(name, w, r)| {
            let parse = |s: &str| -> &'static Schema {
                Box::leak(Box::new(
                    Schema::parse_str(s).unwrap_or_else(|e| panic!("{name}: {e}")),
                ))
            };
            let (writer, reader) = (parse(w), parse(r));
            let plan = compile(writer, reader).unwrap_or_else(|e| panic!("{name}: {e}"));
            let decoder = |s: &'static Schema| {
                GenericDatumReader::builder(s)
                    .build()
                    .unwrap_or_else(|e| panic!("{name}: {e}"))
            };
            Case {
                name,
                writer,
                reader,
                plan,
                writer_decoder: decoder(writer),
                reader_decoder: decoder(reader),
            }
        })
        .collect();
    Targets { cases }
}

fn decodes(decoder: &GenericDatumReader, mut bytes: &[u8]) -> Result<(), String> {
    decoder.read_value(&mut bytes).map_err(|e| e.to_string())?;
    if bytes.is_empty() {
        Ok(())
    } else {
        Err(format!("{} bytes left after the datum", bytes.len()))
    }
}

/// Outputs larger than this are not decoded again (see `run`).
const MAX_CHECKED_OUTPUT: usize = 1 << 14;

/// Runs one fuzz input (see the module docs); panics when a promise is broken. Returns whether
/// the datum transcoded.
pub fn run(t: &Targets, data: &[u8]) -> bool {
    let Some((&pick, input)) = data.split_first() else {
        return false;
    };
    let Some(case) = t.cases.get(pick as usize % t.cases.len().max(1)) else {
        return false;
    };
    let name = case.name;

    let marker = [0xA5u8, 0x5A];
    let mut out = marker.to_vec();
    let whole = case.plan.transcode(input, &mut out);
    let mut out_prefix = marker.to_vec();
    let prefix = case.plan.transcode_prefix(input, &mut out_prefix);

    match (&whole, &prefix) {
        (Ok(lossy), Ok((used, lossy_prefix))) => {
            assert_eq!(
                *used,
                input.len(),
                "{name}: transcode and transcode_prefix disagree"
            );
            assert_eq!(lossy, lossy_prefix, "{name}: lossiness differs");
            assert_eq!(out, out_prefix, "{name}: outputs differ");
            let dropped = case.plan.dropped_fields().len();
            assert!(
                lossy.fields().all(|i| i < dropped),
                "{name}: lossy index out of range"
            );
        }
        (Err(_), Ok((used, _))) => {
            assert!(
                *used < input.len(),
                "{name}: prefix used the whole input but transcode failed"
            );
            assert!(out_prefix.starts_with(&marker));
        }
        (Ok(_), Err(e)) => panic!("{name}: transcode succeeded, transcode_prefix failed: {e}"),
        (Err(_), Err(_)) => {
            assert_eq!(out_prefix, marker, "{name}: out changed on error");
        }
    }
    if whole.is_err() {
        assert_eq!(out, marker, "{name}: out changed on error");
        return false;
    }

    let output = out.get(marker.len()..).unwrap_or(&[]);
    if output.len() > MAX_CHECKED_OUTPUT {
        // Only zero-byte array items (up to `avro::MAX_ZERO_SIZE_ITEMS` per datum) make an
        // output this much larger than any input here; apache-avro would take a second to
        // build its values, for a shape the unit tests check.
        return true;
    }
    match decodes(&case.writer_decoder, input) {
        Ok(()) => {
            if let Err(e) = decodes(&case.reader_decoder, output) {
                panic!(
                    "{name}: the input decodes with the writer schema, the output does not decode with the reader schema: {e}"
                );
            }
        }
        Err(e) => {
            // Strings are copied without a UTF-8 check, by design: that is the only input
            // apache-avro may reject that the executor passes on.
            assert!(
                e.contains("utf") || e.contains("UTF") || e.contains("Utf8"),
                "{name}: transcoded an input apache-avro rejects for another reason: {e}"
            );
        }
    }
    true
}

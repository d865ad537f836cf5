//! Property test of the Avro resolution engine: random writer schemas, reader schemas derived
//! from them by random evolution steps, random data.
//!
//! Evolution steps, applied at every nesting level (inside records, array items, map values and
//! union branches): add a field with a default, remove a field, rename a field with an alias,
//! reorder fields, promote (int→long/float/double, long→float/double, float→double,
//! string↔bytes), add/remove/reorder enum symbols (a removed symbol falls back on the reader
//! default, or fails where it occurs when there is none), widen a value into a union, narrow a
//! `["null", T]` union to `T`, reorder and widen unions. Rarely, an invalid step on a top-level
//! field (demotion, a new field without default) that no datum can survive.
//!
//! Oracle: apache-avro's value path, `from_avro_datum(writer, bytes, Some(reader))`, with the
//! reader's field aliases applied by renaming (apache-avro 0.22 cannot resolve aliases). The
//! compiled plan's output, decoded with the reader schema, must equal apache-avro's value; a
//! datum one side rejects, the other must reject too; a plan that does not compile must be one
//! apache-avro fails on for every datum. A second test sends a batch of generated pairs to
//! fastavro in one Python call.
//!
//! Choices come from a tape of numbers (proptest shrinks it towards zeros), and choice 0 is
//! always the plainest option, so a failure shrinks to a small pair.
//!
//! Kept out of the generator, as deliberate and documented differences: a writer value read
//! into a reader union where two branches could take it (Java's "same type first" rule here,
//! first match in fastavro), and named-type renames (apache-avro does not resolve type aliases).

use crate::support::avro_values;
use crate::support::python;

use avro_values::{hex, normalize};

use std::io::Write;
use std::process::{Command, Stdio};

use apache_avro::types::Value;
use proptest::prelude::*;
use schemabridge::avro::{Schema, compile};
use schemabridge::bench::{Rng, apply_reader_aliases, random_datums};
use serde_json::{Value as Json, json};

// -------------------------------------------------------------------------------------------------
// Schema model and generator
// -------------------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
enum T {
    Null,
    Bool,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    Str,
    Enum {
        name: String,
        symbols: Vec<String>,
        default: Option<String>,
    },
    Fixed {
        name: String,
        size: usize,
    },
    Array(Box<T>),
    Map(Box<T>),
    Union(Vec<T>),
    Record {
        name: String,
        fields: Vec<F>,
    },
}

#[derive(Clone, Debug, PartialEq)]
struct F {
    name: String,
    aliases: Vec<String>,
    ty: T,
    default: Option<Json>,
}

/// Kind of a type, for the union rules: no two branches of one kind. The kinds are coarser than
/// Avro's rule (which only forbids two unnamed types of one type) because apache-avro resolves a
/// union by the *value* it decoded, not by the writer's branch, converting freely between
/// numbers, between strings, bytes, fixed and enums, and between records and maps: a union with
/// two branches of one such group comes back as its first one (a known apache-avro limitation,
/// kept out of the generator).
fn kind(t: &T) -> &'static str {
    match t {
        T::Null => "null",
        T::Bool => "bool",
        T::Int | T::Long | T::Float | T::Double => "number",
        T::Bytes | T::Str | T::Fixed { .. } | T::Enum { .. } => "text",
        T::Record { .. } | T::Map(_) => "object",
        T::Array(_) => "array",
        T::Union(_) => "union",
    }
}

/// Can a writer value of type `w` be read as `r` (same kind or a promotion)?
fn reads(w: &T, r: &T) -> bool {
    use T::*;
    matches!(
        (w, r),
        (Int, Long | Float | Double)
            | (Long, Float | Double)
            | (Float, Double)
            | (Str, Bytes)
            | (Bytes, Str)
    ) || match (w, r) {
        (Enum { name: a, .. }, Enum { name: b, .. })
        | (Fixed { name: a, .. }, Fixed { name: b, .. })
        | (Record { name: a, .. }, Record { name: b, .. }) => a == b,
        (Array(_), Array(_)) | (Map(_), Map(_)) => true,
        _ => std::mem::discriminant(w) == std::mem::discriminant(r),
    }
}

fn to_json(t: &T) -> Json {
    match t {
        T::Null => json!("null"),
        T::Bool => json!("boolean"),
        T::Int => json!("int"),
        T::Long => json!("long"),
        T::Float => json!("float"),
        T::Double => json!("double"),
        T::Bytes => json!("bytes"),
        T::Str => json!("string"),
        T::Enum {
            name,
            symbols,
            default,
        } => {
            let mut e = json!({"type": "enum", "name": name, "symbols": symbols});
            if let Some(d) = default {
                e["default"] = json!(d);
            }
            e
        }
        T::Fixed { name, size } => json!({"type": "fixed", "name": name, "size": size}),
        T::Array(i) => json!({"type": "array", "items": to_json(i)}),
        T::Map(v) => json!({"type": "map", "values": to_json(v)}),
        T::Union(bs) => Json::Array(bs.iter().map(to_json).collect()),
        T::Record { name, fields } => json!({
            "type": "record",
            "name": name,
            "fields": fields.iter().map(|f| {
                let mut j = json!({"name": f.name, "type": to_json(&f.ty)});
                if let Some(d) = &f.default {
                    j["default"] = d.clone();
                }
                if !f.aliases.is_empty() {
                    j["aliases"] = json!(f.aliases);
                }
                j
            }).collect::<Vec<_>>(),
        }),
    }
}

/// A valid default value for `t`.
fn default_for(t: &T) -> Json {
    match t {
        T::Null => Json::Null,
        T::Bool => json!(true),
        T::Int => json!(7),
        T::Long => json!(-3),
        T::Float => json!(1.5),
        T::Double => json!(2.25),
        // ASCII: apache-avro 0.22 encodes a bytes default's code points as UTF-8 instead of one
        // byte each (the unit tests cover non-ASCII bytes defaults).
        T::Bytes => json!("ab"),
        T::Str => json!("dflt"),
        T::Enum { symbols, .. } => json!(symbols[0]),
        T::Fixed { size, .. } => json!("x".repeat(*size)),
        T::Array(i) => json!([default_for(i)]),
        T::Map(v) => json!({"k": default_for(v)}),
        T::Union(bs) => default_for(&bs[0]),
        T::Record { fields, .. } => Json::Object(
            fields
                .iter()
                .map(|f| (f.name.clone(), default_for(&f.ty)))
                .collect(),
        ),
    }
}

/// Choices from a tape; past its end every choice is 0 (the plainest).
struct Tape<'a> {
    tape: &'a [u32],
    at: usize,
    names: usize,
}

impl Tape<'_> {
    fn pick(&mut self, n: usize) -> usize {
        let v = self.tape.get(self.at).copied().unwrap_or(0) as usize;
        self.at += 1;
        v % n.max(1)
    }

    /// True with about `pct` percent probability (false for choice 0).
    fn rare(&mut self, pct: usize) -> bool {
        self.pick(100) >= 100 - pct
    }

    fn name(&mut self, prefix: &str) -> String {
        self.names += 1;
        format!("{prefix}{}", self.names)
    }

    fn prim(&mut self) -> T {
        [
            T::Int,
            T::Long,
            T::Str,
            T::Bool,
            T::Float,
            T::Double,
            T::Bytes,
        ][self.pick(7)]
        .clone()
    }

    fn gen_type(&mut self, depth: usize) -> T {
        let choices = if depth >= 3 { 9 } else { 14 };
        match self.pick(choices) {
            0..=6 => self.prim(),
            7 => {
                let n = 1 + self.pick(4);
                T::Enum {
                    name: self.name("E"),
                    symbols: (0..n).map(|i| format!("S{i}")).collect(),
                    default: None,
                }
            }
            8 => T::Fixed {
                name: self.name("X"),
                size: self.pick(5),
            },
            9 => T::Array(Box::new(self.gen_type(depth + 1))),
            10 => T::Map(Box::new(self.gen_type(depth + 1))),
            11 => T::Union(vec![T::Null, self.non_union(depth + 1)]),
            12 => {
                let mut bs = vec![self.non_union(depth + 1)];
                for _ in 0..1 + self.pick(2) {
                    let b = self.non_union(depth + 1);
                    if bs
                        .iter()
                        .all(|x| kind(x) != kind(&b) && !reads(x, &b) && !reads(&b, x))
                    {
                        bs.push(b);
                    }
                }
                T::Union(bs)
            }
            _ => {
                let n = 1 + self.pick(4);
                self.record(depth + 1, n)
            }
        }
    }

    fn non_union(&mut self, depth: usize) -> T {
        match self.gen_type(depth) {
            T::Union(_) => self.prim(),
            t => t,
        }
    }

    fn record(&mut self, depth: usize, n: usize) -> T {
        let name = self.name("R");
        let fields = (0..n)
            .map(|i| {
                let ty = self.gen_type(depth);
                let default = self.rare(20).then(|| default_for(&ty));
                F {
                    name: format!("f{i}"),
                    aliases: Vec::new(),
                    ty,
                    default,
                }
            })
            .collect();
        T::Record { name, fields }
    }

    /// A reader type for writer type `w`. `top`: a field of the root record, where an invalid
    /// step (one every datum fails) may happen.
    fn evolve(&mut self, w: &T, depth: usize, top: bool) -> T {
        // (Only a string read as an int: apache-avro 0.22 accepts demotions such as
        // double→float, which the specification rules out.)
        if top && matches!(w, T::Str) && self.rare(5) {
            return T::Int;
        }
        // Widen into a union (not for a type that is already a union).
        if !matches!(w, T::Union(_)) && self.rare(12) {
            let inner = self.evolve(w, depth, false);
            if matches!(inner, T::Union(_)) {
                return inner;
            }
            return if self.pick(2) == 0 {
                T::Union(vec![T::Null, inner])
            } else {
                T::Union(vec![inner, T::Null])
            };
        }
        match w {
            T::Int => [T::Int, T::Long, T::Float, T::Double][self.pick_step(4)].clone(),
            T::Long => [T::Long, T::Float, T::Double][self.pick_step(3)].clone(),
            T::Float => [T::Float, T::Double][self.pick_step(2)].clone(),
            T::Str => [T::Str, T::Bytes][self.pick_step(2)].clone(),
            T::Bytes => [T::Bytes, T::Str][self.pick_step(2)].clone(),
            T::Enum {
                name,
                symbols,
                default,
            } => {
                let mut symbols = symbols.clone();
                let mut default = default.clone();
                if self.rare(30) {
                    let at = self.pick(symbols.len() + 1);
                    let s = self.name("N");
                    symbols.insert(at, s);
                }
                if symbols.len() > 1 && self.rare(30) {
                    symbols.remove(self.pick(symbols.len()));
                    // Usually the reader has a default to fall back on; sometimes not.
                    if self.pick(4) != 3 {
                        default = Some(symbols[0].clone());
                    }
                }
                if self.rare(20) {
                    symbols.reverse();
                }
                if default.as_ref().is_some_and(|d| !symbols.contains(d)) {
                    default = Some(symbols[0].clone());
                }
                T::Enum {
                    name: name.clone(),
                    symbols,
                    default,
                }
            }
            T::Array(i) => T::Array(Box::new(self.evolve(i, depth + 1, false))),
            T::Map(v) => T::Map(Box::new(self.evolve(v, depth + 1, false))),
            T::Union(bs) => {
                // Narrow `["null", T]` to `T`: the null datums fail.
                if bs.len() == 2 && bs[0] == T::Null && self.rare(8) {
                    return self.evolve(&bs[1], depth + 1, false);
                }
                let mut rb: Vec<T> = bs.iter().map(|b| self.evolve_branch(b, depth)).collect();
                // Every writer branch must have exactly one reader branch that takes it;
                // otherwise keep the branches as they were.
                let unique = bs
                    .iter()
                    .all(|w| rb.iter().filter(|r| reads(w, r)).count() == 1);
                if !unique {
                    rb = bs.clone();
                }
                if self.rare(25) {
                    rb.reverse();
                }
                if self.rare(20) {
                    let extra = [T::Bool, T::Null][self.pick(2)].clone();
                    if rb.iter().all(|x| kind(x) != kind(&extra))
                        && bs.iter().all(|w| !reads(w, &extra))
                    {
                        let at = self.pick(rb.len() + 1);
                        rb.insert(at, extra);
                    }
                }
                T::Union(rb)
            }
            T::Record { name, fields } => {
                let mut out = Vec::new();
                for f in fields {
                    if self.rare(15) {
                        continue; // removed
                    }
                    let ty = self.evolve(&f.ty, depth + 1, top && depth == 0);
                    let (fname, aliases) = if self.rare(15) {
                        (format!("{}_new", f.name), vec![f.name.clone()])
                    } else {
                        (f.name.clone(), Vec::new())
                    };
                    // A reader default must fit the reader type; keep it only when unchanged.
                    let default = if ty == f.ty {
                        f.default.clone()
                    } else {
                        self.rare(30).then(|| default_for(&ty))
                    };
                    out.push(F {
                        name: fname,
                        aliases,
                        ty,
                        default,
                    });
                }
                if self.rare(20) {
                    let ty = self.gen_type(depth + 2);
                    let i = self.pick(out.len() + 1);
                    let invalid = top && depth == 0 && self.rare(10);
                    let f = F {
                        name: self.name("added"),
                        aliases: Vec::new(),
                        default: (!invalid).then(|| default_for(&ty)),
                        ty,
                    };
                    out.insert(i, f);
                }
                if out.len() > 1 && self.rare(20) {
                    out.reverse();
                }
                T::Record {
                    name: name.clone(),
                    fields: out,
                }
            }
            other => other.clone(),
        }
    }

    /// Mostly no change: promotions happen in about a quarter of the cases.
    fn pick_step(&mut self, n: usize) -> usize {
        if self.rare(25) { self.pick(n) } else { 0 }
    }

    fn evolve_branch(&mut self, b: &T, depth: usize) -> T {
        match self.evolve(b, depth + 1, false) {
            // No union directly inside a union.
            T::Union(_) => b.clone(),
            t => t,
        }
    }
}

/// A writer schema and a reader schema derived from it, as JSON.
fn pair(tape: &[u32]) -> (Json, Json) {
    let mut t = Tape {
        tape,
        at: 0,
        names: 0,
    };
    let n = 1 + t.pick(5);
    let w = t.record(0, n);
    let r = t.evolve(&w, 0, true);
    (to_json(&w), to_json(&r))
}

// -------------------------------------------------------------------------------------------------
// The apache-avro leg
// -------------------------------------------------------------------------------------------------

#[allow(deprecated)] // apache-avro 0.22's builder API does the same
fn decode(schema: &Schema, mut bytes: &[u8]) -> Result<Value, String> {
    let v = apache_avro::from_avro_datum(schema, &mut bytes, None).map_err(|e| e.to_string())?;
    if bytes.is_empty() {
        Ok(v)
    } else {
        Err(format!("{} trailing bytes", bytes.len()))
    }
}

#[allow(deprecated)]
fn value_path(writer: &Schema, reader: &Schema, mut bytes: &[u8]) -> Result<Value, String> {
    apache_avro::from_avro_datum(writer, &mut bytes, Some(reader)).map_err(|e| e.to_string())
}

/// Checks one pair on `count` random datums; returns (resolved, rejected) counts.
fn check_pair(
    writer: &Json,
    reader: &Json,
    seed: u64,
    count: usize,
) -> Result<(usize, usize), String> {
    let ctx = || format!("\nwriter: {writer}\nreader: {reader}");
    let w = Schema::parse_str(&writer.to_string()).map_err(|e| format!("writer: {e}{}", ctx()))?;
    let r = Schema::parse_str(&reader.to_string()).map_err(|e| format!("reader: {e}{}", ctx()))?;
    let aliased = apply_reader_aliases(&reader.to_string())?;
    let ar = Schema::parse_str(&aliased).map_err(|e| format!("aliased reader: {e}{}", ctx()))?;
    let datums = random_datums(&w, count, seed)?;
    let (mut ok, mut err) = (0, 0);
    let plan = match compile(&w, &r) {
        Ok(p) => p,
        Err(e) => {
            // Then no datum may resolve with apache-avro either.
            for d in &datums {
                if let Ok(v) = value_path(&w, &ar, d) {
                    return Err(format!(
                        "plan error ({e}) but apache-avro resolved {v:?}{}",
                        ctx()
                    ));
                }
            }
            return Ok((0, datums.len()));
        }
    };
    let mut out = Vec::new();
    for (i, d) in datums.iter().enumerate() {
        out.clear();
        let ours = plan.transcode(d, &mut out).map_err(|e| e.to_string());
        let theirs = value_path(&w, &ar, d);
        match (ours, theirs) {
            (Ok(_), Ok(want)) => {
                let got = decode(&ar, &out)
                    .map_err(|e| format!("#{i}: output does not decode: {e}{}", ctx()))?;
                if got != want {
                    return Err(format!(
                        "#{i}: values differ\n  ours:       {got:?}\n  apache-avro: {want:?}{}",
                        ctx()
                    ));
                }
                ok += 1;
            }
            (Err(_), Err(_)) => err += 1,
            (Ok(_), Err(e)) => {
                return Err(format!(
                    "#{i}: apache-avro failed ({e}), we resolved it{}",
                    ctx()
                ));
            }
            (Err(e), Ok(v)) => {
                return Err(format!(
                    "#{i}: we failed ({e}), apache-avro gave {v:?}{}",
                    ctx()
                ));
            }
        }
    }
    Ok((ok, err))
}

proptest! {
    // 1000 cases by default (a few seconds in a debug build); PROPTEST_CASES=N for a longer run.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(1000),
        ..ProptestConfig::default()
    })]

    #[test]
    fn compiled_plan_agrees_with_apache_avro(
        tape in prop::collection::vec(any::<u32>(), 0..300),
        seed in any::<u64>(),
    ) {
        let (w, r) = pair(&tape);
        if let Err(e) = check_pair(&w, &r, seed, 6) {
            prop_assert!(false, "{}", e);
        }
    }
}

/// The generator is not vacuous: over many pairs it produces resolved datums, rejected ones,
/// plan errors, and each kind of step.
#[test]
fn generator_covers_the_steps() {
    let mut rng = Rng(11);
    let (mut ok, mut err, mut plan_errors) = (0, 0, 0);
    let mut seen = std::collections::BTreeSet::new();
    for case in 0..300 {
        let tape: Vec<u32> = (0..300).map(|_| rng.next_u64() as u32).collect();
        let (w, r) = pair(&tape);
        let (ws, rs) = (w.to_string(), r.to_string());
        for (what, hit) in [
            ("alias", rs.contains("aliases")),
            ("added field", rs.contains("\"added")),
            (
                "union",
                rs.contains("[\"null\"") || rs.contains(",\"null\"]"),
            ),
            (
                "enum default",
                rs.contains("\"default\":\"S") || rs.contains("\"default\":\"N"),
            ),
            (
                "promotion to double",
                !ws.contains("double") && rs.contains("double"),
            ),
            (
                "string to bytes",
                rs.matches("bytes").count() > ws.matches("bytes").count(),
            ),
        ] {
            if hit {
                seen.insert(what);
            }
        }
        let compiles = compile(
            &Schema::parse_str(&ws).unwrap(),
            &Schema::parse_str(&rs).unwrap(),
        )
        .is_ok();
        plan_errors += usize::from(!compiles);
        let (o, e) = check_pair(&w, &r, case as u64, 4).unwrap_or_else(|e| panic!("{e}"));
        ok += o;
        err += e;
    }
    eprintln!("{ok} resolved, {err} rejected datums, {plan_errors} plan errors, steps {seen:?}");
    assert_eq!(seen.len(), 6, "steps seen: {seen:?}");
    assert!(ok > 500, "{ok} resolved datums");
    assert!(err > 20, "{err} rejected datums");
    assert!(plan_errors > 2, "{plan_errors} plan errors");
}

// -------------------------------------------------------------------------------------------------
// The fastavro leg: one Python call for a batch of generated pairs
// -------------------------------------------------------------------------------------------------

#[test]
fn fastavro_agrees_on_a_batch_of_generated_pairs() {
    let mut rng = Rng(2024);
    let mut cases = Vec::new();
    let mut plans = Vec::new();
    for i in 0..80u64 {
        let tape: Vec<u32> = (0..300).map(|_| rng.next_u64() as u32).collect();
        let (w, r) = pair(&tape);
        let ws = Schema::parse_str(&w.to_string()).expect("writer parses");
        let rs = Schema::parse_str(&r.to_string()).expect("reader parses");
        let datums = random_datums(&ws, 5, i).expect("datums");
        cases.push(json!({
            "writer": w,
            "reader": r,
            "datums_hex": datums.iter().map(|d| hex(d)).collect::<Vec<_>>(),
        }));
        plans.push((compile(&ws, &rs), rs, datums));
    }

    let python = python::fastavro_python();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/fastavro_oracle.py"
    );
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
        .write_all(json!({ "batch": cases }).to_string().as_bytes())
        .expect("write the batch");
    let out = child.wait_with_output().expect("oracle runs");
    assert!(
        out.status.success(),
        "oracle failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Json = serde_json::from_slice(&out.stdout).expect("oracle prints JSON");
    let answers = answer["batch"].as_array().expect("batch answers");
    assert_eq!(answers.len(), plans.len());

    let (mut ok, mut err, mut failures) = (0, 0, Vec::new());
    for (c, ((plan, reader, datums), a)) in plans.iter().zip(answers).enumerate() {
        if let Some(e) = a.get("schema_error") {
            failures.push(format!("case {c}: fastavro rejected a schema: {e}"));
            continue;
        }
        let results = a["results"].as_array().expect("results");
        for (i, (d, res)) in datums.iter().zip(results).enumerate() {
            let ours = match plan {
                Err(e) => Err(e.to_string()),
                Ok(p) => {
                    let mut out = Vec::new();
                    p.transcode(d, &mut out)
                        .map_err(|e| e.to_string())
                        .map(|_| normalize(&decode(reader, &out).expect("output decodes")))
                }
            };
            match (ours, res.get("ok")) {
                (Ok(got), Some(want)) if got == *want => ok += 1,
                (Err(_), None) => err += 1,
                (ours, _) => failures.push(format!(
                    "case {c} #{i}: ours {ours:?}, fastavro {res}\n  writer: {}\n  reader: {}",
                    cases[c]["writer"], cases[c]["reader"]
                )),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} disagreements with fastavro:\n{}",
        failures.len(),
        failures[..failures.len().min(4)].join("\n")
    );
    assert!(
        ok > 150 && err > 5,
        "{ok} resolved, {err} rejected: too few to mean much"
    );
}

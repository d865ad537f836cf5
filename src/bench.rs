//! `schemabridge bench transcode`: the compiled Avro plan against apache-avro's value path, on
//! the same records, in one run; and the random-record generator it (and the criterion bench)
//! uses when no input file is given.
//!
//! Owns: timing and the table. Must not: be used by the gateway.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use apache_avro::Schema;
use apache_avro::schema::{Name, UnionSchema};

use crate::avro;

/// Deterministic pseudo-random numbers (SplitMix64).
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
}

/// Past this depth, unions take a non-recursive branch and arrays/maps are empty, so recursive
/// schemas give finite records.
const MAX_DEPTH: usize = 6;

/// Writes one random datum of `schema` in Avro binary encoding to `out`.
pub fn random_datum(schema: &Schema, rng: &mut Rng, out: &mut Vec<u8>) -> Result<(), String> {
    let mut names = HashMap::new();
    collect_names(schema, None, &mut names);
    Gen { names, rng }.datum(schema, None, 0, out)
}

/// `count` random datums of `schema`, each encoded separately.
pub fn random_datums(schema: &Schema, count: usize, seed: u64) -> Result<Vec<Vec<u8>>, String> {
    let mut names = HashMap::new();
    collect_names(schema, None, &mut names);
    let mut rng = Rng(seed);
    let mut g = Gen {
        names,
        rng: &mut rng,
    };
    (0..count)
        .map(|_| {
            let mut out = Vec::with_capacity(128);
            g.datum(schema, None, 0, &mut out).map(|()| out)
        })
        .collect()
}

fn full_name(name: &Name, enclosing: Option<&str>) -> String {
    match (name.namespace(), enclosing) {
        (Some(ns), _) => format!("{ns}.{}", name.name()),
        (None, Some(ns)) if !ns.is_empty() => format!("{ns}.{}", name.name()),
        _ => name.name().to_string(),
    }
}

fn collect_names<'s>(
    schema: &'s Schema,
    ns: Option<&str>,
    names: &mut HashMap<String, &'s Schema>,
) {
    match schema {
        Schema::Record(r) => {
            let full = full_name(&r.name, ns);
            let inner_ns = r.name.namespace().map(str::to_string).or_else(|| ns.map(str::to_string));
            names.insert(full.clone(), schema);
            names.entry(r.name.name().to_string()).or_insert(schema);
            for f in &r.fields {
                collect_names(&f.schema, inner_ns.as_deref(), names);
            }
        }
        Schema::Enum(e) => {
            names.insert(full_name(&e.name, ns), schema);
            names.entry(e.name.name().to_string()).or_insert(schema);
        }
        Schema::Fixed(f) | Schema::Duration(f) => {
            names.insert(full_name(&f.name, ns), schema);
            names.entry(f.name.name().to_string()).or_insert(schema);
        }
        Schema::Array(a) => collect_names(&a.items, ns, names),
        Schema::Map(m) => collect_names(&m.types, ns, names),
        Schema::Union(u) => {
            for v in u.variants() {
                collect_names(v, ns, names);
            }
        }
        _ => {}
    }
}

struct Gen<'s, 'r> {
    names: HashMap<String, &'s Schema>,
    rng: &'r mut Rng,
}

const WORDS: &[&str] = &["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf"];

impl<'s> Gen<'s, '_> {
    fn datum(
        &mut self,
        schema: &'s Schema,
        ns: Option<&str>,
        depth: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        match schema {
            Schema::Null => {}
            Schema::Boolean => out.push(self.rng.below(2) as u8),
            Schema::Int | Schema::Date | Schema::TimeMillis => {
                write_long(out, (self.rng.below(2_000_000) as i64) - 1_000_000)
            }
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => {
                write_long(out, 1_700_000_000_000 + self.rng.below(1 << 40) as i64)
            }
            Schema::Float => out.extend((self.rng.below(1_000_000) as f32 / 7.0).to_le_bytes()),
            Schema::Double => out.extend((self.rng.below(1 << 40) as f64 / 13.0).to_le_bytes()),
            Schema::Bytes | Schema::BigDecimal => {
                let n = self.rng.below(24) as usize;
                write_long(out, n as i64);
                for _ in 0..n {
                    out.push(self.rng.below(256) as u8);
                }
            }
            Schema::String => {
                let word = WORDS[self.rng.below(WORDS.len() as u64) as usize];
                let s = format!("{word}-{}", self.rng.below(100_000));
                write_long(out, s.len() as i64);
                out.extend(s.as_bytes());
            }
            Schema::Uuid(_) => {
                let s = format!(
                    "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                    self.rng.below(1 << 32),
                    self.rng.below(1 << 16),
                    self.rng.below(1 << 12),
                    self.rng.below(1 << 12),
                    self.rng.below(1 << 48)
                );
                write_long(out, s.len() as i64);
                out.extend(s.as_bytes());
            }
            Schema::Decimal(d) => match &d.inner {
                apache_avro::schema::InnerDecimalSchema::Bytes => {
                    self.datum(&Schema::Bytes, ns, depth, out)?
                }
                apache_avro::schema::InnerDecimalSchema::Fixed(f) => {
                    for _ in 0..f.size {
                        out.push(self.rng.below(256) as u8);
                    }
                }
            },
            Schema::Array(a) => {
                let n = if depth >= MAX_DEPTH { 0 } else { self.rng.below(4) };
                if n > 0 {
                    write_long(out, n as i64);
                    for _ in 0..n {
                        self.datum(&a.items, ns, depth + 1, out)?;
                    }
                }
                out.push(0);
            }
            Schema::Map(m) => {
                let n = if depth >= MAX_DEPTH { 0 } else { self.rng.below(4) };
                if n > 0 {
                    write_long(out, n as i64);
                    for i in 0..n {
                        let k = format!("k{i}");
                        write_long(out, k.len() as i64);
                        out.extend(k.as_bytes());
                        self.datum(&m.types, ns, depth + 1, out)?;
                    }
                }
                out.push(0);
            }
            Schema::Union(u) => {
                let i = self.branch(u, depth);
                write_long(out, i as i64);
                self.datum(&u.variants()[i], ns, depth + 1, out)?;
            }
            Schema::Record(r) => {
                let inner_ns = r.name.namespace().map(str::to_string).or_else(|| ns.map(str::to_string));
                for f in &r.fields {
                    self.datum(&f.schema, inner_ns.as_deref(), depth + 1, out)?;
                }
            }
            Schema::Enum(e) => write_long(out, self.rng.below(e.symbols.len() as u64) as i64),
            Schema::Fixed(f) | Schema::Duration(f) => {
                for _ in 0..f.size {
                    out.push(self.rng.below(256) as u8);
                }
            }
            Schema::Ref { name } => {
                let target = self
                    .names
                    .get(&full_name(name, ns))
                    .or_else(|| self.names.get(name.name()))
                    .copied()
                    .ok_or_else(|| format!("unknown named type {}", name.name()))?;
                self.datum(target, ns, depth, out)?;
            }
        }
        Ok(())
    }

    /// A random branch; deep in the tree, the null branch (or the first non-record one) so
    /// recursive schemas end.
    fn branch(&mut self, u: &UnionSchema, depth: usize) -> usize {
        let variants = u.variants();
        if depth >= MAX_DEPTH {
            if let Some(i) = variants.iter().position(|v| matches!(v, Schema::Null)) {
                return i;
            }
            if let Some(i) = variants
                .iter()
                .position(|v| !matches!(v, Schema::Record(_) | Schema::Ref { .. }))
            {
                return i;
            }
        }
        self.rng.below(variants.len() as u64) as usize
    }
}

fn write_long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// apache-avro 0.22 cannot resolve reader field aliases; for its side of the comparison the
/// reader schema gets each aliased field renamed to its first alias (the same resolution,
/// spelled so apache-avro can do it).
pub fn apply_reader_aliases(reader_json: &str) -> Result<String, String> {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::Array(fields)) = map.get_mut("fields") {
                    for f in fields.iter_mut() {
                        if let serde_json::Value::Object(fm) = f
                            && let Some(serde_json::Value::Array(aliases)) = fm.remove("aliases")
                            && let Some(first) = aliases.first().cloned()
                        {
                            fm.insert("name".into(), first);
                        }
                        walk(f);
                    }
                }
                for (k, child) in map.iter_mut() {
                    if k != "fields" {
                        walk(child);
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let mut v: serde_json::Value =
        serde_json::from_str(reader_json).map_err(|e| format!("reader schema: {e}"))?;
    walk(&mut v);
    Ok(v.to_string())
}

/// One engine's figures.
#[derive(Debug, Clone)]
pub struct EngineResult {
    pub engine: String,
    pub records_per_sec: f64,
    pub mb_per_sec: f64,
}

/// The outcome of `bench transcode`.
#[derive(Debug, Clone)]
pub struct TranscodeBench {
    pub records: usize,
    pub input_bytes: usize,
    pub engines: Vec<EngineResult>,
    /// Compiled records/s over apache-avro records/s.
    pub ratio: f64,
    /// Whether both engines wrote byte-identical output for every record.
    pub identical_output: bool,
}

impl TranscodeBench {
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} records, {:.1} bytes/record on average (writer encoding)\n",
            self.records,
            self.input_bytes as f64 / self.records.max(1) as f64
        );
        let _ = writeln!(s, "{:<34} {:>14} {:>10}", "engine", "records/s", "MB/s");
        for e in &self.engines {
            let _ = writeln!(
                s,
                "{:<34} {:>14.0} {:>10.1}",
                e.engine, e.records_per_sec, e.mb_per_sec
            );
        }
        let _ = writeln!(
            s,
            "\noutputs identical: {}",
            if self.identical_output { "yes" } else { "NO" }
        );
        let _ = write!(s, "ratio: {:.1}", self.ratio);
        s
    }
}

/// Times each engine over `datums` (writer-encoded) for at least `min_time`.
pub fn transcode(
    writer: &Schema,
    reader_json: &str,
    datums: &[Vec<u8>],
    min_time: Duration,
) -> Result<TranscodeBench, String> {
    let reader = Schema::parse_str(reader_json).map_err(|e| format!("reader schema: {e}"))?;
    let plan = avro::compile(writer, &reader).map_err(|e| e.to_string())?;
    let input_bytes: usize = datums.iter().map(Vec::len).sum();

    // Compiled plan.
    let mut out = Vec::with_capacity(1024);
    let mut compiled_out = Vec::with_capacity(datums.len());
    for d in datums {
        out.clear();
        plan.transcode(d, &mut out).map_err(|e| e.to_string())?;
        compiled_out.push(out.clone());
    }
    let compiled = time(datums, min_time, |d| {
        out.clear();
        plan.transcode(d, &mut out).map(|_| ()).map_err(|e| e.to_string())
    })?;

    // apache-avro: decode to a Value with resolution, encode with the reader schema.
    let aliased = apply_reader_aliases(reader_json)?;
    let value_reader = Schema::parse_str(&aliased).map_err(|e| format!("reader schema: {e}"))?;
    let mut identical = true;
    for (d, ours) in datums.iter().zip(&compiled_out) {
        let theirs = value_path(writer, &value_reader, d)?;
        identical &= &theirs == ours;
    }
    let value = time(datums, min_time, |d| value_path(writer, &value_reader, d).map(|_| ()))?;

    let engine = |name: &str, secs: f64, n: usize| EngineResult {
        engine: name.to_string(),
        records_per_sec: n as f64 / secs,
        mb_per_sec: (input_bytes as f64 * (n / datums.len().max(1)) as f64) / secs / 1e6,
    };
    let c = engine("schemabridge compiled plan", compiled.0, compiled.1);
    let v = engine("apache-avro 0.22 value path", value.0, value.1);
    Ok(TranscodeBench {
        records: datums.len(),
        input_bytes,
        ratio: c.records_per_sec / v.records_per_sec,
        engines: vec![c, v],
        identical_output: identical,
    })
}

#[allow(deprecated)] // apache-avro 0.22's builder API does the same; these are its reference path
fn value_path(writer: &Schema, reader: &Schema, mut d: &[u8]) -> Result<Vec<u8>, String> {
    let v = apache_avro::from_avro_datum(writer, &mut d, Some(reader))
        .map_err(|e| format!("apache-avro cannot resolve: {e}"))?;
    apache_avro::to_avro_datum(reader, v).map_err(|e| format!("apache-avro cannot encode: {e}"))
}

/// Runs whole passes over `datums` until `min_time` has passed; returns (seconds, records).
fn time(
    datums: &[Vec<u8>],
    min_time: Duration,
    mut f: impl FnMut(&[u8]) -> Result<(), String>,
) -> Result<(f64, usize), String> {
    let start = Instant::now();
    let mut n = 0;
    loop {
        for d in datums {
            f(d)?;
        }
        n += datums.len();
        if start.elapsed() >= min_time || datums.is_empty() {
            break;
        }
    }
    Ok((start.elapsed().as_secs_f64(), n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(deprecated)]
    fn random_datums_decode_with_their_schema() {
        let schema = Schema::parse_str(crate::demo::ORDER_V2).unwrap();
        let datums = random_datums(&schema, 50, 1).unwrap();
        for d in &datums {
            let mut slice = &d[..];
            apache_avro::from_avro_datum(&schema, &mut slice, None).unwrap();
            assert!(slice.is_empty(), "whole datum consumed");
        }
        let recursive = Schema::parse_str(
            r#"{"type":"record","name":"Node","fields":[{"name":"v","type":"int"},
               {"name":"next","type":["null","Node"]},
               {"name":"kids","type":{"type":"array","items":"Node"}}]}"#,
        )
        .unwrap();
        for d in random_datums(&recursive, 50, 2).unwrap() {
            let mut slice = &d[..];
            apache_avro::from_avro_datum(&recursive, &mut slice, None).unwrap();
            assert!(slice.is_empty());
        }
    }

    #[test]
    fn reader_aliases_are_applied_by_renaming() {
        let json = apply_reader_aliases(crate::demo::ORDER_V1).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let names: Vec<&str> = v["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"total_cents"), "{names:?}");
        assert!(!names.contains(&"amount_cents"), "{names:?}");
    }
}

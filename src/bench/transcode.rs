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

use crate::avro::{self, write_long};

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
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
    /// One of `items` (which must not be empty).
    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
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
            let inner_ns = r
                .name
                .namespace()
                .map(str::to_string)
                .or_else(|| ns.map(str::to_string));
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

const WORDS: &[&str] = &[
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf",
];

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
            Schema::Decimal(d) => {
                // An unscaled value with at most `precision` digits (and at most 18), either
                // sign, as big-endian two's complement: minimal for bytes, sign-extended to a
                // fixed's size.
                let digits = d.precision.clamp(1, 18) as u32;
                let magnitude = self.rng.below(10u64.pow(digits)) as i64;
                let v = if self.rng.below(2) == 0 {
                    magnitude
                } else {
                    -magnitude
                };
                let be = v.to_be_bytes();
                let sign = if v < 0 { 0xff } else { 0 };
                // Drop leading sign bytes whose next byte carries the same sign bit.
                let mut skip = 0;
                while skip < 7 && be[skip] == sign && (be[skip + 1] & 0x80) == (sign & 0x80) {
                    skip += 1;
                }
                let minimal = &be[skip..];
                match &d.inner {
                    apache_avro::schema::InnerDecimalSchema::Bytes => {
                        write_long(out, minimal.len() as i64);
                        out.extend_from_slice(minimal);
                    }
                    apache_avro::schema::InnerDecimalSchema::Fixed(f) => {
                        let pad = f.size.saturating_sub(minimal.len());
                        out.extend(std::iter::repeat_n(sign, pad));
                        out.extend_from_slice(&minimal[minimal.len().saturating_sub(f.size)..]);
                    }
                }
            }
            Schema::Array(a) => {
                let n = if depth >= MAX_DEPTH {
                    0
                } else {
                    self.rng.below(4)
                };
                if n > 0 {
                    write_long(out, n as i64);
                    for _ in 0..n {
                        self.datum(&a.items, ns, depth + 1, out)?;
                    }
                }
                out.push(0);
            }
            Schema::Map(m) => {
                let n = if depth >= MAX_DEPTH {
                    0
                } else {
                    self.rng.below(4)
                };
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
                let inner_ns = r
                    .name
                    .namespace()
                    .map(str::to_string)
                    .or_else(|| ns.map(str::to_string));
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

/// apache-avro 0.22 cannot resolve reader field aliases; for its side of the comparison the
/// reader schema gets each aliased field renamed to its first alias (the same resolution,
/// spelled so apache-avro can do it). Record defaults that name a renamed field are renamed
/// with it.
pub fn apply_reader_aliases(reader_json: &str) -> Result<String, String> {
    use serde_json::Value as J;

    /// Record definitions by full and by short name (the original, reader-named ones).
    fn collect(s: &J, ns: Option<&str>, out: &mut HashMap<String, J>) {
        match s {
            J::Object(m) => match m.get("type") {
                Some(J::String(t)) if t == "record" || t == "error" => {
                    let name = m.get("name").and_then(J::as_str).unwrap_or_default();
                    let space = m.get("namespace").and_then(J::as_str).or(ns);
                    let full = match space {
                        Some(space) if !name.contains('.') && !space.is_empty() => {
                            format!("{space}.{name}")
                        }
                        _ => name.to_string(),
                    };
                    let inner = full.rsplit_once('.').map(|(space, _)| space.to_string());
                    out.insert(full.clone(), s.clone());
                    out.entry(name.rsplit('.').next().unwrap_or(name).to_string())
                        .or_insert_with(|| s.clone());
                    for f in m.get("fields").and_then(J::as_array).into_iter().flatten() {
                        if let Some(t) = f.get("type") {
                            collect(t, inner.as_deref(), out);
                        }
                    }
                }
                Some(J::String(t)) if t == "array" => {
                    if let Some(i) = m.get("items") {
                        collect(i, ns, out);
                    }
                }
                Some(J::String(t)) if t == "map" => {
                    if let Some(v) = m.get("values") {
                        collect(v, ns, out);
                    }
                }
                Some(t @ (J::Object(_) | J::Array(_))) => collect(t, ns, out),
                _ => {}
            },
            J::Array(branches) => branches.iter().for_each(|b| collect(b, ns, out)),
            _ => {}
        }
    }

    /// Renames the keys of a default value of type `ty` as the fields are renamed.
    fn rename_default(d: &mut J, ty: &J, records: &HashMap<String, J>, depth: usize) {
        if depth > 64 {
            return;
        }
        let record = match ty {
            J::String(name) => records.get(name),
            J::Array(branches) => {
                if let Some(first) = branches.first() {
                    rename_default(d, first, records, depth + 1);
                }
                return;
            }
            J::Object(m) => match m.get("type") {
                Some(J::String(t)) if t == "record" || t == "error" => Some(ty),
                Some(J::String(t)) if t == "array" => {
                    if let (J::Array(items), Some(it)) = (&mut *d, m.get("items")) {
                        items
                            .iter_mut()
                            .for_each(|x| rename_default(x, it, records, depth + 1));
                    }
                    return;
                }
                Some(J::String(t)) if t == "map" => {
                    if let (J::Object(values), Some(vt)) = (&mut *d, m.get("values")) {
                        values
                            .values_mut()
                            .for_each(|x| rename_default(x, vt, records, depth + 1));
                    }
                    return;
                }
                Some(t) => return rename_default(d, t, records, depth + 1),
                None => return,
            },
            _ => None,
        };
        let (Some(record), J::Object(obj)) = (record, d) else {
            return;
        };
        let fields = record
            .get("fields")
            .and_then(J::as_array)
            .cloned()
            .unwrap_or_default();
        let mut renamed = serde_json::Map::new();
        for (k, mut v) in std::mem::take(obj) {
            let f = fields
                .iter()
                .find(|f| f.get("name").and_then(J::as_str) == Some(&k));
            let key = f
                .and_then(|f| f.get("aliases"))
                .and_then(J::as_array)
                .and_then(|a| a.first())
                .and_then(J::as_str)
                .map_or(k, str::to_string);
            if let Some(t) = f.and_then(|f| f.get("type")) {
                rename_default(&mut v, t, records, depth + 1);
            }
            renamed.insert(key, v);
        }
        *obj = renamed;
    }

    /// Renames aliased fields in every record of the schema `s`.
    fn rewrite(s: &mut J, records: &HashMap<String, J>) {
        match s {
            J::Object(m) => {
                if let Some(J::Array(fields)) = m.get_mut("fields") {
                    for f in fields.iter_mut() {
                        let J::Object(fm) = f else { continue };
                        if let Some(ty) = fm.get("type").cloned()
                            && let Some(d) = fm.get_mut("default")
                        {
                            rename_default(d, &ty, records, 0);
                        }
                        if let Some(J::Array(aliases)) = fm.remove("aliases")
                            && let Some(first) = aliases.first().cloned()
                        {
                            fm.insert("name".into(), first);
                        }
                        if let Some(t) = fm.get_mut("type") {
                            rewrite(t, records);
                        }
                    }
                }
                for key in ["type", "items", "values"] {
                    if let Some(child @ (J::Object(_) | J::Array(_))) = m.get_mut(key) {
                        rewrite(child, records);
                    }
                }
            }
            J::Array(branches) => branches.iter_mut().for_each(|b| rewrite(b, records)),
            _ => {}
        }
    }

    let mut v: J = serde_json::from_str(reader_json).map_err(|e| format!("reader schema: {e}"))?;
    let mut records = HashMap::new();
    collect(&v, None, &mut records);
    rewrite(&mut v, &records);
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
    /// Every record's two outputs decode (with the reader schema) to the same value.
    pub equal_values: bool,
    /// Records whose two outputs are also byte-identical. The others differ in encoding only:
    /// apache-avro decodes a map into a `HashMap` and writes its entries back in hash order (and
    /// as one block), the compiled plan keeps the writer's order and blocks. Both are valid:
    /// Avro maps are unordered.
    pub identical_bytes: usize,
    /// Timing rounds per engine (interleaved); each engine's figure is its fastest round.
    pub rounds: usize,
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
            "(fastest of {} interleaved rounds per engine)\n",
            self.rounds
        );
        let _ = writeln!(
            s,
            "outputs equal (decoded with the reader schema): {}",
            if self.equal_values { "yes" } else { "NO" }
        );
        let _ = writeln!(
            s,
            "outputs byte-identical: {} of {} records{}",
            self.identical_bytes,
            self.records,
            if self.identical_bytes < self.records && self.equal_values {
                " (the others differ in map entry order: apache-avro writes maps in hash order)"
            } else {
                ""
            }
        );
        let _ = write!(s, "ratio: {:.1}", self.ratio);
        s
    }
}

/// Rounds each engine is timed in, alternating engines so that a noisy neighbour slows both
/// alike; each engine reports its fastest round.
const ROUNDS: usize = 5;

/// Times each engine over `datums` (writer-encoded) for about `min_time` in all.
pub fn transcode(
    writer: &Schema,
    reader_json: &str,
    datums: &[Vec<u8>],
    min_time: Duration,
) -> Result<TranscodeBench, String> {
    let reader = Schema::parse_str(reader_json).map_err(|e| format!("reader schema: {e}"))?;
    let plan = avro::compile(writer, &reader).map_err(|e| e.to_string())?;
    let input_bytes: usize = datums.iter().map(Vec::len).sum();

    // apache-avro: decode to a Value with resolution, encode with the reader schema.
    let aliased = apply_reader_aliases(reader_json)?;
    let value_reader = Schema::parse_str(&aliased).map_err(|e| format!("reader schema: {e}"))?;

    // Both engines' outputs, compared as bytes and as decoded values.
    let mut out = Vec::with_capacity(1024);
    let (mut equal_values, mut identical_bytes) = (true, 0);
    for d in datums {
        out.clear();
        plan.transcode(d, &mut out).map_err(|e| e.to_string())?;
        let theirs = value_path(writer, &value_reader, d)?;
        if theirs == out {
            identical_bytes += 1;
        } else {
            // Same encoding either way; `value_reader` only renames aliased fields.
            equal_values &= decode(&value_reader, &out)? == decode(&value_reader, &theirs)?;
        }
    }

    let round_time = min_time / ROUNDS as u32;
    let (mut compiled, mut value) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..ROUNDS {
        let (secs, n) = time(datums, round_time, |d| {
            out.clear();
            plan.transcode(d, &mut out)
                .map(|_| ())
                .map_err(|e| e.to_string())
        })?;
        compiled = compiled.min(secs / n.max(1) as f64);
        let (secs, n) = time(datums, round_time, |d| {
            value_path(writer, &value_reader, d).map(|_| ())
        })?;
        value = value.min(secs / n.max(1) as f64);
    }

    let bytes_per_record = input_bytes as f64 / datums.len().max(1) as f64;
    let engine = |name: &str, secs_per_record: f64| EngineResult {
        engine: name.to_string(),
        records_per_sec: 1.0 / secs_per_record,
        mb_per_sec: bytes_per_record / secs_per_record / 1e6,
    };
    let c = engine("schemabridge compiled plan", compiled);
    let v = engine("apache-avro 0.22 value path", value);
    Ok(TranscodeBench {
        records: datums.len(),
        input_bytes,
        ratio: c.records_per_sec / v.records_per_sec,
        engines: vec![c, v],
        equal_values,
        identical_bytes,
        rounds: ROUNDS,
    })
}

/// Decodes one datum with `schema` (no resolution), for comparing outputs as values.
#[allow(deprecated)] // apache-avro 0.22's builder API does the same
fn decode(schema: &Schema, mut d: &[u8]) -> Result<apache_avro::types::Value, String> {
    let v = apache_avro::from_avro_datum(schema, &mut d, None)
        .map_err(|e| format!("output does not decode with the reader schema: {e}"))?;
    if !d.is_empty() {
        return Err(format!("output has {} trailing bytes", d.len()));
    }
    Ok(v)
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

    // The schema files themselves (not `crate::demo`'s copies): the fuzz crate compiles this
    // file by path, without the rest of the gateway.
    const ORDER_V1: &str = include_str!("../../proto/orders/order_v1.avsc");
    const ORDER_V2: &str = include_str!("../../proto/orders/order_v2.avsc");

    #[test]
    #[allow(deprecated)]
    fn random_datums_decode_with_their_schema() {
        let schema = Schema::parse_str(ORDER_V2).unwrap();
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

    /// Random decimals hold at most their precision's digits (Parquet refuses wider ones), as
    /// minimal bytes or sign-extended to a fixed's size, of either sign.
    #[test]
    fn random_decimals_fit_their_precision() {
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"R","fields":[
                {"name":"d2","type":{"type":"bytes","logicalType":"decimal","precision":2}},
                {"name":"d9","type":{"type":"fixed","name":"F","size":5,
                    "logicalType":"decimal","precision":9,"scale":3}}]}"#,
        )
        .unwrap();
        let unscaled = |b: &[u8]| crate::archive::columnar::be_i128(b).expect("fits i128");
        let (mut negative, mut widest) = (0, [0i128; 2]);
        for d in random_datums(&schema, 500, 3).unwrap() {
            let mut rest = &d[..];
            let n = avro::read_long(&mut rest).unwrap() as usize;
            assert!((1..=8).contains(&n), "{n} bytes");
            let (d2, d9) = (unscaled(&rest[..n]), unscaled(&rest[n..]));
            assert_eq!(rest.len(), n + 5, "a 5-byte fixed after the bytes");
            assert!(d2.abs() < 100 && d9.abs() < 1_000_000_000, "{d2} {d9}");
            negative += usize::from(d2 < 0) + usize::from(d9 < 0);
            widest = [widest[0].max(d2.abs()), widest[1].max(d9.abs())];
        }
        assert!(negative > 0, "both signs");
        assert!(widest[0] >= 90 && widest[1] >= 900_000_000, "{widest:?}");
    }

    #[test]
    fn reference_pair_outputs_are_equal_values() {
        let writer = Schema::parse_str(ORDER_V2).unwrap();
        let datums = random_datums(&writer, 300, 7).unwrap();
        let b = transcode(&writer, ORDER_V1, &datums, Duration::ZERO).unwrap();
        assert!(b.equal_values, "{}", b.table());
        // Maps with two or more entries come back from apache-avro in hash order, so some
        // records differ in bytes; records without such maps must be byte-identical.
        assert!(b.identical_bytes > 0 && b.identical_bytes <= b.records);
        assert!(
            b.table()
                .contains("outputs equal (decoded with the reader schema): yes")
        );
    }

    #[test]
    fn reader_aliases_are_applied_by_renaming() {
        let json = apply_reader_aliases(ORDER_V1).unwrap();
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

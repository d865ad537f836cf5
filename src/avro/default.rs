//! Pre-encoding of values known at compile time: JSON defaults and "zero" values.
//!
//! Owns: turning a schema's JSON `default` into Avro binary for a given type (reader defaults
//! emitted for missing fields; writer defaults compared against skipped bytes for lossiness), and
//! the zero value of a type (null, false, 0, "", empty, first symbol, all-zero fixed, first union
//! branch, record of zeros). Must not touch: the executor; no I/O. Runs only at compile time.

use serde_json::Value as Json;

use super::codec::{write_bytes, write_long};
use super::schema::{Ty, TyId, Types};

/// Bound on the nesting of a default or zero value (a recursive record's zero value is
/// bottomless unless a union or array breaks the cycle).
const MAX_DEPTH: u32 = 64;

/// Encodes `value` (a JSON default as written in the schema) as type `ty`, appending to `out`.
/// The error is a human reason; the caller adds the field path.
pub(crate) fn encode_default(
    types: &Types,
    ty: TyId,
    value: &Json,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    encode(types, ty, value, out, 0)
}

fn encode(
    types: &Types,
    ty: TyId,
    value: &Json,
    out: &mut Vec<u8>,
    depth: u32,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("default nested deeper than {MAX_DEPTH} levels"));
    }
    let t = types.get(ty);
    let mismatch = || format!("{value} is not a valid {}", t.describe());
    match t {
        Ty::Null => value.is_null().then_some(()).ok_or_else(mismatch),
        Ty::Boolean => {
            let b = value.as_bool().ok_or_else(mismatch)?;
            out.push(u8::from(b));
            Ok(())
        }
        Ty::Int => {
            let v = json_integer(value).ok_or_else(mismatch)?;
            let v = i32::try_from(v).map_err(|_| mismatch())?;
            write_long(out, i64::from(v));
            Ok(())
        }
        Ty::Long => {
            write_long(out, json_integer(value).ok_or_else(mismatch)?);
            Ok(())
        }
        Ty::Float => {
            let v = json_float(value).ok_or_else(mismatch)?;
            out.extend_from_slice(&(v as f32).to_le_bytes());
            Ok(())
        }
        Ty::Double => {
            let v = json_float(value).ok_or_else(mismatch)?;
            out.extend_from_slice(&v.to_le_bytes());
            Ok(())
        }
        Ty::Bytes => {
            let b = json_byte_string(value).ok_or_else(mismatch)?;
            write_bytes(out, &b);
            Ok(())
        }
        Ty::String => {
            let s = value.as_str().ok_or_else(mismatch)?;
            write_bytes(out, s.as_bytes());
            Ok(())
        }
        Ty::Fixed { size, .. } => {
            let b = json_byte_string(value).ok_or_else(mismatch)?;
            if b.len() != *size {
                return Err(format!("{value} has {} bytes, fixed needs {size}", b.len()));
            }
            out.extend_from_slice(&b);
            Ok(())
        }
        Ty::Enum { symbols, .. } => {
            let s = value.as_str().ok_or_else(mismatch)?;
            let i = symbols
                .iter()
                .position(|x| x == s)
                .ok_or_else(|| format!("{value} is not a symbol of {}", t.describe()))?;
            write_long(out, i as i64);
            Ok(())
        }
        Ty::Array(item) => {
            let items = value.as_array().ok_or_else(mismatch)?;
            if !items.is_empty() {
                write_long(out, items.len() as i64);
                for v in items {
                    encode(types, *item, v, out, depth + 1)?;
                }
            }
            out.push(0);
            Ok(())
        }
        Ty::Map(val) => {
            let entries = value.as_object().ok_or_else(mismatch)?;
            if !entries.is_empty() {
                write_long(out, entries.len() as i64);
                for (k, v) in entries {
                    write_bytes(out, k.as_bytes());
                    encode(types, *val, v, out, depth + 1)?;
                }
            }
            out.push(0);
            Ok(())
        }
        Ty::Union(branches) => {
            // Avro 1.11: a union's default is a value of its FIRST branch.
            let first = *branches
                .first()
                .ok_or_else(|| "empty union has no default".to_string())?;
            out.push(0); // varint 0: branch index 0
            encode(types, first, value, out, depth + 1).map_err(|e| {
                format!(
                    "{e} (a union default must be a value of the union's first branch, {})",
                    types.get(first).describe()
                )
            })
        }
        Ty::Record { fields, .. } => {
            let obj = value.as_object().ok_or_else(mismatch)?;
            for f in fields {
                match obj.get(&f.name).or(f.default.as_ref()) {
                    Some(v) => encode(types, f.ty, v, out, depth + 1)
                        .map_err(|e| format!("field {}: {e}", f.name))?,
                    None => return Err(format!("{value} has no value for field {}", f.name)),
                }
            }
            Ok(())
        }
    }
}

/// Appends the zero value of `ty`.
pub(crate) fn encode_zero(types: &Types, ty: TyId, out: &mut Vec<u8>) -> Result<(), String> {
    zero(types, ty, out, 0)
}

fn zero(types: &Types, ty: TyId, out: &mut Vec<u8>, depth: u32) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err("type has no finite zero value".into());
    }
    match types.get(ty) {
        Ty::Null => {}
        Ty::Boolean | Ty::Int | Ty::Long | Ty::Bytes | Ty::String | Ty::Enum { .. } => out.push(0),
        Ty::Array(_) | Ty::Map(_) => out.push(0),
        Ty::Float => out.extend_from_slice(&[0; 4]),
        Ty::Double => out.extend_from_slice(&[0; 8]),
        Ty::Fixed { size, .. } => out.resize(out.len() + size, 0),
        Ty::Union(branches) => {
            let first = *branches.first().ok_or("empty union")?;
            out.push(0);
            zero(types, first, out, depth + 1)?;
        }
        Ty::Record { fields, .. } => {
            for f in fields {
                zero(types, f.ty, out, depth + 1)?;
            }
        }
    }
    Ok(())
}

fn json_integer(v: &Json) -> Option<i64> {
    if let Some(i) = v.as_i64() {
        return Some(i);
    }
    // Accept integral floats (`0.0` for an int), as Java's parser does.
    let f = v.as_f64()?;
    (f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64).then_some(f as i64)
}

fn json_float(v: &Json) -> Option<f64> {
    match v {
        Json::Number(n) => n.as_f64(),
        // JSON has no NaN/Infinity literals; Java and Python accept these strings.
        Json::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

/// Bytes and fixed defaults are JSON strings whose code points 0–255 are the bytes.
fn json_byte_string(v: &Json) -> Option<Vec<u8>> {
    v.as_str()?
        .chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect()
}

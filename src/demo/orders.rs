//! The reference OrderPlaced records as v2 and v1 producers write them, from a deterministic
//! generator: the demo's data, and what `bench archive` writes for the reference schemas.
//!
//! Owns: the record shapes (they follow `proto/orders/order_v{1,2}.avsc`). Must not: depend on
//! anything in the crate but `super::SplitMix`, because the integration tests compile this same
//! file into their support module (`tests/support/orders.rs`, by `#[path]`) instead of the
//! library exporting test fixtures.

use apache_avro::types::Value;

use super::SplitMix;

pub const CITIES: &[&str] = &["Berlin", "Lisbon", "Osaka", "Austin", "Lagos"];
pub const COUNTRIES: &[&str] = &["DE", "PT", "JP", "US", "NG"];
const WORDS: &[&str] = &["alpha", "bravo", "charlie", "delta", "echo"];

fn s(v: &str) -> Value {
    Value::String(v.to_string())
}

fn record(fields: Vec<(&str, Value)>) -> Value {
    Value::Record(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

/// Parts both versions share.
struct Common {
    items: Vec<Value>,
    total: i64,
    qty: i64,
    address: Vec<(&'static str, Value)>,
    tags: Value,
    attributes: Value,
}

/// Common parts of both versions: items, address, tags, attributes.
fn common(rng: &mut SplitMix, gift_wrap: bool) -> Common {
    let mut total = 0i64;
    let mut qty_sum = 0i64;
    let items: Vec<Value> = (0..1 + rng.below(3))
        .map(|_| {
            let qty = 1 + rng.below(5) as i32;
            let unit = 99 + rng.below(9900) as i64;
            total += i64::from(qty) * unit;
            qty_sum += i64::from(qty);
            let mut f = vec![
                (
                    "sku",
                    Value::String(format!("SKU-{:05}", rng.below(100_000))),
                ),
                ("qty", Value::Int(qty)),
                ("unit_cents", Value::Long(unit)),
            ];
            if gift_wrap {
                f.push(("gift_wrap", Value::Boolean(rng.below(10) == 0)));
            }
            record(f)
        })
        .collect();
    let address = vec![
        (
            "line1",
            Value::String(format!("{} {} Street", 1 + rng.below(998), rng.pick(WORDS))),
        ),
        ("city", s(rng.pick(CITIES))),
        (
            "postcode",
            Value::String(format!("{}", 10_000 + rng.below(89_999))),
        ),
        ("country", s(rng.pick(COUNTRIES))),
    ];
    let tags = Value::Array((0..rng.below(3)).map(|_| s(rng.pick(WORDS))).collect());
    let attributes = Value::Map(
        (0..rng.below(3))
            .map(|j| (format!("k{j}"), s(rng.pick(WORDS))))
            .collect(),
    );
    Common {
        items,
        total,
        qty: qty_sum,
        address,
        tags,
        attributes,
    }
}

fn discount(rng: &mut SplitMix) -> Value {
    if rng.below(10) < 7 {
        Value::Union(0, Box::new(Value::Null))
    } else {
        Value::Union(
            1,
            Box::new(Value::Double((rng.below(3000) as f64) / 10_000.0)),
        )
    }
}

/// An OrderPlaced as a v2 producer writes it.
pub fn order_v2(i: usize, rng: &mut SplitMix) -> Value {
    const STATUS: &[&str] = &["PENDING", "PAID", "SHIPPED", "CANCELLED", "REFUNDED"];
    let status = rng.below(5) as u32;
    let Common {
        items,
        total,
        qty,
        mut address,
        tags,
        attributes,
    } = common(rng, true);
    let geo = if rng.below(2) == 0 {
        Value::Union(0, Box::new(Value::Null))
    } else {
        Value::Union(
            1,
            Box::new(record(vec![
                (
                    "lat",
                    Value::Double(rng.below(180_000) as f64 / 1000.0 - 90.0),
                ),
                (
                    "lon",
                    Value::Double(rng.below(360_000) as f64 / 1000.0 - 180.0),
                ),
            ])),
        )
    };
    address.push(("geo", geo));
    let email = if rng.below(5) == 0 {
        Value::Union(0, Box::new(Value::Null))
    } else {
        Value::Union(
            1,
            Box::new(Value::String(format!(
                "user{}@example.com",
                rng.below(1_000_000)
            ))),
        )
    };
    let hash: Vec<u8> = (0..32).map(|_| rng.below(256) as u8).collect();
    let mut fields = head(i, rng, STATUS, status);
    fields.extend([
        ("total_cents", Value::Long(total)),
        ("currency", s(rng.pick(&["USD", "EUR", "GBP"]))),
        ("quantity", Value::Int(qty as i32)),
        ("discount", discount(rng)),
        ("email", email),
        ("shipping", record(address)),
        ("items", Value::Array(items)),
        ("tags", tags),
        ("attributes", attributes),
        ("loyalty_tier", Value::Union(0, Box::new(Value::Null))),
        ("fraud_score", Value::Float(rng.below(1000) as f32 / 1000.0)),
        ("payload_hash", Value::Fixed(32, hash)),
        ("notes", Value::Bytes(Vec::new())),
        ("channel", s(rng.pick(&["web", "ios", "android"]))),
    ]);
    record(fields)
}

/// An OrderPlaced as a not-yet-upgraded v1 producer writes it.
pub fn order_v1(i: usize, rng: &mut SplitMix) -> Value {
    const STATUS: &[&str] = &["PENDING", "PAID", "SHIPPED", "CANCELLED"];
    let status = rng.below(4) as u32;
    let Common {
        items,
        total,
        qty,
        address,
        tags,
        attributes,
    } = common(rng, false);
    let mut fields = head(i, rng, STATUS, status);
    fields.extend([
        ("amount_cents", Value::Long(total)),
        ("currency", s(rng.pick(&["USD", "EUR", "GBP"]))),
        ("quantity", Value::Long(qty)),
        ("discount", discount(rng)),
        ("shipping", record(address)),
        ("items", Value::Array(items)),
        ("tags", tags),
        ("attributes", attributes),
        ("source", s("legacy-checkout")),
    ]);
    record(fields)
}

/// The fields both versions start with.
fn head(
    i: usize,
    rng: &mut SplitMix,
    statuses: &[&str],
    status: u32,
) -> Vec<(&'static str, Value)> {
    vec![
        ("order_id", Value::String(format!("ord-{i:06}"))),
        (
            "customer_id",
            Value::Long(1 + rng.below(1_000_000_000) as i64),
        ),
        (
            "placed_at",
            Value::TimestampMillis(1_700_000_000_000 + i as i64 * 1000),
        ),
        (
            "status",
            Value::Enum(status, statuses[status as usize].to_string()),
        ),
    ]
}

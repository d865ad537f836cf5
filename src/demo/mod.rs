//! `schemabridge demo`: the whole job on an in-process Kafka mock cluster, nothing to install.
//!
//! Starts librdkafka's mock cluster, produces OrderPlaced messages written by upgraded (v2) and
//! not-yet-upgraded (v1) producers plus one unframed message, runs the real gateway with an
//! embedded static schema source, reads the target topic as a v1 consumer would, and prints
//! what arrived. Owns: the demo data and its report; everything else is the production path.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use apache_avro::Schema;
use apache_avro::types::Value;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Message};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::pipeline::{Gateway, RunSummary, dlq_headers};
use crate::registry::{SchemaReference, SchemaSource, StaticDir, StaticEntry};
use crate::wire;

/// Also the reference records `bench archive` writes.
pub(crate) mod orders;

/// Deterministic pseudo-random numbers: the demo prints the same thing every run.
use crate::bench::Rng as SplitMix;
use orders::{CITIES, COUNTRIES, order_v1, order_v2};

const ORDER_V1: &str = include_str!("../../proto/orders/order_v1.avsc");
const ORDER_V1_PROTO: &str = include_str!("../../proto/orders/order_v1.proto");
const ORDER_V2_PROTO: &str = include_str!("../../proto/orders/order_v2.proto");
const MONEY_PROTO: &str = include_str!("../../proto/orders/money.proto");
const COMMON_PROTO: &str = include_str!("../../proto/orders/common.proto");
/// Registry ids of the Protobuf schemas (OrderPlaced v1/v2 reference money and common).
const PB_V1_ID: u32 = 13;
const PB_V2_ID: u32 = 14;
const ORDER_V2: &str = include_str!("../../proto/orders/order_v2.avsc");
/// Registry ids the demo's embedded schema source gives the two versions.
const V1_ID: u32 = 1;
const V2_ID: u32 = 2;

const SOURCE: &str = "orders";
const TARGET: &str = "orders-v1";
const DLQ: &str = "orders-dlq";
const PB_SOURCE: &str = "orders-pb";
const PB_TARGET: &str = "orders-pb-v1";
const PARTITIONS: i32 = 3;

/// The demo's options.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Messages to produce (every tenth is written by a v1 producer).
    pub messages: usize,
    /// How many before/after pairs to print.
    pub samples: usize,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            messages: 1000,
            samples: 2,
        }
    }
}

/// The static schema source the demo uses: subject `orders-value`, v1 = id 1, v2 = id 2.
pub fn schema_source() -> Result<SchemaSource, String> {
    let entry = |id, version, file: &str| StaticEntry {
        id,
        subject: "orders-value".into(),
        version,
        file: file.into(),
        schema_type: None,
        references: Vec::new(),
    };
    let reference = |name: &str, subject: &str| SchemaReference {
        name: name.into(),
        subject: subject.into(),
        version: 1,
    };
    let money = || reference("orders/money.proto", "orders-money");
    let proto = |id, subject: &str, version, references| StaticEntry {
        id,
        subject: subject.into(),
        version,
        file: String::new(),
        schema_type: Some("protobuf".into()),
        references,
    };
    Ok(SchemaSource::Static(StaticDir::from_entries(vec![
        (entry(V1_ID, 1, "order_v1.avsc"), ORDER_V1.to_string()),
        (entry(V2_ID, 2, "order_v2.avsc"), ORDER_V2.to_string()),
        (
            proto(11, "orders-money", 1, vec![]),
            MONEY_PROTO.to_string(),
        ),
        (
            proto(12, "orders-common", 1, vec![money()]),
            COMMON_PROTO.to_string(),
        ),
        (
            proto(PB_V1_ID, "orders-pb-value", 1, vec![money()]),
            ORDER_V1_PROTO.to_string(),
        ),
        (
            proto(
                PB_V2_ID,
                "orders-pb-value",
                2,
                vec![reference("orders/common.proto", "orders-common"), money()],
            ),
            ORDER_V2_PROTO.to_string(),
        ),
    ])?))
}

/// The gateway config the demo runs with, against `bootstrap`.
pub fn config(bootstrap: &str) -> Result<Config, String> {
    let text = format!(
        r#"
source:
  bootstrap_servers: "{bootstrap}"
group_id: schemabridge-demo
registry:
  static_dir: embedded   # replaced by the embedded source
pipeline:
  commit_interval_ms: 500
routes:
  - name: orders
    source: {{ topics: [{SOURCE}] }}
    target: {TARGET}
    value:
      format: avro
      reader: {{ subject: orders-value, version: 1 }}
      on_error: dlq
      dlq: {DLQ}
  - name: orders-protobuf
    source: {{ topics: [{PB_SOURCE}] }}
    target: {PB_TARGET}
    value:
      format: protobuf
      reader: {{ subject: orders-pb-value, version: 1, message: orders.v1.OrderPlaced }}
      unknown_fields: preserve
      dlq: {DLQ}
"#
    );
    Config::parse(&text).map_err(|e| e.to_string())
}

/// Runs the demo and returns its printed report.
pub async fn run(opts: DemoOptions) -> Result<String, String> {
    let started = Instant::now();
    let cluster = MockCluster::new(1).map_err(|e| format!("cannot start the mock cluster: {e}"))?;
    let bootstrap = cluster.bootstrap_servers();
    for (topic, partitions) in [
        (SOURCE, PARTITIONS),
        (TARGET, PARTITIONS),
        (DLQ, 1),
        (PB_SOURCE, PARTITIONS),
        (PB_TARGET, PARTITIONS),
    ] {
        cluster
            .create_topic(topic, partitions, 1)
            .map_err(|e| format!("cannot create topic {topic}: {e}"))?;
    }
    let v1 = Schema::parse_str(ORDER_V1).map_err(|e| e.to_string())?;
    let v2 = Schema::parse_str(ORDER_V2).map_err(|e| e.to_string())?;

    // What the producers write: mostly v2, every tenth from a v1 producer, one unframed.
    let mut rng = SplitMix(42);
    let mut inputs: HashMap<String, (u32, Value)> = HashMap::new();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .map_err(|e| e.to_string())?;
    let mut sends = Vec::with_capacity(opts.messages + 1);
    for i in 0..opts.messages {
        let (id, schema, value) = if i % 10 == 9 {
            (V1_ID, &v1, order_v1(i, &mut rng))
        } else {
            (V2_ID, &v2, order_v2(i, &mut rng))
        };
        let order_id = format!("ord-{i:06}");
        let mut bytes = Vec::with_capacity(256);
        wire::write_header(id, &mut bytes);
        bytes.extend(encode(schema, value.clone())?);
        inputs.insert(order_id.clone(), (id, value));
        let record = FutureRecord::to(SOURCE).key(&order_id).payload(&bytes);
        sends.push(
            producer
                .send_result(record)
                .map_err(|(e, _)| e.to_string())?,
        );
    }
    let junk = FutureRecord::to(SOURCE)
        .key("not-avro")
        .payload("{\"order_id\": \"written as JSON by mistake\"}");
    sends.push(producer.send_result(junk).map_err(|(e, _)| e.to_string())?);
    for s in sends {
        s.await
            .map_err(|_| "producer dropped".to_string())?
            .map_err(|(e, _)| e.to_string())?;
    }
    // Protobuf producers on their own topic: v2 OrderPlaced, every one with v2-only fields set.
    let (pb_v1, pb_v2) = (pb_descriptor("v1")?, pb_descriptor("v2")?);
    let pb_count = opts.messages / 4;
    let mut pb_inputs: HashMap<String, prost_reflect::DynamicMessage> = HashMap::new();
    let mut sends = Vec::with_capacity(pb_count);
    for i in 0..pb_count {
        let key = format!("pb-ord-{i:06}");
        let msg = pb_order_v2(&pb_v2, &key, &mut rng)?;
        let mut bytes = Vec::with_capacity(256);
        wire::write_header(PB_V2_ID, &mut bytes);
        wire::write_message_indexes(&wire::MessageIndexes::first(), &mut bytes);
        prost::Message::encode(&msg, &mut bytes).map_err(|e| e.to_string())?;
        pb_inputs.insert(key.clone(), msg);
        let record = FutureRecord::to(PB_SOURCE).key(&key).payload(&bytes);
        sends.push(
            producer
                .send_result(record)
                .map_err(|(e, _)| e.to_string())?,
        );
    }
    for s in sends {
        s.await
            .map_err(|_| "producer dropped".to_string())?
            .map_err(|(e, _)| e.to_string())?;
    }
    let produced = opts.messages + 1 + pb_count;

    // The gateway, exactly as `schemabridge run` runs it.
    let cfg = config(&bootstrap)?;
    let shutdown = CancellationToken::new();
    let gateway = Gateway::with_schema_source(cfg, schema_source()?);
    let task = tokio::spawn(gateway.run(shutdown.clone()));

    // A v1 consumer reads the target topic; the DLQ is read too so every input is accounted for.
    let reader: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "demo-v1-consumer")
        .set("auto.offset.reset", "earliest")
        .create()
        .map_err(|e| e.to_string())?;
    reader
        .subscribe(&[TARGET, DLQ, PB_TARGET])
        .map_err(|e| e.to_string())?;
    let mut outputs: Vec<(String, u32, Value)> = Vec::new();
    let mut dead: Vec<(String, String)> = Vec::new();
    let mut pb = PbReport::default();
    let deadline = Instant::now() + Duration::from_secs(60);
    while outputs.len() + dead.len() + pb.received < produced {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = match tokio::time::timeout(left, reader.recv()).await {
            Err(_) => break,
            Ok(m) => m.map_err(|e| e.to_string())?,
        };
        let key = String::from_utf8_lossy(msg.key().unwrap_or_default()).into_owned();
        let payload = msg.payload().unwrap_or_default();
        if msg.topic() == DLQ {
            let why = header(&msg, dlq_headers::ERROR).unwrap_or_default();
            dead.push((key, why));
            continue;
        }
        if msg.topic() == PB_TARGET {
            pb.check(&key, payload, &pb_inputs, &pb_v1, &pb_v2)?;
            continue;
        }
        let framed = wire::parse(payload).map_err(|e| format!("target message {key}: {e}"))?;
        let value = decode(&v1, framed.payload)
            .map_err(|e| format!("target message {key} does not decode as v1: {e}"))?;
        outputs.push((key, framed.schema_id, value));
    }
    shutdown.cancel();
    let summary: RunSummary = task
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    producer
        .flush(Duration::from_secs(5))
        .map_err(|e| e.to_string())?;

    let arrived = outputs.len() + dead.len() + pb.received;
    if arrived != produced {
        return Err(format!(
            "only {arrived} of {produced} messages arrived within 60 s"
        ));
    }
    let mut text = report(&opts, &inputs, &outputs, &dead, &summary, started.elapsed())?;
    text.push_str(&pb.report());
    Ok(text)
}

// apache-avro 0.22 deprecates these for a builder API; the value path is only used for demo data.
#[allow(deprecated)]
fn encode(schema: &Schema, value: Value) -> Result<Vec<u8>, String> {
    apache_avro::to_avro_datum(schema, value).map_err(|e| e.to_string())
}

#[allow(deprecated)]
fn decode(schema: &Schema, mut bytes: &[u8]) -> Result<Value, String> {
    apache_avro::from_avro_datum(schema, &mut bytes, None).map_err(|e| e.to_string())
}

fn header(msg: &impl Message, name: &str) -> Option<String> {
    use rdkafka::message::Headers;
    msg.headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

fn report(
    opts: &DemoOptions,
    inputs: &HashMap<String, (u32, Value)>,
    outputs: &[(String, u32, Value)],
    dead: &[(String, String)],
    summary: &RunSummary,
    elapsed: Duration,
) -> Result<String, String> {
    use std::fmt::Write;
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(
        w,
        "schemabridge demo: topic `{SOURCE}` (v2 and v1 producers) → `{TARGET}` (v1 consumers), \
         on an in-process Kafka mock cluster\n"
    );
    let mut by_writer: BTreeMap<u32, usize> = BTreeMap::new();
    let mut reader_ids: BTreeMap<u32, usize> = BTreeMap::new();
    for (key, reader_id, _) in outputs {
        let (writer_id, _) = inputs
            .get(key)
            .ok_or_else(|| format!("target has a message with unknown key {key}"))?;
        *by_writer.entry(*writer_id).or_default() += 1;
        *reader_ids.entry(*reader_id).or_default() += 1;
    }
    let _ = writeln!(
        w,
        "  produced     {:>6}  messages on `{SOURCE}`",
        inputs.len() + 1
    );
    for (id, n) in &by_writer {
        let _ = writeln!(
            w,
            "  delivered    {n:>6}  written with schema id {id} (v{}) → read as id {V1_ID} (v1)",
            if *id == V2_ID { 2 } else { 1 }
        );
    }
    for (key, why) in dead {
        let _ = writeln!(w, "  dead-letter  {:>6}  key {key}: {why}", 1);
    }
    let _ = writeln!(
        w,
        "  gateway      (both routes) consumed {} · forwarded {} · dead-lettered {} · skipped {} · {:.1} s",
        summary.consumed,
        summary.forwarded,
        summary.dead_lettered,
        summary.skipped,
        elapsed.as_secs_f64()
    );
    if !summary.lossy_fields.is_empty() {
        let _ = writeln!(
            w,
            "\n  v2 fields the v1 consumer does not see, and in how many messages they held data:"
        );
        for (field, n) in &summary.lossy_fields {
            let _ = writeln!(w, "    {field:<40} {n:>6}");
        }
    }
    if reader_ids.keys().any(|id| *id != V1_ID) {
        return Err(format!(
            "target messages framed with ids {:?}, expected only {V1_ID}",
            reader_ids.keys()
        ));
    }

    let _ = writeln!(
        w,
        "\nBefore (as the v2 producer wrote it) and after (as the v1 consumer reads it):"
    );
    let samples = outputs
        .iter()
        .filter(|(k, _, _)| inputs.get(k).is_some_and(|(id, _)| *id == V2_ID))
        .take(opts.samples);
    for (key, _, after) in samples {
        let before = inputs
            .get(key)
            .map(|(_, v)| v.clone())
            .unwrap_or(Value::Null);
        let _ = writeln!(
            w,
            "\n  {key}\n    v2: {}\n    v1: {}",
            json(before),
            json(after.clone())
        );
    }
    let _ = writeln!(
        w,
        "\nThe v1 consumer sees `amount_cents` (the v2 `total_cents`, via its alias), `quantity` as a long,\n\
         REFUNDED as its default PENDING, and `source` filled with its default; v2-only fields are not\n\
         in its schema (set `on_lossy: dlq` on a route to refuse messages whose dropped fields held data)."
    );
    Ok(out)
}

fn json(v: Value) -> String {
    serde_json::Value::try_from(v)
        .map(|j| j.to_string())
        .unwrap_or_else(|e| format!("<{e}>"))
}

/// The Protobuf OrderPlaced descriptor of `v1` or `v2`, built as the gateway builds it.
fn pb_descriptor(version: &str) -> Result<prost_reflect::MessageDescriptor, String> {
    let (name, text) = match version {
        "v1" => ("orders/order_v1.proto", ORDER_V1_PROTO),
        _ => ("orders/order_v2.proto", ORDER_V2_PROTO),
    };
    let refs = [
        ("orders/money.proto".to_string(), MONEY_PROTO.to_string()),
        ("orders/common.proto".to_string(), COMMON_PROTO.to_string()),
    ];
    let pool = crate::protobuf::build_pool(name, text, &refs).map_err(|e| e.to_string())?;
    crate::protobuf::message_for_indexes(&pool, name, &wire::MessageIndexes::first())
        .map_err(|e| e.to_string())
}

/// A Protobuf OrderPlaced as a v2 producer writes it.
fn pb_order_v2(
    desc: &prost_reflect::MessageDescriptor,
    order_id: &str,
    rng: &mut SplitMix,
) -> Result<prost_reflect::DynamicMessage, String> {
    let qty = 1 + rng.below(5);
    let unit = 99 + rng.below(9900);
    let json = serde_json::json!({
        "orderId": order_id,
        "customerId": (1 + rng.below(1_000_000_000)).to_string(),
        "placedAt": "2026-11-24T18:00:00Z",
        "status": rng.pick(&["PENDING", "PAID", "SHIPPED", "REFUNDED"]),
        "totalCents": (qty * unit).to_string(),
        "currency": rng.pick(&["USD", "EUR", "GBP"]),
        "quantity": qty,
        "shipping": {"line1": "1 Main Street", "city": rng.pick(CITIES), "postcode": "10115",
                     "country": rng.pick(COUNTRIES),
                     "geo": {"lat": 52.52, "lon": 13.405}},
        "items": [{"sku": format!("SKU-{:05}", rng.below(100_000)), "qty": qty,
                   "unitCents": unit.to_string(), "giftWrap": rng.below(2) == 0}],
        "email": format!("user{}@example.com", rng.below(1_000_000)),
        "channel": "MOBILE",
        "fraudScore": 0.25,
    });
    let text = json.to_string();
    let mut de = serde_json::Deserializer::from_str(&text);
    let msg = prost_reflect::DynamicMessage::deserialize(desc.clone(), &mut de)
        .map_err(|e| e.to_string())?;
    // As a consumer decodes it (a default-valued field parsed from JSON is not "set" on the wire).
    let bytes = prost::Message::encode_to_vec(&msg);
    prost_reflect::DynamicMessage::decode(desc.clone(), &bytes[..]).map_err(|e| e.to_string())
}

/// What the Protobuf route delivered, checked as a v1 consumer that re-encodes would see it.
#[derive(Default)]
struct PbReport {
    received: usize,
    /// v1 re-encodings that still carried every v2 field (the unknown-field problem avoided).
    preserved: usize,
    sample: Option<(String, String, String)>,
}

impl PbReport {
    fn check(
        &mut self,
        key: &str,
        payload: &[u8],
        inputs: &HashMap<String, prost_reflect::DynamicMessage>,
        v1: &prost_reflect::MessageDescriptor,
        v2: &prost_reflect::MessageDescriptor,
    ) -> Result<(), String> {
        use prost::Message as _;
        self.received += 1;
        let framed = wire::parse(payload).map_err(|e| format!("{key}: {e}"))?;
        if framed.schema_id != PB_V1_ID {
            return Err(format!(
                "{key}: framed with id {}, expected {PB_V1_ID}",
                framed.schema_id
            ));
        }
        let (_, body) =
            wire::parse_message_indexes(framed.payload).map_err(|e| format!("{key}: {e}"))?;
        let as_v1 = prost_reflect::DynamicMessage::decode(v1.clone(), body)
            .map_err(|e| format!("{key} does not decode as v1: {e}"))?;
        let re_encoded = as_v1.encode_to_vec();
        let back = prost_reflect::DynamicMessage::decode(v2.clone(), &re_encoded[..])
            .map_err(|e| e.to_string())?;
        let original = inputs
            .get(key)
            .ok_or_else(|| format!("unknown key {key}"))?;
        if &back == original {
            self.preserved += 1;
        }
        if self.sample.is_none() {
            let json = |m: &prost_reflect::DynamicMessage| {
                serde_json::to_string(m).unwrap_or_else(|e| format!("<{e}>"))
            };
            self.sample = Some((key.to_string(), json(original), json(&as_v1)));
        }
        Ok(())
    }

    fn report(&self) -> String {
        let mut s = format!(
            "\nProtobuf route `{PB_SOURCE}` → `{PB_TARGET}` (OrderPlaced .proto v2 with references → v1, unknown_fields: preserve):\n\n  delivered    {:>6}  written with schema id {PB_V2_ID} (v2) → read as id {PB_V1_ID} (v1)\n  preserved    {:>6}  a v1 consumer that decodes and re-encodes still carries every v2 field\n",
            self.received, self.preserved
        );
        if let Some((key, v2, v1)) = &self.sample {
            s.push_str(&format!("\n  {key}\n    v2: {v2}\n    v1: {v1}\n"));
        }
        s
    }
}

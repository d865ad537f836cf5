//! Unit tests: each transcoding rule, checked by decoding the output with prost-reflect's
//! `DynamicMessage` (an independent protobuf parser) and asserting on the decoded content.

use prost::Message as _;
use prost_reflect::{DynamicMessage, MessageDescriptor, ReflectMessage, Value};

use super::*;
use crate::wire::MessageIndexes;

const MONEY: &str = include_str!("../../proto/orders/money.proto");
const COMMON: &str = include_str!("../../proto/orders/common.proto");
const V1: &str = include_str!("../../proto/orders/order_v1.proto");
const V2: &str = include_str!("../../proto/orders/order_v2.proto");
const V1_NAME: &str = "orders/order_v1.proto";
const V2_NAME: &str = "orders/order_v2.proto";

fn refs() -> Vec<(String, String)> {
    vec![
        ("orders/money.proto".to_owned(), MONEY.to_owned()),
        ("orders/common.proto".to_owned(), COMMON.to_owned()),
    ]
}

fn v1() -> MessageDescriptor {
    let pool = build_pool(V1_NAME, V1, &refs()).unwrap();
    message_for_indexes(&pool, V1_NAME, &MessageIndexes::first()).unwrap()
}

fn v2() -> MessageDescriptor {
    let pool = build_pool(V2_NAME, V2, &refs()).unwrap();
    message_for_indexes(&pool, V2_NAME, &MessageIndexes::first()).unwrap()
}

/// A message from inline `.proto` text (file `t.proto`, no references).
fn inline(text: &str, name: &str) -> MessageDescriptor {
    let pool = build_pool("t.proto", text, &[]).unwrap();
    pool.get_message_by_name(name)
        .unwrap_or_else(|| panic!("no message {name}"))
}

fn from_json(desc: &MessageDescriptor, json: &str) -> DynamicMessage {
    let mut de = serde_json::Deserializer::from_str(json);
    DynamicMessage::deserialize(desc.clone(), &mut de).unwrap()
}

fn decode(desc: &MessageDescriptor, bytes: &[u8]) -> DynamicMessage {
    DynamicMessage::decode(desc.clone(), bytes).unwrap()
}

fn json_of(msg: &DynamicMessage) -> serde_json::Value {
    serde_json::to_value(msg).unwrap()
}

fn run(plan: &Plan, input: &[u8]) -> (Vec<u8>, Vec<String>) {
    let mut out = Vec::new();
    let loss = plan.transcode(input, &mut out).unwrap();
    let fields = loss.fields().map(str::to_owned).collect();
    (out, fields)
}

const FULL_V2: &str = r#"{
  "orderId": "o-1", "customerId": "42", "placedAt": "2024-05-01T12:00:00Z",
  "status": "REFUNDED", "totalCents": "1999", "currency": "EUR", "quantity": -3,
  "couponCode": "SPRING",
  "shipping": {"line1": "1 Main St", "city": "Springfield", "postcode": "12345",
               "country": "US", "geo": {"lat": 1.5, "lon": -2.25}},
  "items": [
    {"sku": "A", "qty": 2, "unitCents": "500", "giftWrap": true,
     "components": [{"sku": "A1", "qty": 1, "giftWrap": true,
                     "components": [{"sku": "A1a", "giftWrap": true}]}]},
    {"sku": "B", "qty": 1, "unitCents": "999"}
  ],
  "tags": ["x", "y"], "attributes": {"k": "v", "k2": "v2"},
  "email": "a@example.com", "loyaltyTier": "gold", "fraudScore": 0.5,
  "payloadHash": "AAEC", "notes": "bm90ZQ==", "channel": "MOBILE",
  "adjustments": ["-5", "7"],
  "refund": {"amount": {"currency": "EUR", "cents": "100"}, "reason": "late"},
  "warehouseIds": [1, 2, 300]
}"#;

/// v2 → v1, Preserve: v1 sees its fields; v1 re-encoding keeps the v2-only bytes, which v2
/// decodes back to the original message.
#[test]
fn v2_to_v1_preserve_keeps_unknown_fields_through_a_v1_reencode() {
    let (w, r) = (v2(), v1());
    let original = from_json(&w, FULL_V2);
    let plan = compile(&w, &r, UnknownFields::Preserve).unwrap();
    assert!(!plan.is_identity());
    let (out, lossy) = run(&plan, &original.encode_to_vec());

    let as_v1 = decode(&r, &out);
    let j = json_of(&as_v1);
    assert_eq!(j["orderId"], "o-1");
    assert_eq!(j["quantity"], "-3", "int32 -3 read as int64");
    assert_eq!(j["status"], 5, "unknown enum value kept as its number");
    assert_eq!(j["shipping"]["city"], "Springfield");
    assert_eq!(j["items"][0]["components"][0]["sku"], "A1");
    assert_eq!(j["attributes"]["k2"], "v2");
    assert_eq!(j["warehouseIds"], serde_json::json!([1, 2, 300]));
    assert!(j.get("discountPercent").is_none() && j.get("discountAmount").is_none());
    assert!(as_v1.unknown_fields().count() > 0);

    // A v1 consumer re-encodes: nothing v2 wrote is lost.
    let reencoded = as_v1.encode_to_vec();
    assert_eq!(decode(&w, &reencoded), original);

    for f in [
        "email",
        "shipping.geo",
        "items.gift_wrap",
        "coupon_code",
        "channel",
        "adjustments",
        "refund",
        "status",
    ] {
        assert!(lossy.iter().any(|l| l == f), "{f} not in {lossy:?}");
    }
}

/// v2 → v1, Drop: the v2-only fields are gone at every depth (nested, repeated, recursive).
#[test]
fn v2_to_v1_drop_removes_unknown_fields_recursively() {
    let (w, r) = (v2(), v1());
    let original = from_json(&w, FULL_V2);
    let plan = compile(&w, &r, UnknownFields::Drop).unwrap();
    let mut out = Vec::new();
    let loss = plan.transcode(&original.encode_to_vec(), &mut out).unwrap();
    assert!(loss.is_lossy());
    assert!(loss.fields().any(|f| f == "items.gift_wrap"));

    let as_v1 = decode(&r, &out);
    assert_eq!(as_v1.unknown_fields().count(), 0);
    let back = json_of(&decode(&w, &as_v1.encode_to_vec()));
    for gone in [
        "email",
        "loyaltyTier",
        "fraudScore",
        "payloadHash",
        "notes",
        "channel",
        "adjustments",
        "refund",
        "couponCode",
    ] {
        assert!(back.get(gone).is_none(), "{gone} survived: {back}");
    }
    assert!(back["shipping"].get("geo").is_none());
    assert_eq!(back["shipping"]["postcode"], "12345");
    let item = &back["items"][0];
    assert!(item.get("giftWrap").is_none());
    assert!(item["components"][0].get("giftWrap").is_none());
    assert!(
        item["components"][0]["components"][0]
            .get("giftWrap")
            .is_none()
    );
    assert_eq!(item["components"][0]["components"][0]["sku"], "A1a");
    // Everything v1 knows is intact: v1's view is the same as under Preserve.
    let preserve = compile(&w, &r, UnknownFields::Preserve).unwrap();
    let (kept, _) = run(&preserve, &original.encode_to_vec());
    assert_eq!(json_of(&decode(&r, &kept)), json_of(&as_v1));
}

#[test]
fn dropped_fields_name_paths() {
    let plan = compile(&v2(), &v1(), UnknownFields::Preserve).unwrap();
    let dropped = plan.dropped_fields();
    for f in [
        "coupon_code",
        "shipping.geo",
        "items.gift_wrap",
        "email",
        "loyalty_tier",
        "fraud_score",
        "payload_hash",
        "notes",
        "channel",
        "adjustments",
        "refund",
    ] {
        assert!(dropped.iter().any(|d| d == f), "{f} not in {dropped:?}");
    }
    assert_eq!(dropped.len(), 11, "{dropped:?}");
    let back = compile(&v1(), &v2(), UnknownFields::Preserve).unwrap();
    assert_eq!(back.dropped_fields(), ["source"]);
}

/// v1 → v2: the new fields are absent/default, v1's `source` (reserved in v2) is unknown.
#[test]
fn v1_to_v2_new_fields_are_default() {
    let (w, r) = (v1(), v2());
    let msg = from_json(
        &w,
        r#"{"orderId": "o-9", "quantity": "7", "status": "PAID", "source": "pos",
            "shipping": {"city": "Paris"}, "items": [{"sku": "S", "qty": 3}],
            "discountAmount": {"currency": "EUR", "cents": "50"}}"#,
    );
    let plan = compile(&w, &r, UnknownFields::Drop).unwrap();
    let mut out = Vec::new();
    let loss = plan.transcode(&msg.encode_to_vec(), &mut out).unwrap();
    assert_eq!(loss.fields().collect::<Vec<_>>(), ["source"]);
    let j = json_of(&decode(&r, &out));
    assert_eq!(j["orderId"], "o-9");
    assert_eq!(j["quantity"], 7);
    assert_eq!(j["status"], "PAID");
    assert_eq!(j["discountAmount"]["cents"], "50");
    assert_eq!(j["items"][0]["qty"], 3);
    for absent in ["email", "channel", "refund", "fraudScore", "adjustments"] {
        assert!(j.get(absent).is_none(), "{absent}");
    }
    assert!(j["shipping"].get("geo").is_none());
}

#[test]
fn int64_read_as_int32_is_reported_narrowed() {
    let (w, r) = (v1(), v2());
    let plan = compile(&w, &r, UnknownFields::Preserve).unwrap();
    let small = from_json(&w, r#"{"quantity": "-5"}"#).encode_to_vec();
    let mut out = Vec::new();
    assert!(!plan.transcode(&small, &mut out).unwrap().is_lossy());
    let big = from_json(&w, r#"{"quantity": "5000000000"}"#).encode_to_vec();
    out.clear();
    let loss = plan.transcode(&big, &mut out).unwrap();
    let sites: Vec<_> = loss.sites().map(|s| (s.path(), s.kind())).collect();
    assert_eq!(sites, [("quantity", LossKind::Narrowed)]);
    // The varint is copied; the reader truncates like C++ does.
    assert_eq!(out, big);
    let j = json_of(&decode(&r, &out));
    assert_eq!(j["quantity"], 5_000_000_000i64 as i32);
}

#[test]
fn identity_copies_bytes() {
    let w = v2();
    let plan = compile(&w, &v2(), UnknownFields::Drop).unwrap();
    assert!(plan.is_identity());
    assert!(plan.dropped_fields().is_empty());
    let bytes = from_json(&w, FULL_V2).encode_to_vec();
    let (out, lossy) = run(&plan, &bytes);
    assert_eq!(out, bytes);
    assert!(lossy.is_empty());
    // Renamed fields and packages do not matter; numbers and types do.
    let a = inline(
        "syntax = \"proto3\"; package a; message M { int32 x = 1; M next = 2; }",
        "a.M",
    );
    let b = inline(
        "syntax = \"proto3\"; package b; message N { int32 y = 1; N more = 2; }",
        "b.N",
    );
    assert!(
        compile(&a, &b, UnknownFields::Preserve)
            .unwrap()
            .is_identity()
    );
}

#[test]
fn plans_are_shareable_across_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Plan>();
    send_sync::<Lossiness<'static>>();
    send_sync::<TranscodeError>();
    send_sync::<PlanError>();
    send_sync::<SchemaError>();
}

#[test]
fn nothing_lossy_means_no_allocation() {
    let (w, r) = (v2(), v1());
    let plan = compile(&w, &r, UnknownFields::Drop).unwrap();
    let msg = from_json(
        &w,
        r#"{"orderId": "o", "status": "PAID", "fraudScore": 0, "notes": "",
            "shipping": {"city": "c"}, "items": [{"sku": "s", "giftWrap": false}]}"#,
    );
    let mut out = Vec::new();
    let loss = plan.transcode(&msg.encode_to_vec(), &mut out).unwrap();
    assert!(!loss.is_lossy(), "{:?}", loss.fields().collect::<Vec<_>>());
    assert_eq!(loss.hit.capacity(), 0);
    // An optional (presence) field set to its default still carries information.
    let msg = from_json(&w, r#"{"email": ""}"#);
    out.clear();
    let loss = plan.transcode(&msg.encode_to_vec(), &mut out).unwrap();
    assert_eq!(loss.fields().collect::<Vec<_>>(), ["email"]);
    // Explicitly encoded zeros of dropped fields without presence are not data.
    let mut bytes = Vec::new();
    key(17, 5, &mut bytes); // fraud_score = 0.0
    bytes.extend_from_slice(&[0; 4]);
    key(16, 2, &mut bytes); // loyalty_tier = ""
    bytes.push(0);
    key(21, 0, &mut bytes); // channel = 0, overlong
    bytes.extend_from_slice(&[0x80, 0x00]);
    out.clear();
    assert!(!plan.transcode(&bytes, &mut out).unwrap().is_lossy());
    assert!(out.is_empty());
    bytes[5] = 0x80; // fraud_score = -0.0 (little-endian sign bit) is not the default
    assert_eq!(
        plan.transcode(&bytes, &mut out)
            .unwrap()
            .fields()
            .collect::<Vec<_>>(),
        ["fraud_score"]
    );
}

#[test]
fn references_resolve_transitively_and_missing_ones_are_named() {
    // order_v2 imports common.proto, which imports money.proto.
    let w = v2();
    let refund = w.get_field_by_name("refund").unwrap();
    let prost_reflect::Kind::Message(refund) = refund.kind() else {
        panic!()
    };
    assert_eq!(refund.full_name(), "orders.common.Refund");
    let only_common = vec![("orders/common.proto".to_owned(), COMMON.to_owned())];
    let err = build_pool(V2_NAME, V2, &only_common)
        .unwrap_err()
        .to_string();
    assert!(err.contains("orders/money.proto"), "{err}");
    let err = build_pool("bad.proto", "syntax = \"proto3\"; message {", &[])
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("protobuf schema bad.proto:"), "{err}");
    assert!(build_pool("", V2, &refs()).is_err());
}

#[test]
fn message_indexes_map_both_ways_and_skip_map_entries() {
    let pool = build_pool(V1_NAME, V1, &refs()).unwrap();
    let at = |idx: &[i32]| message_for_indexes(&pool, V1_NAME, &MessageIndexes(idx.to_vec()));
    assert_eq!(at(&[0]).unwrap().full_name(), "orders.v1.OrderPlaced");
    assert_eq!(at(&[]).unwrap().full_name(), "orders.v1.OrderPlaced");
    assert_eq!(at(&[1]).unwrap().full_name(), "orders.v1.OrderCancelled");
    assert_eq!(
        at(&[0, 0]).unwrap().full_name(),
        "orders.v1.OrderPlaced.Address"
    );
    assert_eq!(
        at(&[0, 1]).unwrap().full_name(),
        "orders.v1.OrderPlaced.LineItem"
    );
    // AttributesEntry (the map entry) is a nested type, but not an indexed one.
    let err = at(&[0, 2]).unwrap_err().to_string();
    assert!(
        err.contains("[0, 2]") && err.contains("has 2 messages"),
        "{err}"
    );
    assert!(at(&[2]).is_err());
    assert!(at(&[-1]).is_err());
    for idx in [vec![0], vec![1], vec![0, 0], vec![0, 1]] {
        let m = at(&idx).unwrap();
        assert_eq!(indexes_for_message(&m), MessageIndexes(idx));
    }
    // A message declared after a map field keeps its declared position.
    let text = "syntax = \"proto3\"; package t;
        message Top { map<string, int32> m = 1; message A {} map<int32, A> n = 2; message B {} }";
    let pool = build_pool("t.proto", text, &[]).unwrap();
    let b = message_for_indexes(&pool, "t.proto", &MessageIndexes(vec![0, 1])).unwrap();
    assert_eq!(b.full_name(), "t.Top.B");
    assert_eq!(indexes_for_message(&b), MessageIndexes(vec![0, 1]));
    assert!(matches!(
        message_for_indexes(&pool, "other.proto", &MessageIndexes::first()),
        Err(SchemaError::FileNotFound { .. })
    ));
}

#[test]
fn incompatible_type_is_a_plan_error_naming_the_field() {
    let writer_text = V2.replace("int32 quantity = 7;", "string quantity = 7;");
    let pool = build_pool(V2_NAME, &writer_text, &refs()).unwrap();
    let w = message_for_indexes(&pool, V2_NAME, &MessageIndexes::first()).unwrap();
    let err = compile(&w, &v1(), UnknownFields::Preserve).unwrap_err();
    assert_eq!(
        err.to_string(),
        "orders.v1.OrderPlaced.quantity (field 7): writer type string cannot be read as reader type int64"
    );
}

const SCALARS_W: &str = r#"syntax = "proto3"; package w;
message Inner { string s = 1; int32 extra = 2; }
message M {
  int64 a = 1; uint32 b = 2; sint64 c = 3; fixed32 d = 4; bytes e = 5; Inner f = 6;
  repeated int64 g = 7; int32 h = 8; bytes i = 9; string j = 10; repeated int32 k = 11 [packed = false];
  repeated Inner l = 12; map<string, Inner> mm = 13; repeated sint32 n = 14; float o = 15;
  Color p = 16; uint64 q = 17;
}
enum Color { RED = 0; GREEN = 1; BLUE = 2; }
"#;

const SCALARS_R: &str = r#"syntax = "proto3"; package r;
message Inner { string s = 1; }
message M {
  int32 a = 1; int32 b = 2; sint32 c = 3; sfixed32 d = 4; string e = 5; bytes f = 6;
  repeated int32 g = 7; bool h = 8; Inner i = 9; bytes j = 10; repeated int32 k = 11;
  Inner l = 12; map<string, Inner> mm = 13; repeated sint64 n = 14; float o = 15;
  int32 p = 16; Color q = 17;
}
enum Color { RED = 0; GREEN = 1; }
"#;

fn scalars() -> (MessageDescriptor, MessageDescriptor) {
    (inline(SCALARS_W, "w.M"), inline(SCALARS_R, "r.M"))
}

fn site_kinds(plan: &Plan, w: &MessageDescriptor, json: &str) -> Vec<(String, LossKind)> {
    let bytes = from_json(w, json).encode_to_vec();
    let mut out = Vec::new();
    let loss = plan.transcode(&bytes, &mut out).unwrap();
    loss.sites()
        .map(|s| (s.path().to_owned(), s.kind()))
        .collect()
}

#[test]
fn compatible_scalar_changes_read_correctly() {
    let (w, r) = scalars();
    let plan = compile(&w, &r, UnknownFields::Drop).unwrap();
    let msg = from_json(
        &w,
        r#"{"a": "-7", "b": 12, "c": "-9", "d": 5, "e": "aGk=", "f": {"s": "in", "extra": 4},
            "g": ["1", "-2"], "h": 1, "i": "CgJoaQ==", "j": "txt", "k": [3, 4],
            "l": [{"s": "l1", "extra": 1}, {"s": "l2"}],
            "mm": {"x": {"s": "mx", "extra": 9}}, "n": [-1, 2], "o": 1.25, "p": "BLUE", "q": "1"}"#,
    );
    let mut out = Vec::new();
    let loss = plan.transcode(&msg.encode_to_vec(), &mut out).unwrap();
    let lossy: Vec<_> = loss.sites().map(|s| (s.path(), s.kind())).collect();
    // f: message read as bytes (copied whole, `extra` included); l: repeated into singular.
    assert_eq!(
        lossy,
        [
            ("l.extra", LossKind::Dropped),
            ("l", LossKind::RepeatedIntoSingular),
            ("mm.value.extra", LossKind::Dropped)
        ]
    );
    let j = json_of(&decode(&r, &out));
    assert_eq!(j["a"], -7);
    assert_eq!(j["b"], 12);
    assert_eq!(j["c"], -9);
    assert_eq!(j["d"], 5);
    assert_eq!(j["e"], "hi");
    let inner_w = w.parent_pool().get_message_by_name("w.Inner").unwrap();
    let f = decode(&r, &out)
        .get_field_by_name("f")
        .unwrap()
        .into_owned();
    let Value::Bytes(f) = f else { panic!() };
    assert_eq!(json_of(&decode(&inner_w, &f))["extra"], 4);
    assert_eq!(j["g"], serde_json::json!([1, -2]));
    assert_eq!(j["h"], true);
    assert_eq!(j["i"]["s"], "hi");
    assert_eq!(j["j"], "dHh0");
    assert_eq!(j["k"], serde_json::json!([3, 4]));
    assert_eq!(j["l"]["s"], "l2", "the last element wins");
    assert_eq!(j["mm"]["x"]["s"], "mx");
    assert_eq!(j["n"], serde_json::json!(["-1", "2"]));
    assert_eq!(j["o"], 1.25);
    assert_eq!(j["p"], 2);
    assert_eq!(j["q"], "GREEN");
    // The dropped map-value field is gone from the re-encoded bytes.
    assert!(decode(&r, &out).unknown_fields().next().is_none());
}

#[test]
fn narrowing_and_reinterpretation_are_reported() {
    let (w, r) = scalars();
    let plan = compile(&w, &r, UnknownFields::Preserve).unwrap();
    let cases: &[(&str, &str, LossKind)] = &[
        (r#"{"a": "4294967296"}"#, "a", LossKind::Narrowed),
        (r#"{"b": 3000000000}"#, "b", LossKind::Narrowed),
        (r#"{"c": "-3000000000"}"#, "c", LossKind::Narrowed),
        (r#"{"d": 4294967295}"#, "d", LossKind::Narrowed),
        (r#"{"g": ["1", "9999999999"]}"#, "g", LossKind::Narrowed),
        (r#"{"h": 2}"#, "h", LossKind::Narrowed),
        (r#"{"q": "7"}"#, "q", LossKind::UnknownEnumValue),
        (r#"{"q": "4294967297"}"#, "q", LossKind::Narrowed),
    ];
    for (json, path, kind) in cases {
        assert_eq!(
            site_kinds(&plan, &w, json),
            [(path.to_string(), *kind)],
            "{json}"
        );
    }
    for json in [
        r#"{"a": "-2147483648", "b": 2147483647, "c": "-2147483648", "d": 2147483647}"#,
        r#"{"g": ["-1"], "h": 1, "n": [-2147483648], "q": "1"}"#,
    ] {
        assert!(site_kinds(&plan, &w, json).is_empty(), "{json}");
    }
}

#[test]
fn invalid_utf8_into_a_string_is_an_error_naming_the_field() {
    let (w, r) = scalars();
    let plan = compile(&w, &r, UnknownFields::Preserve).unwrap();
    let bytes = from_json(&w, r#"{"a": "1", "e": "/w=="}"#).encode_to_vec();
    let mut out = vec![0xAA];
    let err = plan.transcode(&bytes, &mut out).unwrap_err();
    assert!(
        matches!(&err, TranscodeError::InvalidUtf8 { field, .. } if field == "w.M.e (field 5)"),
        "{err}"
    );
    assert_eq!(out, [0xAA], "output left as it was");
}

#[test]
fn packed_and_unpacked_are_read_both_ways() {
    let (w, r) = scalars();
    for mode in [UnknownFields::Preserve, UnknownFields::Drop] {
        // k: writer unpacked → reader packed; g: writer packed → reader packed (narrowing
        // checks walk the packed elements); n: packed sint32 → sint64.
        let plan = compile(&w, &r, mode).unwrap();
        let bytes =
            from_json(&w, r#"{"k": [1, 2, 3], "g": ["4", "-5"], "n": [-6, 7]}"#).encode_to_vec();
        let (out, lossy) = run(&plan, &bytes);
        assert!(lossy.is_empty());
        let j = json_of(&decode(&r, &out));
        assert_eq!(j["k"], serde_json::json!([1, 2, 3]));
        assert_eq!(j["g"], serde_json::json!([4, -5]));
        assert_eq!(j["n"], serde_json::json!(["-6", "7"]));
    }
    // A packed list whose elements are checked must be well-formed.
    let plan = compile(&w, &r, UnknownFields::Preserve).unwrap();
    let mut bad = Vec::new();
    key(7, 2, &mut bad);
    bad.extend_from_slice(&[2, 0x01, 0x80]);
    assert!(matches!(
        plan.transcode(&bad, &mut Vec::new()),
        Err(TranscodeError::Truncated { .. })
    ));
    // Reader unpacked, writer packed.
    let back = compile(&r, &w, UnknownFields::Preserve).unwrap();
    let bytes = from_json(&r, r#"{"k": [8, 9]}"#).encode_to_vec();
    let (out, _) = run(&back, &bytes);
    assert_eq!(json_of(&decode(&w, &out))["k"], serde_json::json!([8, 9]));
}

#[test]
fn oneof_members_are_fields() {
    let (w, r) = (v2(), v1());
    let plan = compile(&w, &r, UnknownFields::Preserve).unwrap();
    for (json, key, expect) in [
        (
            r#"{"discountPercent": 12.5}"#,
            "discountPercent",
            serde_json::json!(12.5),
        ),
        (
            r#"{"discountAmount": {"currency": "USD", "cents": "3"}}"#,
            "discountAmount",
            serde_json::json!({"currency": "USD", "cents": "3"}),
        ),
    ] {
        let (out, _) = run(&plan, &from_json(&w, json).encode_to_vec());
        assert_eq!(json_of(&decode(&r, &out))[key], expect);
    }
    // A member only v2 has: v1 sees none of the oneof, and keeps the bytes.
    let (out, lossy) = run(
        &plan,
        &from_json(&w, r#"{"couponCode": "C"}"#).encode_to_vec(),
    );
    assert_eq!(lossy, ["coupon_code"]);
    let as_v1 = decode(&r, &out);
    assert_eq!(json_of(&as_v1), serde_json::json!({}));
    assert_eq!(
        json_of(&decode(&w, &as_v1.encode_to_vec()))["couponCode"],
        "C"
    );
}

#[test]
fn incompatible_changes_are_plan_errors() {
    let cases = [
        ("int32 x = 1;", "sint32 x = 1;", "ZigZag"),
        ("fixed32 x = 1;", "float x = 1;", "float and an integer"),
        ("string x = 1;", "Sub x = 1;", ""),
        ("repeated int32 x = 1;", "int32 x = 1;", "repeated number"),
        ("double x = 1;", "int64 x = 1;", ""),
        ("bytes x = 1;", "int64 x = 1;", ""),
    ];
    for (writer, reader, reason) in cases {
        let w = inline(
            &format!("syntax = \"proto3\"; package w; message Sub {{}} message M {{ {writer} }}"),
            "w.M",
        );
        let r = inline(
            &format!("syntax = \"proto3\"; package r; message Sub {{}} message M {{ {reader} }}"),
            "r.M",
        );
        let err = compile(&w, &r, UnknownFields::Preserve).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("r.M.x (field 1): writer type "), "{text}");
        assert!(text.contains(reason), "{text}");
    }
    // Group vs length-delimited message.
    let w = inline(
        "syntax = \"proto2\"; package w; message M { optional group G = 1 { optional int32 a = 2; } }",
        "w.M",
    );
    let r = inline(
        "syntax = \"proto2\"; package r; message G { optional int32 a = 2; } message M { optional G g = 1; }",
        "r.M",
    );
    let err = compile(&w, &r, UnknownFields::Preserve).unwrap_err();
    assert!(err.to_string().contains("group"), "{err}");
    // A field the reader requires and the writer lacks.
    let w = inline(
        "syntax = \"proto2\"; package w; message M { optional int32 a = 1; }",
        "w.M",
    );
    let r = inline(
        "syntax = \"proto2\"; package r; message M { optional int32 a = 1; required string b = 2; }",
        "r.M",
    );
    assert!(matches!(
        compile(&w, &r, UnknownFields::Preserve),
        Err(PlanError::MissingRequired { number: 2, .. })
    ));
}

#[test]
fn groups_are_transcoded_and_dropped_inside() {
    let w = inline(
        "syntax = \"proto2\"; package w; message M {
           optional group G = 1 { optional int32 a = 2; optional string gone = 3; }
           optional int32 tail = 4; }",
        "w.M",
    );
    let r = inline(
        "syntax = \"proto2\"; package r; message M {
           optional group G = 1 { optional int32 a = 2; }
           optional int32 tail = 4; }",
        "r.M",
    );
    let msg = from_json(&w, r#"{"g": {"a": 5, "gone": "x"}, "tail": 6}"#);
    let bytes = msg.encode_to_vec();
    let plan = compile(&w, &r, UnknownFields::Drop).unwrap();
    let (out, lossy) = run(&plan, &bytes);
    assert_eq!(lossy, ["g.gone"]);
    let back = decode(&r, &out);
    assert_eq!(
        json_of(&back),
        serde_json::json!({"g": {"a": 5}, "tail": 6})
    );
    assert_eq!(back.unknown_fields().count(), 0);
    let plan = compile(&w, &r, UnknownFields::Preserve).unwrap();
    let (out, _) = run(&plan, &bytes);
    assert_eq!(out, bytes);
}

#[test]
fn undeclared_fields_follow_the_policy() {
    let (w, r) = (v2(), v1());
    let mut bytes = from_json(&w, r#"{"orderId": "o"}"#).encode_to_vec();
    // Field 99, varint 1: a field the writer schema does not declare.
    bytes.extend_from_slice(&[0x98, 0x06, 0x01]);
    let mut out = Vec::new();
    let plan = compile(&w, &r, UnknownFields::Preserve).unwrap();
    let loss = plan.transcode(&bytes, &mut out).unwrap();
    assert_eq!((loss.undeclared_fields(), loss.is_lossy()), (1, true));
    assert_eq!(out, bytes);
    out.clear();
    let plan = compile(&w, &r, UnknownFields::Drop).unwrap();
    plan.transcode(&bytes, &mut out).unwrap();
    assert_eq!(out, &bytes[..bytes.len() - 3]);
}

#[test]
fn to_json_renders_reader_bytes_canonically() {
    let (w, r) = (v2(), v1());
    let plan = compile(&w, &r, UnknownFields::Preserve).unwrap();
    let (out, _) = run(&plan, &from_json(&w, FULL_V2).encode_to_vec());
    let j = to_json(&r, &out).unwrap();
    assert_eq!(j["orderId"], "o-1");
    assert_eq!(j["placedAt"], "2024-05-01T12:00:00Z");
    assert_eq!(j["totalCents"], "1999");
    assert!(j.get("email").is_none());
    assert!(matches!(
        to_json(&r, &[0x0a, 0x05]),
        Err(TranscodeError::Json { .. })
    ));
}

// ---- hostile input ----

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(number: u32, wt: u8, out: &mut Vec<u8>) {
    varint((u64::from(number) << 3) | u64::from(wt), out);
}

/// LineItem nested `depth` times through `components` (field 5), inside `items` (field 11).
fn nested_items(depth: usize) -> Vec<u8> {
    let mut body = Vec::new();
    key(1, 2, &mut body);
    body.extend_from_slice(&[1, b'z']);
    key(4, 0, &mut body);
    body.push(1); // gift_wrap: dropped
    for _ in 1..depth {
        let mut outer = Vec::new();
        key(5, 2, &mut outer);
        varint(body.len() as u64, &mut outer);
        outer.extend_from_slice(&body);
        body = outer;
    }
    let mut msg = Vec::new();
    key(11, 2, &mut msg);
    varint(body.len() as u64, &mut msg);
    msg.extend_from_slice(&body);
    msg
}

#[test]
fn recursion_works_to_the_depth_limit_and_no_further() {
    let (w, r) = (v2(), v1());
    let plan = compile(&w, &r, UnknownFields::Drop).unwrap();
    let ok = nested_items(90);
    let (out, lossy) = run(&plan, &ok);
    assert_eq!(lossy, ["items.gift_wrap"]);
    assert!(out.len() < ok.len());
    let mut m = decode(&r, &out);
    for _ in 0..90 {
        let items = m
            .get_field_by_name(if m.descriptor().name() == "OrderPlaced" {
                "items"
            } else {
                "components"
            })
            .unwrap()
            .into_owned();
        let Value::List(items) = items else { panic!() };
        let Value::Message(next) = &items[0] else {
            panic!()
        };
        m = next.clone();
    }
    assert_eq!(json_of(&m)["sku"], "z");

    let deep = nested_items(150);
    let mut out = Vec::new();
    assert!(matches!(
        plan.transcode(&deep, &mut out),
        Err(TranscodeError::TooDeep { limit: 100, .. })
    ));
    assert!(out.is_empty());
}

#[test]
fn hostile_bytes_are_typed_errors() {
    let (w, r) = (v2(), v1());
    let plans = [
        compile(&w, &r, UnknownFields::Preserve).unwrap(),
        compile(&w, &r, UnknownFields::Drop).unwrap(),
    ];
    let mut group_bomb = Vec::new();
    for _ in 0..10_000 {
        key(99, 3, &mut group_bomb);
    }
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated varint", vec![0x10, 0xff]),
        ("overlong varint", [vec![0x10], vec![0xff; 11]].concat()),
        ("length past the end", vec![0x0a, 0x05, b'a']),
        (
            "huge length",
            [vec![0x0a], vec![0xff; 9], vec![0x01]].concat(),
        ),
        ("field number 0", vec![0x00, 0x01]),
        ("wire type 7", vec![0x0f]),
        ("wire type 6", vec![0x0e]),
        ("end group without start", vec![0x0c]),
        ("unterminated group", vec![0x9b, 0x06, 0x08, 0x01]),
        ("mismatched end group", vec![0x9b, 0x06, 0xa4, 0x06]),
        ("group bomb", group_bomb),
        ("wrong wire type for a string", vec![0x08, 0x01]),
        ("wrong wire type for a message", vec![0x50, 0x01]),
        ("truncated fixed", vec![0x8d, 0x01, 0x00]),
        ("nested garbage", vec![0x52, 0x02, 0x0a, 0x09]),
        (
            "field number too large",
            vec![0xf8, 0xff, 0xff, 0xff, 0x7f, 0x00],
        ),
    ];
    for plan in &plans {
        for (what, bytes) in &cases {
            let mut out = vec![7];
            let res = plan.transcode(bytes, &mut out);
            assert!(res.is_err(), "{what}: {res:?}");
            assert_eq!(out, [7], "{what}: output restored");
        }
    }
}

/// Every truncation and many byte flips of a full message: an answer or a typed error, never a
/// panic, and an answer that is a valid v1 message.
#[test]
fn mutated_messages_never_panic() {
    let (w, r) = (v2(), v1());
    let bytes = from_json(&w, FULL_V2).encode_to_vec();
    let plans = [
        compile(&w, &r, UnknownFields::Preserve).unwrap(),
        compile(&w, &r, UnknownFields::Drop).unwrap(),
    ];
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut inputs: Vec<Vec<u8>> = (0..bytes.len()).map(|n| bytes[..n].to_vec()).collect();
    for _ in 0..3000 {
        let mut m = bytes.clone();
        for _ in 0..(next() % 4 + 1) {
            let i = (next() as usize) % m.len();
            m[i] = next() as u8;
        }
        inputs.push(m);
    }
    let mut ok = 0;
    for input in &inputs {
        for plan in &plans {
            let mut out = Vec::new();
            match plan.transcode(input, &mut out) {
                Ok(_) => ok += 1,
                Err(_) => assert!(out.is_empty()),
            }
        }
    }
    assert!(ok > 0);
}

// ---- Schemas as base64 FileDescriptorProto (what confluent-kafka's Python serializer registers).

/// `name`'s descriptor out of a pool compiled from the `.proto` text, serialized and base64'd.
fn as_base64(pool: &prost_reflect::DescriptorPool, name: &str) -> String {
    use base64::Engine as _;
    let fd = pool.get_file_by_name(name).unwrap();
    base64::engine::general_purpose::STANDARD.encode(fd.file_descriptor_proto().encode_to_vec())
}

/// Every message in the pool: full name and (number, name, type, cardinality) of each field.
fn shape(pool: &prost_reflect::DescriptorPool) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<_> = pool
        .all_messages()
        .map(|m| {
            let fields = m
                .fields()
                .map(|f| {
                    let ty = match f.kind() {
                        prost_reflect::Kind::Message(m) => m.full_name().to_owned(),
                        prost_reflect::Kind::Enum(e) => e.full_name().to_owned(),
                        k => format!("{k:?}"),
                    };
                    format!("{} {} {ty} {:?}", f.number(), f.name(), f.cardinality())
                })
                .collect();
            (m.full_name().to_owned(), fields)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn base64_descriptors_build_the_same_pool_as_text_in_every_mix() {
    const MONEY_NAME: &str = "orders/money.proto";
    const COMMON_NAME: &str = "orders/common.proto";
    // v2 imports both references (v1 only money).
    let v2_pool = build_pool(V2_NAME, V2, &refs()).unwrap();
    let money_b64 = as_base64(&v2_pool, MONEY_NAME);
    let common_b64 = as_base64(&v2_pool, COMMON_NAME);
    for (main_name, main_text) in [(V1_NAME, V1), (V2_NAME, V2)] {
        let text_pool = build_pool(main_name, main_text, &refs()).unwrap();
        let expected = shape(&text_pool);
        assert!(expected.iter().any(|(m, _)| m.ends_with(".OrderPlaced")));
        let main_b64 = as_base64(&text_pool, main_name);
        // Every combination of forms: bit 0 main, bit 1 money, bit 2 common (1 = base64).
        for mix in 0..8u8 {
            let pick = |bit: u8, b64: &str, text: &str| {
                if mix & (1 << bit) != 0 {
                    b64.to_owned()
                } else {
                    text.to_owned()
                }
            };
            let references = vec![
                (MONEY_NAME.to_owned(), pick(1, &money_b64, MONEY)),
                (COMMON_NAME.to_owned(), pick(2, &common_b64, COMMON)),
            ];
            // Looked up under the gateway's own name, not the name inside the descriptor.
            let lookup = "schemabridge/schema-7.proto";
            let pool = build_pool(lookup, &pick(0, &main_b64, main_text), &references)
                .unwrap_or_else(|e| panic!("{main_name} mix {mix:03b}: {e}"));
            assert_eq!(shape(&pool), expected, "{main_name} mix {mix:03b}");
            let msg = message_for_indexes(&pool, lookup, &MessageIndexes::first()).unwrap();
            assert!(
                msg.full_name().ends_with(".OrderPlaced"),
                "{}",
                msg.full_name()
            );
            assert!(
                pool.get_message_by_name("google.protobuf.Timestamp")
                    .is_some()
            );
        }
    }
    // The plan between descriptor-form schemas is the plan between text-form ones.
    let b64_of = |name: &str, text: &str| {
        let pool = build_pool(name, text, &refs()).unwrap();
        let b64_refs = vec![
            (MONEY_NAME.to_owned(), money_b64.clone()),
            (COMMON_NAME.to_owned(), common_b64.clone()),
        ];
        let pool = build_pool(name, &as_base64(&pool, name), &b64_refs).unwrap();
        message_for_indexes(&pool, name, &MessageIndexes::first()).unwrap()
    };
    let from_b64 = compile(
        &b64_of(V2_NAME, V2),
        &b64_of(V1_NAME, V1),
        UnknownFields::Drop,
    )
    .unwrap();
    let from_text = compile(&v2(), &v1(), UnknownFields::Drop).unwrap();
    assert_eq!(from_b64.dropped_fields(), from_text.dropped_fields());
}

#[test]
fn base64_detection_edges_and_errors_name_the_form() {
    use base64::Engine as _;
    // The empty schema is valid base64 (of an empty descriptor) but is read as empty text.
    for empty in ["", " \n"] {
        let pool = build_pool("e.proto", empty, &[]).unwrap();
        assert!(pool.get_file_by_name("e.proto").is_some());
    }
    // Wrapped in lines (MIME style) and unpadded base64 are still descriptors.
    let pool = build_pool(V1_NAME, V1, &refs()).unwrap();
    let money = as_base64(&pool, "orders/money.proto");
    let wrapped: Vec<String> = money
        .as_bytes()
        .chunks(20)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    for form in [wrapped.join("\n"), money.trim_end_matches('=').to_owned()] {
        let pool = build_pool("m.proto", &form, &[]).unwrap();
        assert!(pool.get_message_by_name("orders.common.Money").is_some());
    }
    // Base64 that is no descriptor: the text error says why it was not taken as one.
    let not_fd = base64::engine::general_purpose::STANDARD.encode("hello, world");
    let err = build_pool("x.proto", &not_fd, &[]).unwrap_err().to_string();
    assert!(err.starts_with("protobuf schema x.proto:"), "{err}");
    assert!(
        err.contains("read as .proto text; it is valid base64 but not a FileDescriptorProto"),
        "{err}"
    );
    // A descriptor main whose import is missing: named, with the form of the importing file.
    let common = as_base64(
        &build_pool(V2_NAME, V2, &refs()).unwrap(),
        "orders/common.proto",
    );
    let err = build_pool("c.proto", &common, &[]).unwrap_err().to_string();
    assert!(err.contains("orders/money.proto"), "{err}");
    assert!(
        err.contains("read as a base64 FileDescriptorProto"),
        "{err}"
    );
    // A descriptor reference that does not fit what imports it: the error is in the text
    // importer; a text reference that does not fit a descriptor importer: in the descriptor.
    let wrong_money = base64::engine::general_purpose::STANDARD.encode(
        prost_reflect::prost_types::FileDescriptorProto {
            name: Some("orders/money.proto".to_owned()),
            package: Some("orders.other".to_owned()),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    let err = build_pool(
        "c.proto",
        COMMON,
        &[("orders/money.proto".to_owned(), wrong_money)],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("Money"), "{err}");
    assert!(err.contains("(read as .proto text)"), "{err}");
    assert!(err.starts_with("protobuf schema c.proto:"), "{err}");
    let err = build_pool(
        "schemabridge/schema-9.proto",
        V2,
        &[
            ("orders/common.proto".to_owned(), common),
            (
                "orders/money.proto".to_owned(),
                "syntax = \"proto3\"; package orders.other;".to_owned(),
            ),
        ],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("in orders/common.proto (read as a base64 FileDescriptorProto)"),
        "{err}"
    );
    assert!(
        err.starts_with("protobuf schema schemabridge/schema-9.proto:"),
        "{err}"
    );
}

// ---- the resolution report (`Plan::changes`) ----

use crate::resolution::{Change, ChangeKind};

fn change(path: &str, kind: ChangeKind) -> Change {
    Change::new(path, kind)
}

const REPORT_PAIR: &str = r#"
syntax = "proto3";
message W {
  enum E { E0 = 0; E1 = 1; E2 = 2; }
  message Sub { string x = 1; }
  int32 a = 1;
  int64 b = 2;
  string old_name = 3;
  E e = 4;
  string gone = 5;
  Sub sub = 6;
}
message R {
  enum E { E0 = 0; E1 = 1; }
  message Sub { string x = 1; }
  int64 a = 1;
  int32 b = 2;
  string new_name = 3;
  E e = 4;
  Sub sub = 6;
  bool added = 7;
}
"#;

#[test]
fn report_names_every_kind_of_change() {
    let w = inline(REPORT_PAIR, "W");
    let r = inline(REPORT_PAIR, "R");
    let expected = |preserved: bool| {
        vec![
            change(
                "a",
                ChangeKind::Promoted {
                    from: "int32".into(),
                    to: "int64".into(),
                },
            ),
            change(
                "b",
                ChangeKind::Narrowed {
                    from: "int64".into(),
                    to: "int32".into(),
                },
            ),
            change(
                "new_name",
                ChangeKind::Renamed {
                    from: "old_name".into(),
                },
            ),
            change(
                "e",
                ChangeKind::UnknownEnumValue {
                    symbol: "E2".into(),
                    number: 2,
                },
            ),
            change(
                "gone",
                ChangeKind::Dropped {
                    optional: true,
                    preserved,
                },
            ),
            change("sub", ChangeKind::Kept),
            change("sub.x", ChangeKind::Kept),
            change(
                "added",
                ChangeKind::Defaulted {
                    value: serde_json::json!(false),
                },
            ),
        ]
    };
    let preserve = compile(&w, &r, UnknownFields::Preserve).unwrap();
    assert_eq!(preserve.changes(), expected(true).as_slice());
    let drop = compile(&w, &r, UnknownFields::Drop).unwrap();
    assert_eq!(drop.changes(), expected(false).as_slice());
}

#[test]
fn report_of_required_and_custom_defaults_in_proto2() {
    let text = r#"
syntax = "proto2";
message W { required string id = 1; optional int64 big = 3; }
message R { optional int32 n = 2 [default = 7]; optional uint64 big = 3; repeated string l = 4; }
"#;
    let plan = compile(&inline(text, "W"), &inline(text, "R"), UnknownFields::Drop).unwrap();
    assert_eq!(
        plan.changes(),
        [
            change(
                "id",
                ChangeKind::Dropped {
                    optional: false,
                    preserved: false
                }
            ),
            change(
                "big",
                ChangeKind::Narrowed {
                    from: "int64".into(),
                    to: "uint64".into()
                }
            ),
            change(
                "n",
                ChangeKind::Defaulted {
                    value: serde_json::json!(7)
                }
            ),
            change(
                "l",
                ChangeKind::Defaulted {
                    value: serde_json::json!([])
                }
            ),
        ]
    );
}

#[test]
fn report_of_the_reference_pair_and_of_an_identity() {
    let plan = compile(&v2(), &v1(), UnknownFields::Preserve).unwrap();
    let differences: Vec<(&str, &str)> = plan
        .changes()
        .iter()
        .filter(|c| c.kind.is_difference())
        .map(|c| (c.path.as_str(), c.kind.name()))
        .collect();
    let mut expected: Vec<(&str, &str)> = vec![
        ("status", "unknown_enum_value"),
        ("quantity", "promoted"),
        ("shipping.geo", "dropped"),
        ("items.gift_wrap", "dropped"),
    ];
    for f in [
        "email",
        "loyalty_tier",
        "fraud_score",
        "payload_hash",
        "notes",
        "coupon_code",
        "channel",
        "adjustments",
        "refund",
    ] {
        expected.push((f, "dropped"));
    }
    expected.push(("source", "defaulted"));
    let mut sorted = differences.clone();
    sorted.sort();
    expected.sort();
    assert_eq!(sorted, expected, "{differences:?}");
    // Every dropped field of the plan is in the report, with the same path, as preserved.
    let dropped: Vec<&str> = plan
        .changes()
        .iter()
        .filter(|c| {
            matches!(
                c.kind,
                ChangeKind::Dropped {
                    optional: true,
                    preserved: true
                }
            )
        })
        .map(|c| c.path.as_str())
        .collect();
    assert_eq!(dropped, plan.dropped_fields());
    // Kept fields include those inside identical sub-messages (copied without a node).
    for p in [
        "order_id",
        "placed_at.seconds",
        "discount_amount.cents",
        "items.components",
    ] {
        assert!(
            plan.changes()
                .iter()
                .any(|c| c.path == p && c.kind == ChangeKind::Kept),
            "{p} not kept"
        );
    }

    let same = compile(&v1(), &v1(), UnknownFields::Preserve).unwrap();
    assert!(same.is_identity());
    assert!(same.changes().iter().all(|c| c.kind == ChangeKind::Kept));
    assert!(same.changes().iter().any(|c| c.path == "shipping.country"));
}

//! The project's Protobuf OrderPlaced schemas (`proto/orders/`), read from the tree and
//! registered as a Confluent producer's serializer registers them.

use serde_json::json;

use super::registry::RegistryDouble;

/// The text of `proto/<name>` (e.g. `orders/order_v1.proto`).
pub fn proto(name: &str) -> String {
    let path = format!("{}/proto/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// Registers `orders/money.proto` and `orders/common.proto` under their own subjects
/// (`orders-money`, `orders-common`), then OrderPlaced v1 and v2 under `subject` with references
/// to them. `form(name)` is what is registered for each file: its `.proto` text ([`proto`]) or
/// a base64 `FileDescriptorProto`. Returns (v1 id, v2 id).
pub fn register_orders(
    registry: &RegistryDouble,
    subject: &str,
    form: impl Fn(&str) -> String,
) -> (u32, u32) {
    let reference =
        |name: &str, subject: &str| json!({"name": name, "subject": subject, "version": 1});
    let money = reference("orders/money.proto", "orders-money");
    let common = reference("orders/common.proto", "orders-common");
    let pb = Some("PROTOBUF");
    let money_id = registry.register("orders-money", pb, &form("orders/money.proto"), vec![]);
    registry.register(
        "orders-common",
        pb,
        &form("orders/common.proto"),
        vec![money.clone()],
    );
    let v1 = registry.register(
        subject,
        pb,
        &form("orders/order_v1.proto"),
        vec![money.clone()],
    );
    let v2 = registry.register(
        subject,
        pb,
        &form("orders/order_v2.proto"),
        vec![common, money],
    );
    assert!(money_id < v1 && v1 < v2);
    (v1, v2)
}

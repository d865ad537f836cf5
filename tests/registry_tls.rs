//! The schema registry over HTTPS: a test CA, server and client certificates (rcgen), and the
//! registry double behind a TLS front served by OpenSSL (Python's `ssl`, an implementation
//! independent of the product's rustls) that requires a client certificate.
//!
//! - The registry client: with `registry.tls` (`ca_file` + client certificate) schemas come back
//!   over https; trusting nothing but the built-in roots, or an unrelated CA, fails with
//!   rustls' unknown-issuer reason; no client certificate fails with the server's
//!   certificate-required alert. All are outages (transient: retried, never a dead letter),
//!   counted by outcome in `schemabridge_registry_requests_total`.
//! - End to end, the real binary (`schemabridge run`) on the mock cluster: a first run without
//!   `ca_file` retries and forwards nothing; a second run in the same group, with it, forwards
//!   every input exactly once with the reader schema's content, so the first run dropped and
//!   dead-lettered nothing.

use crate::support;

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use support::scrape::free_port;

use apache_avro::Schema;
use apache_avro::types::Value;
use schemabridge::config::Config;
use schemabridge::registry::{RegistryError, SchemaSource};
use schemabridge::wire;
use support::kafka::{Cluster, ConfigText, Input, RouteSpec, unique};
use support::orders::{ORDER_V1, ORDER_V2, SplitMix, order_v2};
use support::orders::{decode, encode, expected_v1, framed, order_id, registry_with_orders};
use support::process::{GatewayProcess, scratch_dir};
use support::tls::{Pki, TlsFront};

const WAIT: Duration = Duration::from_secs(60);
const SETTLE: Duration = Duration::from_millis(500);

/// The `tls:` lines of a `registry:` block (indented for it); empty for no block.
fn tls_block(ca: Option<&Path>, client: Option<(&Path, &Path)>) -> String {
    let mut lines = Vec::new();
    if let Some(ca) = ca {
        lines.push(format!("    ca_file: {}", ca.display()));
    }
    if let Some((cert, key)) = client {
        lines.push(format!("    cert_file: {}", cert.display()));
        lines.push(format!("    key_file: {}", key.display()));
    }
    if lines.is_empty() {
        String::new()
    } else {
        format!("  tls:\n{}\n", lines.join("\n"))
    }
}

/// A config whose registry is `url` with `tls` (from [`tls_block`]).
fn config_text(bootstrap: &str, url: &str, group: &str, tls: &str, extra: &str) -> String {
    let text = ConfigText {
        bootstrap,
        registry_url: url,
        group,
        route: RouteSpec::ORDERS,
        delivery: "at_least_once",
        registry_timeout_ms: 5000,
        source_librdkafka: &[],
    }
    .yaml();
    let text = text.replacen("registry:\n", &format!("registry:\n{tls}"), 1);
    format!("{text}{extra}")
}

fn registry_source(url: &str, tls: &str) -> SchemaSource {
    let text = config_text("127.0.0.1:9", url, "g", tls, "");
    let config = Config::parse(&text).unwrap_or_else(|e| panic!("config: {e}\n{text}"));
    SchemaSource::from_config(&config.registry).expect("registry client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_client_needs_the_ca_and_the_client_certificate() {
    let dir = scratch_dir("registry-tls-client");
    let pki = Pki::generate(&dir.join("pki"));
    let (registry, v1_id, _) = registry_with_orders().await;
    let front = TlsFront::start(&dir, &pki, &registry, true);
    let client = Some((pki.client_cert.as_path(), pki.client_key.as_path()));

    // CA and client certificate: the schema, as registered, over https.
    let source = registry_source(&front.url, &tls_block(Some(&pki.ca), client));
    let schema = source.by_id(v1_id).await.expect("schema over mTLS");
    assert_eq!(schema.id, v1_id);
    assert_eq!(
        Schema::parse_str(&schema.text).expect("schema text"),
        Schema::parse_str(ORDER_V1).expect("v1")
    );
    let reader = source
        .by_subject(
            "orders-value",
            schemabridge::config::SubjectVersion::Number(1),
        )
        .await
        .expect("subject over mTLS");
    assert_eq!(reader.id, v1_id);

    // The built-in roots, or an unrelated CA, do not know the test CA: the handshake fails on
    // our side, and says why.
    for (what, tls) in [
        ("built-in roots", tls_block(None, client)),
        ("unrelated CA", tls_block(Some(&pki.other_ca), client)),
    ] {
        let e = registry_source(&front.url, &tls)
            .by_id(v1_id)
            .await
            .expect_err(what);
        assert!(e.is_transient(), "{what}: an outage, retried: {e:?}");
        let text = e.to_string();
        eprintln!("{what}: {text}");
        assert!(text.contains("UnknownIssuer"), "{what}: {text}");
        assert!(
            text.contains(&format!("schema id {v1_id}")),
            "{what}: {text}"
        );
    }

    // OpenSSL saw both refusals come from our side.
    front.wait_logged("TLSV1_ALERT_UNKNOWN_CA", 2);

    // The CA but no client certificate: the server refuses the handshake. With TLS 1.3 the
    // client has finished its side before the server checks for a certificate, so it learns of
    // the refusal from the server's alert, or (when it has already sent the request on the
    // connection the server is closing) only as that connection closing; the server's log
    // below says which refusal it was either way.
    let (ok_before, failed_before) = front.handshakes();
    let e = registry_source(&front.url, &tls_block(Some(&pki.ca), None))
        .by_id(v1_id)
        .await
        .expect_err("no client certificate");
    assert!(matches!(e, RegistryError::Transient(_)), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("CertificateRequired")
            || text.contains("HandshakeFailure")
            || text.contains("connection was not ready")
            || text.contains("connection closed"),
        "the server's alert, or the connection it closed, is named: {text}"
    );
    eprintln!("no client certificate: {text}");
    front.wait_logged("PEER_DID_NOT_RETURN_A_CERTIFICATE", 1);
    let (ok_after, failed_after) = front.handshakes();
    assert_eq!(ok_after, ok_before, "{}", front.log_text());
    assert_eq!(failed_after, failed_before + 1, "{}", front.log_text());
}

/// `GET /metrics` over HTTP/1.0; `None` when nothing answers yet.
fn metrics(addr: SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: test\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    text.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
}

/// `schemabridge_registry_requests_total{outcome=...}` in a scrape (0 when absent).
fn requests(scrape: &str, outcome: &str) -> u64 {
    let prefix = format!("schemabridge_registry_requests_total{{outcome=\"{outcome}\"}} ");
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| {
            v.trim().parse::<f64>().expect("counter value") as u64
        })
}

/// Scrapes until `done` holds; panics with the gateway's log after `timeout`.
async fn scrape_until(
    addr: SocketAddr,
    gw: &GatewayProcess,
    what: &str,
    done: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let scrape = tokio::task::spawn_blocking(move || metrics(addr))
            .await
            .expect("scrape");
        if let Some(s) = scrape.as_deref()
            && done(s)
        {
            return s.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "{what}; last scrape: {scrape:?}\nlog:\n{}",
            gw.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_retries_an_untrusted_registry_then_forwards_everything_over_mtls() {
    let dir = scratch_dir("registry-tls-gateway");
    let pki = Pki::generate(&dir.join("pki"));
    let cluster = Cluster::start(&[("orders", 2), ("orders-v1", 2), ("orders-dlq", 1)]);
    let (registry, v1_id, v2_id) = registry_with_orders().await;
    let front = TlsFront::start(&dir, &pki, &registry, true);
    let client = Some((pki.client_cert.as_path(), pki.client_key.as_path()));

    let v2 = Schema::parse_str(ORDER_V2).expect("v2");
    let v1 = Schema::parse_str(ORDER_V1).expect("v1");
    let mut rng = SplitMix(11);
    let mut values: HashMap<String, Value> = HashMap::new();
    let mut inputs = Vec::new();
    let mut produced: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for i in 0..40 {
        let v = order_v2(i, &mut rng);
        let id = order_id(&v);
        let partition = (i % 2) as i32;
        produced.entry(partition).or_default().push(id.clone());
        inputs.push(Input {
            partition,
            key: Some(id.clone().into_bytes()),
            value: Some(framed(v2_id, &encode(&v2, v.clone()))),
            ..Input::default()
        });
        values.insert(id, v);
    }
    cluster.produce("orders", &inputs).await;
    let group = format!("gw-tls-{}", unique());

    // Run 1: the client certificate, but only the built-in roots: every request fails the
    // handshake (unknown issuer) and is retried; nothing is forwarded or dead-lettered.
    let port = free_port();
    let telemetry = format!("telemetry:\n  listen: 127.0.0.1:{port}\n");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let yaml = config_text(
        &cluster.bootstrap,
        &front.url,
        &group,
        &tls_block(None, client),
        &telemetry,
    );
    let mut gw = GatewayProcess::start(&dir, 1, &yaml);
    let scrape = scrape_until(addr, &gw, "untrusted registry retried", |s| {
        requests(s, "transient_error") >= 3
    })
    .await;
    assert_eq!(requests(&scrape, "ok"), 0, "{scrape}");
    let status = gw.terminate(WAIT).await;
    assert!(status.success(), "clean stop: {status}\n{}", gw.log_tail());
    let log = std::fs::read_to_string(&gw.log).expect("log");
    assert!(
        log.contains("UnknownIssuer"),
        "the reason is logged:\n{log}"
    );
    assert!(
        !log.contains("BEGIN") && !log.contains("PRIVATE KEY"),
        "no PEM in the log:\n{log}"
    );
    assert_eq!(front.handshakes().0, 0, "{}", front.log_text());

    // Run 2, same group: with the CA, every input arrives once on the target, as v1.
    let port = free_port();
    let telemetry = format!("telemetry:\n  listen: 127.0.0.1:{port}\n");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let yaml = config_text(
        &cluster.bootstrap,
        &front.url,
        &group,
        &tls_block(Some(&pki.ca), client),
        &telemetry,
    );
    let mut gw = GatewayProcess::start(&dir, 2, &yaml);
    let out = cluster
        .consume(&["orders-v1", "orders-dlq"], inputs.len(), WAIT, SETTLE)
        .await;
    let scrape = scrape_until(addr, &gw, "registry requests counted", |s| {
        requests(s, "ok") >= 2
    })
    .await;
    let status = gw.terminate(WAIT).await;
    assert!(status.success(), "clean stop: {status}\n{}", gw.log_tail());

    assert_eq!(
        out.len(),
        inputs.len(),
        "every input once:\n{}",
        gw.log_tail()
    );
    assert!(
        out.iter().all(|m| m.topic == "orders-v1"),
        "nothing dead-lettered"
    );
    let mut arrived: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
    for m in &out {
        let key = String::from_utf8(m.key.clone().expect("key")).expect("utf-8 key");
        let f = wire::parse(m.value.as_deref().expect("value")).expect("framed");
        assert_eq!(f.schema_id, v1_id, "framed with the reader id");
        let got = decode(&v1, f.payload);
        assert_eq!(got, expected_v1(&values[&key]), "{key}");
        arrived
            .entry(m.partition)
            .or_default()
            .push((m.offset, order_id(&got)));
    }
    let arrived: BTreeMap<i32, Vec<String>> = arrived
        .into_iter()
        .map(|(p, mut v)| {
            v.sort();
            (p, v.into_iter().map(|(_, id)| id).collect())
        })
        .collect();
    assert_eq!(arrived, produced, "per partition, in order");
    assert_eq!(requests(&scrape, "transient_error"), 0, "{scrape}");
    assert_eq!(requests(&scrape, "not_found"), 0, "{scrape}");
    let (ok, failed) = front.handshakes();
    assert!(ok >= 1, "{}", front.log_text());
    assert!(
        front
            .log_text()
            .contains("client CN: schemabridge-test-client"),
        "the server saw our client certificate:\n{}",
        front.log_text()
    );
    assert!(
        failed >= 3,
        "run 1's handshakes failed:\n{}",
        front.log_text()
    );
    let committed = cluster.committed(&group, "orders", 2);
    let expected: Vec<Option<i64>> = (0..2).map(|p| Some(produced[&p].len() as i64)).collect();
    assert_eq!(committed, expected, "offsets committed to the end");
}

/// Kafka TLS and SASL are librdkafka's, through `source.librdkafka`: the real binary, pointed at
/// an OpenSSL front (requiring a client certificate) before the mock cluster's bootstrap port,
/// completes a TLS handshake with the configured CA, client certificate and key (the mock
/// broker itself speaks plaintext, so nothing further is asserted: the point is that the
/// settings reach a librdkafka built with TLS and SCRAM).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_tls_and_sasl_settings_pass_through_to_librdkafka() {
    let dir = scratch_dir("kafka-tls");
    let pki = Pki::generate(&dir.join("pki"));
    let cluster = Cluster::start(&[("orders", 1), ("orders-v1", 1), ("orders-dlq", 1)]);
    let (registry, _, _) = registry_with_orders().await;
    let broker: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(&cluster.bootstrap)
        .expect("bootstrap address")
        .find(SocketAddr::is_ipv4)
        .expect("an IPv4 bootstrap address");
    let front = TlsFront::start_to(&dir, &pki, broker, true);
    let tls_bootstrap = front.url.trim_start_matches("https://").to_string();
    // librdkafka reads its file settings as given (relative to the working directory).
    let file = |name: &str| dir.join("pki").join(name).display().to_string();
    let (ca, cert, key) = (file("ca.pem"), file("client.pem"), file("client.key"));
    let settings = [
        ("security.protocol", "SASL_SSL"),
        ("sasl.mechanisms", "SCRAM-SHA-512"),
        ("sasl.username", "schemabridge"),
        ("sasl.password", "not-a-real-password"),
        ("ssl.ca.location", ca.as_str()),
        ("ssl.certificate.location", cert.as_str()),
        ("ssl.key.location", key.as_str()),
    ];
    let yaml = ConfigText {
        bootstrap: &tls_bootstrap,
        registry_url: &registry.url,
        group: &format!("gw-kafka-tls-{}", unique()),
        route: RouteSpec::ORDERS,
        delivery: "at_least_once",
        registry_timeout_ms: 5000,
        source_librdkafka: &settings,
    }
    .yaml();
    let mut gw = GatewayProcess::start(&dir, 1, &yaml);
    let handshake = "handshake ok; client CN: schemabridge-test-client";
    let deadline = Instant::now() + WAIT;
    while !front.log_text().contains(handshake) {
        if !gw.running() {
            // It may stop on the broker's SASL answer: the handshake came first, its log line
            // may just be late.
            front.wait_logged(handshake, 1);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no TLS handshake from librdkafka:\n{}\nfront:\n{}",
            gw.log_tail(),
            front.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.kill();
    let log = std::fs::read_to_string(&gw.log).expect("log");
    assert!(!log.contains("OpenSSL not available"), "{log}");
    assert!(!log.contains("No provider for SASL mechanism"), "{log}");
}

/// `validate-config` checks `registry.tls` before anything connects: files are relative to the
/// config file, `cert_file` and `key_file` go together, a missing file is named by its key.
#[test]
fn validate_config_checks_the_tls_files_relative_to_the_config() {
    let dir = scratch_dir("registry-tls-validate");
    Pki::generate(&dir.join("pki"));
    let check = |tls: &str| {
        let path = dir.join("check.yaml");
        let text = config_text("127.0.0.1:9", "https://127.0.0.1:9", "g", tls, "");
        std::fs::write(&path, text).expect("write config");
        // Run from elsewhere: relative names must resolve against the config's directory.
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_schemabridge"))
            .arg("validate-config")
            .arg(&path)
            .current_dir(std::env::temp_dir())
            .output()
            .expect("run validate-config");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let rel = |name: &str| Path::new("pki").join(name);
    let (ca, cert, key) = (rel("ca.pem"), rel("client.pem"), rel("client.key"));

    let (code, stderr) = check(&tls_block(Some(&ca), Some((&cert, &key))));
    assert_eq!(code, Some(0), "{stderr}");

    let (code, stderr) = check(&format!(
        "  tls:\n    ca_file: {}\n    cert_file: {}\n",
        ca.display(),
        cert.display()
    ));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("registry.tls.key_file: required"),
        "{stderr}"
    );
    assert!(!stderr.contains("registry.tls.ca_file"), "{stderr}");

    let (code, stderr) = check(&tls_block(Some(&rel("missing.pem")), None));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("registry.tls.ca_file:"), "{stderr}");
    assert!(stderr.contains("missing.pem"), "{stderr}");

    // Offline (a config linted away from its pod) the files are not looked at.
    let path = dir.join("check.yaml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_schemabridge"))
        .args(["validate-config", "--offline"])
        .arg(&path)
        .output()
        .expect("run validate-config --offline");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");

    // A key that is not corrupted PEM is named, its contents are not echoed.
    std::fs::write(
        dir.join("pki/bad.key"),
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0!\n",
    )
    .expect("write");
    let (code, stderr) = check(&tls_block(Some(&ca), Some((&cert, &rel("bad.key")))));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("registry.tls.key_file:"), "{stderr}");
    assert!(stderr.contains("bad.key"), "{stderr}");
    assert!(!stderr.contains("c2VjcmV0"), "{stderr}");

    let (code, stderr) = check("  tls:\n    ca_dir: pki\n");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("ca_dir"), "{stderr}");
}

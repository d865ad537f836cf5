//! A Confluent-Schema-Registry-compatible HTTP double, for tests.
//!
//! No Confluent-compatible registry can be installed here, so this serves the real REST paths
//! and JSON bodies (as documented for Confluent Schema Registry 7.x) on a loopback port; the
//! product reaches it over HTTP exactly as in production. It adds what a test needs: injected
//! failures (HTTP 500s, then recovery) and a count of requests.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

#[derive(Clone, Debug)]
struct Stored {
    id: u32,
    subject: String,
    version: u32,
    schema_type: Option<String>,
    schema: String,
    references: Vec<Value>,
}

#[derive(Default)]
struct Inner {
    schemas: Vec<Stored>,
    next_id: u32,
    fail_next: u32,
    requests: u64,
    failed: u64,
}

/// A running registry double. Dropping it stops the server.
pub struct RegistryDouble {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for RegistryDouble {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl RegistryDouble {
    /// Starts a registry on 127.0.0.1 with an ephemeral port.
    pub async fn start() -> RegistryDouble {
        let inner = Arc::new(Mutex::new(Inner {
            next_id: 1,
            ..Inner::default()
        }));
        let app = Router::new()
            .route("/schemas/ids/{id}", get(by_id))
            .route("/subjects", get(subjects))
            .route("/subjects/{subject}/versions", get(versions).post(register))
            .route("/subjects/{subject}/versions/{version}", get(by_subject))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind registry double");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        RegistryDouble { url, inner, server }
    }

    /// Registers an Avro schema under `subject`; returns its id (the same text gets the same id,
    /// as in Confluent's registry).
    pub fn register_avro(&self, subject: &str, schema: &str) -> u32 {
        self.register(subject, None, schema, Vec::new())
    }

    /// Registers a schema of any type with references (`{"name","subject","version"}` objects).
    pub fn register(
        &self,
        subject: &str,
        schema_type: Option<&str>,
        schema: &str,
        references: Vec<Value>,
    ) -> u32 {
        let mut inner = self.inner.lock().unwrap();
        inner.register(subject, schema_type, schema, references)
    }

    /// The next `n` requests answer HTTP 500 with a Confluent error body.
    pub fn fail_next(&self, n: u32) {
        self.inner.lock().unwrap().fail_next = n;
    }

    /// Requests served (including failed ones).
    pub fn requests(&self) -> u64 {
        self.inner.lock().unwrap().requests
    }

    /// Requests answered with an injected failure.
    pub fn failed_requests(&self) -> u64 {
        self.inner.lock().unwrap().failed
    }
}

impl Inner {
    fn register(
        &mut self,
        subject: &str,
        schema_type: Option<&str>,
        schema: &str,
        references: Vec<Value>,
    ) -> u32 {
        if let Some(s) = self
            .schemas
            .iter()
            .find(|s| s.subject == subject && s.schema == schema)
        {
            return s.id;
        }
        let id = match self.schemas.iter().find(|s| s.schema == schema) {
            Some(s) => s.id,
            None => {
                let id = self.next_id;
                self.next_id += 1;
                id
            }
        };
        let version = self
            .schemas
            .iter()
            .filter(|s| s.subject == subject)
            .map(|s| s.version)
            .max()
            .unwrap_or(0)
            + 1;
        self.schemas.push(Stored {
            id,
            subject: subject.to_string(),
            version,
            schema_type: schema_type.map(str::to_string),
            schema: schema.to_string(),
            references,
        });
        id
    }

    /// Counts the request; answers the injected failure if one is pending.
    fn gate(&mut self) -> Option<Response> {
        self.requests += 1;
        if self.fail_next > 0 {
            self.fail_next -= 1;
            self.failed += 1;
            return Some(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                50001,
                "Error in the backend data store",
            ));
        }
        None
    }
}

fn error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        json!({"error_code": code, "message": message}).to_string(),
    )
        .into_response()
}

fn ok(body: Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        body.to_string(),
    )
        .into_response()
}

/// The body Confluent returns for a schema: `schemaType` is omitted for AVRO, `references` when
/// empty.
fn schema_body(s: &Stored, with_subject: bool) -> Value {
    let mut body = serde_json::Map::new();
    if with_subject {
        body.insert("subject".into(), json!(s.subject));
        body.insert("version".into(), json!(s.version));
        body.insert("id".into(), json!(s.id));
    }
    if let Some(t) = &s.schema_type {
        body.insert("schemaType".into(), json!(t));
    }
    body.insert("schema".into(), json!(s.schema));
    if !s.references.is_empty() {
        body.insert("references".into(), json!(s.references));
    }
    Value::Object(body)
}

type Shared = State<Arc<Mutex<Inner>>>;

async fn by_id(State(inner): Shared, Path(id): Path<String>) -> Response {
    let mut inner = inner.lock().unwrap();
    if let Some(r) = inner.gate() {
        return r;
    }
    let found = id
        .parse::<u32>()
        .ok()
        .and_then(|id| inner.schemas.iter().find(|s| s.id == id));
    match found {
        Some(s) => ok(schema_body(s, false)),
        None => error(
            StatusCode::NOT_FOUND,
            40403,
            &format!("Schema {id} not found"),
        ),
    }
}

async fn subjects(State(inner): Shared) -> Response {
    let mut inner = inner.lock().unwrap();
    if let Some(r) = inner.gate() {
        return r;
    }
    let mut names: Vec<&str> = inner.schemas.iter().map(|s| s.subject.as_str()).collect();
    names.sort();
    names.dedup();
    ok(json!(names))
}

async fn versions(State(inner): Shared, Path(subject): Path<String>) -> Response {
    let mut inner = inner.lock().unwrap();
    if let Some(r) = inner.gate() {
        return r;
    }
    let v: Vec<u32> = inner
        .schemas
        .iter()
        .filter(|s| s.subject == subject)
        .map(|s| s.version)
        .collect();
    if v.is_empty() {
        return error(
            StatusCode::NOT_FOUND,
            40401,
            &format!("Subject '{subject}' not found."),
        );
    }
    ok(json!(v))
}

async fn by_subject(
    State(inner): Shared,
    Path((subject, version)): Path<(String, String)>,
) -> Response {
    let mut inner = inner.lock().unwrap();
    if let Some(r) = inner.gate() {
        return r;
    }
    let versions: BTreeMap<u32, &Stored> = inner
        .schemas
        .iter()
        .filter(|s| s.subject == subject)
        .map(|s| (s.version, s))
        .collect();
    if versions.is_empty() {
        return error(
            StatusCode::NOT_FOUND,
            40401,
            &format!("Subject '{subject}' not found."),
        );
    }
    let found = match version.as_str() {
        "latest" | "-1" => versions.values().next_back().copied(),
        v => v
            .parse::<u32>()
            .ok()
            .and_then(|v| versions.get(&v).copied()),
    };
    match found {
        Some(s) => ok(schema_body(s, true)),
        None => error(
            StatusCode::NOT_FOUND,
            40402,
            &format!("Version {version} not found."),
        ),
    }
}

async fn register(
    State(inner): Shared,
    Path(subject): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let mut inner = inner.lock().unwrap();
    if let Some(r) = inner.gate() {
        return r;
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, 400, "Unrecognized field");
    };
    let Some(schema) = req.get("schema").and_then(Value::as_str) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            42201,
            "Invalid schema: missing schema",
        );
    };
    let schema_type = req
        .get("schemaType")
        .and_then(Value::as_str)
        .filter(|t| *t != "AVRO");
    let references = req
        .get("references")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let id = inner.register(&subject, schema_type, schema, references);
    ok(json!({ "id": id }))
}

// ---- Added for tests/faults.rs: a registry that accepts connections and never answers. ----

/// A TCP front for a [`RegistryDouble`] that can hold requests: a held request is read and
/// never answered (the connection stays open, nothing is written back), which is what a hung
/// registry looks like to an HTTP client with a timeout. Requests that are not held are relayed
/// byte for byte to the double. Dropping it closes every connection it holds.
pub struct StallingFront {
    pub url: String,
    rule: Arc<Mutex<HoldRule>>,
    held: Arc<std::sync::atomic::AtomicU64>,
    stop: tokio_util::sync::CancellationToken,
}

#[derive(Default)]
struct HoldRule {
    /// Hold the next this many requests, whatever they ask for.
    next: u32,
    /// Until released, hold every request whose bytes contain this (e.g. `/schemas/ids/3?`).
    matching: Option<String>,
}

impl Drop for StallingFront {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl StallingFront {
    /// Starts a front on 127.0.0.1 (ephemeral port) relaying to `upstream`.
    pub async fn start(upstream: &RegistryDouble) -> StallingFront {
        let upstream: SocketAddr = upstream
            .url
            .trim_start_matches("http://")
            .parse()
            .expect("registry double address");
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind stalling front");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let rule = Arc::new(Mutex::new(HoldRule::default()));
        let held = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stop = tokio_util::sync::CancellationToken::new();
        let (r, h, s) = (rule.clone(), held.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = s.cancelled() => return,
                    a = listener.accept() => a,
                };
                let Ok((client, _)) = accepted else { continue };
                let (r, h, s) = (r.clone(), h.clone(), s.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        _ = s.cancelled() => {}
                        _ = relay(client, upstream, r, h) => {}
                    }
                });
            }
        });
        StallingFront {
            url,
            rule,
            held,
            stop,
        }
    }

    /// Holds the next `n` requests, whatever they ask for.
    pub fn hold_next(&self, n: u32) {
        self.rule.lock().unwrap().next = n;
    }

    /// Holds every request whose request line contains `fragment` until [`Self::release`] or
    /// the next `hold_matching` (which replaces it).
    pub fn hold_matching(&self, fragment: &str) {
        self.rule.lock().unwrap().matching = Some(fragment.to_string());
    }

    /// Answers every request from now on (requests already held stay unanswered; the client's
    /// timeout ends them).
    pub fn release(&self) {
        *self.rule.lock().unwrap() = HoldRule::default();
    }

    /// Requests held so far.
    pub fn held(&self) -> u64 {
        self.held.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until at least `n` requests have been held (panics after `timeout`).
    pub async fn wait_held(&self, n: u64, timeout: std::time::Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while self.held() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "the registry front held {} requests, expected {n}",
                self.held()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// Relays one client connection to the double, request by request; a held request is swallowed
/// and the connection kept open without an answer, forever.
async fn relay(
    client: tokio::net::TcpStream,
    upstream: SocketAddr,
    rule: Arc<Mutex<HoldRule>>,
    held: Arc<std::sync::atomic::AtomicU64>,
) {
    let Ok(up) = tokio::net::TcpStream::connect(upstream).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut up_read, mut up_write) = up.into_split();
    let answers = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = read_some(&mut up_read, &mut buf).await {
            if n == 0 || write_all(&mut client_write, &buf[..n]).await.is_err() {
                break;
            }
        }
        client_write
    });
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match read_some(&mut client_read, &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let hold = {
            let mut rule = rule.lock().unwrap();
            let text = String::from_utf8_lossy(&buf[..n]);
            if rule.next > 0 {
                rule.next -= 1;
                true
            } else {
                rule.matching
                    .as_deref()
                    .is_some_and(|fragment| text.contains(fragment))
            }
        };
        if hold {
            held.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            // Keep both halves of the connection open and never answer.
            let _keep = (client_read, up_write, answers);
            std::future::pending::<()>().await;
            return;
        }
        if write_all(&mut up_write, &buf[..n]).await.is_err() {
            break;
        }
    }
}

/// Reads what is there (0: closed). tokio's `io-util` is not enabled, so by readiness.
async fn read_some(
    r: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    loop {
        r.readable().await?;
        match r.try_read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

async fn write_all(
    w: &mut tokio::net::tcp::OwnedWriteHalf,
    mut data: &[u8],
) -> std::io::Result<()> {
    while !data.is_empty() {
        w.writable().await?;
        match w.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

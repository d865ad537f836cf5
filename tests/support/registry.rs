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
use axum::extract::RawQuery;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
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
    /// `metadata.properties` (Confluent data contracts), as registered.
    properties: BTreeMap<String, String>,
}

#[derive(Default)]
struct Inner {
    schemas: Vec<Stored>,
    next_id: u32,
    fail_next: u32,
    requests: u64,
    failed: u64,
    /// Subject-level compatibility (`PUT /config/{subject}` in Confluent's API).
    compatibility: BTreeMap<String, String>,
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
            .route("/subjects/{subject}", post(lookup))
            .route("/subjects/{subject}/metadata", get(by_metadata))
            .route("/config/{subject}", get(subject_config))
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
        inner.register(subject, schema_type, schema, references, BTreeMap::new())
    }

    /// Registers an Avro schema under `subject` with `metadata.properties` (Confluent data
    /// contracts); returns its id.
    pub fn register_avro_with_metadata(
        &self,
        subject: &str,
        schema: &str,
        properties: &[(&str, &str)],
    ) -> u32 {
        let properties = properties
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut inner = self.inner.lock().unwrap();
        inner.register(subject, None, schema, Vec::new(), properties)
    }

    /// The (subject, version) pairs registered, in registration order.
    pub fn versions(&self) -> Vec<(String, u32, u32)> {
        let inner = self.inner.lock().unwrap();
        inner
            .schemas
            .iter()
            .map(|s| (s.subject.clone(), s.version, s.id))
            .collect()
    }

    /// Sets `subject`'s compatibility level (the global one is Confluent's default, BACKWARD).
    pub fn set_compatibility(&self, subject: &str, level: &str) {
        let mut inner = self.inner.lock().unwrap();
        inner
            .compatibility
            .insert(subject.to_string(), level.to_string());
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
        properties: BTreeMap<String, String>,
    ) -> u32 {
        // Confluent: the same schema (and metadata) under a subject is the same version.
        if let Some(s) = self
            .schemas
            .iter()
            .find(|s| s.subject == subject && s.schema == schema && s.properties == properties)
        {
            return s.id;
        }
        let id = match self
            .schemas
            .iter()
            .find(|s| s.schema == schema && s.properties == properties)
        {
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
            properties,
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
    if !s.properties.is_empty() {
        body.insert("metadata".into(), json!({ "properties": s.properties }));
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

/// A register or lookup body: its `schema`, `schemaType` (absent for AVRO), `references` and
/// `metadata.properties`.
struct SchemaRequest {
    schema: String,
    schema_type: Option<String>,
    references: Vec<Value>,
    properties: BTreeMap<String, String>,
}

/// Parses a register or lookup body, or answers the registry's error for a body without one.
fn schema_request(body: &[u8]) -> Result<SchemaRequest, Box<Response>> {
    let invalid = |status, code, message| Box::new(error(status, code, message));
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return Err(invalid(StatusCode::BAD_REQUEST, 400, "Unrecognized field"));
    };
    let Some(schema) = req
        .get("schema")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return Err(invalid(
            StatusCode::UNPROCESSABLE_ENTITY,
            42201,
            "Invalid schema: missing schema",
        ));
    };
    let schema_type = req
        .get("schemaType")
        .and_then(Value::as_str)
        .filter(|t| *t != "AVRO")
        .map(str::to_string);
    let references = req
        .get("references")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let properties = req
        .pointer("/metadata/properties")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    Ok(SchemaRequest {
        schema,
        schema_type,
        references,
        properties,
    })
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
    let SchemaRequest {
        schema,
        schema_type,
        references,
        properties,
    } = match schema_request(&body) {
        Ok(r) => r,
        Err(answer) => return *answer,
    };
    let (schema, schema_type) = (schema.as_str(), schema_type.as_deref());
    let id = inner.register(&subject, schema_type, schema, references, properties);
    ok(json!({ "id": id }))
}

/// `POST /subjects/{subject}`: whether the subject holds this schema (by its text, type and
/// references); answers the version's full body, else 40401 (no such subject) or 40403.
async fn lookup(
    State(inner): Shared,
    Path(subject): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let mut inner = inner.lock().unwrap();
    if let Some(r) = inner.gate() {
        return r;
    }
    let SchemaRequest {
        schema,
        schema_type,
        references,
        ..
    } = match schema_request(&body) {
        Ok(r) => r,
        Err(answer) => return *answer,
    };
    let (schema, schema_type) = (schema.as_str(), schema_type.as_deref());
    if !inner.schemas.iter().any(|s| s.subject == subject) {
        return error(
            StatusCode::NOT_FOUND,
            40401,
            &format!("Subject '{subject}' not found."),
        );
    }
    match inner.schemas.iter().rev().find(|s| {
        s.subject == subject
            && s.schema == schema
            && s.schema_type.as_deref() == schema_type
            && s.references == references
    }) {
        Some(s) => ok(schema_body(s, true)),
        None => error(StatusCode::NOT_FOUND, 40403, "Schema not found"),
    }
}

/// `GET /subjects/{subject}/metadata?key=k&value=v[&key=..&value=..]`: the newest version whose
/// `metadata.properties` holds every pair; 40401 for an unknown subject, 40403 when none
/// matches (Confluent's answers).
async fn by_metadata(
    State(inner): Shared,
    Path(subject): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let mut inner = inner.lock().unwrap();
    if let Some(r) = inner.gate() {
        return r;
    }
    let pairs: Vec<(String, String)> = url_pairs(query.as_deref().unwrap_or_default()).collect();
    let keys = pairs.iter().filter(|(k, _)| k == "key").map(|(_, v)| v);
    let values = pairs.iter().filter(|(k, _)| k == "value").map(|(_, v)| v);
    let wanted: Vec<(&String, &String)> = keys.zip(values).collect();
    if !inner.schemas.iter().any(|s| s.subject == subject) {
        return error(
            StatusCode::NOT_FOUND,
            40401,
            &format!("Subject '{subject}' not found."),
        );
    }
    let found = inner
        .schemas
        .iter()
        .filter(|s| s.subject == subject)
        .filter(|s| wanted.iter().all(|(k, v)| s.properties.get(*k) == Some(*v)))
        .max_by_key(|s| s.version);
    match found {
        Some(s) => ok(schema_body(s, true)),
        None => error(StatusCode::NOT_FOUND, 40403, "Schema not found"),
    }
}

/// `k=v` pairs of a query string, percent-decoded (`+` is a space).
fn url_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        (decode_component(k), decode_component(v))
    })
}

fn decode_component(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
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

// ---------------------------------------------------------------------------------------------
// A proxy in front of a registry: what an ingress or a hung server does, which the double
// itself never does.
// ---------------------------------------------------------------------------------------------

/// What a [`RegistryProxy`] does with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyAction {
    /// Pass it to the registry behind the proxy, and its answer back.
    Forward,
    /// Answer `404 Not Found` with an HTML page, as an ingress controller's default backend
    /// does while the registry's service has no ready endpoint.
    NotFoundHtml,
    /// Read it and never answer (a hung registry); the connection is held until the client
    /// drops it.
    Hang,
}

/// Decides per request: `(request number from 0, request line e.g. "GET /schemas/ids/1 HTTP/1.1")`.
pub type ProxyPolicy = dyn Fn(u64, &str) -> ProxyAction + Send + Sync;

/// A plain HTTP/1.1 proxy on a loopback port in front of a registry (a real one or the double),
/// deciding per request with a [`ProxyPolicy`]. Dropping it stops the server and its
/// connections.
pub struct RegistryProxy {
    pub url: String,
    log: Arc<Mutex<Vec<(String, ProxyAction)>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for RegistryProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl RegistryProxy {
    /// Starts a proxy to `upstream` (an `http://127.0.0.1:PORT` URL).
    pub async fn start(
        upstream: &str,
        policy: impl Fn(u64, &str) -> ProxyAction + Send + Sync + 'static,
    ) -> RegistryProxy {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("upstream is http://IP:PORT");
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind registry proxy");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let log: Arc<Mutex<Vec<(String, ProxyAction)>>> = Arc::default();
        let policy: Arc<ProxyPolicy> = Arc::new(policy);
        let shared = log.clone();
        let server = tokio::spawn(async move {
            // Dropped (aborting every connection task) when the server task is aborted.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                connections.spawn(proxy_connection(
                    client,
                    upstream,
                    policy.clone(),
                    shared.clone(),
                ));
                while connections.try_join_next().is_some() {}
            }
        });
        RegistryProxy { url, log, server }
    }

    /// Every request so far: its request line and what the proxy did.
    pub fn log(&self) -> Vec<(String, ProxyAction)> {
        self.log.lock().unwrap().clone()
    }

    /// Requests answered with `action`.
    pub fn count(&self, action: ProxyAction) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, a)| *a == action)
            .count()
    }
}

/// Serves one client connection: request by request (keep-alive), as the policy says.
async fn proxy_connection(
    client: tokio::net::TcpStream,
    upstream: SocketAddr,
    policy: Arc<ProxyPolicy>,
    log: Arc<Mutex<Vec<(String, ProxyAction)>>>,
) {
    let mut buf = Vec::new();
    loop {
        // One request: the head up to the blank line, then Content-Length bytes of body.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if proxy_read_some(&client, &mut buf).await == 0 {
                return;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let body_len = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())
                    .flatten()
            })
            .unwrap_or(0);
        while buf.len() < head_end + body_len {
            if proxy_read_some(&client, &mut buf).await == 0 {
                return;
            }
        }
        let body: Vec<u8> = buf[head_end..head_end + body_len].to_vec();
        buf.drain(..head_end + body_len);
        let line = head.lines().next().unwrap_or_default().to_string();
        let action = {
            let mut log = log.lock().unwrap();
            let action = policy(log.len() as u64, &line);
            log.push((line, action));
            action
        };
        match action {
            ProxyAction::Forward => {
                // A fresh upstream connection per request, closed by the registry after its
                // answer, so the answer is simply everything it sends.
                let mut request: String = head
                    .split("\r\n")
                    .filter(|l| {
                        !l.is_empty()
                            && !l
                                .split_once(':')
                                .is_some_and(|(n, _)| n.eq_ignore_ascii_case("connection"))
                    })
                    .map(|l| format!("{l}\r\n"))
                    .collect();
                request.push_str("Connection: close\r\n\r\n");
                let mut request = request.into_bytes();
                request.extend_from_slice(&body);
                let Ok(up) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                if !proxy_write_all(&up, &request).await {
                    return;
                }
                let mut answer = Vec::new();
                while proxy_read_some(&up, &mut answer).await > 0 {}
                if answer.is_empty() || !proxy_write_all(&client, &answer).await {
                    return;
                }
            }
            ProxyAction::NotFoundHtml => {
                let page = "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
                let answer = format!(
                    "HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                    page.len()
                );
                proxy_write_all(&client, answer.as_bytes()).await;
                return;
            }
            ProxyAction::Hang => {
                // Hold the connection, answering nothing, until the client gives up on it.
                let mut ignored = Vec::new();
                while proxy_read_some(&client, &mut ignored).await > 0 {
                    ignored.clear();
                }
                return;
            }
        }
    }
}

/// Appends what the socket has (waiting for something); 0 at end of stream or on error.
async fn proxy_read_some(s: &tokio::net::TcpStream, buf: &mut Vec<u8>) -> usize {
    let mut chunk = [0u8; 8192];
    loop {
        if s.readable().await.is_err() {
            return 0;
        }
        match s.try_read(&mut chunk) {
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return n;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return 0,
        }
    }
}

/// Writes all of `bytes`; false if the connection failed.
async fn proxy_write_all(s: &tokio::net::TcpStream, mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        if s.writable().await.is_err() {
            return false;
        }
        match s.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return false,
        }
    }
    true
}

/// `GET /config/{subject}[?defaultToGlobal=true]`: `{"compatibilityLevel": "..."}`; without a
/// subject-level setting, the global level (BACKWARD) or error 40408.
async fn subject_config(
    State(inner): Shared,
    Path(subject): Path<String>,
    uri: axum::http::Uri,
) -> Response {
    let mut inner = inner.lock().unwrap();
    if let Some(r) = inner.gate() {
        return r;
    }
    let to_global = uri
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "defaultToGlobal=true"));
    match inner.compatibility.get(&subject) {
        Some(level) => ok(json!({ "compatibilityLevel": level })),
        None if to_global => ok(json!({ "compatibilityLevel": "BACKWARD" })),
        None => error(
            StatusCode::NOT_FOUND,
            40408,
            &format!("Subject '{subject}' does not have subject-level compatibility configured"),
        ),
    }
}

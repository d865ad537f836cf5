//! Scraping the telemetry listener of a `schemabridge` child process: a free port for
//! `telemetry.listen`, `GET` over plain HTTP/1.0, polling until an answer holds, and a parser for
//! the Prometheus text exposition (samples by name and labels, families from `# TYPE`), and the
//! metric names a Grafana dashboard under deploy/grafana queries.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// `GET path` over HTTP/1.0: (status, body); `None` when nothing answers.
pub fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Some((status, body))
}

/// Polls `path` until `done(status, body)` holds; panics with the last answer after `timeout`.
pub async fn get_until(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
    what: &str,
    mut done: impl FnMut(u16, &str) -> bool,
) -> (u16, String) {
    let deadline = Instant::now() + timeout;
    loop {
        let answer = tokio::task::spawn_blocking({
            let path = path.to_string();
            move || get(addr, &path)
        })
        .await
        .expect("http get");
        if let Some((status, body)) = &answer
            && done(*status, body)
        {
            return (*status, body.clone());
        }
        assert!(
            Instant::now() < deadline,
            "{what}: GET {path} answered {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub type Labels = BTreeMap<String, String>;

/// One Prometheus text exposition: samples by name and labels.
#[derive(Debug, Default)]
pub struct Scrape {
    pub samples: BTreeMap<String, Vec<(Labels, f64)>>,
    /// Metric families from `# TYPE` lines.
    pub families: BTreeSet<String>,
}

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let mut out = Scrape::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                if let Some(name) = rest.split_whitespace().next() {
                    out.families.insert(name.to_string());
                }
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            let value: f64 = value.parse().expect("sample value");
            let (name, labels) = match series.split_once('{') {
                None => (series, BTreeMap::new()),
                Some((name, rest)) => {
                    let rest = rest.strip_suffix('}').expect("labels end with }");
                    let mut labels = BTreeMap::new();
                    // Label values here never hold `",` (route names, kinds, ids, field paths).
                    for pair in rest.split("\",").filter(|p| !p.is_empty()) {
                        let (k, v) = pair.split_once("=\"").expect("label pair");
                        labels.insert(k.to_string(), v.trim_end_matches('"').to_string());
                    }
                    (name, labels)
                }
            };
            out.samples
                .entry(name.to_string())
                .or_default()
                .push((labels, value));
        }
        out
    }

    /// The `schemabridge_*` metric families exported.
    pub fn schemabridge_families(&self) -> BTreeSet<&str> {
        self.families
            .iter()
            .map(String::as_str)
            .filter(|n| n.starts_with("schemabridge_"))
            .collect()
    }

    /// The sum of `name`'s samples whose labels include `with`.
    pub fn sum(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        self.samples
            .get(name)
            .map(|v| {
                v.iter()
                    .filter(|(labels, _)| {
                        with.iter()
                            .all(|(k, want)| labels.get(*k).is_some_and(|v| v == want))
                    })
                    .map(|(_, value)| value)
                    .sum()
            })
            .unwrap_or(0.0)
    }

    /// Every sample of `name` whose labels include `with`, by the value of label `by`.
    pub fn by(&self, name: &str, with: &[(&str, &str)], by: &str) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (labels, value) in self.samples.get(name).into_iter().flatten() {
            if with
                .iter()
                .all(|(k, want)| labels.get(*k).is_some_and(|v| v == want))
                && let Some(key) = labels.get(by)
            {
                *out.entry(key.clone()).or_default() += value;
            }
        }
        out
    }
}

/// Every `schemabridge_*` name the dashboard's queries use, with histogram suffixes removed.
pub fn dashboard_metrics(file: &str) -> BTreeSet<String> {
    let path = format!("{}/deploy/grafana/{file}", env!("CARGO_MANIFEST_DIR"));
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read the dashboard"))
            .expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr" | "definition", serde_json::Value::String(s)) => {
                            out.push(s.clone())
                        }
                        ("query", serde_json::Value::String(s)) => out.push(s.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    walk(&dashboard, &mut exprs);
    let name = regex::Regex::new(r"schemabridge_[a-z_]+").expect("regex");
    let mut names = BTreeSet::new();
    for expr in &exprs {
        for m in name.find_iter(expr) {
            let n = m.as_str();
            let n = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| n.strip_suffix(s))
                .unwrap_or(n);
            names.insert(n.to_string());
        }
    }
    assert!(
        names.len() >= 10,
        "the dashboard queries schemabridge metrics: {exprs:?}"
    );
    names
}

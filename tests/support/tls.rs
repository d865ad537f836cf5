//! TLS for tests: a throwaway PKI (rcgen) and an HTTPS front for the registry double.
//!
//! Owns: writing a CA, a server certificate for `localhost`/`127.0.0.1` and a client certificate
//! (PEM files in a test's directory), and `TlsFront`: Python's `ssl` module (OpenSSL, a TLS
//! implementation independent of the rustls the product uses) terminating TLS, optionally
//! requiring a client certificate signed by the CA, and relaying the plain bytes to a
//! [`RegistryDouble`] (or any loopback TCP service). It runs as a child process with its output in a log file, stopped by pid
//! (kill + wait), also on panic. Must not: speak the registry's REST API (the double does).

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use super::registry::RegistryDouble;

/// The PEM files of a test PKI, all in one directory.
pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A CA that signed nothing here: trusting it alone must fail like trusting nothing.
    pub other_ca: PathBuf,
}

fn ca(name: &str) -> (CertificateParams, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    (params, KeyPair::generate().expect("CA key"))
}

fn leaf(names: &[&str], purpose: ExtendedKeyUsagePurpose) -> (CertificateParams, KeyPair) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names.clone()).expect("leaf params");
    params
        .distinguished_name
        .push(DnType::CommonName, &names[0]);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![purpose];
    (params, KeyPair::generate().expect("leaf key"))
}

impl Pki {
    /// Generates the CA, a server certificate (SANs `localhost`, `127.0.0.1`) and a client
    /// certificate (`CN=schemabridge-test-client`) signed by it, into `dir`.
    pub fn generate(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).expect("pki dir");
        let (ca_params, ca_key) = ca("schemabridge test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");
        let issuer = Issuer::new(ca_params, ca_key);

        let (server_params, server_key) = leaf(
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let server_cert = server_params
            .signed_by(&server_key, &issuer)
            .expect("sign server cert");
        let (client_params, client_key) = leaf(
            &["schemabridge-test-client"],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let client_cert = client_params
            .signed_by(&client_key, &issuer)
            .expect("sign client cert");
        let (other_params, other_key) = ca("unrelated CA");
        let other_ca = other_params.self_signed(&other_key).expect("other CA");

        let write = |name: &str, pem: String| {
            let path = dir.join(name);
            std::fs::write(&path, pem).expect("write PEM");
            path
        };
        Pki {
            ca: write("ca.pem", ca_cert.pem()),
            server_cert: write("server.pem", server_cert.pem()),
            server_key: write("server.key", server_key.serialize_pem()),
            client_cert: write("client.pem", client_cert.pem()),
            client_key: write("client.key", client_key.serialize_pem()),
            other_ca: write("other-ca.pem", other_ca.pem()),
        }
    }
}

/// The front: accept, TLS handshake (the result logged, one line per connection), then relay
/// both ways to the upstream port until either side closes.
const FRONT_PY: &str = r#"
import os, socket, ssl, sys, threading

ca, cert, key, upstream, port_file, require = sys.argv[1:7]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ctx.load_verify_locations(ca)
ctx.verify_mode = ssl.CERT_REQUIRED if require == "1" else ssl.CERT_NONE

srv = socket.create_server(("127.0.0.1", 0))
with open(port_file + ".tmp", "w") as f:
    f.write(str(srv.getsockname()[1]))
os.rename(port_file + ".tmp", port_file)
print("listening", srv.getsockname()[1], flush=True)

def pump(a, b):
    try:
        while True:
            data = a.recv(65536)
            if not data:
                break
            b.sendall(data)
    except OSError:
        pass
    finally:
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

def serve(raw):
    try:
        conn = ctx.wrap_socket(raw, server_side=True)
    except (ssl.SSLError, OSError) as e:
        print("handshake failed:", e, flush=True)
        raw.close()
        return
    peer = conn.getpeercert()
    subject = dict(x[0] for x in peer["subject"]) if peer else {}
    print("handshake ok; client CN:", subject.get("commonName", "-"), flush=True)
    up = socket.create_connection(("127.0.0.1", int(upstream)))
    threading.Thread(target=pump, args=(up, conn), daemon=True).start()
    pump(conn, up)

while True:
    raw, _ = srv.accept()
    threading.Thread(target=serve, args=(raw,), daemon=True).start()
"#;

/// An HTTPS front (OpenSSL, via Python's `ssl`) for a registry double. Stops on drop.
pub struct TlsFront {
    /// `https://127.0.0.1:PORT`
    pub url: String,
    pub log: PathBuf,
    child: Option<Child>,
}

impl TlsFront {
    /// Serves `pki`'s server certificate on a free loopback port and relays to `upstream`;
    /// with `require_client_cert`, a client without a certificate signed by `pki.ca` is refused
    /// during the handshake. Files (script, port, log) go to `dir`.
    pub fn start(
        dir: &Path,
        pki: &Pki,
        upstream: &RegistryDouble,
        require_client_cert: bool,
    ) -> TlsFront {
        let upstream: SocketAddr = upstream
            .url
            .trim_start_matches("http://")
            .parse()
            .expect("registry double address");
        TlsFront::start_to(dir, pki, upstream, require_client_cert)
    }

    /// The same front for any TCP service on 127.0.0.1 (e.g. a Kafka broker's bootstrap port).
    pub fn start_to(
        dir: &Path,
        pki: &Pki,
        upstream: SocketAddr,
        require_client_cert: bool,
    ) -> TlsFront {
        let script = dir.join("tls_front.py");
        std::fs::write(&script, FRONT_PY).expect("write front script");
        let port_file = dir.join("tls_front.port");
        let _ = std::fs::remove_file(&port_file);
        let log = dir.join("tls_front.log");
        let out = File::create(&log).expect("front log");
        let err = out.try_clone().expect("front log");
        let child = Command::new("python3")
            .arg(&script)
            .arg(&pki.ca)
            .arg(&pki.server_cert)
            .arg(&pki.server_key)
            .arg(upstream.port().to_string())
            .arg(&port_file)
            .arg(if require_client_cert { "1" } else { "0" })
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("start python3 TLS front");
        let mut front = TlsFront {
            url: String::new(),
            log,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                break text.trim().parse::<u16>().expect("port number");
            }
            if let Some(status) = front
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("TLS front exited with {status}:\n{}", front.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "TLS front did not start:\n{}",
                front.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        front.url = format!("https://127.0.0.1:{port}");
        front
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log holds `fragment` `times` times (the front logs a handshake after
    /// its peer may already have seen the outcome); panics with the log after 30 s.
    pub fn wait_logged(&self, fragment: &str, times: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.log_text().matches(fragment).count() < times {
            assert!(
                Instant::now() < deadline,
                "TLS front never logged {fragment:?} {times} times:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Handshakes that succeeded and failed so far (from the front's log).
    pub fn handshakes(&self) -> (usize, usize) {
        let text = self.log_text();
        (
            text.matches("handshake ok").count(),
            text.matches("handshake failed").count(),
        )
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

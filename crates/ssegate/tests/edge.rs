//! TLS at the edge as an operator runs it: `check-config` reads the pair,
//! `ssegate run` serves TLS on both listeners, counts failed handshakes by
//! reason, exports each certificate's expiry, and takes a renewed pair on
//! SIGHUP without a restart.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use ssegate_tests::tls::{TestCa, loopback_name};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(20);

fn ssegate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ssegate"))
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ssegate-edge-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

fn config(dir: &Path, listen: u16, admin: u16) -> String {
    let d = dir.display();
    format!(
        "[upstream]\nurl_template = \"http://127.0.0.1:9/v1/{{topic}}\"\n\
         [bridge]\nlisten = \"127.0.0.1:{listen}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n\
         tls = {{ cert_file = \"{d}/streams.crt\", key_file = \"{d}/streams.key\" }}\n\
         admin_tls = {{ cert_file = \"{d}/admin.crt\", key_file = \"{d}/admin.key\" }}\n"
    )
}

/// A TLS connection to `port` trusting `ca`: the stream and the leaf the
/// server presented, or the handshake's error.
async fn connect(
    ca: &TestCa,
    port: u16,
) -> std::io::Result<(
    tokio_rustls::client::TlsStream<TcpStream>,
    CertificateDer<'static>,
)> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let tls = tokio::time::timeout(
        WAIT,
        ca.client(&[b"http/1.1"]).connect(loopback_name(), tcp),
    )
    .await
    .map_err(|_| std::io::Error::other("handshake timed out"))??;
    let leaf = tls.get_ref().1.peer_certificates().expect("a chain")[0].clone();
    Ok((tls, leaf))
}

/// `GET path` over TLS on `port`; the whole answer.
async fn https(ca: &TestCa, port: u16, path: &str) -> String {
    let (mut tls, _) = connect(ca, port).await.expect("a handshake");
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.expect("sent");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, tls.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// The value of the series `series` (name and labels, as rendered).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn check_config_reads_the_pair() {
    let dir = scratch("check");
    let ca = TestCa::new();
    ca.leaf(&["127.0.0.1"]).write(&dir, "streams");
    ca.leaf(&["127.0.0.1"]).write(&dir, "admin");
    let file = dir.join("ssegate.toml");
    std::fs::write(&file, config(&dir, free_port(), free_port())).expect("write");
    let ok = ssegate()
        .arg("check-config")
        .arg(&file)
        .output()
        .expect("runs");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // The streams key swapped for the admin one: refused, naming the key.
    std::fs::copy(dir.join("admin.key"), dir.join("streams.key")).expect("copy");
    let bad = ssegate()
        .arg("check-config")
        .arg(&file)
        .output()
        .expect("runs");
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("bridge.tls.key_file"), "{stderr}");
    assert!(stderr.contains("does not go with"), "{stderr}");
    std::fs::remove_file(dir.join("admin.crt")).expect("remove");
    ca.leaf(&["127.0.0.1"]).write(&dir, "streams");
    let missing = ssegate()
        .arg("check-config")
        .arg(&file)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("bridge.admin_tls.cert_file"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn run_serves_tls_counts_failed_handshakes_and_renews_on_sighup() {
    let dir = scratch("run");
    let ca = TestCa::new();
    let first = ca.leaf_until(&["127.0.0.1"], (2031, 3, 1));
    first.write(&dir, "streams");
    ca.leaf(&["127.0.0.1"]).write(&dir, "admin");
    let (listen, admin) = (free_port(), free_port());
    let file = dir.join("ssegate.toml");
    std::fs::write(&file, config(&dir, listen, admin)).expect("write");
    let running = Running(
        ssegate()
            .args(["run", "--config"])
            .arg(&file)
            .env_remove("SSEGATE_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ssegate runs"),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let deadline = Instant::now() + WAIT;
        while connect(&ca, admin).await.is_err()
            || !https(&ca, admin, "/healthz")
                .await
                .starts_with("HTTP/1.1 200")
        {
            assert!(
                Instant::now() < deadline,
                "the admin listener never answered over TLS"
            );
            // Wall clock: the gateway is another process; a bounded poll
            // until it answers.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (_, leaf) = connect(&ca, listen).await.expect("a handshake");
        assert_eq!(leaf, first.der);
        let answer = https(&ca, listen, "/nothing-here").await;
        assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");

        // A client that does not trust the certificate, one that speaks
        // plain HTTP, one that says nothing and leaves.
        let stranger = TestCa::new();
        assert!(connect(&stranger, listen).await.is_err());
        let mut plain = TcpStream::connect(("127.0.0.1", listen))
            .await
            .expect("connects");
        plain
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("sent");
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(WAIT, plain.read_to_end(&mut sink)).await;
        drop(
            TcpStream::connect(("127.0.0.1", listen))
                .await
                .expect("connects"),
        );

        let streams = |reason: &str| {
            format!(
                "ssegate_tls_handshake_failures_total{{listener=\"streams\",reason=\"{reason}\"}}"
            )
        };
        let deadline = Instant::now() + WAIT;
        let metrics = loop {
            let metrics = https(&ca, admin, "/metrics").await;
            if sample(&metrics, &streams("eof")) == Some(1.0) {
                break metrics;
            }
            assert!(Instant::now() < deadline, "failures counted: {metrics}");
            // Wall clock: another process counts them.
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(
            sample(&metrics, &streams("peer_rejects_certificate")),
            Some(1.0),
            "{metrics}"
        );
        assert_eq!(sample(&metrics, &streams("not_tls")), Some(1.0));
        let not_after = "ssegate_tls_certificate_not_after_seconds{listener=\"streams\"}";
        // 2031-03-01T00:00:00Z
        assert_eq!(
            sample(&metrics, not_after),
            Some(1_930_089_600.0),
            "{metrics}"
        );

        // Renewal: the new pair, then SIGHUP.
        let second = ca.leaf_until(&["127.0.0.1"], (2032, 3, 1));
        second.write(&dir, "streams");
        let pid = running.0.id().to_string();
        let hup = Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill runs");
        assert!(hup.success());
        let deadline = Instant::now() + WAIT;
        loop {
            let (_, leaf) = connect(&ca, listen).await.expect("a handshake");
            if leaf == second.der {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the renewed pair is never served"
            );
            // Wall clock: the reload runs in another process.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let metrics = https(&ca, admin, "/metrics").await;
        assert_eq!(sample(&metrics, not_after), Some(1_961_712_000.0));
    });
    drop(running);
    let _ = std::fs::remove_dir_all(&dir);
}

//! The `ssegate` binary as an operator runs it: the demo serves and exits 0
//! on SIGTERM, `check-config` accepts the example and refuses a bad file
//! naming the key, `run` refuses an invalid config at start, reloads, and
//! refuses an upstream redirect back to itself.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

fn ssegate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ssegate"))
}

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../ssegate.example.toml")
}

/// A temporary config file, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> Self {
        let path = std::env::temp_dir().join(format!("ssegate-{name}-{}.toml", std::process::id()));
        std::fs::write(&path, text).expect("write");
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn check_config_accepts_the_example_and_names_the_bad_key() {
    let ok = ssegate()
        .arg("check-config")
        .arg(example())
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let bad = TempFile::new(
        "bad",
        "[upstream]\nurl_template = \"http://127.0.0.1:1/{topic}\"\n[bridge]\nqueue_events = 0\n",
    );
    let out = ssegate().arg("check-config").arg(&bad.0).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bridge.queue_events"), "{stderr}");
    let typo = TempFile::new("typo", "[upstream]\nurl_templat = \"x\"\n");
    let out = ssegate().arg("check-config").arg(&typo.0).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("url_templat"));
    let missing = ssegate()
        .args(["check-config", "/nonexistent/ssegate.toml"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
}

#[test]
fn run_refuses_an_invalid_config_at_start() {
    let bad = TempFile::new(
        "run-bad",
        "[upstream]\nurl_template = \"http://{topic}.example.test/s\"\n",
    );
    let out = ssegate()
        .args(["run", "--config"])
        .arg(&bad.0)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("host"));
}

/// Reads the child's stdout lines until one starts with `prefix`.
fn wait_for_line(lines: &mpsc::Receiver<String>, prefix: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .expect("the demo printed its addresses");
        if let Some(rest) = line.trim().strip_prefix(prefix) {
            return rest.trim().to_string();
        }
    }
}

/// One HTTP/1.1 request on a fresh connection; the whole answer.
fn http(addr: &str, method: &str, path: &str) -> String {
    let mut socket = TcpStream::connect(addr).expect("it listens");
    socket.set_read_timeout(Some(WAIT)).expect("a read timeout");
    write!(
        socket,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{action}Content-Length: 0\r\nConnection: close\r\n\r\n",
        // Every admin action carries it (see `sse_bridge::admin::guard`).
        action = if method == "POST" { "X-Ssegate-Action: 1\r\n" } else { "" }
    )
    .expect("the request is sent");
    let mut answer = String::new();
    let _ = socket.read_to_string(&mut answer);
    answer
}

struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_demo_serves_a_stream_and_exits_zero_on_sigterm() {
    let mut child = ssegate()
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--rate",
            "50",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the demo starts");
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let mut demo = Demo(child);
    // The log, read to its end by a thread (the demo's exit closes it).
    let log = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let addr = wait_for_line(&lines, "listening on http://");
    let admin = wait_for_line(&lines, "admin on http://");

    // A client gets quotes.
    let mut stream = TcpStream::connect(&addr).expect("the gateway listens");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        stream,
        "GET /v1/stream/AAPL HTTP/1.1\r\nHost: {addr}\r\n\r\n"
    )
    .unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !seen.contains("\"s\":\"AAPL\"") {
        let n = stream.read(&mut buf).expect("data in time");
        assert!(n > 0, "the stream ended early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    assert!(seen.contains("retry: 3000"));

    // The admin listener answers.
    let mut probe = TcpStream::connect(&admin).expect("admin listens");
    probe.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        probe,
        "GET /healthz HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = probe.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let mut probe = TcpStream::connect(&admin).expect("admin listens");
    probe.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        probe,
        "GET /metrics HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut metrics = String::new();
    let _ = probe.read_to_string(&mut metrics);
    for name in [
        "ssegate_bridge_streams",
        "ssegate_upstream_connections_opened_total",
    ] {
        assert!(metrics.contains(name), "/metrics has {name}: {metrics}");
    }

    // The log filter changes at runtime; a bad one is refused.
    let current = http(&admin, "GET", "/admin/log-level");
    assert!(current.starts_with("HTTP/1.1 200"), "{current}");
    let changed = http(
        &admin,
        "POST",
        "/admin/log-level?filter=info%2Csse_conn_pool%3Ddebug",
    );
    assert!(changed.starts_with("HTTP/1.1 200"), "{changed}");
    assert!(
        http(&admin, "GET", "/admin/log-level").ends_with("info,sse_conn_pool=debug\n"),
        "the new filter is in force"
    );
    let refused = http(
        &admin,
        "POST",
        "/admin/log-level?filter=%5B%7Bnot%20a%20filter",
    );
    assert!(refused.starts_with("HTTP/1.1 400"), "{refused}");
    assert!(refused.contains("refused filter"), "{refused}");
    assert!(
        http(&admin, "GET", "/admin/log-level").ends_with("info,sse_conn_pool=debug\n"),
        "a refused filter changes nothing"
    );

    // SIGTERM: the client's stream ends with a retry hint; exit status 0.
    let pid = demo.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    let rest = String::from_utf8_lossy(&rest);
    assert!(
        rest.contains("retry:"),
        "the stream ended with a retry hint"
    );
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = demo.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the demo did not exit");
        // Wall clock: the demo is another process; a bounded poll for its exit.
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status:?}");
    // A normal shutdown warns about nothing (it used to warn once per
    // topic that its upstream "stopped for good").
    let log = log.join().expect("the log reader");
    assert!(log.iter().any(|l| l.contains("stopped")), "{log:#?}");
    let warnings: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("WARN") && !l.contains("admin action"))
        .collect();
    assert!(warnings.is_empty(), "{warnings:#?}");
}

/// A loopback port free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

#[test]
fn run_reloads_its_file_on_request_and_on_sighup() {
    let (listen, admin) = (free_port(), free_port());
    let config = |max_per_ip: u32, heartbeat: &str| {
        format!(
            "[upstream]\nurl_template = \"http://127.0.0.1:9/v1/{{topic}}\"\n\
             [bridge]\nlisten = \"127.0.0.1:{listen}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n\
             max_per_ip = {max_per_ip}\nheartbeat = \"{heartbeat}\"\n"
        )
    };
    let file = TempFile::new("reload", &config(100, "15s"));
    let mut child = ssegate()
        .args(["run", "--config"])
        .arg(&file.0)
        .env_remove("SSEGATE_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ssegate runs");
    let stderr = child.stderr.take().expect("piped");
    let running = Demo(child);
    let (tx, log) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let admin = format!("127.0.0.1:{admin}");
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(&admin).is_err()
        || !http(&admin, "GET", "/healthz").starts_with("HTTP/1.1 200")
    {
        assert!(
            Instant::now() < deadline,
            "the admin listener never answered"
        );
        // Wall clock: the gateway is another process; a bounded poll until it
        // answers.
        std::thread::sleep(Duration::from_millis(50));
    }

    // POST /admin/reload: what applied, and what needs a restart.
    std::fs::write(&file.0, config(5, "5s")).expect("write");
    let reloaded = http(&admin, "POST", "/admin/reload");
    assert!(reloaded.starts_with("HTTP/1.1 200"), "{reloaded}");
    assert!(reloaded.contains("applied [max_per_ip]"), "{reloaded}");
    assert!(
        reloaded.contains("need a restart: [heartbeat]"),
        "{reloaded}"
    );

    // An invalid file is refused and changes nothing.
    std::fs::write(&file.0, config(0, "5s")).expect("write");
    let refused = http(&admin, "POST", "/admin/reload");
    assert!(refused.starts_with("HTTP/1.1 400"), "{refused}");
    assert!(refused.contains("bridge.max_per_ip"), "{refused}");

    // SIGHUP reloads too (the log says what changed).
    std::fs::write(&file.0, config(7, "5s")).expect("write");
    let pid = running.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill runs")
            .success()
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = log.recv_timeout(left).expect("the reload is logged");
        if line.contains("reloaded") {
            assert!(line.contains("applied [max_per_ip]"), "{line}");
            break;
        }
    }
    assert!(
        http(&admin, "GET", "/healthz").starts_with("HTTP/1.1 200"),
        "still serving after SIGHUP"
    );
    drop(running);
}

/// Starts `ssegate run` on `config`; returns it once its admin listener
/// (`admin`) answers `/healthz`.
fn run_until_healthy(file: &TempFile, admin: &str) -> Demo {
    let child = ssegate()
        .args(["run", "--config"])
        .arg(&file.0)
        .env_remove("SSEGATE_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ssegate runs");
    let running = Demo(child);
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(admin).is_err()
        || !http(admin, "GET", "/healthz").starts_with("HTTP/1.1 200")
    {
        assert!(
            Instant::now() < deadline,
            "the admin listener never answered"
        );
        // Wall clock: the gateway is another process; a bounded poll until it
        // answers.
        std::thread::sleep(Duration::from_millis(50));
    }
    running
}

/// An upstream that answers every request with `302` to
/// `http://{target}/{path}` (the path chosen by the requested topic), for
/// at most `WAIT`.
fn redirecting_upstream(targets: Vec<(&'static str, String)>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    let port = listener.local_addr().expect("an address").port();
    listener.set_nonblocking(true).expect("non-blocking");
    std::thread::spawn(move || {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            let Ok((mut socket, _)) = listener.accept() else {
                // Wall clock: polled so that the thread ends by itself.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            let _ = socket.set_nonblocking(false);
            let _ = socket.set_read_timeout(Some(WAIT));
            let mut head = [0u8; 2048];
            let n = socket.read(&mut head).unwrap_or(0);
            let head = String::from_utf8_lossy(&head[..n]);
            let location = targets
                .iter()
                .find(|(topic, _)| head.contains(topic))
                .map_or_else(String::new, |(_, to)| to.clone());
            let _ = write!(
                socket,
                "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n"
            );
        }
    });
    port
}

#[test]
fn an_upstream_redirect_to_the_gateway_itself_is_refused() {
    let (listen, admin) = (free_port(), free_port());
    let upstream = redirecting_upstream(vec![
        ("ADMIN", format!("http://127.0.0.1:{admin}/admin/events")),
        ("LOOP", format!("http://localhost:{listen}/v1/stream/LOOP")),
        ("AWAY", "http://127.0.0.2:9/elsewhere".to_string()),
    ]);
    let file = TempFile::new(
        "redirect",
        &format!(
            "[upstream]\nurl_template = \"http://127.0.0.1:{upstream}/v1/{{topic}}\"\n\
             redirect_hosts = [\"localhost\", \"127.0.0.1\"]\n\
             [bridge]\nlisten = \"127.0.0.1:{listen}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n"
        ),
    );
    let admin = format!("127.0.0.1:{admin}");
    let _running = run_until_healthy(&file, &admin);
    let listen = format!("127.0.0.1:{listen}");
    // Its admin listener, its own stream listener (even with the host
    // listed), another origin not listed: each a clear 502 at once, not a
    // stream of the gateway's own pages.
    for topic in ["ADMIN", "LOOP", "AWAY"] {
        let answer = http(&listen, "GET", &format!("/v1/stream/{topic}"));
        assert!(answer.starts_with("HTTP/1.1 502"), "{topic}: {answer}");
        assert!(answer.contains("redirect"), "{topic}: {answer}");
        assert!(!answer.contains("event:"), "{topic}: {answer}");
    }
    let metrics = http(&admin, "GET", "/metrics");
    assert!(
        metrics.contains("ssegate_upstream_streams_stopped_total{reason=\"redirect_refused\"} 3"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("stopped_total"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

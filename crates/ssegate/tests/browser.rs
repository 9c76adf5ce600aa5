//! ssegate in a real browser: headless Chromium (Debian's `chromium`, which
//! `.ci/run` installs), driven over the DevTools protocol, against the
//! `ssegate` binary on loopback.
//!
//! - The demo's page: one `EventSource` on two topics receives quotes,
//!   survives an operator's disconnect (`POST /admin/disconnect`), comes back
//!   with `Last-Event-ID` and has neither gap nor duplicate; the status page,
//!   in the same browser, lists the demo's topics.
//! - With JWT auth and the token in a cookie: a page without the cookie is
//!   refused, the same page with it receives its topics. With an admin
//!   token, the status page shows its login form; after signing in, its
//!   table fills (the session cookie carries the stream; no token in a URL).
//!
//! - Over `https` (a test CA; Chromium trusts the leaf's key by its pin),
//!   one page opens 20 `EventSource`s to one origin and all 20 receive:
//!   HTTP/2 carries them on one connection. The control, the same page over
//!   cleartext HTTP/1.1, gets 6 and the 7th stalls (the browser's limit of 6
//!   connections per origin).
//!
//! The outcome is read from the page (`window.ssegate`, kept by the demo
//! page; the status page's table) with `Runtime.evaluate`. Every wait is
//! bounded; the browser and the gateway are killed on drop.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(30);

/// Chromium: `SSEGATE_CHROMIUM`, or Debian's.
fn chromium() -> PathBuf {
    let path = std::env::var_os("SSEGATE_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        path.exists(),
        "{} is missing: install Debian's chromium (.ci/run does), or set SSEGATE_CHROMIUM",
        path.display()
    );
    path
}

/// A headless Chromium with its own profile, killed on drop.
struct Browser {
    child: Child,
    profile: PathBuf,
    devtools: String,
}

impl Browser {
    fn launch(name: &str) -> Self {
        Self::launch_with(name, &[])
    }

    /// As `launch`, with `extra` command-line switches.
    fn launch_with(name: &str, extra: &[String]) -> Self {
        let profile =
            std::env::temp_dir().join(format!("ssegate-chromium-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).expect("a profile directory");
        let child = Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                // Loopback only, and a port the system picks.
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium starts");
        // Chromium writes the port it chose into the profile.
        let file = profile.join("DevToolsActivePort");
        let deadline = Instant::now() + WAIT;
        let port = loop {
            if let Some(port) = std::fs::read_to_string(&file)
                .ok()
                .and_then(|text| text.lines().next().map(str::to_string))
                .filter(|line| !line.is_empty())
            {
                break port;
            }
            assert!(Instant::now() < deadline, "chromium did not open DevTools");
            // Wall clock: Chromium is another process; a bounded poll for its file.
            std::thread::sleep(Duration::from_millis(50));
        };
        Self {
            child,
            profile,
            devtools: format!("127.0.0.1:{port}"),
        }
    }

    /// A new tab on `url`.
    async fn open(&self, url: &str) -> Page {
        let answer = http(&self.devtools, "PUT", "/json/new?about:blank", &[]);
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        let target: Value = serde_json::from_str(body).expect("a DevTools target");
        let ws = target["webSocketDebuggerUrl"]
            .as_str()
            .expect("a WebSocket URL");
        let (socket, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(ws))
            .await
            .expect("DevTools in time")
            .expect("DevTools answers");
        let mut page = Page { socket, next: 1 };
        page.call("Page.navigate", json!({"url": url})).await;
        page
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// One tab, over the DevTools protocol.
struct Page {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next: u64,
}

impl Page {
    /// Calls `method` and returns its result (events in between are skipped).
    async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next;
        self.next += 1;
        let request = json!({"id": id, "method": method, "params": params});
        self.socket
            .send(Message::text(request.to_string()))
            .await
            .expect("sent to DevTools");
        let reply = tokio::time::timeout(WAIT, async {
            while let Some(message) = self.socket.next().await {
                let Ok(Message::Text(text)) = message else {
                    continue;
                };
                let value: Value = serde_json::from_str(&text).expect("JSON from DevTools");
                if value["id"] == id {
                    return value;
                }
            }
            panic!("DevTools closed the connection");
        })
        .await
        .expect("DevTools answers in time");
        assert!(reply.get("error").is_none(), "{method}: {reply}");
        reply["result"].clone()
    }

    /// The value of a JavaScript expression in the page.
    async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true}),
            )
            .await;
        result["result"]["value"].clone()
    }

    /// Waits (bounded) until `expression` is true in the page.
    async fn wait_for(&mut self, expression: &str, what: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            if self.eval(expression).await == Value::Bool(true) {
                return;
            }
            let state = self.eval("JSON.stringify(window.ssegate || null)").await;
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the page saw {state}"
            );
            // Wall clock: the page runs in Chromium; a bounded poll of its state.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// One HTTP/1.1 request on a fresh connection; the answer (head and
/// body). The body is read to its `Content-Length` when there is one:
/// Chromium's DevTools server keeps the connection open.
fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> String {
    let mut socket = TcpStream::connect(addr).expect("it listens");
    socket.set_read_timeout(Some(WAIT)).expect("a read timeout");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Content-Length: 0\r\nConnection: close\r\n\r\n");
    socket.write_all(request.as_bytes()).expect("sent");
    let mut answer = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = socket.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head.lines().find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            });
            if length.is_some_and(|length| body.len() >= length) {
                break;
            }
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// The ssegate binary, killed on drop; its printed addresses.
struct Gateway {
    child: Child,
    addr: String,
    admin: String,
}

impl Gateway {
    fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ssegate"))
            .args(args)
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ssegate starts");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let out = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = out.send(line);
            }
        });
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut gateway = Self {
            child,
            addr: String::new(),
            admin: String::new(),
        };
        let deadline = Instant::now() + WAIT;
        while gateway.addr.is_empty() || gateway.admin.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines
                .recv_timeout(left)
                .expect("ssegate prints its addresses");
            // The demo's banner, or `run`'s log line (`gateway listening
            // addr=... admin_addr=...`).
            if let Some(rest) = line.trim().strip_prefix("listening on http://") {
                gateway.addr = rest.to_string();
            } else if let Some(rest) = line.trim().strip_prefix("admin on http://") {
                gateway.admin = rest.to_string();
            } else if line.contains("gateway listening") {
                for word in line.split_whitespace() {
                    if let Some(addr) = word.strip_prefix("addr=") {
                        gateway.addr = addr.to_string();
                    } else if let Some(admin) = word.strip_prefix("admin_addr=") {
                        gateway.admin = admin.to_string();
                    }
                }
            }
        }
        gateway
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_resumes_after_a_disconnect_and_the_status_page_lists_the_topics() {
    let gateway = Gateway::spawn(&[
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--rate",
        "50",
    ]);
    let browser = Browser::launch("demo");
    let mut page = browser
        .open(&format!("http://{}/?topic=AAPL&topic=MSFT", gateway.addr))
        .await;
    page.wait_for(
        "ssegate.opens === 1 && ssegate.topics.AAPL.events >= 20 && ssegate.topics.MSFT.events >= 20",
        "quotes on both topics",
    )
    .await;
    let before = page.eval("JSON.stringify(ssegate)").await;
    let before: Value = serde_json::from_str(before.as_str().expect("JSON text")).expect("JSON");

    // The gateway ends the page's stream; the browser comes back by itself.
    let answer = http(
        &gateway.admin,
        "POST",
        "/admin/disconnect",
        &[("x-ssegate-action", "1")],
    );
    assert!(answer.contains("\"subscribers\":1"), "{answer}");
    let expression = format!(
        "ssegate.opens >= 2 && ssegate.topics.AAPL.events >= {} && ssegate.topics.MSFT.events >= {}",
        before["topics"]["AAPL"]["events"]
            .as_u64()
            .expect("a count")
            + 100,
        before["topics"]["MSFT"]["events"]
            .as_u64()
            .expect("a count")
            + 100,
    );
    page.wait_for(&expression, "a reconnection and 100 more quotes per topic")
        .await;
    let after = page.eval("JSON.stringify(ssegate)").await;
    let after: Value = serde_json::from_str(after.as_str().expect("JSON text")).expect("JSON");
    for topic in ["AAPL", "MSFT"] {
        let t = &after["topics"][topic];
        assert_eq!(
            t["gaps"], 0,
            "{topic}: no gap across the reconnection: {after}"
        );
        assert_eq!(t["duplicates"], 0, "{topic}: no duplicate: {after}");
    }
    assert_eq!(after["resets"], 0, "resumed, not reset: {after}");
    assert_eq!(after["gaps_reported"], 0, "{after}");
    // What the page missed while away was replayed (the browser sent
    // Last-Event-ID): at 50 quotes/s per topic, over the 3 s retry hint.
    let metrics = http(&gateway.admin, "GET", "/metrics", &[]);
    let replayed = counter(&metrics, "ssegate_bridge_events_replayed_total");
    assert!(replayed >= 50.0, "replayed {replayed}");

    // Every demo topic on one page, then the status page in the same browser.
    let mut all = browser
        .open(&format!(
            "http://{}/?topic=AAPL&topic=MSFT&topic=GOOG&topic=AMZN&topic=TSLA",
            gateway.addr
        ))
        .await;
    all.wait_for(
        "Object.values(ssegate.topics).every((t) => t.events > 0)",
        "quotes on the five demo topics",
    )
    .await;
    let mut status = browser.open(&format!("http://{}/", gateway.admin)).await;
    status
        .wait_for(
            "['AAPL','MSFT','GOOG','AMZN','TSLA'].every((t) => \
             document.querySelector(`#rows tr[data-topic=\"${t}\"]`) !== null)",
            "the status page's table to list the demo's topics",
        )
        .await;
    let rows = status
        .eval("Array.from(document.querySelectorAll('#rows tr')).map((r) => r.innerText)")
        .await;
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows.len(), 5, "{rows:?}");
    for row in rows {
        let row = row.as_str().expect("text");
        assert!(
            row.contains("\topen\t") && row.contains("healthy"),
            "every stream is up and healthy: {row}"
        );
    }
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/jwt")
        .join(name)
}

fn jwt(topics: &[&str]) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        + 600;
    let key = jsonwebtoken::EncodingKey::from_ec_pem(
        &std::fs::read(fixture("es256-private.pem")).expect("the fixture"),
    )
    .expect("an EC key");
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        &json!({"sub": "browser", "aud": "ssegate", "exp": exp, "topics": topics}),
        &key,
    )
    .expect("a token")
}

/// The admin token of the JWT test's gateway.
const ADMIN_TOKEN: &str = "browser-admin-token-0123";

fn write_config(dir: &Path, sim: &str) -> PathBuf {
    let path = dir.join("ssegate.toml");
    let text = format!(
        r#"[upstream]
url_template = "{sim}/v1/quotes/{{topic}}/stream"
[bridge]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
demo_page = true
admin_token = "{admin_token}"
[bridge.auth]
cookie = "ssegate_token"
[bridge.auth.jwt]
algorithms = ["ES256"]
es256_public_key_file = "{key}"
audience = ["ssegate"]
"#,
        key = fixture("es256-public.pem").display(),
        admin_token = ADMIN_TOKEN,
    );
    std::fs::write(&path, text).expect("the config is written");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_with_a_jwt_cookie_subscribes_and_one_without_is_refused() {
    let sim = sse_upstream_sim::Sim::builder()
        .topics(["AAPL", "MSFT", "GOOG"])
        .events_per_sec(50.0)
        .start("127.0.0.1:0")
        .await
        .expect("the simulator starts");
    let dir = std::env::temp_dir().join(format!("ssegate-browser-jwt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let config = write_config(&dir, &sim.url());
    let config = config.to_str().expect("UTF-8");
    let gateway = Gateway::spawn(&["run", "--config", config, "--log-format", "text"]);
    let browser = Browser::launch("jwt");
    let url = format!("http://{}/?topic=AAPL&topic=MSFT", gateway.addr);

    // No cookie: the EventSource is refused (401) and gives up.
    let mut page = browser.open(&url).await;
    page.wait_for(
        "ssegate.errors >= 1 && ssegate.opens === 0",
        "the refusal of a page without a token",
    )
    .await;
    let status = http(&gateway.addr, "GET", "/v1/stream?topic=AAPL", &[]);
    assert!(status.starts_with("HTTP/1.1 401"), "{status}");

    // The cookie a login would have set, then the same page again.
    let token = jwt(&["AAPL", "MSFT"]);
    page.call("Network.enable", json!({})).await;
    page.call(
        "Network.setCookie",
        json!({
            "name": "ssegate_token",
            "value": token,
            "url": format!("http://{}/", gateway.addr),
            "httpOnly": true,
            "sameSite": "Strict",
        }),
    )
    .await;
    page.call("Page.reload", json!({})).await;
    page.wait_for(
        "ssegate.opens === 1 && ssegate.topics.AAPL.events >= 10 && ssegate.topics.MSFT.events >= 10",
        "quotes with the cookie",
    )
    .await;
    // The token does not cover GOOG: that page is refused.
    let mut other = browser
        .open(&format!("http://{}/?topic=GOOG", gateway.addr))
        .await;
    other
        .wait_for(
            "ssegate.errors >= 1 && ssegate.opens === 0",
            "the refusal of a topic outside the token",
        )
        .await;
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let metrics = http(
        &gateway.admin,
        "GET",
        "/metrics",
        &[("authorization", &bearer)],
    );
    assert!(
        counter(
            &metrics,
            "ssegate_bridge_streams_refused_total{reason=\"forbidden\"}"
        ) >= 1.0,
        "{metrics}"
    );

    // The status page with an admin token: its login form, then the table
    // (its EventSource carries the session cookie; no token in any URL).
    let mut status = browser.open(&format!("http://{}/", gateway.admin)).await;
    status
        .wait_for(
            "document.querySelector('form[action=\"/admin/login\"]') !== null",
            "the login form",
        )
        .await;
    status
        .eval(&format!(
            "document.getElementById('token').value = '{ADMIN_TOKEN}'; \
             document.querySelector('form').submit(); true"
        ))
        .await;
    status
        .wait_for(
            "['AAPL','MSFT'].every((t) => \
             document.querySelector(`#rows tr[data-topic=\"${t}\"]`) !== null)",
            "the status page's table after signing in",
        )
        .await;
    let url = status.eval("location.href").await;
    assert!(
        !url.as_str().unwrap_or("").contains("token"),
        "no token in the URL: {url}"
    );
    drop(browser);
    drop(gateway);
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two instances of a cluster on one `nats-server -js`: the status page of
/// the instance that follows a topic shows the cluster line and names the
/// topic's owner (the other instance) in its owner column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_of_a_cluster_names_each_topics_owner() {
    let nats = ssegate_tests::nats::NatsServer::start().await;
    let sim = sse_upstream_sim::Sim::builder()
        .topics(["AAPL", "MSFT"])
        .events_per_sec(20.0)
        .start("127.0.0.1:0")
        .await
        .expect("the simulator starts");
    let dir = std::env::temp_dir().join(format!("ssegate-browser-cluster-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let spawn = |name: &str| {
        let path = dir.join(format!("{name}.toml"));
        let text = format!(
            "[upstream]\nurl_template = \"{}/v1/quotes/{{topic}}/stream\"\n\
             [bridge]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
             [cluster]\nenabled = true\nname = \"browser\"\ninstance = \"{name}\"\n\
             nats_urls = [\"{}\"]\n",
            sim.url(),
            nats.url()
        );
        std::fs::write(&path, text).expect("the config is written");
        let path = path.to_str().expect("UTF-8").to_string();
        Gateway::spawn(&["run", "--config", &path, "--log-format", "text"])
    };
    let (a, b) = (spawn("alpha"), spawn("beta"));
    // alpha's subscriber comes first: alpha owns AAPL; beta follows it.
    let mut on_a = subscribe(&a.addr, "AAPL");
    let mut on_b = subscribe(&b.addr, "AAPL");
    let browser = Browser::launch("cluster");
    let mut status = browser.open(&format!("http://{}/", b.admin)).await;
    status
        .wait_for(
            "(() => { const row = document.querySelector('#rows tr[data-topic=\"AAPL\"]'); \
             return row !== null && row.innerText.includes('alpha') \
             && row.innerText.includes('followed through NATS'); })()",
            "beta's status page to name alpha as AAPL's owner",
        )
        .await;
    let line = status
        .eval("document.getElementById('cluster').innerText")
        .await;
    let line = line.as_str().expect("text");
    assert!(
        line.contains("cluster browser") && line.contains("instance beta"),
        "{line}"
    );
    assert!(
        line.contains("NATS connected") && line.contains("owns 0 of 1"),
        "{line}"
    );
    let header = status
        .eval("Array.from(document.querySelectorAll('th')).filter((th) => !th.hidden).map((th) => th.innerText).join(',')")
        .await;
    assert!(
        header
            .as_str()
            .is_some_and(|h| h.starts_with("topic,owner,")),
        "{header}"
    );
    // The owner's own page: its upstream row, owned by this instance.
    let mut owner = browser.open(&format!("http://{}/", a.admin)).await;
    owner
        .wait_for(
            "(() => { const row = document.querySelector('#rows tr[data-topic=\"AAPL\"]'); \
             return row !== null && row.innerText.includes('this instance') \
             && row.innerText.includes('open'); })()",
            "alpha's status page to show its own upstream of AAPL",
        )
        .await;
    let mut byte = [0u8; 1];
    assert_eq!(on_a.read(&mut byte).expect("alpha's stream is open"), 1);
    assert_eq!(on_b.read(&mut byte).expect("beta's stream is open"), 1);
    drop((a, b));
    sim.shutdown().await;
}

/// A subscriber of `topic` on `addr` that has its response head; the
/// stream stays open while the socket lives.
fn subscribe(addr: &str, topic: &str) -> TcpStream {
    let mut socket = TcpStream::connect(addr).expect("connects");
    socket.set_read_timeout(Some(WAIT)).expect("a read timeout");
    write!(
        socket,
        "GET /v1/stream/{topic} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .expect("the request is sent");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(socket.read(&mut byte).expect("the response head"), 1);
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    socket
}

/// Opens 20 `EventSource`s on one topic from the page, counting the quotes
/// each receives (the simulator's events are of type `quote`) in
/// `window.got`.
const TWENTY_SOURCES: &str = "window.got = []; window.sources = []; \
    for (let i = 0; i < 20; i++) { \
      window.got.push(0); \
      const source = new EventSource('/v1/stream/AAPL'); \
      source.addEventListener('quote', () => { window.got[i] += 1; }); \
      window.sources.push(source); \
    } true";

/// A config for `run` in front of `sim`, with `extra` `[bridge]` lines.
fn edge_config(dir: &Path, name: &str, sim: &str, extra: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let text = format!(
        "[upstream]\nurl_template = \"{sim}/v1/quotes/{{topic}}/stream\"\n\
         [bridge]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{extra}"
    );
    std::fs::write(&path, text).expect("the config is written");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_event_sources_on_one_origin_receive_over_http2_and_the_seventh_stalls_over_http1() {
    let sim = sse_upstream_sim::Sim::builder()
        .topics(["AAPL"])
        .events_per_sec(20.0)
        .start("127.0.0.1:0")
        .await
        .expect("the simulator starts");
    let dir = std::env::temp_dir().join(format!("ssegate-browser-h2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let ca = ssegate_tests::tls::TestCa::new();
    let leaf = ca.leaf(&["127.0.0.1"]);
    let (cert, key) = leaf.write(&dir, "edge");
    let tls = format!(
        "tls = {{ cert_file = \"{}\", key_file = \"{}\" }}\n",
        cert.display(),
        key.display()
    );
    let secure = edge_config(&dir, "secure", &sim.url(), &tls);
    let secure = Gateway::spawn(&[
        "run",
        "--config",
        secure.to_str().expect("UTF-8"),
        "--log-format",
        "text",
    ]);
    let browser = Browser::launch_with(
        "h2",
        &[format!(
            "--ignore-certificate-errors-spki-list={}",
            leaf.spki_sha256
        )],
    );
    // A page of the gateway's origin (a 404 is still a document of it).
    let mut page = browser.open(&format!("https://{}/page", secure.addr)).await;
    page.wait_for("document.readyState === 'complete'", "the page")
        .await;
    assert_eq!(page.eval(TWENTY_SOURCES).await, Value::Bool(true));
    page.wait_for(
        "window.got.every((n) => n >= 3)",
        "events on all 20 EventSources over HTTP/2",
    )
    .await;
    let metrics = http(&secure.admin, "GET", "/metrics", &[]);
    assert_eq!(
        counter(&metrics, "ssegate_bridge_streams"),
        20.0,
        "{metrics}"
    );
    let connections = counter(&metrics, "ssegate_bridge_connections{listener=\"streams\"}");
    assert!(
        connections <= 2.0,
        "20 streams on one connection (and the page's): {connections}"
    );

    // The control: the same page over cleartext HTTP/1.1.
    let plain = edge_config(&dir, "plain", &sim.url(), "");
    let plain = Gateway::spawn(&[
        "run",
        "--config",
        plain.to_str().expect("UTF-8"),
        "--log-format",
        "text",
    ]);
    let mut page = browser.open(&format!("http://{}/page", plain.addr)).await;
    page.wait_for("document.readyState === 'complete'", "the page")
        .await;
    assert_eq!(page.eval(TWENTY_SOURCES).await, Value::Bool(true));
    page.wait_for(
        "window.got.filter((n) => n > 0).length >= 6",
        "events on the first six EventSources",
    )
    .await;
    // Wall clock: three seconds (60 events) for a seventh that must not come.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let receiving = page.eval("window.got.filter((n) => n > 0).length").await;
    assert_eq!(
        receiving,
        json!(6),
        "six connections per origin over HTTP/1.1"
    );
    let waiting = page
        .eval("window.sources.filter((s) => s.readyState === EventSource.CONNECTING).length")
        .await;
    assert_eq!(waiting, json!(14), "the 7th to the 20th stall");
    let _ = std::fs::remove_dir_all(&dir);
}

//! The servers under test and how events reach them.
//!
//! - **ssegate** (`ssegate run`, a release build): its upstream is an SSE
//!   server in this process; an event is one line of `data:` written to the
//!   upstream connection.
//! - **nchan** (Debian's nginx-light with libnginx-mod-nchan, two worker
//!   processes like ssegate's two runtime threads): an event is one HTTP
//!   `POST /pub/BENCH` on a kept-alive connection.
//!
//! Both carry the same data, `{"n":..,"t":<unix micros>,"b":..,"a":..}`, and
//! send a heartbeat every 15 s. Every socket is on 127.0.0.1.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use ssegate_tests::procfs::{cpu_secs, signal, stat_field};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;

/// The topic (nchan's channel).
const TOPIC: &str = "BENCH";

pub(crate) enum Kind {
    Ssegate {
        admin: SocketAddr,
        upstream: broadcast::Sender<Bytes>,
    },
    Nchan {
        pid_file: PathBuf,
    },
}

pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    /// The CA to trust when the server speaks TLS (`ssegate-tls`,
    /// `ssegate-h2`), PEM.
    pub(crate) ca: Option<PathBuf>,
    /// The subscribers' path.
    pub(crate) path: String,
    pub(crate) kind: Kind,
    child: Child,
}

/// A test CA's leaf for 127.0.0.1 in `dir` (and the CA in `dir/ca.pem`,
/// for the load); the `tls = {...}` line that serves it.
fn tls_files(dir: &Path) -> Result<String> {
    let dir = std::fs::canonicalize(dir)?;
    let ca = ssegate_tests::tls::TestCa::new();
    let (cert, key) = ca.leaf(&["127.0.0.1"]).write(&dir, "edge");
    std::fs::write(dir.join("ca.pem"), ca.pem())?;
    Ok(format!(
        "tls = {{ cert_file = \"{}\", key_file = \"{}\" }}\n",
        cert.display(),
        key.display()
    ))
}

fn free_port() -> Result<SocketAddr> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?)
}

impl Server {
    /// Starts `name`: `ssegate` (the binary `ssegate`), `baseline` (the
    /// binary `baseline`: another build of ssegate, the same way), or
    /// `nchan`.
    pub(crate) async fn start(
        name: &str,
        ssegate: &Path,
        baseline: Option<&Path>,
        dir: &Path,
    ) -> Result<Self> {
        match (name, baseline) {
            ("ssegate", _) => Self::ssegate(ssegate, dir, false).await,
            // The same binary with TLS on its stream listener; the load
            // speaks HTTP/1.1 or HTTP/2 over it.
            ("ssegate-tls" | "ssegate-h2", _) => Self::ssegate(ssegate, dir, true).await,
            ("baseline", Some(binary)) => Self::ssegate(binary, dir, false).await,
            ("nchan", _) => Self::nchan(dir).await,
            (other, _) => bail!("unknown server {other}"),
        }
    }

    async fn ssegate(binary: &Path, dir: &Path, tls: bool) -> Result<Self> {
        let upstream = TcpListener::bind("127.0.0.1:0").await?;
        let upstream_addr = upstream.local_addr()?;
        let (events, _) = broadcast::channel::<Bytes>(1 << 16);
        tokio::spawn(serve_upstream(upstream, events.clone()));
        let (addr, admin) = (free_port()?, free_port()?);
        // Limits raised to the benchmark's counts (the defaults admit 200
        // new streams a second and 100 per address); everything else is
        // the default.
        let config = format!(
            r#"[upstream]
url_template = "http://{upstream_addr}/v1/{{topic}}/stream"
max_age = "24h"
[bridge]
listen = "{addr}"
admin_listen = "{admin}"
max_subscribers = 20000
max_per_ip = 20000
new_streams_per_sec = 100000
new_streams_per_ip_per_sec = 100000
{tls_line}[log]
level = "warn"
"#,
            tls_line = if tls { tls_files(dir)? } else { String::new() }
        );
        let path = dir.join("ssegate.toml");
        std::fs::write(&path, config)?;
        let child = Command::new(binary)
            .args(["run", "--config"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("ssegate.log"))?)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let server = Self {
            addr,
            ca: tls.then(|| dir.join("ca.pem")),
            path: format!("/v1/stream/{TOPIC}"),
            kind: Kind::Ssegate {
                admin,
                upstream: events,
            },
            child,
        };
        server.wait_http(admin, "/healthz").await?;
        Ok(server)
    }

    async fn nchan(dir: &Path) -> Result<Self> {
        let module = Path::new("/usr/lib/nginx/modules/ngx_nchan_module.so");
        if !module.exists() {
            bail!(
                "{} is missing: install Debian's nginx-light and libnginx-mod-nchan",
                module.display()
            );
        }
        let addr = free_port()?;
        let dir = std::fs::canonicalize(dir)?;
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp)?;
        let pid_file = dir.join("nginx.pid");
        let d = dir.display();
        let config = format!(
            r#"load_module {module};
user root;
worker_processes 2;
worker_rlimit_nofile 20000;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 19000; }}
http {{
  access_log off;
  # One publisher connection for the whole run.
  keepalive_requests 100000000;
  keepalive_timeout 1h;
  client_body_temp_path {d}/tmp/body;
  proxy_temp_path {d}/tmp/proxy;
  fastcgi_temp_path {d}/tmp/fastcgi;
  uwsgi_temp_path {d}/tmp/uwsgi;
  scgi_temp_path {d}/tmp/scgi;
  nchan_max_reserved_memory 512M;
  server {{
    listen {addr} backlog=4096;
    location ~ ^/pub/(\w+)$ {{
      nchan_publisher;
      nchan_channel_id $1;
      nchan_message_buffer_length 1000;
      nchan_message_timeout 5m;
    }}
    location ~ ^/sub/(\w+)$ {{
      nchan_subscriber eventsource;
      nchan_channel_id $1;
      nchan_subscriber_first_message newest;
      nchan_eventsource_ping_interval 15;
    }}
    location = /status {{ nchan_stub_status; }}
  }}
}}
"#,
            module = module.display()
        );
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config)?;
        let child = Command::new("nginx")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("nginx.stderr"))?)
            .spawn()
            .context("starting nginx")?;
        let server = Self {
            addr,
            path: format!("/sub/{TOPIC}"),
            ca: None,
            kind: Kind::Nchan { pid_file },
            child,
        };
        server.wait_http(addr, "/status").await?;
        Ok(server)
    }

    async fn wait_http(&self, addr: SocketAddr, path: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if get(addr, path).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the server did not answer {path} on {addr}")
    }

    /// The server's processes (nginx: the master and its workers).
    fn pids(&self) -> Result<Vec<u32>> {
        match &self.kind {
            Kind::Ssegate { .. } => Ok(vec![self.child.id()]),
            Kind::Nchan { pid_file } => {
                let master: u32 = std::fs::read_to_string(pid_file)?.trim().parse()?;
                let mut pids = vec![master];
                for entry in std::fs::read_dir("/proc")? {
                    let name = entry?.file_name();
                    let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
                        continue;
                    };
                    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                        && stat_field(&stat, 4) == Some(u64::from(master))
                    {
                        pids.push(pid);
                    }
                }
                Ok(pids)
            }
        }
    }

    /// Proportional set size, bytes, over the server's processes (shared
    /// pages are divided among those sharing them, so nginx's master and
    /// workers are not counted twice).
    pub(crate) fn pss(&self) -> Result<u64> {
        let mut total = 0;
        for pid in self.pids()? {
            let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
            let kib: u64 = text
                .lines()
                .find_map(|l| l.strip_prefix("Pss:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .context("Pss in smaps_rollup")?;
            total += kib * 1024;
        }
        Ok(total)
    }

    /// CPU seconds used by the server's processes so far.
    pub(crate) fn cpu_secs(&self) -> Result<f64> {
        Ok(self.pids()?.into_iter().map(cpu_secs).sum())
    }

    /// The subscribers the server counts now.
    async fn subscribers(&self) -> Result<u64> {
        match &self.kind {
            Kind::Ssegate { admin, .. } => {
                let metrics = get(*admin, "/metrics").await?;
                metrics
                    .lines()
                    .find_map(|l| l.strip_prefix("ssegate_bridge_streams "))
                    // A gauge: printed as a float, holding a count.
                    .and_then(|v| v.trim().trim_end_matches(".0").parse::<u64>().ok())
                    .context("ssegate_bridge_streams in /metrics")
            }
            Kind::Nchan { .. } => {
                let status = get(self.addr, "/status").await?;
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("subscribers:"))
                    .and_then(|v| v.trim().parse().ok())
                    .context("subscribers in nchan's status")
            }
        }
    }

    /// Waits (up to a minute) until the server counts `n` subscribers.
    pub(crate) async fn wait_subscribers(&self, n: u64) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = self.subscribers().await?;
        while seen != n {
            if Instant::now() > deadline {
                bail!("the server counts {seen} subscribers, not {n}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            seen = self.subscribers().await?;
        }
        Ok(())
    }

    /// SIGTERM, then a bounded wait, then SIGKILL.
    pub(crate) fn stop(mut self) -> Result<()> {
        signal(&self.child, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(25);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A GET on a fresh connection; the body.
async fn get(addr: SocketAddr, path: &str) -> Result<String> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        .body(http_body_util::Empty::<Bytes>::new())?;
    let response = tokio::time::timeout(Duration::from_secs(5), sender.send_request(request))
        .await
        .context("timeout")??;
    use http_body_util::BodyExt as _;
    let body = tokio::time::timeout(Duration::from_secs(5), response.into_body().collect())
        .await
        .context("timeout")??
        .to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// The upstream for ssegate: every connection gets the events published
/// after it connected, written as they come (all that is pending in one
/// write), with a comment every 15 s.
async fn serve_upstream(listener: TcpListener, events: broadcast::Sender<Bytes>) {
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            continue;
        };
        let mut rx = events.subscribe();
        tokio::spawn(async move {
            // Read the request head (it is small and comes at once).
            let mut head = vec![0u8; 4096];
            let mut len = 0;
            while !head[..len].windows(4).any(|w| w == b"\r\n\r\n") && len < head.len() {
                match socket.read(&mut head[len..]).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => len += n,
                }
            }
            let ok = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\r\n";
            if socket.write_all(ok).await.is_err() {
                return;
            }
            let mut heartbeat = tokio::time::interval(Duration::from_secs(15));
            let mut out = Vec::with_capacity(64 * 1024);
            loop {
                tokio::select! {
                    event = rx.recv() => match event {
                        Ok(event) => out.extend_from_slice(&event),
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = heartbeat.tick() => out.extend_from_slice(b":\n"),
                }
                while let Ok(event) = rx.try_recv() {
                    out.extend_from_slice(&event);
                }
                if socket.write_all(&out).await.is_err() {
                    return;
                }
                out.clear();
            }
        });
    }
}

/// Publishes events to the server under test.
pub(crate) struct Publisher {
    next: u64,
    target: Target,
}

enum Target {
    Upstream(broadcast::Sender<Bytes>),
    /// Several kept-alive connections: a burst is spread over them, so
    /// nchan is not held back by one request's round trip at a time.
    Nchan(
        Vec<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
        SocketAddr,
    ),
}

/// Publisher connections to nchan.
const NCHAN_PUBLISHERS: usize = 8;

impl Publisher {
    pub(crate) async fn connect(server: &Server) -> Result<Self> {
        let target = match &server.kind {
            Kind::Ssegate { upstream, .. } => Target::Upstream(upstream.clone()),
            Kind::Nchan { .. } => {
                let mut senders = Vec::new();
                for _ in 0..NCHAN_PUBLISHERS {
                    let stream = TcpStream::connect(server.addr).await?;
                    stream.set_nodelay(true)?;
                    let (sender, conn) =
                        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
                    tokio::spawn(conn);
                    senders.push(sender);
                }
                Target::Nchan(senders, server.addr)
            }
        };
        Ok(Self { next: 1, target })
    }

    fn data(&mut self) -> String {
        let n = self.next;
        // The publish time is taken here, just before the event is sent.
        self.next += 1;
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros());
        let bid = 100.0 + (n % 1000) as f64 / 100.0;
        format!(
            "{{\"n\":{n},\"t\":{t},\"b\":{bid:.2},\"a\":{:.2},\"s\":\"{TOPIC}\"}}",
            bid + 0.02
        )
    }

    /// `n` events back to back.
    pub(crate) async fn publish_burst(&mut self, n: u64) -> Result<()> {
        let data: Vec<(u64, String)> = (0..n).map(|_| (self.next, self.data())).collect();
        match &mut self.target {
            Target::Upstream(tx) => {
                for (id, data) in data {
                    let _ = tx.send(Bytes::from(format!("id: {id}\ndata: {data}\n\n")));
                }
            }
            Target::Nchan(senders, addr) => {
                let addr = *addr;
                let lanes = senders.len();
                let mut work = Vec::new();
                for (lane, sender) in senders.iter_mut().enumerate() {
                    let mine: Vec<String> = data
                        .iter()
                        .skip(lane)
                        .step_by(lanes)
                        .map(|(_, d)| d.clone())
                        .collect();
                    work.push(async move {
                        for data in mine {
                            post(sender, addr, data).await?;
                        }
                        Ok::<(), anyhow::Error>(())
                    });
                }
                for result in futures_util::future::join_all(work).await {
                    result?;
                }
            }
        }
        Ok(())
    }

    /// `rate` events a second for `duration`.
    pub(crate) async fn publish_paced(&mut self, rate: u32, duration: Duration) -> Result<()> {
        let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
        let end = Instant::now() + duration;
        while Instant::now() < end {
            tick.tick().await;
            self.publish_burst(1).await?;
        }
        Ok(())
    }
}

async fn post(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    data: String,
) -> Result<()> {
    sender.ready().await?;
    let request = hyper::Request::post(format!("/pub/{TOPIC}"))
        .header(hyper::header::HOST, addr.to_string())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(data)))?;
    let response = sender.send_request(request).await?;
    if !response.status().is_success() {
        bail!("nchan refused a publish: {}", response.status());
    }
    use http_body_util::BodyExt as _;
    response.into_body().collect().await?;
    Ok(())
}

//! The 1 Hz sampler: every second it reads `/debug/vars` and
//! `/admin/streams` from the gateway's admin listener, checks the
//! conservation invariants (`Vars::violations`), and appends a row to
//! `samples.csv`.

use std::fs::File;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use ssegate_tests::procfs::cpu_secs;

use crate::load::{lock, now_ms};

/// One `/debug/vars` reading, flattened (the CSV's columns).
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Vars {
    pub(crate) heap_bytes: u64,
    pub(crate) heap_blocks: u64,
    pub(crate) rss_bytes: u64,
    pub(crate) open_fds: u64,
    pub(crate) tasks: u64,
    pub(crate) client_streams: u64,
    pub(crate) client_connections: u64,
    pub(crate) upstream_sockets: u64,
    pub(crate) socket_hosts: u64,
    pub(crate) per_ip: u64,
    pub(crate) pool_streams: u64,
    pub(crate) pool_subscribers: u64,
    pub(crate) pool_pending: u64,
    pub(crate) hub_topics: u64,
    pub(crate) hub_members: u64,
    pub(crate) queued_events: u64,
    pub(crate) queued_bytes: u64,
    pub(crate) replay_events: u64,
    pub(crate) replay_bytes: u64,
    pub(crate) admitted: u64,
    pub(crate) released: u64,
    pub(crate) limit_streams: u64,
    pub(crate) per_ip_sum: u64,
    pub(crate) per_ip_zero: u64,
    pub(crate) hub_joins: u64,
    pub(crate) hub_leaves: u64,
    pub(crate) hub_empty_topics: u64,
    pub(crate) pool_created: u64,
    pub(crate) pool_removed: u64,
    pub(crate) upstream_attempts: u64,
    pub(crate) upstream_connections_opened: u64,
    pub(crate) upstream_events: u64,
    pub(crate) upstream_rotations: u64,
    pub(crate) events_sent: u64,
    pub(crate) slow_consumer_actions: u64,
    pub(crate) resets: u64,
    pub(crate) auth_principals: u64,
    pub(crate) auth_streams: u64,
    pub(crate) auth_admitted: u64,
    pub(crate) auth_released: u64,
}

impl Vars {
    pub(crate) fn parse(v: &serde_json::Value) -> Result<Self> {
        let get = |path: &str| {
            v.pointer(path)
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| {
                    anyhow!("/debug/vars has no number at {path} (is this a soak build?)")
                })
        };
        Ok(Self {
            heap_bytes: get("/heap/bytes")?,
            heap_blocks: get("/heap/blocks")?,
            rss_bytes: get("/rss_bytes").unwrap_or(0),
            open_fds: get("/open_fds")?,
            tasks: get("/tasks")?,
            client_streams: get("/client_streams")?,
            client_connections: get("/client_connections")?,
            upstream_sockets: get("/upstream/sockets")?,
            socket_hosts: get("/registries/socket_hosts")?,
            per_ip: get("/registries/per_ip")?,
            pool_streams: get("/pool/streams")?,
            pool_subscribers: get("/pool/subscribers")?,
            pool_pending: get("/pool/pending")?,
            hub_topics: get("/hub/hub_topics")?,
            hub_members: get("/hub/hub_members")?,
            queued_events: get("/hub/queued_events")?,
            queued_bytes: get("/hub/queued_bytes")?,
            replay_events: get("/hub/replay_events")?,
            replay_bytes: get("/hub/replay_bytes")?,
            admitted: get("/limits/admitted")?,
            released: get("/limits/released")?,
            limit_streams: get("/limits/streams")?,
            per_ip_sum: get("/limits/per_ip_sum")?,
            per_ip_zero: get("/limits/per_ip_zero")?,
            hub_joins: get("/hub/hub_joins")?,
            hub_leaves: get("/hub/hub_leaves")?,
            hub_empty_topics: get("/hub/hub_empty_topics")?,
            pool_created: get("/pool/created")?,
            pool_removed: get("/pool/removed")?,
            upstream_attempts: get("/pool/attempts")?,
            upstream_connections_opened: get("/pool/connections_opened")?,
            upstream_events: get("/pool/events")?,
            upstream_rotations: get("/pool/rotations")?,
            events_sent: get("/lifetime/events_sent")?,
            slow_consumer_actions: get("/lifetime/slow_consumer_actions")?,
            resets: get("/lifetime/resets")?,
            auth_principals: get("/auth/principals")?,
            auth_streams: get("/auth/streams")?,
            auth_admitted: get("/auth/admitted")?,
            auth_released: get("/auth/released")?,
        })
    }

    /// The conservation invariants that hold at any instant (each group is
    /// read under one lock in the gateway); the violated ones.
    pub(crate) fn violations(&self, max_streams: u64) -> Vec<String> {
        let mut bad = Vec::new();
        let mut check = |ok: bool, what: String| {
            if !ok {
                bad.push(what);
            }
        };
        check(
            self.admitted - self.released.min(self.admitted) == self.limit_streams
                && self.released <= self.admitted,
            format!(
                "subscribers: admitted {} - released {} != active {}",
                self.admitted, self.released, self.limit_streams
            ),
        );
        check(
            self.per_ip_sum == self.limit_streams && self.per_ip_zero == 0,
            format!(
                "per-IP map: sum {} != active {} or {} zero entries",
                self.per_ip_sum, self.limit_streams, self.per_ip_zero
            ),
        );
        // Empty topics are allowed (they linger for `replay_linger`, so a
        // client coming back resumes); the checkpoints see them go.
        check(
            self.hub_joins.checked_sub(self.hub_leaves) == Some(self.hub_members)
                && self.hub_empty_topics <= self.hub_topics,
            format!(
                "topics: joins {} - leaves {} != members {} or {} empty of {} topics",
                self.hub_joins,
                self.hub_leaves,
                self.hub_members,
                self.hub_empty_topics,
                self.hub_topics
            ),
        );
        check(
            self.auth_admitted.checked_sub(self.auth_released) == Some(self.auth_streams)
                && self.auth_principals <= self.auth_streams,
            format!(
                "token holders: admitted {} - released {} != active {} or {} holders",
                self.auth_admitted, self.auth_released, self.auth_streams, self.auth_principals
            ),
        );
        check(
            self.pool_created.checked_sub(self.pool_removed) == Some(self.pool_streams),
            format!(
                "upstreams: created {} - removed {} != active {}",
                self.pool_created, self.pool_removed, self.pool_streams
            ),
        );
        check(
            self.pool_streams <= max_streams && self.upstream_sockets <= 2 * max_streams,
            format!(
                "caps: {} streams, {} sockets over the cap of {max_streams}",
                self.pool_streams, self.upstream_sockets
            ),
        );
        bad
    }
}

/// One 1 Hz sample.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Sample {
    /// Seconds since the start of the run.
    pub(crate) t: f64,
    pub(crate) unix_ms: u64,
    pub(crate) round: usize,
    pub(crate) phase: &'static str,
    pub(crate) vars: Vars,
    /// Gateway CPU time so far (user + system), seconds.
    pub(crate) cpu_secs: f64,
    /// Topic and phase of every upstream stream.
    #[serde(skip)]
    pub(crate) streams: Vec<(String, String)>,
    pub(crate) violations: Vec<String>,
}

/// What the sampler reads and the main thread writes.
pub(crate) struct Status {
    pub(crate) round: usize,
    pub(crate) phase: &'static str,
}

/// `GET path` on the admin listener: the JSON body.
pub(crate) async fn get_json(addr: SocketAddr, path: &str) -> Result<serde_json::Value> {
    Ok(serde_json::from_slice(&get_body(addr, path).await?)?)
}

/// What the summary reads from the gateway's `/metrics` at the end.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct GatewayFigures {
    /// Its own measure of event latency (`health.event_time`): the events
    /// it measured and their mean in ms
    /// (`ssegate_upstream_event_latency_seconds`, summed over its routes).
    pub(crate) latency: (f64, f64),
    /// The packed route's re-packs and the duplicates its topics dropped.
    pub(crate) repacks: f64,
    pub(crate) packed_duplicates: f64,
}

pub(crate) async fn gateway_figures(addr: SocketAddr) -> Result<GatewayFigures> {
    let body = get_body(addr, "/metrics").await?;
    let text = std::str::from_utf8(&body)?;
    let (mut count, mut sum) = (0.0, 0.0);
    let mut figures = GatewayFigures::default();
    for line in text.lines() {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let value: f64 = value.parse().unwrap_or(0.0);
        let metric = name.split('{').next().unwrap_or(name);
        match metric {
            "ssegate_upstream_event_latency_seconds_count" => count += value,
            "ssegate_upstream_event_latency_seconds_sum" => sum += value,
            "ssegate_pool_repacks_total" => figures.repacks += value,
            "ssegate_pool_packed_duplicates_total" => figures.packed_duplicates += value,
            _ => {}
        }
    }
    figures.latency = (count, if count > 0.0 { sum / count * 1e3 } else { 0.0 });
    Ok(figures)
}

/// `GET path` on the admin listener: the body of a 2xx answer.
async fn get_body(addr: SocketAddr, path: &str) -> Result<Bytes> {
    let fetch = async {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let request = hyper::Request::get(path)
            .header(hyper::header::HOST, addr.to_string())
            .header(hyper::header::CONNECTION, "close")
            .body(Empty::<Bytes>::new())?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!("{path}: {status}");
        }
        Ok::<_, anyhow::Error>(body)
    };
    tokio::time::timeout(Duration::from_secs(5), fetch)
        .await
        .map_err(|_| anyhow!("{path}: no answer within 5 s"))?
}

/// Samples at 1 Hz until `stop`, writing the CSV as it goes.
pub(crate) fn sampler(
    admin: SocketAddr,
    pid: u32,
    started: Instant,
    csv_path: &Path,
    status: &Mutex<Status>,
    samples: &Mutex<Vec<Sample>>,
    stop: &AtomicBool,
) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut csv = File::create(csv_path)?;
    let mut header = false;
    let mut next = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        let reading = runtime.block_on(async {
            let vars = get_json(admin, "/debug/vars").await?;
            let streams = get_json(admin, "/admin/streams").await?;
            Ok::<_, anyhow::Error>((vars, streams))
        });
        let (round, phase) = {
            let s = lock(status);
            (s.round, s.phase)
        };
        match reading {
            Ok((vars, streams)) => {
                let vars = Vars::parse(&vars)?;
                let streams = streams["streams"]
                    .as_array()
                    .map(|list| {
                        list.iter()
                            .map(|s| {
                                (
                                    s["topic"].as_str().unwrap_or("").to_string(),
                                    s["phase"].as_str().unwrap_or("").to_string(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let sample = Sample {
                    t: started.elapsed().as_secs_f64(),
                    unix_ms: now_ms(),
                    round,
                    phase,
                    violations: vars.violations(50),
                    cpu_secs: cpu_secs(pid),
                    vars,
                    streams,
                };
                write_csv_row(&mut csv, &sample, &mut header)?;
                lock(samples).push(sample);
            }
            // A missed sample is recorded as a violation by the verdict
            // (the gateway must answer at all times).
            Err(e) => {
                eprintln!(
                    "soak: sample at {:.0} s failed: {e:#}",
                    started.elapsed().as_secs_f64()
                );
                let sample = Sample {
                    t: started.elapsed().as_secs_f64(),
                    unix_ms: now_ms(),
                    round,
                    phase,
                    vars: Vars::default(),
                    cpu_secs: cpu_secs(pid),
                    streams: Vec::new(),
                    violations: vec![format!("no answer from /debug/vars: {e:#}")],
                };
                lock(samples).push(sample);
            }
        }
        next += Duration::from_secs(1);
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
    Ok(())
}

fn write_csv_row(csv: &mut File, sample: &Sample, header: &mut bool) -> Result<()> {
    let vars = serde_json::to_value(&sample.vars)?;
    let map = vars
        .as_object()
        .ok_or_else(|| anyhow!("vars is not an object"))?;
    if !*header {
        let names: Vec<&str> = map.keys().map(String::as_str).collect();
        writeln!(
            csv,
            "t_secs,unix_ms,round,phase,cpu_secs,violations,{}",
            names.join(",")
        )?;
        *header = true;
    }
    let values: Vec<String> = map.values().map(ToString::to_string).collect();
    writeln!(
        csv,
        "{:.3},{},{},{},{:.3},{},{}",
        sample.t,
        sample.unix_ms,
        sample.round,
        sample.phase,
        sample.cpu_secs,
        sample.violations.len(),
        values.join(",")
    )?;
    Ok(())
}

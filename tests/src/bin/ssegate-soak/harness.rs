//! The orchestrator: starts the simulator and the gateway as child
//! processes, runs the rounds of load (each load role in its own process),
//! samples `/debug/vars` at 1 Hz into a CSV, holds a quiet checkpoint after
//! every round, stops everything, and hands the record to the verdict.

use std::fs::File;
use std::io::{BufRead, BufReader, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use serde::Serialize;

use crate::load::{lock, now_ms};
use crate::plan::Plan;
use crate::report::Report;
use crate::sample::{GatewayFigures, Sample, Status, Vars, gateway_figures, get_json, sampler};

/// A quiet checkpoint's reading and verdict.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Checkpoint {
    pub(crate) index: usize,
    pub(crate) t: f64,
    pub(crate) vars: Vars,
    /// Differences from the baseline; empty: passed.
    pub(crate) differences: Vec<String>,
    /// Seconds until the gateway was quiet.
    pub(crate) drain_secs: f64,
}

/// An event from the simulator's JSON log.
#[derive(Debug, Clone, serde::Deserialize)]
pub(crate) struct SimEvent {
    pub(crate) t: u64,
    pub(crate) ev: String,
    #[serde(default)]
    pub(crate) topic: Option<String>,
    #[serde(default)]
    pub(crate) kind: Option<String>,
    #[serde(default)]
    pub(crate) fault: Option<String>,
}

/// Everything a run recorded, for the verdict.
#[derive(Debug, Default)]
pub(crate) struct Record {
    pub(crate) samples: Vec<Sample>,
    pub(crate) checkpoints: Vec<Checkpoint>,
    pub(crate) reports: Vec<Report>,
    pub(crate) sim: Vec<SimEvent>,
    /// (round, start unix ms, end unix ms) of each load phase.
    pub(crate) load_phases: Vec<(usize, u64, u64)>,
    /// Load processes that had to be killed, or failed.
    pub(crate) load_failures: Vec<String>,
    pub(crate) gateway_exit: Option<i32>,
    pub(crate) shutdown_secs: f64,
    /// The gateway exited before the harness stopped it.
    pub(crate) gateway_died: bool,
    pub(crate) duration_secs: f64,
    pub(crate) restart_downtime_ms: u64,
    /// The gateway's own figures (its latency measure, the packed route's
    /// re-packs), read before the shutdown.
    pub(crate) gateway: Option<GatewayFigures>,
}

/// Where the programs are.
#[derive(Debug, Clone)]
pub(crate) struct Binaries {
    pub(crate) ssegate: PathBuf,
    pub(crate) sim: PathBuf,
    pub(crate) soak: PathBuf,
}

impl Binaries {
    pub(crate) fn in_dir(dir: &Path) -> Result<Self> {
        let found = |name: &str| {
            let path = dir.join(name);
            if path.is_file() {
                Ok(path)
            } else {
                Err(anyhow!(
                    "{} not found: build it first (`cargo xtask soak` does)",
                    path.display()
                ))
            }
        };
        Ok(Self {
            ssegate: found("ssegate")?,
            sim: found("sse-upstream-sim")?,
            soak: std::env::current_exe().context("locating ssegate-soak")?,
        })
    }
}

pub(crate) fn free_port() -> Result<SocketAddr> {
    // Bound then released: another process could take it in between, but
    // nothing else on this loopback-only test box races for ports.
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?)
}

use ssegate_tests::procfs::signal;

/// Waits for `child` to exit, at most `limit`; kills it after that.
pub(crate) fn wait_bounded(child: &mut Child, limit: Duration) -> Result<Option<i32>, ()> {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status.code()),
            Ok(None) if start.elapsed() < limit => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(());
            }
        }
    }
}

pub(crate) struct Options {
    pub(crate) plan: Plan,
    pub(crate) out: PathBuf,
    pub(crate) binaries: Binaries,
    pub(crate) inject_leak: bool,
}

/// Runs the soak and returns its record.
pub(crate) fn run(options: &Options) -> Result<Record> {
    let plan = &options.plan;
    let out = &options.out;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let topics = plan.topic_names();
    let packed = plan.packed_names();
    let sim_topics: Vec<String> = topics.iter().chain(&packed).cloned().collect();

    let restart_downtime_ms = 1000;
    let (mut sim, sim_url, sim_events) = start_sim(options, &sim_topics, restart_downtime_ms)?;

    // The gateway.
    let listen = free_port()?;
    let admin = free_port()?;
    let config_path = out.join("gateway.toml");
    std::fs::write(
        &config_path,
        plan.gateway_config(&sim_url, &listen.to_string(), &admin.to_string())
            + &plan.packed_route(&sim_url),
    )?;
    let log = File::create(out.join("gateway.log"))?;
    let mut gateway_cmd = Command::new(&options.binaries.ssegate);
    gateway_cmd
        .args(["run", "--config"])
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    if options.inject_leak {
        gateway_cmd.env("SSEGATE_SOAK_LEAK", "1");
    }
    // Subscribers authenticate: the token registry is one more resource
    // every checkpoint compares.
    gateway_cmd.env("SSEGATE_SUBSCRIBER_TOKENS", subscriber_tokens());
    let mut gateway = gateway_cmd.spawn().context("starting ssegate")?;
    let gateway_pid = gateway.id();
    let ready = runtime.block_on(async {
        for _ in 0..100 {
            if get_json(admin, "/debug/vars").await.is_ok() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    });
    if !ready {
        signal(&gateway, libc::SIGKILL);
        signal(&sim, libc::SIGKILL);
        let _ = gateway.wait();
        let _ = sim.wait();
        bail!(
            "the gateway did not answer /debug/vars within 10 s (see {})",
            out.join("gateway.log").display()
        );
    }

    // The sampler.
    let status = Arc::new(Mutex::new(Status {
        round: 0,
        phase: "start",
    }));
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (status, samples, stop) = (status.clone(), samples.clone(), stop.clone());
        let csv_path = out.join("samples.csv");
        std::thread::spawn(move || -> Result<()> {
            sampler(
                admin,
                gateway_pid,
                started,
                &csv_path,
                &status,
                &samples,
                &stop,
            )
        })
    };

    let mut record = Record {
        restart_downtime_ms,
        ..Record::default()
    };
    let mut baseline: Option<Vars> = None;
    let mut outcome = Ok(());
    for round in 0..=plan.rounds {
        {
            let mut s = lock(&status);
            s.round = round;
            s.phase = "load";
        }
        let load_start = now_ms();
        let (reports, load_end) = run_round(
            options,
            (&topics, &packed),
            &[listen],
            round,
            &mut record.load_failures,
            &mut |_| {},
        )?;
        record.load_phases.push((round, load_start, load_end));
        record.reports.extend(reports);
        lock(&status).phase = "quiet";
        match runtime.block_on(checkpoint(admin, plan, round, started, baseline.as_ref())) {
            Ok(cp) => {
                if baseline.is_none() {
                    baseline = Some(cp.vars.clone());
                }
                let verdict = if cp.differences.is_empty() {
                    "equal to the baseline".to_string()
                } else {
                    cp.differences.join("; ")
                };
                eprintln!(
                    "soak: round {round}/{} done at {:.0} s: {} sessions so far, heap {} B, {verdict}",
                    plan.rounds, cp.t, cp.vars.admitted, cp.vars.heap_bytes
                );
                record.checkpoints.push(cp);
            }
            // The gateway did not answer: a failed run, judged like any
            // other (the missing checkpoints and a dead gateway are gates).
            Err(e) => {
                eprintln!("soak: checkpoint {round} failed: {e:#}");
                record.load_failures.push(format!(
                    "checkpoint {round}: the gateway did not answer: {e:#}"
                ));
                record.gateway_died = gateway.try_wait().ok().flatten().is_some();
                break;
            }
        }
        if gateway.try_wait().ok().flatten().is_some() {
            record.gateway_died = true;
            break;
        }
    }

    stop.store(true, Ordering::SeqCst);
    match sampler.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => outcome = outcome.and(Err(e)),
        Err(_) => outcome = outcome.and(Err(anyhow!("the sampler panicked"))),
    }
    if !record.gateway_died {
        record.gateway = runtime.block_on(gateway_figures(admin)).ok();
    }
    // Graceful shutdown, as an operator's SIGTERM.
    let shutdown = Instant::now();
    if !record.gateway_died {
        signal(&gateway, libc::SIGTERM);
    }
    record.gateway_exit = wait_bounded(
        &mut gateway,
        plan.drain_deadline() + Duration::from_secs(10),
    )
    .unwrap_or(None);
    record.shutdown_secs = shutdown.elapsed().as_secs_f64();
    signal(&sim, libc::SIGTERM);
    let _ = wait_bounded(&mut sim, Duration::from_secs(10));
    // Let the log reader drain the simulator's last lines.
    std::thread::sleep(Duration::from_millis(200));
    record.samples = std::mem::take(&mut *lock(&samples));
    record.sim = std::mem::take(&mut *lock(&sim_events));
    record.duration_secs = started.elapsed().as_secs_f64();
    outcome.map(|()| record)
}

/// The simulator's events as its log reader collects them.
pub(crate) type SimLog = Arc<Mutex<Vec<SimEvent>>>;

/// Starts the simulator with the run's fault schedule; returns it, its URL
/// and the log of its events (filled by a reader thread).
pub(crate) fn start_sim(
    options: &Options,
    topics: &[String],
    restart_downtime_ms: u64,
) -> Result<(Child, String, SimLog)> {
    let plan = &options.plan;
    let out = &options.out;
    let sim_addr = free_port()?;
    let mut sim = Command::new(&options.binaries.sim)
        .args([
            "--listen",
            &sim_addr.to_string(),
            "--topics",
            &topics.join(","),
            "--rate",
            &plan.rate.to_string(),
            "--heartbeat-ms",
            &plan.sim_heartbeat().as_millis().to_string(),
            "--history",
            "20000",
            "--seed",
            &plan.seed.to_string(),
            "--chaos-every-ms",
            &plan.chaos_every.as_millis().to_string(),
            "--restart-downtime-ms",
            &restart_downtime_ms.to_string(),
            "--drip-interval-ms",
            "200",
            "--endless-bytes",
            &(512 * 1024).to_string(),
            "--log-json",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(File::create(out.join("sim.err"))?)
        .spawn()
        .context("starting sse-upstream-sim")?;
    let sim_events = Arc::new(Mutex::new(Vec::<SimEvent>::new()));
    let sim_url = {
        let stdout = sim.stdout.take().ok_or_else(|| anyhow!("no sim stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let first = lines
            .next()
            .ok_or_else(|| anyhow!("the simulator exited at once (see sim.err)"))??;
        let url = first
            .strip_prefix("sse-upstream-sim listening on ")
            .ok_or_else(|| anyhow!("unexpected first line from the simulator: {first}"))?
            .to_string();
        let events = sim_events.clone();
        let mut log = File::create(out.join("sim.jsonl"))?;
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let _ = writeln!(log, "{line}");
                if let Ok(event) = serde_json::from_str::<SimEvent>(&line) {
                    lock(&events).push(event);
                }
            }
        });
        url
    };
    Ok((sim, sim_url, sim_events))
}

/// One load process to start.
struct Spawn<'a> {
    name: String,
    role: &'a str,
    sources: Vec<IpAddr>,
    ops: u64,
    concurrency: usize,
    pause: Duration,
}

/// Spawns one load process; its report and stderr go to `dir`.
fn spawn_load(
    options: &Options,
    spawn: &Spawn<'_>,
    gateways: &[SocketAddr],
    (topics, packed): (&[String], &[String]),
    seed: u64,
    (report, err): (&Path, &Path),
) -> Result<Child> {
    let sources: Vec<String> = spawn.sources.iter().map(ToString::to_string).collect();
    Command::new(&options.binaries.soak)
        .args([
            "load",
            "--role",
            spawn.role,
            "--gateway",
            &gateways
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            "--sources",
            &sources.join(","),
            "--topics",
            &topics.join(","),
            "--ops",
            &spawn.ops.to_string(),
            "--concurrency",
            &spawn.concurrency.to_string(),
            "--seed",
            &seed.to_string(),
            "--stall-ms",
            "15000",
            "--pause-ms",
            &spawn.pause.as_millis().to_string(),
            "--token",
            &role_token(spawn.role),
            "--report",
        ])
        .arg(report)
        .args(
            (!packed.is_empty())
                .then(|| ["--packed-topics".to_string(), packed.join(",")])
                .into_iter()
                .flatten(),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(File::create(err)?)
        .spawn()
        .with_context(|| format!("starting the {} load process", spawn.role))
}

/// The soak's static subscriber tokens: one holder per load role.
const ROLES: [&str; 4] = ["churn", "resume", "checker", "slow"];

fn role_token(role: &str) -> String {
    format!("soak-{role}-0123456789abcdef")
}

/// `SSEGATE_SUBSCRIBER_TOKENS` for the gateway: every role may read every
/// topic.
pub(crate) fn subscriber_tokens() -> String {
    ROLES
        .iter()
        .map(|role| format!("{role} {}", role_token(role)))
        .collect::<Vec<_>>()
        .join(";")
}

fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// One round of load; returns the load processes' reports, and when the
/// load began to stop (unix ms: the topics are held until then).
pub(crate) fn run_round(
    options: &Options,
    (topics, packed): (&[String], &[String]),
    gateways: &[SocketAddr],
    round: usize,
    failures: &mut Vec<String>,
    during: &mut dyn FnMut(Duration),
) -> Result<(Vec<Report>, u64)> {
    let plan = &options.plan;
    let dir = options.out.join("load");
    std::fs::create_dir_all(&dir)?;
    let seed = plan.seed.wrapping_mul(1000).wrapping_add(round as u64);
    let mut quota: Vec<(String, Child, Option<ChildStdin>, PathBuf)> = Vec::new();
    let mut holders: Vec<(String, Child, Option<ChildStdin>, PathBuf)> = Vec::new();
    let add = |list: &mut Vec<_>, spawn: Spawn<'_>| -> Result<()> {
        let report = dir.join(format!("r{round:02}-{}.json", spawn.name));
        let err = dir.join(format!("r{round:02}-{}.err", spawn.name));
        let seed = seed ^ name_seed(&spawn.name);
        let mut child = spawn_load(
            options,
            &spawn,
            gateways,
            (topics, packed),
            seed,
            (&report, &err),
        )?;
        let stdin = child.stdin.take();
        list.push((spawn.name, child, stdin, report));
        Ok(())
    };
    let spawn = |name: &str, role, sources, ops, concurrency| Spawn {
        name: name.to_string(),
        role,
        sources,
        ops,
        concurrency,
        pause: if role == "resume" {
            plan.session_pause * 10
        } else {
            plan.session_pause
        },
    };
    add(
        &mut holders,
        spawn("checker", "checker", vec![loopback(12)], 0, 1),
    )?;
    add(
        &mut holders,
        spawn("slow", "slow", vec![loopback(13)], 0, plan.slow_concurrency),
    )?;
    // Let the checkers hold every topic before the churn starts.
    std::thread::sleep(Duration::from_millis(500));
    let per = plan.sessions_per_round / plan.churn_processes as u64;
    for p in 0..plan.churn_processes {
        let base = 2 + 4 * u8::try_from(p % 60).unwrap_or(0);
        let sources = (base..base + 4).map(loopback).collect();
        let name = format!("churn{p}");
        add(
            &mut quota,
            spawn(&name, "churn", sources, per.max(1), plan.churn_concurrency),
        )?;
    }
    add(
        &mut quota,
        spawn(
            "resume",
            "resume",
            vec![loopback(250), loopback(251)],
            plan.resumes_per_round.max(1),
            4,
        ),
    )?;
    let start = Instant::now();
    loop {
        let done = quota
            .iter_mut()
            .all(|(_, child, _, _)| matches!(child.try_wait(), Ok(Some(_))));
        let elapsed = start.elapsed();
        if (done && elapsed >= plan.round_min) || elapsed >= plan.round_limit {
            break;
        }
        // The cluster soak's scheduled faults (kills, a NATS restart).
        during(elapsed);
        std::thread::sleep(Duration::from_millis(100));
    }
    // Stop everyone: stdin closes, each finishes its session and reports.
    let stopping = now_ms();
    let mut reports = Vec::new();
    for (name, mut child, stdin, report) in quota.into_iter().chain(holders) {
        drop(stdin);
        match wait_bounded(&mut child, Duration::from_secs(15)) {
            Ok(Some(0)) => {}
            Ok(code) => failures.push(format!("round {round} {name}: exit {code:?}")),
            Err(()) => failures.push(format!("round {round} {name}: killed after 15 s")),
        }
        match std::fs::read(&report)
            .ok()
            .and_then(|b| serde_json::from_slice::<Report>(&b).ok())
        {
            Some(r) => reports.push(r),
            None => failures.push(format!("round {round} {name}: no report")),
        }
    }
    Ok((reports, stopping))
}

fn name_seed(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The resources compared at checkpoints (exactly), and their names.
fn resources(v: &Vars) -> [(&'static str, u64); 14] {
    [
        ("tasks", v.tasks),
        ("open_fds", v.open_fds),
        ("client_connections", v.client_connections),
        ("client_streams", v.client_streams),
        ("per_ip", v.per_ip),
        ("pool_streams", v.pool_streams),
        ("pool_subscribers", v.pool_subscribers),
        ("upstream_sockets", v.upstream_sockets),
        ("socket_hosts", v.socket_hosts),
        ("hub_topics", v.hub_topics),
        ("hub_members", v.hub_members),
        ("queued_events", v.queued_events),
        ("replay_events", v.replay_events),
        ("auth_principals", v.auth_principals),
    ]
}

/// The heap tolerance at checkpoints: 64 KiB + 1 % of the baseline.
pub(crate) fn heap_tolerance(baseline: u64) -> u64 {
    64 * 1024 + baseline / 100
}

/// Waits for the gateway to be quiet after a round, then compares with the
/// baseline (the first checkpoint is the baseline).
pub(crate) async fn checkpoint(
    admin: SocketAddr,
    plan: &Plan,
    index: usize,
    started: Instant,
    baseline: Option<&Vars>,
) -> Result<Checkpoint> {
    let begin = Instant::now();
    let deadline = plan.linger() + Duration::from_secs(20);
    let quiet = |v: &Vars| {
        v.client_streams == 0
            && v.pool_streams == 0
            && v.upstream_sockets == 0
            && v.socket_hosts == 0
            && v.hub_topics == 0
            && v.queued_events == 0
            && baseline.is_none_or(|b| resources(v) == resources(b))
    };
    let mut last = None;
    let mut stable = 0;
    while begin.elapsed() < deadline {
        let vars = Vars::parse(&get_json(admin, "/debug/vars").await?)?;
        // Quiet in two readings in a row (a closing connection may still
        // be counted in the first).
        if quiet(&vars) {
            stable += 1;
            if stable >= 2 {
                last = Some(vars);
                break;
            }
        } else {
            stable = 0;
        }
        last = Some(vars);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let vars = last.ok_or_else(|| anyhow!("no reading at checkpoint {index}"))?;
    let mut differences = Vec::new();
    match baseline {
        Some(b) => {
            for ((name, now), (_, then)) in resources(&vars).into_iter().zip(resources(b)) {
                if now != then {
                    differences.push(format!("{name} {now} != baseline {then}"));
                }
            }
            let tolerance = heap_tolerance(b.heap_bytes);
            if vars.heap_bytes.abs_diff(b.heap_bytes) > tolerance {
                differences.push(format!(
                    "heap {} B differs from baseline {} B by more than {tolerance} B",
                    vars.heap_bytes, b.heap_bytes
                ));
            }
        }
        None => {
            // The baseline itself must be quiet.
            if !quiet(&vars) {
                differences.push("the gateway never became quiet for the baseline".to_string());
            }
        }
    }
    Ok(Checkpoint {
        index,
        t: started.elapsed().as_secs_f64(),
        vars,
        differences,
        drain_secs: begin.elapsed().as_secs_f64(),
    })
}

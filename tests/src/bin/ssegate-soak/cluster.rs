//! `ssegate-soak run --cluster`: the soak of cluster mode. Three gateways
//! share one `nats-server -js` (started here on loopback, with a temporary
//! store) in front of the simulator and its fault schedule. The load is the
//! single-process soak's, spread over the three instances as a load
//! balancer would: every resume crosses instances, and a checker whose
//! instance dies resumes on the next one. On a schedule, the owner of a
//! topic is killed (SIGKILL) mid-round and started again, and once NATS
//! itself is stopped and restarted. After every round each instance must be
//! back to its baseline (the baseline of its current process: a killed
//! instance starts a new one), hold no lease and no topic; and the checkers
//! must have seen every upstream event once, across the kills.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use serde::Serialize;
use ssegate_tests::nats::NatsServer;
use ssegate_tests::procfs::{cpu_secs, signal};

use crate::harness::{
    Checkpoint, Options, SimEvent, checkpoint, free_port, run_round, start_sim, subscriber_tokens,
    wait_bounded,
};
use crate::load::{lock, now_ms};
use crate::plan::{Mode, Plan};
use crate::report::Report;
use crate::sample::{Vars, get_json};

/// The number of instances.
pub(crate) const INSTANCES: usize = 3;
/// The cluster's lease time (the shipped default; not scaled: it is a
/// property of NATS round trips, not of the upstream's timers).
pub(crate) const LEASE_TTL: Duration = Duration::from_secs(3);
/// How long NATS stays down: more than a lease, so that the instances
/// fall back to upstreams of their own.
pub(crate) const NATS_DOWN: Duration = Duration::from_secs(6);
/// When a round's fault (a kill, the NATS restart) comes: a few seconds
/// in, while the churn and the resumes run.
const FAULT_AT: Duration = Duration::from_secs(3);
/// How long a take-over or the reconciliation after NATS's return is
/// watched at most.
const WATCH: Duration = Duration::from_secs(20);

/// A gateway instance.
struct Instance {
    name: String,
    listen: SocketAddr,
    admin: SocketAddr,
    config: PathBuf,
    log: PathBuf,
    child: Child,
    /// Which process of this instance runs (0: the first; +1 per kill).
    incarnation: usize,
    /// Its baseline: taken at the checkpoint after the first whole round
    /// this process served (its warm-up), as the single soak's is.
    baseline: Option<Vars>,
    /// This process has served a whole round.
    warm: bool,
}

/// What the sampler needs of an instance.
#[derive(Clone, Copy)]
struct Probe {
    admin: SocketAddr,
    pid: u32,
    incarnation: usize,
    /// False while the instance is killed and being started again.
    up: bool,
}

/// One instance's 1 Hz sample.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ClusterSample {
    pub(crate) t: f64,
    pub(crate) unix_ms: u64,
    pub(crate) round: usize,
    pub(crate) instance: usize,
    pub(crate) incarnation: usize,
    pub(crate) vars: Vars,
    pub(crate) cpu_secs: f64,
    pub(crate) violations: Vec<String>,
}

/// One second of the whole cluster: its upstream streams (each instance's
/// pool) summed over the instances that answered.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Tick {
    pub(crate) unix_ms: u64,
    pub(crate) pool_streams: u64,
    pub(crate) upstream_sockets: u64,
    /// Every instance that was up answered.
    pub(crate) complete: bool,
}

/// A scheduled kill of a topic's owner.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Kill {
    pub(crate) round: usize,
    pub(crate) topic: String,
    pub(crate) victim: String,
    pub(crate) at_ms: u64,
    /// The instance that took the topic over, and when (ms after the kill).
    pub(crate) new_owner: Option<String>,
    pub(crate) takeover_ms: Option<u64>,
    /// The killed instance answered again after this long.
    pub(crate) restarted_ms: Option<u64>,
}

/// The NATS restart.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct NatsRestart {
    pub(crate) round: usize,
    pub(crate) down_ms: u64,
    pub(crate) up_ms: u64,
    /// After NATS was back, the cluster held one upstream per topic again
    /// after this long.
    pub(crate) reconciled_ms: Option<u64>,
    /// The most upstream streams the cluster held meanwhile.
    pub(crate) peak_streams: u64,
}

/// A checkpoint of one instance.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct InstanceCheckpoint {
    pub(crate) instance: String,
    pub(crate) incarnation: usize,
    /// The heap of the baseline this checkpoint was compared with; `None`
    /// when it is the baseline, or a restarted process's first (quiet only).
    pub(crate) baseline_heap: Option<u64>,
    pub(crate) role: &'static str,
    pub(crate) checkpoint: Checkpoint,
}

/// Everything a cluster run recorded, for its verdict.
#[derive(Debug, Default)]
pub(crate) struct ClusterRecord {
    pub(crate) names: Vec<String>,
    pub(crate) samples: Vec<ClusterSample>,
    pub(crate) ticks: Vec<Tick>,
    pub(crate) checkpoints: Vec<InstanceCheckpoint>,
    pub(crate) reports: Vec<Report>,
    pub(crate) sim: Vec<SimEvent>,
    pub(crate) kills: Vec<Kill>,
    pub(crate) nats_restart: Option<NatsRestart>,
    pub(crate) load_failures: Vec<String>,
    /// Instances that exited when nobody killed them.
    pub(crate) died: Vec<String>,
    /// Exit code of each instance at the SIGTERM that ends the run.
    pub(crate) exits: Vec<(String, Option<i32>)>,
    pub(crate) shutdown_secs: f64,
    pub(crate) duration_secs: f64,
}

/// The rounds in which an owner is killed, and the round of the NATS
/// restart: none in the warm-up (round 0 sets the baselines), never both
/// in one round (a kill during an outage has no lease to hand over).
pub(crate) fn schedule(plan: &Plan) -> (Vec<usize>, usize) {
    // NATS restarts in round 1, right after the warm-up: its client's new
    // connection settles one step higher (about 40 KiB, then flat), so the
    // baselines are taken again there and the growth fit starts there.
    // Kills follow, one a round.
    match plan.mode {
        // Seven rounds (see `main`): each killed process is compared with
        // its baseline at least once.
        Mode::Quick => (vec![2, 4], 1),
        _ => ((2..=plan.rounds).collect(), 1),
    }
}

/// An instance's configuration: the soak's, and the `[cluster]` section.
fn gateway_config(
    plan: &Plan,
    sim: &str,
    name: &str,
    listen: SocketAddr,
    admin: SocketAddr,
    nats: &str,
) -> String {
    // The event log keeps `replay_age`: scaled, it would be 5 s, shorter
    // than the NATS outage, and every topic's log would be empty when NATS
    // returns (a reset for every subscriber, nothing to check). 30 s keeps
    // the production ratio (5 min against an outage of seconds).
    let bridge = plan
        .gateway_config(sim, &listen.to_string(), &admin.to_string())
        .lines()
        .map(|line| {
            if line.starts_with("replay_age = ") {
                "replay_age = \"30s\"".to_string()
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    format!(
        "{bridge}\n[cluster]\nenabled = true\nname = \"soak\"\ninstance = \"{name}\"\nnats_urls = [\"{nats}\"]\nlease_ttl = \"{}ms\"\n\
         # Every topic may fall back on every instance during the NATS outage.\n\
         fallback_max_streams = {}\n",
        LEASE_TTL.as_millis(),
        plan.topics,
    )
}

/// Starts an instance's process (its log is appended to).
fn spawn(options: &Options, config: &Path, log: &Path) -> Result<Child> {
    let log = File::options().create(true).append(true).open(log)?;
    let mut cmd = Command::new(&options.binaries.ssegate);
    cmd.args(["run", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .env("SSEGATE_SUBSCRIBER_TOKENS", subscriber_tokens());
    if options.inject_leak {
        cmd.env("SSEGATE_SOAK_LEAK", "1");
    }
    cmd.spawn().context("starting ssegate")
}

/// Waits until `admin` answers `/debug/vars` (at most 15 s).
async fn answering(admin: SocketAddr) -> bool {
    for _ in 0..150 {
        if get_json(admin, "/debug/vars").await.is_ok() {
            return true;
        }
        // Wall clock: another process starting; a bounded poll.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The owner of each lease, as `instance`'s `/admin/cluster` shows them.
async fn leases(admin: SocketAddr) -> Result<Vec<(String, String)>> {
    let view = get_json(admin, "/admin/cluster").await?;
    let list = view["leases"]
        .as_array()
        .ok_or_else(|| anyhow!("/admin/cluster has no lease list: {}", view["leases"]))?;
    Ok(list
        .iter()
        .filter_map(|l| Some((l["topic"].as_str()?.into(), l["owner"].as_str()?.into())))
        .collect())
}

/// Runs the cluster soak and returns its record.
pub(crate) fn run(options: &Options) -> Result<ClusterRecord> {
    let plan = &options.plan;
    let out = &options.out;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let topics = plan.topic_names();
    let mut nats = runtime.block_on(NatsServer::start());
    let (mut sim, sim_url, sim_events) = start_sim(options, &topics, 1000)?;

    let mut instances = Vec::with_capacity(INSTANCES);
    for i in 0..INSTANCES {
        let name = format!("{}", char::from(b'a' + u8::try_from(i).unwrap_or(0)));
        let (listen, admin) = (free_port()?, free_port()?);
        let config = out.join(format!("gateway-{name}.toml"));
        let log = out.join(format!("gateway-{name}.log"));
        std::fs::write(
            &config,
            gateway_config(plan, &sim_url, &name, listen, admin, &nats.url()),
        )?;
        instances.push(Instance {
            child: spawn(options, &config, &log)?,
            name,
            listen,
            admin,
            config,
            log,
            incarnation: 0,
            baseline: None,
            // Round 0 is every first process's warm-up.
            warm: true,
        });
    }
    let mut record = ClusterRecord {
        names: instances.iter().map(|i| i.name.clone()).collect(),
        ..ClusterRecord::default()
    };
    let silent = instances
        .iter()
        .find(|i| !runtime.block_on(answering(i.admin)))
        .map(|i| (i.name.clone(), i.log.clone()));
    if let Some((name, log)) = silent {
        for i in &mut instances {
            signal(&i.child, libc::SIGKILL);
            let _ = i.child.wait();
        }
        signal(&sim, libc::SIGKILL);
        let _ = sim.wait();
        bail!(
            "instance {name} did not answer /debug/vars within 15 s (see {})",
            log.display()
        );
    }

    // The sampler: every instance that is up, once a second.
    let probes = Arc::new(Mutex::new(
        instances
            .iter()
            .map(|i| Probe {
                admin: i.admin,
                pid: i.child.id(),
                incarnation: 0,
                up: true,
            })
            .collect::<Vec<_>>(),
    ));
    let round_now = Arc::new(Mutex::new(0usize));
    let samples = Arc::new(Mutex::new((
        Vec::<ClusterSample>::new(),
        Vec::<Tick>::new(),
    )));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (probes, round_now, samples, stop) = (
            probes.clone(),
            round_now.clone(),
            samples.clone(),
            stop.clone(),
        );
        std::thread::spawn(move || sampler(&probes, &round_now, started, &samples, &stop))
    };

    let gateways: Vec<SocketAddr> = instances.iter().map(|i| i.listen).collect();
    let (kill_rounds, nats_round) = schedule(plan);
    for round in 0..=plan.rounds {
        *lock(&round_now) = round;
        let mut pending_kill = kill_rounds.contains(&round);
        let mut pending_nats = round == nats_round;
        let mut fault: Result<()> = Ok(());
        let mut during = |elapsed: Duration| {
            if fault.is_err() {
                return;
            }
            // Early in the round: while the churn and the resumes run.
            if pending_kill && elapsed >= FAULT_AT {
                pending_kill = false;
                let victim_preference = record.kills.len() % 2 + 1;
                fault = runtime
                    .block_on(kill_an_owner(
                        options,
                        &mut instances,
                        &probes,
                        victim_preference,
                        round,
                    ))
                    .map(|kill| record.kills.push(kill));
            }
            if pending_nats && elapsed >= FAULT_AT {
                pending_nats = false;
                let restart = runtime.block_on(restart_nats(&mut nats, &instances, &topics, round));
                record.nats_restart = Some(restart);
            }
        };
        let (reports, _) = run_round(
            options,
            (&topics, &[]),
            &gateways,
            round,
            &mut record.load_failures,
            &mut during,
        )?;
        fault?;
        record.reports.extend(reports);
        for instance in &mut instances {
            // NATS restarted this round: every instance's client has a new
            // connection (new buffers, its subscriptions made again), so,
            // as for a new process, the baseline is taken again, from this
            // round's quiet checkpoint; the growth fit still spans the run.
            let rebase = round == nats_round && instance.baseline.is_some();
            if rebase {
                instance.baseline = None;
            }
            match runtime.block_on(quiet_checkpoint(plan, instance, round, started)) {
                Ok(cp) => {
                    // A process started during this round is only checked
                    // for quiet; its baseline comes after its first whole
                    // round (allocations of a first load are no leak).
                    let baseline_heap = instance.baseline.as_ref().map(|b| b.heap_bytes);
                    let role = match (&instance.baseline, instance.warm) {
                        (Some(_), _) => "compared with its baseline",
                        (None, true) if rebase => {
                            "NATS restarted this round: checked for quiet, its baseline again"
                        }
                        (None, true) => "its baseline",
                        (None, false) => "restarted this round: checked for quiet",
                    };
                    if instance.baseline.is_none() && instance.warm {
                        instance.baseline = Some(cp.vars.clone());
                    }
                    instance.warm = true;
                    eprintln!(
                        "soak: round {round}/{} instance {} (process {}, {role}): {} sessions, heap {} B, {}",
                        plan.rounds,
                        instance.name,
                        instance.incarnation,
                        cp.vars.admitted,
                        cp.vars.heap_bytes,
                        if cp.differences.is_empty() {
                            "quiet and equal".to_string()
                        } else {
                            cp.differences.join("; ")
                        }
                    );
                    record.checkpoints.push(InstanceCheckpoint {
                        instance: instance.name.clone(),
                        incarnation: instance.incarnation,
                        baseline_heap,
                        role,
                        checkpoint: cp,
                    });
                }
                Err(e) => record.load_failures.push(format!(
                    "checkpoint {round} of {}: no answer: {e:#}",
                    instance.name
                )),
            }
            if instance.child.try_wait().ok().flatten().is_some() {
                record
                    .died
                    .push(format!("{} in round {round}", instance.name));
            }
        }
        if !record.died.is_empty() {
            break;
        }
    }

    stop.store(true, Ordering::SeqCst);
    if sampler.join().is_err() {
        record
            .load_failures
            .push("the sampler panicked".to_string());
    }
    // Graceful shutdown of every instance, as an operator's SIGTERM.
    let shutdown = Instant::now();
    for instance in &instances {
        signal(&instance.child, libc::SIGTERM);
    }
    for instance in &mut instances {
        let exit = wait_bounded(
            &mut instance.child,
            plan.drain_deadline() + Duration::from_secs(10),
        )
        .unwrap_or(None);
        record.exits.push((instance.name.clone(), exit));
    }
    record.shutdown_secs = shutdown.elapsed().as_secs_f64();
    runtime.block_on(nats.stop());
    signal(&sim, libc::SIGTERM);
    let _ = wait_bounded(&mut sim, Duration::from_secs(10));
    // Let the log reader drain the simulator's last lines.
    std::thread::sleep(Duration::from_millis(200));
    let (samples, ticks) = std::mem::take(&mut *lock(&samples));
    record.samples = samples;
    record.ticks = ticks;
    record.sim = std::mem::take(&mut *lock(&sim_events));
    record.duration_secs = started.elapsed().as_secs_f64();
    std::fs::write(
        out.join("cluster-events.json"),
        serde_json::to_vec_pretty(&serde_json::json!({
            "kills": record.kills,
            "nats_restart": record.nats_restart,
            "ticks": record.ticks,
        }))?,
    )?;
    Ok(record)
}

/// The checkpoint of one instance: quiet and equal to the baseline of its
/// process, and, in the cluster, no topic and no lease of its own left.
async fn quiet_checkpoint(
    plan: &Plan,
    instance: &Instance,
    round: usize,
    started: Instant,
) -> Result<Checkpoint> {
    let mut cp = checkpoint(
        instance.admin,
        plan,
        round,
        started,
        instance.baseline.as_ref(),
    )
    .await?;
    // The lease of the last topic goes after the linger, with the upstream.
    let begin = Instant::now();
    let mut left = Vec::new();
    while begin.elapsed() < Duration::from_secs(10) {
        let view = get_json(instance.admin, "/admin/cluster").await?;
        let topics = view["topics"].as_array().map_or(0, Vec::len);
        let owned = view["leases"].as_array().map_or(0, |l| {
            l.iter()
                .filter(|l| l["owner"].as_str() == Some(&instance.name))
                .count()
        });
        left = Vec::new();
        if topics > 0 {
            left.push(format!("{topics} topics in /admin/cluster"));
        }
        if owned > 0 {
            left.push(format!("{owned} leases held"));
        }
        if !view["leases"].is_array() {
            left.push(format!("leases unreadable: {}", view["leases"]));
        }
        if left.is_empty() {
            break;
        }
        // Wall clock: waiting for another process; a bounded poll.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    cp.differences.extend(left);
    Ok(cp)
}

/// Kills (SIGKILL) the owner of a topic, preferring instance `prefer` (1 or
/// 2: instance 0 is never killed, so that one process lives through the
/// whole run for the growth fit); watches another instance take the topic
/// over; starts the killed instance again.
async fn kill_an_owner(
    options: &Options,
    instances: &mut [Instance],
    probes: &Mutex<Vec<Probe>>,
    prefer: usize,
    round: usize,
) -> Result<Kill> {
    let watcher = instances[0].admin;
    let owned = leases(watcher).await?;
    let owner_of = |index: usize| {
        owned
            .iter()
            .find(|(_, owner)| *owner == instances[index].name)
            .map(|(topic, _)| (index, topic.clone()))
    };
    let Some((victim, topic)) = owner_of(prefer).or_else(|| owner_of(3 - prefer)) else {
        bail!("round {round}: neither b nor c owns a topic to kill (leases: {owned:?})");
    };
    let name = instances[victim].name.clone();
    lock(probes)[victim].up = false;
    signal(&instances[victim].child, libc::SIGKILL);
    let _ = instances[victim].child.wait();
    let killed = Instant::now();
    let at_ms = now_ms();
    eprintln!("soak: round {round}: killed {name}, the owner of {topic}");
    let mut kill = Kill {
        round,
        topic: topic.clone(),
        victim: name.clone(),
        at_ms,
        new_owner: None,
        takeover_ms: None,
        restarted_ms: None,
    };
    while killed.elapsed() < WATCH {
        if let Ok(now) = leases(watcher).await
            && let Some((_, owner)) = now.iter().find(|(t, o)| *t == topic && *o != name)
        {
            kill.new_owner = Some(owner.clone());
            kill.takeover_ms = Some(u64::try_from(killed.elapsed().as_millis()).unwrap_or(0));
            break;
        }
        // Wall clock: the lease expires in NATS; a bounded poll.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let instance = &mut instances[victim];
    instance.child = spawn(options, &instance.config, &instance.log)?;
    instance.incarnation += 1;
    instance.baseline = None;
    instance.warm = false;
    if answering(instance.admin).await {
        kill.restarted_ms = Some(u64::try_from(killed.elapsed().as_millis()).unwrap_or(0));
    }
    lock(probes)[victim] = Probe {
        admin: instance.admin,
        pid: instance.child.id(),
        incarnation: instance.incarnation,
        up: true,
    };
    eprintln!(
        "soak: round {round}: {topic} taken over by {:?} after {:?} ms; {name} back after {:?} ms",
        kill.new_owner, kill.takeover_ms, kill.restarted_ms
    );
    Ok(kill)
}

/// The cluster's upstream streams: the sum of every instance's pool.
async fn cluster_streams(instances: &[Instance]) -> Option<u64> {
    let mut sum = 0;
    for instance in instances {
        let vars = Vars::parse(&get_json(instance.admin, "/debug/vars").await.ok()?).ok()?;
        sum += vars.pool_streams;
    }
    Some(sum)
}

/// Stops NATS for [`NATS_DOWN`], starts it again, and measures how long
/// the cluster takes to hold one upstream per topic again.
async fn restart_nats(
    nats: &mut NatsServer,
    instances: &[Instance],
    topics: &[String],
    round: usize,
) -> NatsRestart {
    eprintln!("soak: round {round}: NATS stopped");
    let down_ms = now_ms();
    nats.stop().await;
    let mut peak = 0;
    let down = Instant::now();
    while down.elapsed() < NATS_DOWN {
        if let Some(n) = cluster_streams(instances).await {
            peak = peak.max(n);
        }
        // Wall clock: the outage lasts this long; a bounded poll.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    nats.restart().await;
    let up_ms = now_ms();
    let up = Instant::now();
    let mut reconciled_ms = None;
    let mut settled = 0;
    while up.elapsed() < WATCH {
        if let Some(n) = cluster_streams(instances).await {
            peak = peak.max(n);
            // One upstream per topic, in two readings in a row.
            if n <= topics.len() as u64 {
                settled += 1;
                if settled == 2 {
                    reconciled_ms = Some(u64::try_from(up.elapsed().as_millis()).unwrap_or(0));
                    break;
                }
            } else {
                settled = 0;
            }
        }
        // Wall clock: waiting for the instances; a bounded poll.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "soak: round {round}: NATS back after {} ms; one upstream per topic again after {reconciled_ms:?} ms (peak {peak} streams)",
        up_ms - down_ms
    );
    NatsRestart {
        round,
        down_ms,
        up_ms,
        reconciled_ms,
        peak_streams: peak,
    }
}

/// Samples every instance that is up at 1 Hz until `stop`.
fn sampler(
    probes: &Mutex<Vec<Probe>>,
    round: &Mutex<usize>,
    started: Instant,
    out: &Mutex<(Vec<ClusterSample>, Vec<Tick>)>,
    stop: &AtomicBool,
) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let mut next = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        let list = lock(probes).clone();
        let mut tick = Tick {
            unix_ms: now_ms(),
            pool_streams: 0,
            upstream_sockets: 0,
            complete: true,
        };
        for (index, probe) in list.iter().enumerate() {
            if !probe.up {
                continue;
            }
            let reading = runtime.block_on(get_json(probe.admin, "/debug/vars"));
            // A probe taken down meanwhile (a kill) is no failure.
            if !lock(probes)[index].up || lock(probes)[index].incarnation != probe.incarnation {
                tick.complete = false;
                continue;
            }
            let (vars, violations) = match reading.and_then(|v| Vars::parse(&v)) {
                Ok(vars) => {
                    let violations = vars.violations(50);
                    (vars, violations)
                }
                Err(e) => (
                    Vars::default(),
                    vec![format!("no answer from /debug/vars: {e:#}")],
                ),
            };
            tick.pool_streams += vars.pool_streams;
            tick.upstream_sockets += vars.upstream_sockets;
            tick.complete &= violations.is_empty() || vars.tasks > 0;
            lock(out).0.push(ClusterSample {
                t: started.elapsed().as_secs_f64(),
                unix_ms: now_ms(),
                round: *lock(round),
                instance: index,
                incarnation: probe.incarnation,
                vars,
                cpu_secs: cpu_secs(probe.pid),
                violations,
            });
        }
        lock(out).1.push(tick);
        next += Duration::from_secs(1);
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
}

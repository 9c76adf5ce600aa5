//! `ssegate`: the SSE gateway. A thin binary: configuration, logging,
//! metrics and signals around `sse-bridge` and `sse-conn-pool`.
//!
//! ```text
//! ssegate demo                      # the gateway on a built-in synthetic market feed
//! ssegate run --config ssegate.toml # the gateway
//! ssegate check-config ssegate.toml # validate a config and exit
//! curl -N URL | ssegate parse       # print what an SSE stream contains
//! ```

mod config;
mod parse;
mod process;
mod routes;
#[cfg(feature = "soak")]
mod soak;

/// jemalloc, chosen on evidence (the fan-out benchmark's four cycles of
/// 10,000 connects and disconnects; see the README): with glibc's malloc the
/// memory a crowd of subscribers used was never returned; jemalloc returns
/// it, and delivers more events per second.
#[cfg(all(target_os = "linux", not(feature = "soak")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its start: a background thread returns
/// freed pages within about a second even when the process is idle (by
/// default they are purged only during later allocations, ten seconds
/// later at the earliest).
#[cfg(all(target_os = "linux", not(feature = "soak")))]
#[allow(unsafe_code)]
// SAFETY: jemalloc reads this NUL-terminated C string once, at its start;
// it is immutable and lives for the whole process.
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: JemallocConf =
    JemallocConf(c"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:1000".as_ptr());

/// `const char *malloc_conf`, as jemalloc declares it.
#[cfg(all(target_os = "linux", not(feature = "soak")))]
#[repr(transparent)]
struct JemallocConf(*const std::ffi::c_char);

#[cfg(all(target_os = "linux", not(feature = "soak")))]
#[allow(unsafe_code)]
// SAFETY: the pointer is to a 'static immutable string, read-only shared.
unsafe impl Sync for JemallocConf {}

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sse_bridge::{Listener as _, TcpAcceptor};
use sse_conn_pool::{HttpsConnector, Pool, Throttled};
use sse_upstream_sim::Sim;

use crate::config::{Config, LogFormat};

#[derive(Parser)]
#[command(
    name = "ssegate",
    version,
    about = "An SSE gateway: each upstream stream opened once, fanned out to many clients"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the gateway with a configuration file.
    Run {
        /// The TOML configuration (see ssegate.example.toml).
        #[arg(long, short)]
        config: PathBuf,
        /// Overrides `log.format`.
        #[arg(long, value_enum)]
        log_format: Option<LogFormat>,
    },
    /// Runs the gateway against a built-in synthetic market feed, on loopback.
    Demo {
        /// Where clients connect.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// The admin listener.
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin: SocketAddr,
        /// Quotes per second per topic.
        #[arg(long, default_value_t = 5.0)]
        rate: f64,
        /// Log format.
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
    },
    /// Prints what an SSE stream contains (a file, or standard input), as JSON lines.
    Parse(parse::Args),
    /// Validates a configuration file and exits (0 if valid).
    CheckConfig {
        /// The TOML configuration.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Parse(args) => return parse::main(args),
        Command::CheckConfig { file } => Config::load(&file).map(|_| {
            println!("{}: valid", file.display());
        }),
        Command::Run {
            config: file,
            log_format,
        } => Config::load(&file).and_then(|mut config| {
            if let Some(format) = log_format {
                config.log.format = format;
            }
            runtime()?.block_on(run(config, file))
        }),
        Command::Demo {
            listen,
            admin,
            rate,
            log_format,
        } => {
            let mut config = Config::default();
            config.bridge.listen = listen;
            config.bridge.admin_listen = admin;
            config.bridge.demo_page = true;
            config.log.format = log_format;
            runtime().and_then(|rt| rt.block_on(demo(config, rate)))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ssegate: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")
}

/// Installs the log subscriber, and returns the control through which the
/// gateway changes its filter at runtime (`POST /admin/log-level`, and
/// reloads). `None` if a subscriber was installed already.
fn init_logging(config: &Config) -> Option<sse_bridge::LogControl> {
    use tracing_subscriber::EnvFilter;
    let (filter, directive) = match std::env::var("SSEGATE_LOG") {
        Ok(env) if EnvFilter::try_new(&env).is_ok() => (EnvFilter::new(&env), env),
        _ => match EnvFilter::try_new(&config.log.level) {
            Ok(filter) => (filter, config.log.level.clone()),
            Err(_) => (EnvFilter::new("info"), "info".to_string()),
        },
    };
    use std::io::IsTerminal as _;
    let ansi = std::io::stderr().is_terminal();
    // The two formats give the reload handle two types: one closure each.
    match config.log.format {
        LogFormat::Text => {
            let builder = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(ansi)
                .with_writer(std::io::stderr)
                .with_filter_reloading();
            let handle = builder.reload_handle();
            builder.try_init().ok()?;
            Some(log_control(directive, handle))
        }
        LogFormat::Json => {
            let builder = tracing_subscriber::fmt()
                .json()
                .with_env_filter(filter)
                .with_ansi(false)
                .with_writer(std::io::stderr)
                .with_filter_reloading();
            let handle = builder.reload_handle();
            builder.try_init().ok()?;
            Some(log_control(directive, handle))
        }
    }
}

/// A log control over a reload handle (of either format's subscriber).
fn log_control<S: Send + Sync + 'static>(
    current: String,
    handle: tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, S>,
) -> sse_bridge::LogControl {
    sse_bridge::LogControl::new(current, move |directive: &str| {
        let filter =
            tracing_subscriber::EnvFilter::try_new(directive).map_err(|e| e.to_string())?;
        handle.reload(filter).map_err(|e| e.to_string())
    })
}

/// Installs the Prometheus recorder and schedules its upkeep.
fn init_metrics() -> Result<PrometheusHandle> {
    // The per-event latency as a histogram with fixed buckets: its memory
    // stays the same whatever the traffic (the exporter's default, a
    // summary, keeps a sketch per window that grows with the spread of the
    // values: the soak saw the heap move by a megabyte between quiet
    // checkpoints), and buckets add up across instances.
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(sse_conn_pool::metrics::EVENT_LATENCY.to_string()),
            sse_conn_pool::metrics::EVENT_LATENCY_BUCKETS,
        )
        .context("the latency histogram's buckets")?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).context("cannot install the metrics recorder")?;
    sse_conn_pool::metrics::describe_metrics();
    sse_bridge::metrics::describe_metrics();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        // Recorded histogram values wait in a buffer until upkeep: every
        // second keeps that buffer to a second of events.
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// Re-reads the config file for a reload: the bridge applies what can
/// change while running; an invalid file changes nothing. The log level
/// is offered only if the environment (`SSEGATE_LOG`) did not set it. Every
/// other key that changed against `running` is listed as needing a
/// restart.
fn reload_from(
    path: &std::path::Path,
    running: &Config,
) -> std::result::Result<sse_bridge::Reload, String> {
    let config = Config::load(path).map_err(|err| format!("{err:#}"))?;
    Ok(sse_bridge::Reload {
        source: path.display().to_string(),
        max_streams: config.upstream.pool.max_streams,
        log_level: std::env::var_os("SSEGATE_LOG")
            .is_none()
            .then(|| config.log.level.clone()),
        restart: running.restart_keys(&config),
        bridge: config.bridge,
    })
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn run(config: Config, path: PathBuf) -> Result<()> {
    let log = init_logging(&config);
    serve(config, Some(path), log, shutdown_signal(), |_, _| {}).await
}

async fn demo(mut config: Config, rate: f64) -> Result<()> {
    let log = init_logging(&config);
    let sim = Sim::builder()
        .events_per_sec(rate)
        .heartbeat(Duration::from_secs(15))
        .start("127.0.0.1:0")
        .await
        .context("cannot start the synthetic feed")?;
    config.upstream.pool.url_template = format!("{}/v1/quotes/{{topic}}/stream", sim.url());
    config.validate()?;
    let feed = sim.url();
    serve(config, None, log, shutdown_signal(), move |addr, admin| {
        println!("ssegate demo: a synthetic market feed at {feed} (AAPL MSFT GOOG AMZN TSLA)");
        println!("  listening on http://{addr}");
        println!("  admin on http://{admin}");
        println!();
        println!("  in a browser: http://{addr}/?topic=AAPL&topic=MSFT (the live page)");
        println!("                http://{admin}/ (the status page)");
        println!("  curl -N http://{addr}/v1/stream/AAPL");
        println!("  curl -N 'http://{addr}/v1/stream?topic=AAPL&topic=MSFT'");
        println!("  curl http://{admin}/admin/streams");
        println!("  curl http://{admin}/metrics");
        println!();
        println!("Ctrl-C (or SIGTERM) stops it.");
    })
    .await?;
    sim.shutdown().await;
    Ok(())
}

/// Runs the gateway until `shutdown`, then drains it. With the config
/// file's `path`, SIGHUP and `POST /admin/reload` re-read it and apply its
/// limits, thresholds and log level without dropping anyone.
async fn serve(
    config: Config,
    path: Option<PathBuf>,
    log: Option<sse_bridge::LogControl>,
    shutdown: impl Future<Output = ()>,
    started: impl FnOnce(SocketAddr, SocketAddr),
) -> Result<()> {
    let prometheus = init_metrics()?;
    #[cfg(feature = "soak")]
    let config = {
        let mut config = config;
        config.bridge.debug_vars = true;
        config
    };
    let mut hooks = sse_bridge::Hooks::default()
        .metrics(move || prometheus.render())
        .process_probe(process::Proc);
    #[cfg(feature = "soak")]
    {
        hooks = soak::install(hooks);
    }
    if let Some(log) = log {
        hooks = hooks.log_control(log);
    }
    if let Some(path) = path.clone() {
        let running = config.clone();
        hooks = hooks.reload(move || reload_from(&path, &running));
    }
    let bridge = &config.bridge;
    let streams = TcpAcceptor::streams(bridge.listen, bridge.send_buffer)
        .with_context(|| format!("cannot listen on {} (bridge.listen)", bridge.listen))?;
    let admin = TcpAcceptor::admin(bridge.admin_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (bridge.admin_listen)",
                bridge.admin_listen
            )
        })?;
    let mut upstream = config.upstream;
    // Bound first, so that the pool knows the gateway's own addresses: an
    // upstream URL or redirect that leads back to them is refused.
    upstream.pool.stream.redirects.own = [streams.local_addr()?, admin.local_addr()?].into();
    let connector = Throttled::new(HttpsConnector::new(&upstream.tls)?, upstream.attempts);
    let idle_linger = upstream.pool.idle_linger;
    let channel_capacity = upstream.pool.stream.channel_capacity;
    let pool = Pool::new(upstream.pool, connector)?;
    // Cluster mode: the topics' events come through NATS, the upstreams
    // are shared with the other instances, and the cap is cluster-wide.
    let cluster = if config.cluster.enabled {
        // Only in cluster mode: a single process exports no cluster series.
        sse_cluster::metrics::describe_metrics();
        let bridge = &config.bridge;
        let retention = sse_cluster::Retention {
            events_per_topic: i64::try_from(bridge.replay_events).unwrap_or(i64::MAX),
            max_age: bridge.replay_age,
            max_bytes: i64::try_from(bridge.replay_bytes.saturating_mul(pool.max_streams()))
                .unwrap_or(i64::MAX),
            ..sse_cluster::Retention::default()
        };
        let options = sse_cluster::SourceOptions {
            idle_linger,
            channel_capacity,
            fallback_max_streams: config.cluster.fallback_max_streams,
        };
        Some(
            sse_cluster::ClusterSource::join(&config.cluster, pool.clone(), retention, options)
                .await
                .context("cannot join the cluster ([cluster])")?,
        )
    } else {
        None
    };
    let cluster_name = config.cluster.name.clone();
    let gateway = match &cluster {
        Some(cluster) => {
            let view = cluster.clone();
            let summary = cluster.clone();
            let name = cluster_name.clone();
            let hooks = hooks
                .cluster_view(move || {
                    let view = view.clone();
                    async move { view.view().await }
                })
                .cluster_summary(move || {
                    let mut summary = summary.summary();
                    summary["name"] = serde_json::json!(name);
                    summary
                });
            let source = std::sync::Arc::new(cluster.clone());
            sse_bridge::start_with_source(config.bridge, pool, source, streams, admin, hooks)
        }
        None => sse_bridge::start(config.bridge, pool, streams, admin, hooks),
    }
    .context("cannot start the gateway")?;
    let reloader = gateway.reloader();
    started(gateway.addr(), gateway.admin_addr());
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let hangups = async {
        #[cfg(unix)]
        if path.is_some()
            && let Ok(mut hangup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            while hangup.recv().await.is_some() {
                // Reported in the log either way.
                let _ = reloader.reload();
            }
        }
        std::future::pending::<()>().await;
    };
    tokio::select! {
        () = shutdown => {}
        () = hangups => {}
    }
    tracing::info!("shutting down");
    if let Some(cluster) = &cluster {
        // Leases first: other instances take the topics over while this
        // one drains its subscribers (who keep their events meanwhile).
        cluster.close().await;
    }
    gateway.shutdown().await;
    Ok(())
}

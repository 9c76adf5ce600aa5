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
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
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

/// Installs the log subscriber, and hands the bridge a way to change its
/// filter at runtime (`POST /admin/log-level`, and SIGHUP's reload).
fn init_logging(config: &Config) {
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
    let control: sse_bridge::LogControl = match config.log.format {
        LogFormat::Text => {
            let builder = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(ansi)
                .with_writer(std::io::stderr)
                .with_filter_reloading();
            let handle = builder.reload_handle();
            if builder.try_init().is_err() {
                return;
            }
            log_control(handle)
        }
        LogFormat::Json => {
            let builder = tracing_subscriber::fmt()
                .json()
                .with_env_filter(filter)
                .with_ansi(false)
                .with_writer(std::io::stderr)
                .with_filter_reloading();
            let handle = builder.reload_handle();
            if builder.try_init().is_err() {
                return;
            }
            log_control(handle)
        }
    };
    sse_bridge::set_log_control(directive, control);
}

/// A log control over a reload handle (of either format's subscriber).
fn log_control<S: Send + Sync + 'static>(
    handle: tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, S>,
) -> sse_bridge::LogControl {
    Box::new(move |directive: &str| {
        let filter =
            tracing_subscriber::EnvFilter::try_new(directive).map_err(|e| e.to_string())?;
        handle.reload(filter).map_err(|e| e.to_string())
    })
}

/// Installs the Prometheus recorder and schedules its upkeep.
fn init_metrics() -> Result<PrometheusHandle> {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).context("cannot install the metrics recorder")?;
    sse_conn_pool::metrics::describe_metrics();
    sse_bridge::metrics::describe_metrics();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// Re-reads the config file and applies what can change while running; an
/// invalid file changes nothing. The log level applies only if the
/// environment (`SSEGATE_LOG`) did not set it at start.
fn reload_from<C: sse_conn_pool::Connector>(
    path: &std::path::Path,
    reloader: &sse_bridge::Reloader<C>,
    started_level: &str,
) -> std::result::Result<String, String> {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(err) => {
            tracing::error!(error = %format!("{err:#}"), "reload refused: the file is invalid; nothing changed");
            return Err(format!("{err:#}"));
        }
    };
    let (mut applied, restart) = reloader
        .reload(&config.bridge, config.upstream.max_streams)
        .map_err(|e| e.to_string())?;
    if std::env::var_os("SSEGATE_LOG").is_none() && config.log.level != started_level {
        match sse_bridge::apply_log_filter(&config.log.level) {
            Ok(()) => applied.push("log.level"),
            Err(err) => tracing::warn!(%err, "reload: log.level not applied"),
        }
    }
    let what = format!(
        "reloaded {}: applied [{}]; changed but need a restart: [{}]",
        path.display(),
        applied.join(", "),
        restart.join(", ")
    );
    tracing::warn!("{what}");
    Ok(what)
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
    init_logging(&config);
    serve(config, Some(path), shutdown_signal(), |_, _| {}).await
}

async fn demo(mut config: Config, rate: f64) -> Result<()> {
    init_logging(&config);
    let sim = Sim::builder()
        .events_per_sec(rate)
        .heartbeat(Duration::from_secs(15))
        .start("127.0.0.1:0")
        .await
        .context("cannot start the synthetic feed")?;
    config.upstream.url_template = format!("{}/v1/quotes/{{topic}}/stream", sim.url());
    config.validate()?;
    let feed = sim.url();
    serve(config, None, shutdown_signal(), move |addr, admin| {
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

/// Runs the gateway until `shutdown`, then drains it.
/// Runs the gateway until `shutdown`, then drains it. With the config
/// file's `path`, SIGHUP and `POST /admin/reload` re-read it and apply its
/// limits, thresholds and log level without dropping anyone.
async fn serve(
    config: Config,
    path: Option<PathBuf>,
    shutdown: impl Future<Output = ()>,
    started: impl FnOnce(SocketAddr, SocketAddr),
) -> Result<()> {
    let prometheus = init_metrics()?;
    #[cfg(feature = "soak")]
    let config = {
        soak::install();
        let mut config = config;
        config.bridge.debug_vars = true;
        config
    };
    let pool_config = config.pool_config()?;
    let (tls, attempts) = config.connector()?;
    let connector = Throttled::new(HttpsConnector::new(&tls)?, attempts);
    let pool = Pool::new(pool_config, connector)?;
    let log_level = config.log.level.clone();
    let gateway = sse_bridge::start(config.bridge, pool, Some(prometheus))
        .await
        .context("cannot start the gateway")?;
    let reload = path.map(|path| {
        let reloader = gateway.reloader();
        let reload = std::sync::Arc::new(move || reload_from(&path, &reloader, &log_level));
        let hook = reload.clone();
        sse_bridge::set_reload_hook(Box::new(move || hook()));
        reload
    });
    started(gateway.addr(), gateway.admin_addr());
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let hangups = async {
        #[cfg(unix)]
        if let Some(reload) = &reload
            && let Ok(mut hangup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            while hangup.recv().await.is_some() {
                // Reported in the log either way.
                let _ = reload();
            }
        }
        std::future::pending::<()>().await;
    };
    tokio::select! {
        () = shutdown => {}
        () = hangups => {}
    }
    tracing::info!("shutting down");
    gateway.shutdown().await;
    Ok(())
}

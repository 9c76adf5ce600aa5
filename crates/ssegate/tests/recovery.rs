//! F25 from outside, in real time: the `ssegate` binary with its shipped
//! defaults in front of an upstream that restarts ten times; a subscriber's
//! next event comes within a second of each restart (the old plan's goal),
//! at p99 (here: every time). Loopback only; every wait is bounded.
//! `SSEGATE_BIN=<path> cargo test -p ssegate --test recovery -- --nocapture`
//! measures another build the same way.

use std::net::TcpStream as StdTcpStream;
use std::process::Stdio;
use std::time::Duration;

use sse_upstream_sim::Sim;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The bound on each step.
const WAIT: Duration = Duration::from_secs(20);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A config file, removed on drop.
struct TempFile(std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f25_after_each_of_ten_upstream_restarts_the_next_event_comes_within_a_second() {
    let sim = Sim::builder()
        .topics(["AAPL"])
        .events_per_sec(20.0)
        .start("127.0.0.1:0")
        .await
        .expect("the simulator starts");
    let (listen, admin) = (free_port(), free_port());
    // Only where to listen and where the upstream is: everything else is
    // the shipped default.
    let file = TempFile(
        std::env::temp_dir().join(format!("ssegate-recovery-{}.toml", std::process::id())),
    );
    std::fs::write(
        &file.0,
        format!(
            "[upstream]\nurl_template = \"{}/v1/quotes/{{topic}}/stream\"\n\
             [bridge]\nlisten = \"127.0.0.1:{listen}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n",
            sim.url()
        ),
    )
    .expect("write");
    // SSEGATE_BIN measures another build (a before and after).
    let binary = std::env::var("SSEGATE_BIN").unwrap_or(env!("CARGO_BIN_EXE_ssegate").into());
    let _gateway = tokio::process::Command::new(binary)
        .args(["run", "--config"])
        .arg(&file.0)
        .env_remove("SSEGATE_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("ssegate runs");
    let deadline = Instant::now() + WAIT;
    while StdTcpStream::connect(("127.0.0.1", listen)).is_err() {
        assert!(Instant::now() < deadline, "the gateway never listened");
        // Wall clock: another process starting; a bounded poll.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let io = TcpStream::connect(("127.0.0.1", listen))
        .await
        .expect("connects");
    let host = format!("127.0.0.1:{listen}");
    let mut client = ssegate_tests::client::get(io, &host, "/v1/stream/AAPL", WAIT).await;
    assert_eq!(client.status, 200);
    client.next_event().await;
    let mut recoveries = Vec::new();
    for round in 0..10u32 {
        // Healthy for a few seconds (wall clock: the binary's own timers).
        let settle = Instant::now() + Duration::from_millis(1500);
        while Instant::now() < settle {
            client.next_event().await;
        }
        client.next_event().await;
        let mut last_at = Instant::now();
        // Half the restarts are instant, half refuse connections for 200 ms
        // (a process coming back up).
        let downtime = Duration::from_millis(if round % 2 == 0 { 0 } else { 200 });
        sim.restart(downtime);
        // The upstream sends every 50 ms: the longest silence around the
        // restart is how long the subscriber went without events because of
        // it (from the last event before to the first after).
        let mut silence = Duration::ZERO;
        let watch_until = Instant::now() + Duration::from_millis(1500);
        while Instant::now() < watch_until {
            client.next_event().await;
            let now = Instant::now();
            silence = silence.max(now - last_at);
            last_at = now;
        }
        recoveries.push(silence);
    }
    recoveries.sort();
    let worst = recoveries[recoveries.len() - 1];
    println!("events stopped for, around each restart: {recoveries:?}");
    assert!(
        worst < Duration::from_secs(1),
        "p99 (the worst of 10) {worst:?}: {recoveries:?}"
    );
    sim.shutdown().await;
}

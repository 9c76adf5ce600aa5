//! The deployment files agree with the gateway: every metric that the
//! Grafana dashboard and the Prometheus alert rules query is one the gateway
//! exports from its start (the `ssegate_cluster_*` ones in cluster mode), and every alert's runbook link reaches a section
//! of `docs/RUNBOOK.md`. (`cargo xtask ci` also runs `promtool test rules`
//! on the rules.)

mod common;

use std::collections::BTreeSet;

use common::{bridge_config, get, pool_config, sim};
use metrics_exporter_prometheus::PrometheusBuilder;
use sse_conn_pool::{Pool, TcpConnector};

const DASHBOARD: &str = include_str!("../../deploy/grafana/ssegate.json");
const ALERTS: &str = include_str!("../../deploy/prometheus/alerts.yml");
const RUNBOOK: &str = include_str!("../../docs/RUNBOOK.md");

/// Every `ssegate_*` metric name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("ssegate_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// The PromQL expressions of the dashboard's panels.
fn dashboard_exprs() -> Vec<String> {
    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).expect("valid JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(!panels.is_empty());
    panels
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().expect("an expr").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_the_alerts_query_is_exported() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).expect("the only recorder of this test binary");
    sse_conn_pool::metrics::describe_metrics();
    sse_bridge::metrics::describe_metrics();
    // The cluster's series, as a gateway in cluster mode exports them from
    // its start (the alerts on them are quiet without them).
    sse_cluster::metrics::describe_metrics();
    let sim = sim(&["AAPL"], 50.0).await;
    let pool = Pool::new(pool_config(&sim), TcpConnector).expect("a valid pool config");
    let hooks = sse_bridge::Hooks::default().metrics(move || handle.render());
    let gw = common::start(bridge_config(), pool, hooks).await;
    // The TLS series, as a gateway with `bridge.tls` exports them from its
    // start (in memory: only its metrics matter here).
    let dir = std::env::temp_dir().join(format!("ssegate-deploy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let ca = ssegate_tests::tls::TestCa::new();
    let (cert_file, key_file) = ca.leaf(&["127.0.0.1"]).write(&dir, "edge");
    let tls = sse_bridge::BridgeConfig {
        tls: Some(sse_bridge::TlsFiles {
            cert_file,
            key_file,
        }),
        ..bridge_config()
    };
    let (streams, _) = sse_bridge::memory("127.0.0.1:8443".parse().expect("addr"), 1 << 16);
    let (admin, _) = sse_bridge::memory("127.0.0.1:9443".parse().expect("addr"), 1 << 16);
    let tls_pool = Pool::new(pool_config(&sim), TcpConnector).expect("a valid pool config");
    let tls_gw = sse_bridge::start(tls, tls_pool, streams, admin, sse_bridge::Hooks::default())
        .expect("a gateway with TLS");
    let mut client = get(gw.addr(), "/v1/stream/AAPL", &[]).await;
    client.events(2).await;
    // Every series is registered when described, and the process gauges
    // are recorded at each scrape: one scrape shows them all.
    let metrics = get(gw.admin_addr(), "/metrics", &[]).await.text().await;
    let exported: BTreeSet<String> = metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(metric_names)
        .collect();
    let mut queried = BTreeSet::new();
    for expr in dashboard_exprs() {
        queried.extend(metric_names(&expr));
    }
    let alert_metrics = metric_names(ALERTS);
    assert!(alert_metrics.len() >= 8, "{alert_metrics:?}");
    queried.extend(alert_metrics);
    let missing: Vec<&String> = queried.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "queried by deploy/ but not exported: {missing:?}\nexported: {exported:?}"
    );
    drop(client);
    gw.shutdown().await;
    tls_gw.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    sim.shutdown().await;
}

#[test]
fn every_alert_links_to_a_runbook_section() {
    let anchors: BTreeSet<String> = RUNBOOK
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| h.trim().to_lowercase())
        .collect();
    let mut alerts = 0;
    for line in ALERTS.lines() {
        if let Some(name) = line.trim().strip_prefix("- alert: ") {
            alerts += 1;
            let anchor = name.trim().to_lowercase();
            assert!(
                anchors.contains(&anchor),
                "no RUNBOOK.md section for {name}"
            );
            assert!(
                ALERTS.contains(&format!("RUNBOOK.md#{anchor}\"")),
                "{name} has no runbook_url to its section"
            );
        }
    }
    assert!(alerts >= 10, "{alerts} alerts");
}

//! What the application hands the gateway (metrics rendering, the process
//! probe, the reload source, the log control) reaches it, and only it: two
//! gateways in one process each answer with their own hooks.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Feed, addr, gateway, gateway_with, get, request};
use sse_bridge::{BridgeConfig, Hooks, LogControl, ProcessProbe, Reload};

struct FixedProbe(u64);

impl ProcessProbe for FixedProbe {
    fn rss_bytes(&self) -> u64 {
        self.0
    }
    fn open_fds(&self) -> u64 {
        7
    }
    fn max_fds(&self) -> u64 {
        20_000
    }
}

#[tokio::test(start_paused = true)]
async fn each_gateway_answers_with_its_own_hooks() {
    let feed = Feed::default();
    let bridge = BridgeConfig {
        debug_vars: true,
        ..BridgeConfig::default()
    };
    let reloads = Arc::new(AtomicUsize::new(0));
    let counted = reloads.clone();
    let source_bridge = bridge.clone();
    let hooks = Hooks::default()
        .metrics(|| "# the first gateway's metrics\n".to_string())
        .process_probe(FixedProbe(1234))
        .log_control(LogControl::new("info", |filter| {
            if filter.contains('[') {
                Err("not a directive".into())
            } else {
                Ok(())
            }
        }))
        .reload(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            let mut bridge = source_bridge.clone();
            bridge.max_per_ip = 7;
            Ok(Reload {
                source: "the test".into(),
                bridge,
                max_streams: 50,
                log_level: Some("debug".into()),
                restart: vec!["upstream.url_template".into()],
            })
        });
    let first = gateway_with(&feed, bridge.clone(), common::pool_config(), hooks);
    let second = gateway(&feed, bridge);
    let peer = addr(50000);

    let metrics = get(&first.admin, peer, "/metrics", &[]).await;
    assert_eq!(metrics.status, 200);
    assert_eq!(metrics.text().await, "# the first gateway's metrics\n");
    let none = get(&second.admin, peer, "/metrics", &[]).await;
    assert_eq!(none.status, 404, "no recorder given: none rendered");

    let vars = get(&first.admin, peer, "/debug/vars", &[])
        .await
        .text()
        .await;
    let vars: serde_json::Value = serde_json::from_str(&vars).expect("JSON");
    assert_eq!(vars["rss_bytes"], 1234);
    assert_eq!(vars["open_fds"], 7);
    let vars = get(&second.admin, peer, "/debug/vars", &[])
        .await
        .text()
        .await;
    let vars: serde_json::Value = serde_json::from_str(&vars).expect("JSON");
    assert_eq!(
        vars["rss_bytes"], 0,
        "no probe: zeros, not another gateway's"
    );

    let post = |gw: &common::Gateway, path: &'static str| {
        let admin = gw.admin.clone();
        async move {
            let act = [("x-ssegate-action", "1")];
            let reply = request(&admin, peer, http::Method::POST, path, &act).await;
            (reply.status, reply.text().await)
        }
    };
    let (status, body) = post(&first, "/admin/reload").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("reloaded the test"), "{body}");
    assert!(body.contains("applied [max_per_ip, log.level]"), "{body}");
    assert!(
        body.contains("need a restart: [upstream.url_template]"),
        "{body}"
    );
    assert_eq!(reloads.load(Ordering::SeqCst), 1);
    let (status, _) = post(&second, "/admin/reload").await;
    assert_eq!(status, 404, "no reload source: nothing to reload");

    let level = get(&first.admin, peer, "/admin/log-level", &[])
        .await
        .text()
        .await;
    assert_eq!(
        level, "debug\n",
        "the reload changed it through the control"
    );
    let (status, body) = post(&first, "/admin/log-level?filter=%5B").await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = post(&second, "/admin/log-level?filter=info").await;
    assert_eq!(status, 404);

    first.handle.shutdown().await;
    second.handle.shutdown().await;
}

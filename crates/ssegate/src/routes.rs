//! `[[upstream.routes]]` as the file writes them, before the pool reads
//! them: the keys that are not the pool's (`policy`, the bridge's), header
//! values taken from the environment (`{ env = "VAR" }`), and each route's
//! `health` table completed from `[upstream.health]`.

use anyhow::{Result, anyhow, bail};
use http::{HeaderName, HeaderValue};
use sse_bridge::Policy;
use sse_conn_pool::PoolConfig;

/// A route's header whose value is an environment variable's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EnvHeader {
    route: usize,
    header: String,
    var: String,
}

/// What the routes say beyond the pool's keys.
#[derive(Debug, Clone, Default)]
pub(crate) struct RouteExtras {
    /// Each route's slow-consumer policy, in order.
    pub(crate) policies: Vec<Option<Policy>>,
    /// Header values to take from the environment.
    pub(crate) env_headers: Vec<EnvHeader>,
}

/// Takes the non-pool keys out of `upstream.routes` in `table` and
/// completes each route's `health` from `upstream.health`.
pub(crate) fn prepare(table: &mut toml::Table) -> Result<RouteExtras> {
    let mut extras = RouteExtras::default();
    let base_health = table.get("health").and_then(toml::Value::as_table).cloned();
    let Some(routes) = table.get_mut("routes") else {
        return Ok(extras);
    };
    let routes = routes
        .as_array_mut()
        .ok_or_else(|| anyhow!("upstream.routes: write each route as [[upstream.routes]]"))?;
    for (index, route) in routes.iter_mut().enumerate() {
        let key = |k: &str| format!("upstream.routes.{index}.{k}");
        let route = route
            .as_table_mut()
            .ok_or_else(|| anyhow!("upstream.routes.{index}: a route is a table"))?;
        let policy = match route.remove("policy") {
            None => None,
            Some(value) => Some(
                value
                    .try_into::<Policy>()
                    .map_err(|e| anyhow!("{}: {}", key("policy"), e.message().trim()))?,
            ),
        };
        extras.policies.push(policy);
        if let Some(headers) = route.get_mut("headers").and_then(toml::Value::as_table_mut) {
            let from_env: Vec<String> = headers
                .iter()
                .filter(|(_, v)| v.is_table())
                .map(|(k, _)| k.clone())
                .collect();
            for header in from_env {
                let spec = headers.remove(&header).and_then(|v| v.as_table().cloned());
                let var = spec
                    .as_ref()
                    .filter(|t| t.len() == 1)
                    .and_then(|t| t.get("env"))
                    .and_then(toml::Value::as_str)
                    .ok_or_else(|| {
                        anyhow!(
                            "{}: a header value is a string or {{ env = \"VARIABLE\" }}",
                            key(&format!("headers.{header}"))
                        )
                    })?;
                extras.env_headers.push(EnvHeader {
                    route: index,
                    header,
                    var: var.to_string(),
                });
            }
        }
        if let Some(base) = &base_health
            && let Some(health) = route.get_mut("health").and_then(toml::Value::as_table_mut)
        {
            for (k, v) in base {
                health.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
    Ok(extras)
}

/// Sets the headers whose values come from the environment (`lookup`).
///
/// # Errors
///
/// A variable that is not set, or a value that is no header value: named
/// by the route's key and the variable, never by the value.
pub(crate) fn apply_env(
    pool: &mut PoolConfig,
    env_headers: &[EnvHeader],
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<()> {
    for h in env_headers {
        let key = format!("upstream.routes.{}.headers.{}", h.route, h.header);
        let Some(value) = lookup(&h.var) else {
            bail!("{key}: the environment variable {} is not set", h.var);
        };
        let name = HeaderName::from_bytes(h.header.as_bytes())
            .map_err(|e| anyhow!("{key}: header {:?}: {e}", h.header))?;
        let mut value = HeaderValue::from_str(&value)
            .map_err(|_| anyhow!("{key}: the value of {} is not a valid header value", h.var))?;
        // A secret: kept out of HTTP/2 header compression tables.
        value.set_sensitive(true);
        if let Some(route) = pool.routes.get_mut(h.route) {
            route.headers.insert(name, value);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sse_bridge::Policy;

    use crate::config::Config;

    const TWO_PROVIDERS: &str = r#"
[upstream]
max_streams = 50
[upstream.health]
min_events_per_min = 10
max_latency = "2s"

[[upstream.routes]]
name = "crypto"
topics = ["BTC-*", "ETH-*"]
url_template = "https://crypto.example/v1/{topic}/events"
max_streams = 20
policy = "drop-oldest"
headers = { x-api-key = { env = "CRYPTO_KEY" }, x-client = "gateway" }
[upstream.routes.health]
event_time = { pointer = "/t", unit = "ms" }
max_latency = "500ms"

[[upstream.routes]]
name = "stocks"
allow = ["AAPL", "MSFT"]
url_template = "https://stocks.example/stream?symbol={topic}"
headers = { authorization = { env = "STOCKS_TOKEN" } }
"#;

    fn load(text: &str, env: &[(&str, &str)]) -> anyhow::Result<Config> {
        let mut config = Config::parse(text)?;
        config.apply_env(env.iter().map(|(k, v)| (k.to_string(), v.to_string())))?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn two_providers_each_with_its_secret_from_the_environment() {
        let env = [("CRYPTO_KEY", "k-123"), ("STOCKS_TOKEN", "Bearer s-456")];
        let config = load(TWO_PROVIDERS, &env).expect("valid");
        let routes = &config.upstream.pool.routes;
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[0].headers["x-api-key"], "k-123");
        assert_eq!(routes[0].headers["x-client"], "gateway");
        assert!(routes[0].headers.get("authorization").is_none());
        assert_eq!(routes[1].headers["authorization"], "Bearer s-456");
        assert!(routes[1].headers.get("x-api-key").is_none());
        assert_eq!(routes[0].max_streams, Some(20));
        // The route's health: its own keys over `[upstream.health]`.
        let health = routes[0].health.as_ref().expect("its own table");
        assert_eq!(health.max_latency, Duration::from_millis(500));
        assert_eq!(health.min_events_per_min, Some(10), "inherited");
        assert_eq!(
            health.event_time.as_ref().map(|e| e.pointer.as_str()),
            Some("/t")
        );
        assert!(routes[1].health.is_none(), "the pool's rules");
        // Policies: the route's, else the default.
        assert_eq!(config.bridge.policy_of("BTC-USD"), Policy::DropOldest);
        assert_eq!(config.bridge.policy_of("AAPL"), config.bridge.policy);
        assert_eq!(
            config
                .upstream
                .pool
                .route_of("ETH-EUR")
                .map(|r| r.name.as_str()),
            Some("crypto")
        );
        assert!(config.upstream.pool.route_of("GOOG").is_none());
    }

    #[test]
    fn route_mistakes_name_their_key() {
        let err = |text: &str, env: &[(&str, &str)]| {
            load(text, env)
                .map(|_| ())
                .expect_err("refused")
                .to_string()
        };
        let env = [("CRYPTO_KEY", "k"), ("STOCKS_TOKEN", "t")];
        let e = err(TWO_PROVIDERS, &env[..1]);
        assert!(
            e.contains("upstream.routes.1.headers.authorization") && e.contains("STOCKS_TOKEN"),
            "{e}"
        );
        let e = err(TWO_PROVIDERS, &[("CRYPTO_KEY", "bad\nvalue"), env[1]]);
        assert!(
            e.contains("routes.0.headers.x-api-key") && !e.contains("bad"),
            "{e}"
        );
        let e = err(
            &TWO_PROVIDERS.replace("drop-oldest", "drop-everything"),
            &env,
        );
        assert!(e.contains("upstream.routes.0.policy"), "{e}");
        let e = err(
            &TWO_PROVIDERS.replace("{ env = \"STOCKS_TOKEN\" }", "{ file = \"/x\" }"),
            &env,
        );
        assert!(e.contains("routes.1.headers.authorization"), "{e}");
        let e = err(
            &TWO_PROVIDERS.replace("allow = [", "regex = \"(\"\nallow = ["),
            &env,
        );
        assert!(e.contains("stocks"), "{e}");
        let e = err(
            &TWO_PROVIDERS.replace("name = \"stocks\"", "name = \"crypto\""),
            &env,
        );
        assert!(e.contains("upstream.routes.1.name"), "{e}");
        let e = err(
            &TWO_PROVIDERS.replace("max_streams = 20", "max_streamz = 20"),
            &env,
        );
        assert!(e.contains("max_streamz"), "{e}");
        let e = err(&TWO_PROVIDERS.replace("\"/t\"", "\"t\""), &env);
        assert!(e.contains("routes.0.health.event_time.pointer"), "{e}");
    }

    #[test]
    fn a_changed_route_secret_needs_a_restart() {
        let a = load(
            TWO_PROVIDERS,
            &[("CRYPTO_KEY", "one"), ("STOCKS_TOKEN", "t")],
        )
        .unwrap();
        let b = load(
            TWO_PROVIDERS,
            &[("CRYPTO_KEY", "two"), ("STOCKS_TOKEN", "t")],
        )
        .unwrap();
        assert_eq!(a.restart_keys(&b), ["upstream.routes"]);
        assert!(a.restart_keys(&a.clone()).is_empty());
    }
}

#[cfg(test)]
mod example_tests {
    use crate::config::Config;

    /// The example file's commented routes, uncommented, make a valid
    /// configuration: what it shows an operator works.
    #[test]
    fn the_example_routes_uncommented_are_valid() {
        let text = include_str!("../../../ssegate.example.toml");
        let mut out = String::new();
        let mut in_routes = false;
        for line in text.lines() {
            if line.starts_with("# [[upstream.routes]]") {
                in_routes = true;
            } else if in_routes && !line.starts_with('#') {
                in_routes = false;
            }
            match line.strip_prefix("# ") {
                Some(code) if in_routes && (code.contains(" = ") || code.starts_with("[[")) => {
                    out.push_str(code);
                }
                _ => out.push_str(line),
            }
            out.push('\n');
        }
        // The example's url_template stays: routes come first.
        let mut config = Config::parse(&out).expect("the uncommented example parses");
        let env = ["CRYPTO_API_KEY", "STOCKS_TOKEN", "BULK_API_KEY"]
            .map(|k| (k.to_string(), "secret".to_string()));
        config
            .apply_env(env.into_iter())
            .expect("its variables are set");
        config.validate().expect("the uncommented example is valid");
        let routes = &config.upstream.pool.routes;
        let names: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["crypto", "stocks", "bulk"]);
        let pack = routes[2].pack.as_ref().expect("bulk packs its topics");
        assert_eq!(pack.max_topics, 100);
    }
}

//! What a soak run does: its mode, the production rates it stands for, the
//! time scale, the load per round, and the gateway's configuration.

use std::time::Duration;

/// Production rates assumed for "72 production hours" (stated in the
/// verdict and the README): a gateway relaying 20 market symbols.
pub(crate) mod production {
    /// Seconds in 72 hours.
    pub(crate) const SECONDS: f64 = 72.0 * 3600.0;
    /// Client subscriptions (connect, read, disconnect) per second.
    pub(crate) const SESSIONS_PER_SEC: f64 = 1.0;
    /// Clients coming back with `Last-Event-ID` per second.
    pub(crate) const RESUMES_PER_SEC: f64 = 0.1;
    /// Upstream events per second (20 symbols, 1 event/s each).
    pub(crate) const EVENTS_PER_SEC: f64 = 20.0;
    /// Upstream connections opened per hour (20 symbols, each reconnecting
    /// about once an hour: faults, upstream deploys, rotation).
    pub(crate) const UPSTREAM_CONNECTS_PER_HOUR: f64 = 20.0;
    /// The heap growth allowed over 72 production hours.
    pub(crate) const BUDGET_BYTES: f64 = 8.0 * 1024.0 * 1024.0;
}

/// The part of a reconnection that the time scale cannot shorten: a
/// loopback TCP connect, the request, the upstream's replay and the
/// delivery through a gateway that shares two cores with the load.
pub(crate) const RECONNECT_ALLOWANCE: Duration = Duration::from_millis(100);

/// Modes of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// At most 10 minutes, at least 10 % of the 72-hour counts.
    Ci,
    /// The whole 72-hour counts, about an hour.
    Full,
    /// Real time (scale 1) for this long.
    Wall(Duration),
    /// A short run for the leak-injection check.
    Quick,
}

/// A run's plan.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) mode: Mode,
    /// Gateway durations are divided by this (with floors, see
    /// [`Plan::scaled`]).
    pub(crate) time_scale: f64,
    /// Measured rounds after the warm-up round.
    pub(crate) rounds: usize,
    /// Churn sessions per round (split over the churn processes).
    pub(crate) sessions_per_round: u64,
    pub(crate) resumes_per_round: u64,
    /// A round lasts at least this long (the checkers hold every topic
    /// meanwhile, so upstream events accrue) ...
    pub(crate) round_min: Duration,
    /// ... and ends at its quotas or after this long.
    pub(crate) round_limit: Duration,
    /// A pause between a churn worker's sessions (resumers pause ten
    /// times as long): zero except at production pace (`--wall`).
    pub(crate) session_pause: Duration,
    pub(crate) churn_processes: usize,
    pub(crate) churn_concurrency: usize,
    pub(crate) slow_concurrency: usize,
    pub(crate) topics: usize,
    /// Upstream events per second per topic.
    pub(crate) rate: f64,
    /// Mean time between injected faults.
    pub(crate) chaos_every: Duration,
    /// The share of the 72-hour counts that must be reached.
    pub(crate) min_fraction: f64,
    pub(crate) seed: u64,
}

impl Plan {
    pub(crate) fn new(mode: Mode, seed: u64) -> Self {
        let base = Self {
            mode,
            time_scale: 720.0,
            rounds: 10,
            sessions_per_round: 3_000,
            resumes_per_round: 400,
            round_min: Duration::from_secs(25),
            round_limit: Duration::from_secs(60),
            session_pause: Duration::ZERO,
            churn_processes: 2,
            churn_concurrency: 8,
            slow_concurrency: 6,
            topics: 20,
            rate: 100.0,
            chaos_every: Duration::from_millis(1500),
            min_fraction: 0.10,
            seed,
        };
        match mode {
            Mode::Ci => base,
            Mode::Quick => Self {
                rounds: 3,
                sessions_per_round: 1_500,
                resumes_per_round: 100,
                round_min: Duration::from_secs(18),
                min_fraction: 0.0,
                ..base
            },
            Mode::Full => Self {
                time_scale: 72.0,
                rounds: 20,
                sessions_per_round: 14_000,
                resumes_per_round: 1_400,
                round_min: Duration::from_secs(170),
                round_limit: Duration::from_secs(300),
                chaos_every: Duration::from_secs(3),
                min_fraction: 1.0,
                ..base
            },
            Mode::Wall(total) => {
                let rounds = usize::try_from((total.as_secs() / 900).max(2)).unwrap_or(2);
                Self {
                    time_scale: 1.0,
                    rounds,
                    // Time-boxed rounds at a production-like pace.
                    sessions_per_round: 0,
                    resumes_per_round: 0,
                    round_min: total / u32::try_from(rounds + 1).unwrap_or(1),
                    round_limit: total / u32::try_from(rounds + 1).unwrap_or(1),
                    // One subscription a second, a resume every ten.
                    session_pause: Duration::from_secs(1),
                    churn_processes: 1,
                    churn_concurrency: 1,
                    slow_concurrency: 1,
                    rate: 5.0,
                    chaos_every: Duration::from_secs(60),
                    min_fraction: 0.0,
                    ..base
                }
            }
        }
    }

    /// `default` divided by the time scale, never below `floor` (timers
    /// much shorter than the machine's scheduling noise would measure the
    /// machine, not the gateway).
    pub(crate) fn scaled(&self, default: Duration, floor: Duration) -> Duration {
        default.div_f64(self.time_scale).max(floor.min(default))
    }

    pub(crate) fn topic_names(&self) -> Vec<String> {
        (0..self.topics).map(|i| format!("T{i:02}")).collect()
    }

    /// The topics of the soak's packed route: the checkers hold the first
    /// two, churn sessions take the others now and then, so their group
    /// is re-packed all through the run.
    pub(crate) fn packed_names(&self) -> Vec<String> {
        (0..6).map(|i| format!("P{i}")).collect()
    }

    /// The packed route (TOML), for the single-process soak: the simulator's
    /// `/v1/stream?symbols=` streams, four topics to a connection, a re-pack
    /// at most every 2 s scaled (with a floor).
    pub(crate) fn packed_route(&self, sim: &str) -> String {
        let interval = self.scaled(Duration::from_secs(2), Duration::from_millis(250));
        let allow: Vec<String> = self
            .packed_names()
            .iter()
            .map(|t| format!("\"{t}\""))
            .collect();
        format!(
            "\n[[upstream.routes]]\nname = \"packed\"\nallow = [{}]\n\
             pack = {{ url_template = \"{sim}/v1/stream?symbols={{topics}}\", max_topics = 4, \
             min_interval = \"{}ms\", demux = {{ json_pointer = \"/s\" }} }}\n",
            allow.join(", "),
            interval.as_millis()
        )
    }

    /// The gateway's config for this run (TOML).
    pub(crate) fn gateway_config(&self, sim: &str, listen: &str, admin: &str) -> String {
        let d = |default: u64, floor_ms: u64| {
            let scaled = self.scaled(
                Duration::from_secs(default),
                Duration::from_millis(floor_ms),
            );
            format!("\"{}ms\"", scaled.as_millis().max(1))
        };
        // The reconnection keys: the shipped value divided by the time
        // scale and nothing else (no floor that would lengthen or shorten
        // it), written in microseconds so that 100 ms / 720 stays itself.
        let exact = |default_ms: u64| {
            let scaled = Duration::from_millis(default_ms).div_f64(self.time_scale);
            format!("\"{}us\"", scaled.as_micros().max(1))
        };
        format!(
            r#"# Written by ssegate-soak: the defaults, durations divided by the time
# scale ({scale}) with floors; a quarter of the default queue bytes. The
# reconnection keys (backoff, spread, attempt rate) are the shipped values
# divided by the scale exactly: the reconnection gates test them.
[upstream]
url_template = "{sim}/v1/quotes/{{topic}}/stream"
max_streams = 50
idle_linger = {linger}
connect_timeout = {connect}
first_byte_timeout = {first_byte}
idle_timeout = {idle}
event_assembly_timeout = {assembly}
backoff_initial = {backoff_initial}
backoff_max = {backoff_max}
backoff_max_rate_limited = {backoff_limited}
backoff_max_auth = {backoff_limited}
backoff_reset_after = {reset_after}
backoff_after_loss = {after_loss}
backoff_established_after = {established_after}
reconnect_spread = {spread}
reconnect_spread_step = {spread_step}
retry_after_max = {retry_after_max}
max_age = {max_age}
rotation_handover_timeout = {handover}
max_line_bytes = 262144
max_event_bytes = 1048576

[upstream.health]
# Each quote carries its time ("t", unix ms): the gateway measures every
# event's latency (a figure of the summary, next to the checkers').
event_time = {{ pointer = "/t", unit = "ms" }}

[upstream.attempts]
# A rate is one over a duration: the shipped 200 a second, times the scale.
per_second = {attempts_per_second}

[bridge]
listen = "{listen}"
admin_listen = "{admin}"
heartbeat = {heartbeat}
write_timeout = {write_timeout}
queue_events = 1024
queue_bytes = 262144
replay_age = {replay_age}
replay_linger = {replay_linger}
max_subscribers = 10000
max_per_ip = 2000
new_streams_per_sec = 5000
# The load comes from a few 127.0.0.x addresses, at a compressed rate.
new_streams_per_ip_per_sec = 100000
drain_spread = {drain_spread}
drain_deadline = {drain_deadline}
debug_vars = true

[bridge.auth]
# The tokens come from SSEGATE_SUBSCRIBER_TOKENS (one per load role).
max_streams_per_token = 10000

[bridge.policies]
T00 = "drop-oldest"
T01 = "drop-oldest"
T02 = "conflate"

[log]
level = "info"
"#,
            scale = self.time_scale,
            linger = d(300, 250),
            replay_linger = d(30, 250),
            connect = d(5, 1000),
            first_byte = d(30, 2000),
            idle = d(90, 2000),
            assembly = d(30, 2000),
            backoff_initial = exact(1000),
            backoff_max = exact(30_000),
            after_loss = exact(100),
            established_after = exact(1000),
            backoff_limited = d(300, 2000),
            reset_after = d(60, 2000),
            spread = exact(3000),
            spread_step = exact(100),
            retry_after_max = d(600, 1000),
            attempts_per_second = 200.0 * self.time_scale,
            max_age = d(12 * 3600, 30_000),
            handover = d(30, 2000),
            heartbeat = d(15, 500),
            write_timeout = d(60, 2000),
            replay_age = d(300, 5000),
            drain_spread = d(10, 1000),
            drain_deadline = d(20, 3000),
        )
    }

    /// The reconnection goal in this run: the old plan's "back in under a
    /// second", divided by the time scale, plus what does not scale with
    /// it (a loopback connect, the request, the replay and the delivery on
    /// a loaded two-core machine; see [`RECONNECT_ALLOWANCE`]).
    pub(crate) fn reconnect_goal(&self) -> Duration {
        Duration::from_secs(1).div_f64(self.time_scale) + RECONNECT_ALLOWANCE
    }

    /// After a restart, the stream's return is bounded by the backoff cap
    /// (the shipped 30 s, scaled like the rest), plus the same allowance:
    /// the restart's downtime is long in production time, so the backoff
    /// reached its cap meanwhile.
    pub(crate) fn restart_goal(&self) -> Duration {
        Duration::from_secs(30).div_f64(self.time_scale) + RECONNECT_ALLOWANCE
    }

    /// The sim's heartbeat: a third of the gateway's idle timeout.
    pub(crate) fn sim_heartbeat(&self) -> Duration {
        self.scaled(Duration::from_secs(90), Duration::from_millis(2000)) / 3
    }

    /// The gateway's drain deadline, as configured.
    pub(crate) fn drain_deadline(&self) -> Duration {
        self.scaled(Duration::from_secs(20), Duration::from_millis(3000))
    }

    /// The idle linger, as configured.
    pub(crate) fn linger(&self) -> Duration {
        // The hub keeps an empty topic for the replay linger, then the pool
        // keeps its upstream for the idle linger.
        self.scaled(Duration::from_secs(30), Duration::from_millis(250))
            + self.scaled(Duration::from_secs(300), Duration::from_millis(250))
    }

    /// The 72-hour production counts.
    pub(crate) fn production_counts() -> [(&'static str, f64); 4] {
        use production::*;
        [
            ("client sessions", SESSIONS_PER_SEC * SECONDS),
            ("resumes", RESUMES_PER_SEC * SECONDS),
            ("upstream events", EVENTS_PER_SEC * SECONDS),
            ("upstream connections", UPSTREAM_CONNECTS_PER_HOUR * 72.0),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_divides_and_respects_floors() {
        let plan = Plan::new(Mode::Ci, 1);
        assert_eq!(
            plan.scaled(Duration::from_secs(12 * 3600), Duration::from_secs(30)),
            Duration::from_secs(60)
        );
        assert_eq!(
            plan.scaled(Duration::from_secs(15), Duration::from_millis(500)),
            Duration::from_millis(500)
        );
        let wall = Plan::new(Mode::Wall(Duration::from_secs(3600)), 1);
        assert_eq!(
            wall.scaled(Duration::from_secs(90), Duration::from_secs(2)),
            Duration::from_secs(90)
        );
    }

    #[test]
    fn the_ci_plan_reaches_a_tenth_of_the_production_counts() {
        let plan = Plan::new(Mode::Ci, 1);
        let sessions = plan.sessions_per_round * plan.rounds as u64;
        let resumes = plan.resumes_per_round * plan.rounds as u64;
        let [(_, s72), (_, r72), ..] = Plan::production_counts();
        assert!(sessions as f64 >= 0.1 * s72, "{sessions} < 10 % of {s72}");
        assert!(resumes as f64 >= 0.1 * r72, "{resumes} < 10 % of {r72}");
    }

    #[test]
    fn the_full_plan_reaches_every_72_hour_count_it_schedules() {
        let plan = Plan::new(Mode::Full, 1);
        let rounds = plan.rounds as f64;
        let [(_, s72), (_, r72), (_, e72), _] = Plan::production_counts();
        // Churn sessions and resumes are quotas (the resume role's quota
        // counts resumes, its fresh sessions come on top); events accrue
        // for at least `round_min` a round.
        assert!(plan.sessions_per_round as f64 * rounds >= s72);
        assert!(plan.resumes_per_round as f64 * rounds >= r72);
        let events = plan.round_min.as_secs_f64() * plan.rate * plan.topics as f64 * rounds;
        assert!(events >= e72, "{events} < {e72}");
        assert!((plan.min_fraction - 1.0).abs() < f64::EPSILON);
    }

    #[test]
    fn the_reconnection_keys_are_the_shipped_values_scaled_and_nothing_else() {
        for (mode, spread, step, initial) in [
            (Mode::Ci, "4166us", "138us", "1388us"),
            (Mode::Full, "41666us", "1388us", "13888us"),
        ] {
            let plan = Plan::new(mode, 1);
            let text = plan.gateway_config("http://127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3");
            let value: toml::Value = toml::from_str(&text).unwrap();
            let up = &value["upstream"];
            assert_eq!(up["reconnect_spread"].as_str(), Some(spread));
            assert_eq!(up["reconnect_spread_step"].as_str(), Some(step));
            assert_eq!(up["backoff_initial"].as_str(), Some(initial));
            assert_eq!(up["backoff_established_after"].as_str(), Some(initial));
            // Written as the number it is (an integer here: TOML's and the
            // gateway's reading of `144000` are the same rate).
            let rate = up["attempts"]["per_second"]
                .to_string()
                .parse::<f64>()
                .unwrap();
            assert!((rate - 200.0 * plan.time_scale).abs() < 1e-6);
        }
    }

    #[test]
    fn the_config_is_valid_toml_with_scaled_durations() {
        let plan = Plan::new(Mode::Ci, 1);
        let text = plan.gateway_config("http://127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3");
        let value: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(value["upstream"]["max_age"].as_str(), Some("60000ms"));
        assert_eq!(value["upstream"]["idle_linger"].as_str(), Some("416ms"));
        assert_eq!(
            value["bridge"]["policies"]["T02"].as_str(),
            Some("conflate")
        );
        let with_route = format!("{text}{}", plan.packed_route("http://127.0.0.1:1"));
        let value: toml::Value = toml::from_str(&with_route).unwrap();
        let route = &value["upstream"]["routes"][0];
        assert_eq!(route["pack"]["max_topics"].as_integer(), Some(4));
        assert_eq!(route["pack"]["min_interval"].as_str(), Some("250ms"));
        assert_eq!(route["allow"].as_array().map(Vec::len), Some(6));
    }
}

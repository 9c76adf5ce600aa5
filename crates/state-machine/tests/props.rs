//! Property tests over random input sequences and random time: whatever the
//! upstream and the shell do, the machine keeps its invariants and never
//! panics.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::Driver;
use proptest::prelude::*;
use sse_state_machine::{
    Config, ConnId, Delivery, FailureKind, Input, Output, Phase, Reason, RotateReason,
};

#[derive(Debug, Clone)]
enum Action {
    Advance(u32),
    Respond {
        which: u8,
        status: u16,
        event_stream: bool,
        retry_after: Option<u16>,
    },
    Data {
        which: u8,
        mid_event: bool,
    },
    Event {
        which: u8,
        id: u8,
    },
    End {
        which: u8,
    },
    Fail {
        which: u8,
    },
    Retry {
        which: u8,
        ms: u32,
    },
    Rotate,
    Reconnect,
    Stop,
}

fn action() -> impl Strategy<Value = Action> {
    let which = 0u8..4;
    prop_oneof![
        6 => (0u32..200_000).prop_map(Action::Advance),
        4 => (which.clone(), prop_oneof![Just(200u16), Just(200), Just(204), Just(503), Just(429), Just(404), Just(301)], any::<bool>(), proptest::option::of(0u16..2000))
            .prop_map(|(which, status, event_stream, retry_after)| Action::Respond { which, status, event_stream, retry_after }),
        6 => (which.clone(), any::<bool>()).prop_map(|(which, mid_event)| Action::Data { which, mid_event }),
        6 => (which.clone(), 0u8..12).prop_map(|(which, id)| Action::Event { which, id }),
        2 => which.clone().prop_map(|which| Action::End { which }),
        2 => which.clone().prop_map(|which| Action::Fail { which }),
        1 => (which, 0u32..100_000).prop_map(|(which, ms)| Action::Retry { which, ms }),
        1 => Just(Action::Rotate),
        1 => Just(Action::Reconnect),
        1 => Just(Action::Stop),
    ]
}

/// Checks the invariants while actions are applied.
struct Checker {
    d: Driver,
    connects: Vec<ConnId>,
    closed: HashSet<ConnId>,
    stopped: bool,
    /// No backoff-elapsed connect before this.
    floor: Option<std::time::Instant>,
    deliverer: Option<ConnId>,
    seen: usize,
}

impl Checker {
    fn new(config: Config, seed: u64) -> Self {
        Self {
            d: Driver::new(config, seed),
            connects: Vec::new(),
            closed: HashSet::new(),
            stopped: false,
            floor: None,
            deliverer: None,
            seen: 0,
        }
    }

    fn pick(&self, which: u8) -> Option<ConnId> {
        match which {
            0 => self.d.machine.delivering(),
            1 => self.connects.last().copied(),
            2 => self.connects.first().copied(),
            // Possibly one the machine never handed out.
            _ => self
                .connects
                .get(self.connects.len().saturating_sub(2))
                .copied(),
        }
    }

    fn apply(&mut self, action: Action) {
        let conn_of = |which| self.pick(which);
        let input = match action {
            Action::Advance(ms) => {
                self.d.advance(Duration::from_millis(ms.into()));
                None
            }
            Action::Respond {
                which,
                status,
                event_stream,
                retry_after,
            } => conn_of(which).map(|conn| Input::Connected {
                conn,
                status,
                event_stream,
                retry_after: retry_after.map(|s| Duration::from_secs(s.into())),
            }),
            Action::Data { which, mid_event } => {
                conn_of(which).map(|conn| Input::Data { conn, mid_event })
            }
            Action::Event { which, id } => {
                if let Some(conn) = conn_of(which) {
                    let id = if id == 0 {
                        String::new()
                    } else {
                        id.to_string()
                    };
                    let delivery = self.d.event(conn, &id);
                    if delivery == Delivery::Deliver {
                        assert_eq!(
                            self.d.machine.delivering(),
                            Some(conn),
                            "delivered from a non-delivering connection"
                        );
                        if let Some(previous) = self.deliverer
                            && previous != conn
                        {
                            assert!(
                                self.closed.contains(&previous) || self.closes_pending(previous),
                                "two connections delivered"
                            );
                        }
                        self.deliverer = Some(conn);
                    }
                }
                None
            }
            Action::End { which } => conn_of(which).map(|conn| Input::EndOfBody { conn }),
            Action::Fail { which } => conn_of(which).map(|conn| Input::Failed {
                conn,
                kind: FailureKind::Io,
            }),
            Action::Retry { which, ms } => conn_of(which).map(|conn| Input::Retry {
                conn,
                delay: Duration::from_millis(ms.into()),
            }),
            Action::Rotate => Some(Input::Rotate(RotateReason::Manual)),
            Action::Reconnect => Some(Input::Reconnect),
            Action::Stop => Some(Input::Stop),
        };
        if let Some(input) = input {
            // Typed errors are allowed (an input that cannot happen now); panics are not.
            let _ = self.d.try_input(input);
        }
        self.check();
    }

    /// Whether a Close for `conn` is in the log (checked in `check`).
    fn closes_pending(&self, conn: ConnId) -> bool {
        self.d
            .log
            .iter()
            .any(|(_, o)| matches!(o, Output::Close { conn: c, .. } if *c == conn))
    }

    fn check(&mut self) {
        let now = self.d.now;
        if let Some(at) = self.d.machine.poll_timeout() {
            assert!(at >= now, "a deadline in the past");
        }
        let new: Vec<(std::time::Instant, Output)> = self.d.log[self.seen..].to_vec();
        self.seen = self.d.log.len();
        for (at, output) in new {
            assert!(!self.stopped, "output after the stop: {output:?}");
            match output {
                Output::Connect {
                    conn,
                    last_event_id,
                } => {
                    assert!(!self.connects.contains(&conn), "{conn} connected twice");
                    assert!(last_event_id.is_none_or(|id| !id.is_empty()));
                    self.connects.push(conn);
                }
                Output::Close { conn, .. } => {
                    assert!(
                        self.connects.contains(&conn),
                        "closing {conn}, never opened"
                    );
                    assert!(self.closed.insert(conn), "{conn} closed twice");
                }
                Output::Retrying { at: floor, .. } => {
                    assert!(floor >= at, "an attempt scheduled in the past");
                    self.floor = Some(floor);
                }
                Output::StateChanged { from, to, reason } => {
                    if matches!(from, Phase::BackingOff | Phase::CoolingOff)
                        && to == Phase::Connecting
                        && matches!(reason, Reason::BackoffElapsed | Reason::CoolOffElapsed)
                    {
                        let floor = self.floor.take().expect("an attempt was scheduled");
                        assert!(
                            at >= floor,
                            "connected {:?} before the backoff floor",
                            floor - at
                        );
                    }
                    if to == Phase::Stopped {
                        self.stopped = true;
                    }
                }
            }
        }
        // At most one connection delivers; it is open and was never closed.
        if let Some(conn) = self.d.machine.delivering() {
            assert!(!self.closed.contains(&conn));
        }
    }

    fn finish(mut self) {
        self.d.input(Input::Stop);
        self.check();
        assert_eq!(self.d.machine.phase(), Phase::Stopped);
        assert_eq!(self.d.machine.poll_timeout(), None);
        for conn in &self.connects {
            assert!(
                self.closed.contains(conn),
                "{conn} still open after the stop"
            );
        }
    }
}

fn config(variant: u8) -> Config {
    let mut config = Config::default();
    match variant % 3 {
        0 => {}
        1 => {
            config.attempt_budget = Some(3);
            config.max_age = Some(Duration::from_secs(600));
        }
        _ => {
            config.backoff.jitter = sse_state_machine::Jitter::Full;
            config.handover_window = 2;
            config.max_age = Some(Duration::from_secs(120));
        }
    }
    config
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_keep_the_invariants(
        seed in any::<u64>(),
        variant in any::<u8>(),
        actions in proptest::collection::vec(action(), 0..120),
    ) {
        let mut checker = Checker::new(config(variant), seed);
        checker.d.input(Input::Start);
        checker.check();
        for action in actions {
            checker.apply(action);
        }
        checker.finish();
    }
}

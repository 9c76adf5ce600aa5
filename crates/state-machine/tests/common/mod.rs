//! A test driver in the style of quinn-proto's: one machine, virtual time that
//! jumps to the next deadline, and a log of every output with its time.

#![allow(dead_code, unreachable_pub)] // Each test file uses a different subset.

use std::time::{Duration, Instant};

use sse_parser::Utf8Bytes;
use sse_state_machine::{
    CloseReason, Config, ConnId, Delivery, Input, Machine, Output, Phase, Reason,
};

pub struct Driver {
    pub machine: Machine,
    pub start: Instant,
    pub now: Instant,
    /// Every output so far, with when it came.
    pub log: Vec<(Instant, Output)>,
    /// Where the last `drain` started in `log`.
    mark: usize,
}

impl Driver {
    pub fn new(config: Config, seed: u64) -> Self {
        let start = Instant::now();
        Self {
            machine: Machine::new(config, seed).expect("valid config"),
            start,
            now: start,
            log: Vec::new(),
            mark: 0,
        }
    }

    /// A driver whose machine has started (and asked to connect).
    pub fn started(config: Config, seed: u64) -> Self {
        let mut d = Self::new(config, seed);
        d.input(Input::Start);
        d
    }

    /// A driver whose machine has an open connection.
    pub fn open(config: Config, seed: u64) -> (Self, ConnId) {
        let mut d = Self::started(config, seed);
        let conn = d.accept();
        (d, conn)
    }

    /// Seconds since the start, for messages.
    pub fn t(&self) -> f64 {
        (self.now - self.start).as_secs_f64()
    }

    pub fn input(&mut self, input: Input) {
        self.machine
            .handle_input(self.now, input)
            .expect("valid input");
        self.collect();
    }

    pub fn try_input(&mut self, input: Input) -> Result<(), sse_state_machine::Error> {
        let result = self.machine.handle_input(self.now, input);
        self.collect();
        result
    }

    pub fn event(&mut self, conn: ConnId, id: &str) -> Delivery {
        let delivery = self.machine.on_event(self.now, conn, &Utf8Bytes::from(id));
        self.collect();
        delivery
    }

    fn collect(&mut self) {
        while let Some(output) = self.machine.poll_output() {
            self.log.push((self.now, output));
        }
    }

    /// The outputs since the last call.
    pub fn drain(&mut self) -> Vec<Output> {
        let new = self.log[self.mark..]
            .iter()
            .map(|(_, o)| o.clone())
            .collect();
        self.mark = self.log.len();
        new
    }

    /// Moves time forward by `by`, firing every deadline on the way in order.
    pub fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        while let Some(at) = self.machine.poll_timeout() {
            if at > until {
                break;
            }
            assert!(
                at >= self.now,
                "a deadline in the past: {at:?} < {:?}",
                self.now
            );
            self.now = at;
            self.machine.handle_timeout(at);
            self.collect();
        }
        self.now = until;
    }

    /// Jumps to the next deadline and fires it; returns how far time moved.
    pub fn next_deadline(&mut self) -> Duration {
        let at = self.machine.poll_timeout().expect("a deadline");
        assert!(at >= self.now);
        let moved = at - self.now;
        self.now = at;
        self.machine.handle_timeout(at);
        self.collect();
        moved
    }

    /// The connection of the last `Connect` output.
    pub fn last_connect(&self) -> ConnId {
        self.log
            .iter()
            .rev()
            .find_map(|(_, o)| match o {
                Output::Connect { conn, .. } => Some(*conn),
                _ => None,
            })
            .expect("a Connect output")
    }

    /// The `Last-Event-ID` the last `Connect` asked for.
    pub fn last_connect_id(&self) -> Option<String> {
        self.log.iter().rev().find_map(|(_, o)| match o {
            Output::Connect { last_event_id, .. } => {
                Some(last_event_id.as_ref().map(|id| id.to_string()))
            }
            _ => None,
        })?
    }

    /// Answers the pending connect with a healthy 200 event stream.
    pub fn accept(&mut self) -> ConnId {
        let conn = self.last_connect();
        self.input(Input::Connected {
            conn,
            status: 200,
            event_stream: true,
            retry_after: None,
        });
        conn
    }

    pub fn respond(&mut self, status: u16, retry_after: Option<Duration>) -> ConnId {
        let conn = self.last_connect();
        self.input(Input::Connected {
            conn,
            status,
            event_stream: true,
            retry_after,
        });
        conn
    }

    pub fn data(&mut self, conn: ConnId, mid_event: bool) {
        self.input(Input::Data { conn, mid_event });
    }

    pub fn phase(&self) -> Phase {
        self.machine.phase()
    }

    /// How long the machine will back off, read from its next deadline.
    pub fn backoff(&self) -> Duration {
        assert_eq!(self.phase(), Phase::BackingOff, "at {}s", self.t());
        self.machine.poll_timeout().expect("a deadline") - self.now
    }

    /// The reason of the last phase change.
    pub fn last_reason(&self) -> Reason {
        self.log
            .iter()
            .rev()
            .find_map(|(_, o)| match o {
                Output::StateChanged { reason, .. } => Some(*reason),
                _ => None,
            })
            .expect("a state change")
    }

    /// Every `Close` for `conn`.
    pub fn closes(&self, conn: ConnId) -> Vec<CloseReason> {
        self.log
            .iter()
            .filter_map(|(_, o)| match o {
                Output::Close { conn: c, reason } if *c == conn => Some(*reason),
                _ => None,
            })
            .collect()
    }

    /// Every connection opened is closed exactly once, except `open` ones.
    pub fn assert_closed_exactly_once(&self, open: &[ConnId]) {
        for (_, output) in &self.log {
            if let Output::Connect { conn, .. } = output {
                let expected = usize::from(!open.contains(conn));
                assert_eq!(
                    self.closes(*conn).len(),
                    expected,
                    "{conn} closes: {:?}",
                    self.closes(*conn)
                );
            }
        }
    }
}

/// The default config with no randomness and no age rotation, for exact timing.
pub fn exact() -> Config {
    let mut config = Config::default();
    config.backoff.jitter = sse_state_machine::Jitter::None;
    config.backoff.reconnect_spread = Duration::ZERO;
    config.max_age = None;
    config
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

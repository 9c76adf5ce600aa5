//! The slow-consumer policies: what happens to a subscriber whose queue is
//! full.

use serde::Deserialize;

/// What to do with a subscriber whose queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// End its stream with a final `retry:` hint (default): it reconnects and
    /// resumes from the replay buffer.
    #[default]
    Disconnect,
    /// Drop its oldest queued events and tell it with an `ssegate-gap` event.
    DropOldest,
    /// Keep only the newest queued event per topic (market data wants the
    /// latest quote, not every stale one).
    Conflate,
}

impl Policy {
    /// Every policy, for registering metric series.
    pub const ALL: [Self; 3] = [Self::Disconnect, Self::DropOldest, Self::Conflate];

    /// A metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Disconnect => "disconnect",
            Self::DropOldest => "drop_oldest",
            Self::Conflate => "conflate",
        }
    }
}

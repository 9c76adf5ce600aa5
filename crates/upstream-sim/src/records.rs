//! What the simulator records: each request, and (when asked) the start
//! and end of each stream response.

use std::time::SystemTime;

/// The start or the end of one response to a stream request, recorded when
/// [`SimBuilder::log_streams`](crate::SimBuilder::log_streams) is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamLog {
    /// When (wall clock, so that other processes can line it up).
    pub at: SystemTime,
    /// The topic requested.
    pub topic: String,
    /// The behaviour played ([`Fault::label`](crate::Fault::label)).
    pub fault: &'static str,
    /// `false` when the response starts, `true` when it has ended.
    pub ended: bool,
}

/// Entries the stream log keeps before it drops the oldest.
pub(crate) const LOG_CAPACITY: usize = 100_000;

/// A request the server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// The method.
    pub method: String,
    /// The path and query.
    pub uri: String,
    /// The headers, names in lower case, in order.
    pub headers: Vec<(String, String)>,
}

impl RecordedRequest {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

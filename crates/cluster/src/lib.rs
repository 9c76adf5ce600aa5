//! Cluster mode for ssegate over NATS JetStream.
//!
//! Several gateway instances share one NATS (with JetStream) so that each
//! upstream topic is opened by one instance only, and the cluster as a
//! whole never holds more upstream streams than the provider allows. This
//! crate holds the parts that do not depend on the gateway's HTTP side:
//!
//! - [`ClusterConfig`]: the `[cluster]` section, its checks, and the NATS
//!   client's connect options (user and password, token, nkey, creds file,
//!   TLS).
//! - [`Leases`]: topic ownership and the cluster-wide stream cap as leases
//!   in a key-value bucket. A topic has at most one owner; at most
//!   `max_streams` topics have owners; a lease not renewed within
//!   `lease_ttl` disappears.
//! - [`Keeper`]: renews a lease and fences its holder. It reports the lease
//!   lost before the server can hand it to another instance, so a holder
//!   that stops its upstream on that signal never overlaps its successor.
//! - [`EventLog`]: a topic's events through the JetStream stream
//!   `<cluster>-events`, one subject per topic: the owner publishes each
//!   upstream event once (a repeat of an upstream id is dropped by the
//!   stream's duplicate window), and an instance follows a topic with one
//!   ordered consumer from any retained position (its stream sequence).
//! - [`Members`]: each instance announces itself, with the topics it has
//!   local subscribers of, in a bucket whose values age out after
//!   `lease_ttl`: the member list, and whether anyone still wants a topic.
//!
//! Metrics (`ssegate_cluster_*`) are defined in [`metrics`]; the
//! application installs the recorder and calls
//! [`metrics::describe_metrics`].
//!
//! Every bucket and subject is prefixed by the cluster's name, so two
//! clusters can share one NATS. Topics become keys by a reversible escape
//! ([`topic_token`]).
//!
//! The contract with NATS: the server is `nats-server` 2.10 or later with
//! JetStream enabled (ssegate's tests run 2.15.1, the version its CI
//! installs). Nothing here is mocked in the tests: they start their own
//! `nats-server -js` on loopback.
//!
//! The README holds a worked example: acquire a topic, keep it, stop when
//! it is lost.

mod config;
mod events;
mod fallback;
mod interest;
mod keeper;
mod key;
mod lease;
mod members;
pub mod metrics;
mod source;
mod view;

pub use config::{ClusterConfig, ConfigError, MAX_FALLBACK_STREAMS, MAX_NAME_LEN};
pub use events::{EventError, EventLog, PREVIOUS_HEADER, Published, Retention, Start, Stored};
pub use interest::Owner;
pub use keeper::{Holding, Keeper, Lost};
pub use key::{topic_of, topic_token};
pub use lease::{Acquired, Lease, LeaseError, LeaseInfo, Leases};
pub use members::{MAX_ANNOUNCEMENT_BYTES, Member, Members, MembersError};
pub use source::{ClusterSource, JoinError, SourceOptions};
pub use view::TopicView;

// The README's examples are compiled as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

//! How a route packs many topics into one upstream connection: the
//! `pack` table of a route.

use std::time::Duration;

use serde_json::Value;
use sse_parser::Event;

use crate::checks::{ConfigError, check_template, encode_segment};
use crate::redirect::RedirectPolicy;

/// The most topics one packed connection may carry (a URL of 1,000
/// 64-byte topics is 65 KB: more is beyond what servers accept).
pub const MAX_PACK_TOPICS: usize = 1000;

/// A packed route: its topics share upstream connections of at most
/// `max_topics` topics each, and each event is sent to the topic
/// [`demux`](Self::demux) finds in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pack {
    /// The URL with `{topics}` where the set goes: each topic
    /// percent-encoded, joined by `separator`, in sorted order (the same
    /// set is always the same URL). Never in the host.
    pub url_template: String,
    /// Between two topics in `{topics}`. Default `,`.
    pub separator: String,
    /// The most topics on one connection (1 to [`MAX_PACK_TOPICS`]).
    /// Default 100.
    pub max_topics: usize,
    /// Where an event names its topic.
    pub demux: Demux,
    /// At most one re-pack (a connection re-opened with a new set) per
    /// group per this interval: churn of subscribers never becomes churn
    /// of upstream connections. A new topic waits at most this long for
    /// its group's re-pack. Default 2 s.
    pub min_interval: Duration,
    /// What a re-opened connection resumes from.
    pub resume: Resume,
}

impl Pack {
    /// A pack of `url_template` with `demux` and the defaults.
    pub fn new(url_template: impl Into<String>, demux: Demux) -> Self {
        Self {
            url_template: url_template.into(),
            separator: ",".into(),
            max_topics: 100,
            demux,
            min_interval: Duration::from_secs(2),
            resume: Resume::LastEventId,
        }
    }

    /// The URL of the connection that carries `set` (sorted by the caller).
    pub(crate) fn url_for<S: AsRef<str>>(&self, set: &[S]) -> String {
        let mut list = String::new();
        for (i, topic) in set.iter().enumerate() {
            if i > 0 {
                list.push_str(&self.separator);
            }
            list.push_str(&encode_segment(topic.as_ref()));
        }
        self.url_template.replace("{topics}", &list)
    }

    /// Checks the pack; `key` is its key (`routes.N.pack`).
    pub(crate) fn validate(
        &self,
        key: &str,
        redirects: &RedirectPolicy,
    ) -> Result<(), ConfigError> {
        let sub = |k: &str| format!("{key}.{k}");
        if !self.url_template.contains("{topics}") {
            return Err(ConfigError::new(
                sub("url_template"),
                "the URL template has no {topics}",
            ));
        }
        check_template(
            &sub("url_template"),
            &self.url_template.replace("{topics}", "{topic}"),
            redirects,
        )?;
        let safe = |c: char| c.is_ascii_graphic() && !"/?#&=%{}\\\"<>`^|[]".contains(c);
        if self.separator.is_empty()
            || self.separator.len() > 8
            || !self.separator.chars().all(safe)
        {
            return Err(ConfigError::new(
                sub("separator"),
                "1-8 printable characters, none of / ? # & = % { } and brackets",
            ));
        }
        if self.max_topics == 0 || self.max_topics > MAX_PACK_TOPICS {
            return Err(ConfigError::new(
                sub("max_topics"),
                format!("must be 1 to {MAX_PACK_TOPICS}"),
            ));
        }
        if self.min_interval > Duration::from_secs(600) {
            return Err(ConfigError::new(sub("min_interval"), "at most 10 minutes"));
        }
        match &self.demux {
            Demux::JsonPointer(p) if !p.is_empty() && !p.starts_with('/') => Err(ConfigError::new(
                sub("demux.json_pointer"),
                "a JSON pointer starts with / (RFC 6901)",
            )),
            Demux::IdPrefix(sep) if sep.is_empty() => Err(ConfigError::new(
                sub("demux.id_prefix"),
                "the separator after the topic in the id is empty",
            )),
            _ => Ok(()),
        }
    }
}

/// Where an event of a packed connection names its topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Demux {
    /// A string at this JSON pointer of the data (`/s`, `/meta/stream`).
    JsonPointer(String),
    /// The event type is the topic.
    EventType,
    /// The id begins with the topic, then this separator (`AAPL:1234`
    /// with `:`).
    IdPrefix(String),
}

/// Why [`Demux::topic_of`] found no topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoTopic {
    /// The data is not JSON, or the pointer names no string in it.
    Unreadable,
}

impl Demux {
    /// The topic `event` names.
    pub(crate) fn topic_of<'a>(&self, event: &'a Event) -> Result<TopicName<'a>, NoTopic> {
        match self {
            Self::JsonPointer(pointer) => {
                let value: Value =
                    serde_json::from_str(&event.data).map_err(|_| NoTopic::Unreadable)?;
                match value.pointer(pointer) {
                    Some(Value::String(s)) => Ok(TopicName::Owned(s.clone())),
                    _ => Err(NoTopic::Unreadable),
                }
            }
            Self::EventType => Ok(TopicName::Borrowed(&event.event_type)),
            Self::IdPrefix(sep) => event
                .id
                .split_once(sep.as_str())
                .map(|(topic, _)| TopicName::Borrowed(topic))
                .ok_or(NoTopic::Unreadable),
        }
    }
}

/// A topic as an event names it.
pub(crate) enum TopicName<'a> {
    Borrowed(&'a str),
    Owned(String),
}

impl std::ops::Deref for TopicName<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            Self::Borrowed(s) => s,
            Self::Owned(s) => s,
        }
    }
}

/// What a packed connection sends when it is re-opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// `Last-Event-ID`: the connection's last id (the upstream numbers a
    /// packed connection's events in one sequence). Default.
    LastEventId,
    /// Nothing: each topic's gap across a reconnect is signalled downstream
    /// ([`StreamItem::Gap`](crate::StreamItem::Gap)).
    None,
}

#[cfg(feature = "serde")]
mod keys {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    use crate::pack::config::{Demux, Pack, Resume};

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct PackKeys {
        url_template: String,
        #[serde(default)]
        separator: Option<String>,
        #[serde(default)]
        max_topics: Option<usize>,
        demux: DemuxKeys,
        #[serde(default, with = "humantime_serde")]
        min_interval: Option<Duration>,
        #[serde(default)]
        resume: Option<ResumeKey>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct DemuxKeys {
        #[serde(default)]
        json_pointer: Option<String>,
        #[serde(default)]
        event_type: Option<bool>,
        #[serde(default)]
        id_prefix: Option<String>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "kebab-case")]
    enum ResumeKey {
        LastEventId,
        None,
    }

    /// Reads `pack = { url_template, demux = { json_pointer | event_type |
    /// id_prefix }, separator, max_topics, min_interval, resume }`.
    impl<'de> Deserialize<'de> for Pack {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            use serde::de::Error as _;
            let k = PackKeys::deserialize(deserializer)?;
            let demux = match (k.demux.json_pointer, k.demux.event_type, k.demux.id_prefix) {
                (Some(p), None, None) => Demux::JsonPointer(p),
                (None, Some(true), None) => Demux::EventType,
                (None, None, Some(sep)) => Demux::IdPrefix(sep),
                _ => {
                    return Err(D::Error::custom(
                        "pack.demux: give exactly one of `json_pointer = \"/s\"`, \
                         `event_type = true` or `id_prefix = \":\"`",
                    ));
                }
            };
            let mut pack = Pack::new(k.url_template, demux);
            if let Some(separator) = k.separator {
                pack.separator = separator;
            }
            if let Some(max) = k.max_topics {
                pack.max_topics = max;
            }
            if let Some(interval) = k.min_interval {
                pack.min_interval = interval;
            }
            pack.resume = match k.resume {
                Some(ResumeKey::None) => Resume::None,
                Some(ResumeKey::LastEventId) | None => Resume::LastEventId,
            };
            Ok(pack)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event_type: &str, id: &str, data: &str) -> Event {
        let mut e = Event::new(data.to_string());
        e.event_type = event_type.to_string().into();
        e.id = id.to_string().into();
        e
    }

    #[test]
    fn each_demux_finds_the_topic_or_says_none() {
        let e = event(
            "AAPL",
            "MSFT:17",
            r#"{"s":"TSLA","meta":{"stream":"NVDA"}}"#,
        );
        let name = |d: Demux| d.topic_of(&e).map(|t| t.to_string());
        assert_eq!(name(Demux::JsonPointer("/s".into())), Ok("TSLA".into()));
        assert_eq!(
            name(Demux::JsonPointer("/meta/stream".into())),
            Ok("NVDA".into())
        );
        assert_eq!(name(Demux::EventType), Ok("AAPL".into()));
        assert_eq!(name(Demux::IdPrefix(":".into())), Ok("MSFT".into()));
        assert_eq!(
            name(Demux::JsonPointer("/x".into())),
            Err(NoTopic::Unreadable)
        );
        assert_eq!(name(Demux::IdPrefix("#".into())), Err(NoTopic::Unreadable));
        let bad = event("m", "1", "{not json");
        assert!(Demux::JsonPointer("/s".into()).topic_of(&bad).is_err());
    }

    #[test]
    fn the_url_names_the_set_and_bad_packs_name_their_key() {
        let pack = Pack::new(
            "http://127.0.0.1:1/v1/stream?symbols={topics}",
            Demux::EventType,
        );
        assert_eq!(
            pack.url_for(&["AAPL", "BRK.B"]),
            "http://127.0.0.1:1/v1/stream?symbols=AAPL,BRK.B"
        );
        let redirects = RedirectPolicy::default();
        let key = |p: Pack| p.validate("routes.1.pack", &redirects).map_err(|e| e.key);
        assert_eq!(key(pack.clone()), Ok(()));
        let mut p = pack.clone();
        p.url_template = "http://127.0.0.1:1/{topic}".into();
        assert_eq!(key(p), Err("routes.1.pack.url_template".into()));
        let mut p = pack.clone();
        p.url_template = "http://{topics}.example/".into();
        assert_eq!(key(p), Err("routes.1.pack.url_template".into()));
        let mut p = pack.clone();
        p.separator = "&".into();
        assert_eq!(key(p), Err("routes.1.pack.separator".into()));
        let mut p = pack.clone();
        p.max_topics = 0;
        assert_eq!(key(p), Err("routes.1.pack.max_topics".into()));
        let mut p = pack;
        p.demux = Demux::JsonPointer("s".into());
        assert_eq!(key(p), Err("routes.1.pack.demux.json_pointer".into()));
    }
}

//! A subscription request: which topics and from where (the resume id),
//! then admission (draining, topic checks, auth, the token holder's share,
//! the gateway's limits, the pool), then the response body. Every refusal is
//! a [`Refusal`], counted by reason and answered with a clear body.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, WWW_AUTHENTICATE};
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt as _;
use sse_conn_pool::{Connector, PoolError};
use sse_state_machine::StopReason;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::auth::Denied;
use crate::body::{BodyParts, SseBody};
use crate::hub::{JoinError, Start};
use crate::limits;
use crate::metrics;
use crate::queue::Queue;
use crate::reply::{self, Reply};
use crate::state::Shared;

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Wanted {
    /// Its topics, as named (checked, sorted and deduplicated by admission).
    pub(crate) topics: Vec<String>,
    /// Its resume id (`Last-Event-ID`, or `?lastEventId=`), if not empty.
    pub(crate) last_id: Option<String>,
}

/// Why a subscription was refused.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// Not a stream path.
    NotFound,
    /// Not `GET`.
    Method,
    /// The topic in the path and in the query.
    TopicTwice,
    /// A topic named twice.
    Duplicate,
    /// No topic at all.
    NoTopic,
    /// More topics than `max_topics_per_connection`.
    TooManyTopics { asked: usize, max: usize },
    /// The gateway is draining.
    Draining,
    /// The pool refused the topic's name.
    InvalidTopic(PoolError),
    /// No valid token (401).
    Unauthenticated(String),
    /// The token may not read this topic (403).
    Forbidden(String),
    /// The token's holder has `max` streams open.
    PerToken { max: usize },
    /// An admission limit.
    Limit(limits::Refusal, Duration),
    /// The pool cannot open (or name) the upstream stream, or its upstream
    /// refused the topic.
    Pool(PoolError),
    /// The client's address holds `limit` new topics that have not
    /// delivered an event yet (429).
    Unproven { limit: usize },
}

impl Refusal {
    /// The `reason` label of the refusals metric (`None`: not counted, a
    /// malformed request).
    fn label(&self) -> Option<&'static str> {
        Some(match self {
            Self::NotFound | Self::Method | Self::TopicTwice | Self::Duplicate | Self::NoTopic => {
                return None;
            }
            Self::TooManyTopics { .. } => "too_many_topics",
            Self::Draining => "draining",
            Self::InvalidTopic(_) | Self::Pool(PoolError::InvalidTopic(_)) => "invalid_topic",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::Forbidden(_) => "forbidden",
            Self::PerToken { .. } => "max_per_token",
            Self::Limit(refusal, _) => refusal.label(),
            Self::Pool(PoolError::UnknownStream(_)) => "unknown_stream",
            Self::Pool(PoolError::Stopped { .. }) => "upstream_stopped",
            Self::Pool(PoolError::Unavailable(_)) => "source_unavailable",
            Self::Pool(_) => "upstream_capacity",
            Self::Unproven { .. } => "unproven",
        })
    }

    /// The answer, with the reason in words (and `Retry-After` where a
    /// retry can succeed).
    fn reply(&self, retry_hint: Duration) -> Reply {
        use StatusCode as S;
        match self {
            Self::NotFound => reply::text(
                S::NOT_FOUND,
                "not found: use /v1/stream/{topic} or /v1/stream?topic=A&topic=B\n",
            ),
            Self::Method => reply::text(S::METHOD_NOT_ALLOWED, "use GET\n"),
            Self::TopicTwice => reply::text(
                S::BAD_REQUEST,
                "give the topic in the path or as ?topic=, not both\n",
            ),
            Self::Duplicate => reply::text(S::BAD_REQUEST, "a topic is named twice\n"),
            Self::NoTopic => reply::text(S::BAD_REQUEST, "no topic: add ?topic=NAME\n"),
            Self::TooManyTopics { asked, max } => reply::text(
                S::BAD_REQUEST,
                format!("{asked} topics; at most {max} per stream\n"),
            ),
            Self::Draining => reply::refuse(
                S::SERVICE_UNAVAILABLE,
                retry_hint,
                "the gateway is shutting down\n".into(),
            ),
            Self::InvalidTopic(e) => reply::text(S::BAD_REQUEST, format!("{e}\n")),
            Self::Unauthenticated(why) => {
                let mut reply = reply::text(S::UNAUTHORIZED, format!("unauthorized: {why}\n"));
                let challenge = format!(
                    "Bearer realm=\"ssegate\", error=\"invalid_token\", error_description=\"{}\"",
                    why.replace(['"', '\\'], "'")
                );
                if let Ok(value) = HeaderValue::from_str(&challenge) {
                    reply.headers_mut().insert(WWW_AUTHENTICATE, value);
                }
                reply
            }
            Self::Forbidden(topic) => reply::text(
                S::FORBIDDEN,
                format!("forbidden: this token may not read the topic `{topic}`\n"),
            ),
            Self::PerToken { max } => reply::refuse(
                S::TOO_MANY_REQUESTS,
                retry_hint,
                format!("this token has {max} streams open; at most that many at once\n"),
            ),
            Self::Limit(refusal, retry) => {
                let (status, why) = match refusal {
                    limits::Refusal::Total => (S::SERVICE_UNAVAILABLE, "the gateway is full"),
                    limits::Refusal::PerIp => {
                        (S::TOO_MANY_REQUESTS, "too many streams from your address")
                    }
                    limits::Refusal::Rate => {
                        (S::TOO_MANY_REQUESTS, "too many new streams; slow down")
                    }
                    limits::Refusal::IpRate => (
                        S::TOO_MANY_REQUESTS,
                        "too many stream requests from your address; slow down",
                    ),
                };
                reply::refuse(status, *retry, format!("{why}\n"))
            }
            Self::Unproven { limit } => reply::refuse(
                S::TOO_MANY_REQUESTS,
                retry_hint,
                format!(
                    "your address holds {limit} new topics that have not delivered an event yet; at most that many\n"
                ),
            ),
            Self::Pool(e) => match e {
                PoolError::InvalidTopic(_) => reply::text(S::BAD_REQUEST, format!("{e}\n")),
                PoolError::UnknownStream(_) => reply::text(S::NOT_FOUND, format!("{e}\n")),
                // What the upstream said, in a form a browser's EventSource
                // does not retry in a loop: 204 and 404 end it for good.
                PoolError::Stopped {
                    topic,
                    reason,
                    retry_after,
                } => match reason {
                    StopReason::NoContent => reply::text(S::NO_CONTENT, ""),
                    StopReason::ClientError(404 | 410) => reply::text(
                        S::NOT_FOUND,
                        format!(
                            "the upstream has no topic `{topic}` ({reason}); it is asked again in {} s at the earliest\n",
                            retry_after.as_secs().max(1)
                        ),
                    ),
                    _ => reply::refuse(
                        S::BAD_GATEWAY,
                        *retry_after,
                        format!("the upstream refused topic `{topic}`: {reason}\n"),
                    ),
                },
                PoolError::AtCapacity { retry_after, .. }
                | PoolError::HostAtCapacity { retry_after, .. }
                | PoolError::RouteAtCapacity { retry_after, .. } => {
                    reply::refuse(S::SERVICE_UNAVAILABLE, *retry_after, format!("{e}\n"))
                }
                _ => reply::refuse(S::SERVICE_UNAVAILABLE, retry_hint, format!("{e}\n")),
            },
        }
    }
}

/// Which topics a request asks for, and its resume id.
pub(crate) fn parse<B>(req: &Request<B>) -> Result<Wanted, Refusal> {
    let path = req.uri().path();
    let mut topics = Vec::new();
    let mut last_id = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let query = req.uri().query().unwrap_or("");
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "topic" => topics.push(value.into_owned()),
            // A browser cannot set the header on its first request.
            "lastEventId" if last_id.is_none() => last_id = Some(value.into_owned()),
            _ => {}
        }
    }
    if let Some(topic) = path.strip_prefix("/v1/stream/") {
        if !topics.is_empty() {
            return Err(Refusal::TopicTwice);
        }
        let decoded = url::form_urlencoded::parse(format!("t={topic}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        topics.push(decoded);
    } else if path != "/v1/stream" {
        return Err(Refusal::NotFound);
    }
    Ok(Wanted {
        topics,
        last_id: last_id.filter(|id| !id.is_empty()),
    })
}

/// Where each topic starts, from the resume id.
pub(crate) fn starts(run: &str, topics: &[String], last_id: Option<&str>) -> Vec<Start> {
    let Some(id) = last_id else {
        return vec![Start::Now; topics.len()];
    };
    let Some((token, rest)) = id.split_once(':') else {
        return vec![Start::Reset; topics.len()];
    };
    if token != run {
        return vec![Start::Reset; topics.len()];
    }
    if !rest.contains('=') {
        return match (rest.parse::<u64>(), topics.len()) {
            (Ok(seq), 1) => vec![Start::After(seq)],
            _ => vec![Start::Reset; topics.len()],
        };
    }
    let mut positions = HashMap::new();
    for part in rest.split(',') {
        let Some((topic, seq)) = part.split_once('=') else {
            return vec![Start::Reset; topics.len()];
        };
        let Ok(seq) = seq.parse::<u64>() else {
            return vec![Start::Reset; topics.len()];
        };
        positions.insert(topic, seq);
    }
    topics
        .iter()
        .map(|t| {
            positions
                .get(t.as_str())
                .map_or(Start::Now, |&s| Start::After(s))
        })
        .collect()
}

/// Answers a stream request from `ip`: the event stream, or why not.
/// `kill` ends the client's whole connection (see `Queue::kill`).
pub(crate) async fn stream<C: Connector, B>(
    shared: &Arc<Shared<C>>,
    req: Request<B>,
    ip: IpAddr,
    kill: Arc<Notify>,
) -> Reply {
    match admit(shared, &req, ip, kill).await {
        Ok(body) => reply::event_stream(body.boxed_unsync()),
        Err(refusal) => {
            if let Some(label) = refusal.label() {
                metrics::record_refused(label);
            }
            refusal.reply(shared.config.retry_hint)
        }
    }
}

/// Checks the request in the order that costs least first, and opens its
/// stream.
async fn admit<C: Connector, B>(
    shared: &Arc<Shared<C>>,
    req: &Request<B>,
    ip: IpAddr,
    kill: Arc<Notify>,
) -> Result<SseBody<C>, Refusal> {
    let config = &shared.config;
    let wanted = parse(req)?;
    if req.method() != Method::GET {
        return Err(Refusal::Method);
    }
    if shared.draining() {
        return Err(Refusal::Draining);
    }
    let mut topics = wanted.topics;
    if topics.is_empty() {
        return Err(Refusal::NoTopic);
    }
    let asked = topics.len();
    if asked > config.max_topics_per_connection {
        return Err(Refusal::TooManyTopics {
            asked,
            max: config.max_topics_per_connection,
        });
    }
    topics.sort();
    topics.dedup();
    if topics.len() != asked {
        return Err(Refusal::Duplicate);
    }
    // The topic's form is refused now; a topic no upstream serves (outside
    // every route's allow-list) only after the token is checked, so that an
    // anonymous client cannot map the allow-lists by 404s.
    let mut unserved = None;
    for topic in &topics {
        match shared.hub.pool().check_topic(topic) {
            Ok(()) => {}
            Err(e @ PoolError::UnknownStream(_)) => unserved = unserved.or(Some(e)),
            Err(e) => return Err(Refusal::InvalidTopic(e)),
        }
    }
    // The client's own budget pays for what follows (a signature check
    // can cost a millisecond of CPU).
    shared
        .limits
        .attempt(ip)
        .map_err(|(refusal, retry)| Refusal::Limit(refusal, retry))?;
    // Authorised before anything is sent: a resume replays only topics the
    // token may read, like live events.
    let authenticator = shared.auth.read().clone();
    let grant = authenticator
        .check(req.headers(), req.uri().query(), &topics)
        .map_err(|denied| match denied {
            Denied::Unauthenticated(why) => Refusal::Unauthenticated(why),
            Denied::Forbidden(topic) => Refusal::Forbidden(topic),
        })?;
    let (principal, expires) = match &grant {
        None => (None, None),
        Some(grant) => {
            let guard =
                shared
                    .principals
                    .admit(grant.principal.clone())
                    .ok_or(Refusal::PerToken {
                        max: config.auth.max_streams_per_token,
                    })?;
            // Saturating: a token valid for longer than the clock can count
            // has no expiry timer, never an overflow.
            let expires = grant.expires.and_then(|at| {
                let left = at
                    .duration_since(std::time::SystemTime::now())
                    .unwrap_or_default();
                Instant::now().checked_add(left)
            });
            (Some(guard), expires)
        }
    };
    // Before anything of the request is opened upstream.
    if let Some(e) = unserved {
        return Err(Refusal::Pool(e));
    }
    let admission = shared
        .limits
        .admit(ip)
        .map_err(|(refusal, retry)| Refusal::Limit(refusal, retry))?;
    let run = shared.hub.run_token().to_string();
    let starts = starts(&run, &topics, wanted.last_id.as_deref());
    let queue = Arc::new(Queue::new(config.queue_events, config.queue_bytes, kill));
    let (membership, positions) = shared
        .hub
        .subscribe(&topics, &starts, &queue, ip)
        .await
        .map_err(|e| match e {
            JoinError::Pool(e) => Refusal::Pool(e),
            JoinError::Unproven { limit } => Refusal::Unproven { limit },
        })?;
    // Each upstream's first answer, before the client's: a topic the
    // upstream does not have is a 404 now, not a stream that ends and is
    // retried in a loop. Bounded by the upstream's connect deadline; an
    // upstream that is down (retrying) is answered with the stream, which
    // carries heartbeats until it is back.
    let pool = shared.hub.pool();
    let wait = pool.connect_timeout();
    for topic in &topics {
        if let Some(answer) = pool.first_answer(topic)
            && let Ok(Err(refused)) = tokio::time::timeout(wait, answer).await
        {
            return Err(Refusal::Pool(refused));
        }
    }
    // Golden-ratio steps spread streams evenly over the drain window.
    let n = shared.spread.fetch_add(1, Ordering::Relaxed);
    let drain_offset = (n as f64 * 0.618_033_988_749_895).fract();
    let mut first = sse_parser::encode_retry(config.retry_hint).to_vec();
    first.push(b'\n');
    let span = tracing::info_span!("subscriber", %ip, topics = %topics.join(","));
    Ok(SseBody::new(BodyParts {
        span,
        queue,
        topics: topics.iter().map(|t| Arc::from(t.as_str())).collect(),
        positions,
        run: run.into(),
        first: Bytes::from(first),
        heartbeat: config.heartbeat,
        drain: shared.drain.subscribe(),
        drain_offset,
        drain_spread: config.drain_spread,
        retry_hint: config.retry_hint,
        membership,
        admission,
        principal,
        expires,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uri: &str) -> Request<()> {
        Request::get(uri).body(()).expect("a request")
    }

    #[test]
    fn requests_name_their_topics_in_the_path_or_the_query() {
        let wanted = parse(&request("/v1/stream/BTC%2DUSD")).expect("valid");
        assert_eq!(wanted.topics, ["BTC-USD"]);
        let wanted = parse(&request("/v1/stream?topic=B&topic=A&lastEventId=r:5")).expect("valid");
        assert_eq!(wanted.topics, ["B", "A"]);
        assert_eq!(wanted.last_id.as_deref(), Some("r:5"));
        let header = Request::get("/v1/stream/A?lastEventId=r:1")
            .header("last-event-id", "r:9")
            .body(())
            .expect("a request");
        assert_eq!(
            parse(&header).expect("valid").last_id.as_deref(),
            Some("r:9"),
            "the header wins over the query"
        );
        assert_eq!(
            parse(&request("/v1/stream/A?lastEventId="))
                .expect("valid")
                .last_id,
            None
        );
        assert!(matches!(
            parse(&request("/v1/streams")),
            Err(Refusal::NotFound)
        ));
        assert!(matches!(
            parse(&request("/v1/stream/A?topic=B")),
            Err(Refusal::TopicTwice)
        ));
        assert_eq!(
            parse(&request("/v1/stream")).expect("valid").topics,
            Vec::<String>::new(),
            "no topic is refused later, after the method and the drain"
        );
    }

    #[test]
    fn resume_ids_are_parsed_per_topic() {
        let t = |v: &[&str]| v.iter().map(|s| (*s).to_string()).collect::<Vec<_>>();
        assert_eq!(starts("r", &t(&["A"]), None), [Start::Now]);
        assert_eq!(starts("r", &t(&["A"]), Some("r:42")), [Start::After(42)]);
        assert_eq!(starts("r", &t(&["A"]), Some("old:42")), [Start::Reset]);
        // An event a cluster could not place in its log (`<run>~`): never
        // a position, on any instance.
        assert_eq!(starts("r", &t(&["A"]), Some("r~:42")), [Start::Reset]);
        assert_eq!(starts("r", &t(&["A"]), Some("garbage")), [Start::Reset]);
        assert_eq!(
            starts("r", &t(&["A", "B"]), Some("r:42")),
            [Start::Reset, Start::Reset]
        );
        assert_eq!(
            starts("r", &t(&["A", "B", "C"]), Some("r:A=5,B=7")),
            [Start::After(5), Start::After(7), Start::Now]
        );
        assert_eq!(
            starts("r", &t(&["A", "B"]), Some("r:A=5,B=x")),
            [Start::Reset, Start::Reset]
        );
    }

    #[test]
    fn every_refusal_has_a_status_and_a_reason() {
        let cases = [
            (Refusal::NotFound, 404),
            (Refusal::Method, 405),
            (Refusal::NoTopic, 400),
            (Refusal::TooManyTopics { asked: 20, max: 16 }, 400),
            (Refusal::Draining, 503),
            (Refusal::Unauthenticated("no token".into()), 401),
            (Refusal::Forbidden("A".into()), 403),
            (Refusal::PerToken { max: 1 }, 429),
            (
                Refusal::Limit(limits::Refusal::Rate, Duration::from_secs(1)),
                429,
            ),
            (Refusal::Pool(PoolError::UnknownStream("x".into())), 404),
        ];
        for (refusal, status) in cases {
            let reply = refusal.reply(Duration::from_secs(3));
            assert_eq!(reply.status().as_u16(), status, "{refusal:?}");
            let retry = reply.headers().contains_key(http::header::RETRY_AFTER);
            assert_eq!(retry, matches!(status, 429 | 503), "{refusal:?}");
        }
    }
}

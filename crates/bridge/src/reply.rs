//! Responses: the reply type both listeners answer with, the small builders
//! (text, built-in pages, JSON, refusals with `Retry-After`), and CORS.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE, ALLOW, CACHE_CONTROL, CONTENT_TYPE,
    HeaderValue, RETRY_AFTER, VARY,
};
use http::{Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};

use crate::config::BridgeConfig;

/// What every handler answers.
pub(crate) type Reply = Response<UnsyncBoxBody<Bytes, Infallible>>;

/// A plain-text reply.
pub(crate) fn text(status: StatusCode, body: impl Into<Bytes>) -> Reply {
    let mut response = Response::new(Full::new(body.into()).boxed_unsync());
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A built-in page (no external assets: nothing else is fetched).
pub(crate) fn html(page: impl Into<Bytes>) -> Reply {
    let mut reply = text(StatusCode::OK, page);
    let headers = reply.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
        ),
    );
    reply
}

/// A refusal the client should retry after `retry_after` (whole seconds,
/// at least one).
pub(crate) fn refuse(status: StatusCode, retry_after: Duration, body: String) -> Reply {
    let mut response = text(status, body);
    if let Ok(value) = HeaderValue::from_str(&retry_after.as_secs().max(1).to_string()) {
        response.headers_mut().insert(RETRY_AFTER, value);
    }
    response
}

/// A JSON reply.
pub(crate) fn json(value: &serde_json::Value) -> Reply {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())).boxed_unsync());
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The headers of an event stream (`body` is its body).
pub(crate) fn event_stream(body: UnsyncBoxBody<Bytes, Infallible>) -> Reply {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Proxies such as nginx must not buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// The answer to a CORS preflight (or a plain OPTIONS): what the streams
/// accept. Whether the origin may use them is added by [`cors`].
pub(crate) fn preflight() -> Reply {
    let mut reply = text(StatusCode::NO_CONTENT, "");
    let headers = reply.headers_mut();
    headers.insert(ALLOW, HeaderValue::from_static("GET, OPTIONS"));
    headers.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET"),
    );
    headers.insert(
        ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Last-Event-ID, Authorization, Cache-Control"),
    );
    headers.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    reply
}

/// Lets a page on an allowed origin read the response (every response,
/// errors included, so that the page can read why it was refused).
pub(crate) fn cors(config: &BridgeConfig, origin: Option<&HeaderValue>, reply: &mut Reply) {
    let headers = reply.headers_mut();
    headers.append(VARY, HeaderValue::from_static("Origin"));
    let Some(origin) = origin else { return };
    let any = config.cors_origins.iter().any(|o| o == "*");
    let listed = origin
        .to_str()
        .is_ok_and(|o| config.cors_origins.iter().any(|allowed| allowed == o));
    if !(any || listed) {
        return;
    }
    if any && !config.cors_credentials {
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    } else {
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    }
    if config.cors_credentials {
        headers.insert(
            ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
}

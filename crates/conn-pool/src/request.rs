//! The upstream request: what is sent, how redirects are followed, and how
//! `Retry-After` is read.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, HOST, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request};
use http_body_util::Full;
use url::Url;

use crate::connector::Target;

/// Why a request could not be built or a redirect followed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// The URL is not an absolute `http` or `https` URL with a host.
    BadUrl(String),
    /// A redirect without a `Location`, or with an empty or unparsable one.
    BadLocation,
    /// More redirects than the hop limit.
    TooManyRedirects(u8),
    /// A header value that cannot be sent (a configured or resumed id).
    BadHeader(&'static str),
    /// A redirect from `https` to `http`: never followed (no plaintext
    /// fallback).
    Downgrade,
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BadUrl(url) => write!(f, "not an absolute http(s) URL with a host: {url:?}"),
            Self::BadLocation => f.write_str("redirect without a usable Location"),
            Self::TooManyRedirects(n) => write!(f, "more than {n} redirects"),
            Self::BadHeader(name) => write!(f, "invalid value for header {name}"),
            Self::Downgrade => f.write_str("redirect from https to http refused"),
        }
    }
}

impl std::error::Error for RequestError {}

/// What to request from the upstream, re-sent on every reconnect.
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    url: Url,
    /// The method: GET by default; POST or REPORT for some providers.
    pub method: Method,
    /// Extra headers (a configured `Content-Type` is used as is).
    pub headers: HeaderMap,
    /// A body, re-sent on every reconnect.
    pub body: Option<Bytes>,
    /// The most redirects followed for one connection. Default 5.
    pub max_redirects: u8,
}

impl UpstreamRequest {
    /// A GET of `url`.
    ///
    /// # Errors
    ///
    /// `url` is not an absolute `http` or `https` URL with a host.
    pub fn get(url: &str) -> Result<Self, RequestError> {
        Ok(Self {
            url: parse_url(url)?,
            method: Method::GET,
            headers: HeaderMap::new(),
            body: None,
            max_redirects: 5,
        })
    }

    /// The URL.
    pub fn url(&self) -> &Url {
        &self.url
    }
}

pub(crate) fn parse_url(url: &str) -> Result<Url, RequestError> {
    let parsed = Url::parse(url).map_err(|_| RequestError::BadUrl(url.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(RequestError::BadUrl(url.to_string()));
    }
    Ok(parsed)
}

/// Where `url` connects.
pub(crate) fn target(url: &Url) -> Target {
    Target {
        scheme: url.scheme().to_string(),
        host: url
            .host_str()
            .unwrap_or_default()
            .trim_matches(['[', ']'])
            .to_string(),
        port: url.port_or_known_default().unwrap_or(80),
    }
}

/// Builds the request for `url`: the configured method, headers and body,
/// `Accept: text/event-stream`, `Cache-Control: no-cache`, and
/// `Last-Event-ID` when there is one. `cross_origin` (after a redirect to
/// another origin) drops every configured header but `Content-Type`: each
/// may carry a credential (`Authorization`, `Cookie`, `Proxy-Authorization`,
/// an `X-Api-Key`), and none was meant for another origin. HTTP/1.1
/// requests carry the path and a `Host` header; HTTP/2 requests the absolute
/// URL, from which hyper takes `:scheme` and `:authority`.
pub(crate) fn build(
    template: &UpstreamRequest,
    url: &Url,
    last_event_id: Option<&str>,
    cross_origin: bool,
    http2: bool,
) -> Result<Request<Full<Bytes>>, RequestError> {
    let target = if http2 {
        let mut absolute = url.clone();
        absolute.set_fragment(None);
        absolute.to_string()
    } else {
        match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_string(),
        }
    };
    let mut request = Request::builder()
        .method(template.method.clone())
        .uri(target);
    if http2 {
        request = request.version(http::Version::HTTP_2);
    }
    let headers = request
        .headers_mut()
        .ok_or(RequestError::BadHeader("request"))?;
    if !http2 {
        let host = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        headers.insert(
            HOST,
            HeaderValue::from_str(&host).map_err(|_| RequestError::BadHeader("host"))?,
        );
    }
    headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    for (name, value) in &template.headers {
        if cross_origin && name != CONTENT_TYPE {
            continue;
        }
        headers.insert(name.clone(), value.clone());
    }
    if let Some(id) = last_event_id.filter(|id| !id.is_empty()) {
        let value =
            HeaderValue::from_str(id).map_err(|_| RequestError::BadHeader("last-event-id"))?;
        headers.insert(HeaderName::from_static("last-event-id"), value);
    }
    let body = template.body.clone().unwrap_or_default();
    request
        .body(Full::new(body))
        .map_err(|_| RequestError::BadHeader("request"))
}

/// Resolves a redirect's `Location` against the URL that answered.
pub(crate) fn redirect(from: &Url, location: Option<&HeaderValue>) -> Result<Url, RequestError> {
    let location = location
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or(RequestError::BadLocation)?;
    let next = from.join(location).map_err(|_| RequestError::BadLocation)?;
    if !matches!(next.scheme(), "http" | "https") || next.host_str().is_none() {
        return Err(RequestError::BadLocation);
    }
    if from.scheme() == "https" && next.scheme() == "http" {
        return Err(RequestError::Downgrade);
    }
    Ok(next)
}

/// Whether two URLs share scheme, host and port.
pub(crate) fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Reads `Retry-After`: delta-seconds or an HTTP date (RFC 9110), as a delay
/// from `now`. Garbage is `None`; a date in the past is zero. The state
/// machine clamps the result.
pub fn retry_after(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        // Huge values saturate; the machine clamps them.
        return Some(Duration::from_secs(text.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_date_absurd_garbage() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        let v = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(retry_after(&v("120"), now), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after(&v("Wed, 21 Oct 2015 07:30:00 GMT"), now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            retry_after(&v("Wednesday, 21-Oct-15 07:29:00 GMT"), now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            retry_after(&v("Tue, 20 Oct 2015 07:28:00 GMT"), now),
            Some(Duration::ZERO),
            "in the past"
        );
        assert_eq!(
            retry_after(&v("99999999999999999999999"), now),
            Some(Duration::from_secs(u64::MAX))
        );
        for garbage in ["soon", "-1", "1.5", "", "12 seconds"] {
            assert_eq!(retry_after(&v(garbage), now), None, "{garbage:?}");
        }
    }

    #[test]
    fn redirects_resolve_relative_locations_and_refuse_empty_ones() {
        let from = Url::parse("http://a.test:8080/v1/x/stream?q=1").unwrap();
        let v = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(
            redirect(&from, Some(&v("/v2/y"))).unwrap().as_str(),
            "http://a.test:8080/v2/y"
        );
        assert_eq!(
            redirect(&from, Some(&v("z"))).unwrap().as_str(),
            "http://a.test:8080/v1/x/z"
        );
        assert_eq!(
            redirect(&from, Some(&v("http://b.test/s")))
                .unwrap()
                .as_str(),
            "http://b.test/s"
        );
        assert_eq!(redirect(&from, None), Err(RequestError::BadLocation));
        assert_eq!(
            redirect(&from, Some(&v(" "))),
            Err(RequestError::BadLocation)
        );
        assert_eq!(
            redirect(&from, Some(&v("ftp://c.test/"))),
            Err(RequestError::BadLocation)
        );
    }

    #[test]
    fn requests_carry_the_sse_headers_and_strip_credentials_across_origins() {
        use http::header::{AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION};
        let mut template = UpstreamRequest::get("http://a.test/s?x=1").unwrap();
        template
            .headers
            .insert(AUTHORIZATION, HeaderValue::from_static("Bearer secret"));
        template
            .headers
            .insert("x-custom", HeaderValue::from_static("1"));
        template
            .headers
            .insert("x-api-key", HeaderValue::from_static("key"));
        template
            .headers
            .insert(PROXY_AUTHORIZATION, HeaderValue::from_static("Basic x"));
        template
            .headers
            .insert(COOKIE, HeaderValue::from_static("session=1"));
        template
            .headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let url = template.url().clone();
        let request = build(&template, &url, Some("42"), false, false).unwrap();
        assert_eq!(request.uri(), "/s?x=1");
        let h = request.headers();
        assert_eq!(
            (&h[ACCEPT], &h[CACHE_CONTROL], &h[HOST]),
            (
                &"text/event-stream".parse::<HeaderValue>().unwrap(),
                &"no-cache".parse::<HeaderValue>().unwrap(),
                &"a.test".parse::<HeaderValue>().unwrap()
            )
        );
        assert_eq!(h["last-event-id"], "42");
        assert_eq!(h[AUTHORIZATION], "Bearer secret");
        let request = build(&template, &url, Some(""), true, false).unwrap();
        assert!(
            request.headers().get("last-event-id").is_none(),
            "no header for an empty id"
        );
        for name in [
            "authorization",
            "cookie",
            "proxy-authorization",
            "x-api-key",
            "x-custom",
        ] {
            assert!(
                request.headers().get(name).is_none(),
                "{name}: every configured header is dropped across origins"
            );
        }
        assert_eq!(request.headers()[CONTENT_TYPE], "application/json");
        // HTTP/2: the absolute URL (hyper derives :scheme and :authority), no Host.
        let request = build(&template, &url, None, false, true).unwrap();
        assert_eq!(request.uri(), "http://a.test/s?x=1");
        assert_eq!(request.version(), http::Version::HTTP_2);
        assert!(request.headers().get(HOST).is_none());
    }

    #[test]
    fn a_redirect_from_https_to_http_is_refused() {
        let from = Url::parse("https://a.test/s").unwrap();
        let v = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(
            redirect(&from, Some(&v("http://a.test/s"))),
            Err(RequestError::Downgrade)
        );
        assert!(redirect(&from, Some(&v("https://b.test/s"))).is_ok());
    }

    #[test]
    fn only_absolute_http_urls() {
        for bad in ["/relative", "ftp://x/", "http://", "not a url"] {
            assert!(UpstreamRequest::get(bad).is_err(), "{bad}");
        }
        assert!(same_origin(
            &Url::parse("http://a:80/x").unwrap(),
            &Url::parse("http://a/y").unwrap()
        ));
        assert!(!same_origin(
            &Url::parse("http://a/x").unwrap(),
            &Url::parse("https://a/x").unwrap()
        ));
    }
}

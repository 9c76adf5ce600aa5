//! The admin listener: probes (`/healthz`, `/readyz`), `/metrics`, JSON
//! views, the status page and its login, and the operator's actions.
//!
//! Who may do what: the probes are always open (orchestrators rarely carry
//! credentials). With `admin_token` set, everything else needs
//! `Authorization: Bearer <token>`, or for reading (`GET`) a status-page
//! session cookie (`session`); without it, reading is open and the actions
//! work only on a loopback admin listener.
//!
//! Where things are: `views` (the JSON views, `/metrics`, `/debug/vars`),
//! `events` (the status page's snapshot stream), `actions` (rotate,
//! reconnect, disconnect, log level, reload), `login` and `session` (the
//! status page's browser sessions).

mod actions;
mod events;
pub(crate) mod guard;
mod login;
pub(crate) mod session;
pub(crate) mod throttle;
mod views;

pub(crate) use views::report_json;

use std::net::IpAddr;
use std::sync::Arc;

use http::header::{AUTHORIZATION, COOKIE, HeaderValue, WWW_AUTHENTICATE};
use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use sse_conn_pool::Connector;

use crate::reply::{self, Reply};
use crate::state::Shared;

/// The status page: a table of the upstream streams, fed by
/// `/admin/events`. No external assets.
const STATUS_PAGE: &str = include_str!("status.html");

/// Every endpoint, for the 404's body.
const ENDPOINTS: &str = "not found: / (status page; POST /admin/login, /admin/logout) /healthz /readyz /metrics /admin/streams /admin/cluster /admin/events /admin/report?window=1h|24h /admin/log-level\n";

/// Answers one admin request from `peer`.
pub(crate) async fn route<C: Connector>(
    shared: &Arc<Shared<C>>,
    req: Request<Incoming>,
    peer: IpAddr,
) -> Reply {
    match (req.method(), req.uri().path()) {
        // A plain form post from the status page: not a custom header, but
        // the same host and origin checks as every action.
        (&Method::POST, "/admin/login" | "/admin/logout") => {
            if let Some(refused) = guard::action(shared, &req, false) {
                return refused;
            }
            if req.uri().path() == "/admin/login" {
                login::login(shared, req, peer).await
            } else {
                login::logout(shared, &req)
            }
        }
        _ => endpoint(shared, &req, peer).await,
    }
}

async fn endpoint<C: Connector>(
    shared: &Arc<Shared<C>>,
    req: &Request<Incoming>,
    peer: IpAddr,
) -> Reply {
    let path = req.uri().path();
    // The probes stay open: orchestrators rarely carry credentials.
    if !matches!(path, "/healthz" | "/readyz")
        && let Some(refused) = authorize(shared, req, peer)
    {
        return refused;
    }
    let method = req.method();
    if method == Method::POST
        && let Some(refused) = guard::action(shared, req, true)
    {
        return refused;
    }
    if path == "/admin/log-level" && matches!(*method, Method::GET | Method::POST) {
        return actions::log_level(shared, req);
    }
    if method == Method::POST {
        return actions::act(shared, path);
    }
    if method != Method::GET {
        return reply::text(
            StatusCode::METHOD_NOT_ALLOWED,
            "use GET (POST for the actions under /admin)\n",
        );
    }
    match path {
        // Liveness never depends on upstreams.
        "/healthz" => reply::text(StatusCode::OK, "ok\n"),
        "/readyz" => views::ready(shared),
        "/" => reply::html(STATUS_PAGE),
        "/admin/events" => events::status_events(shared),
        "/metrics" => views::metrics(shared),
        "/admin/streams" => reply::json(&views::streams(shared)),
        "/admin/cluster" => match &shared.hooks.cluster {
            Some(view) => reply::json(&view().await),
            None => reply::text(
                StatusCode::NOT_FOUND,
                "cluster mode is off: this instance is on its own ([cluster] enabled = false)\n",
            ),
        },
        "/debug/vars" if shared.config.debug_vars => reply::json(&views::debug_vars(shared)),
        "/admin/report" => views::report(shared, req.uri().query()),
        _ => reply::text(StatusCode::NOT_FOUND, ENDPOINTS),
    }
}

/// `None` if the request may go on; otherwise the refusal (the login page
/// for a browser asking for the status page). Wrong bearer tokens count
/// against `peer` (`throttle`).
fn authorize<C: Connector>(
    shared: &Shared<C>,
    req: &Request<Incoming>,
    peer: IpAddr,
) -> Option<Reply> {
    let token = shared.config.admin_token.as_ref()?;
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    // A browser's login (the status page: EventSource cannot send headers)
    // authorises reading only: an action always needs the header, so no
    // other page can make a logged-in browser act.
    let reading = matches!(*req.method(), Method::GET | Method::HEAD);
    let session = reading
        && session::from_cookies(
            req.headers()
                .get_all(COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok()),
        )
        .is_some_and(|id| shared.sessions.valid(id));
    if session {
        return None;
    }
    if let Some(presented) = header {
        if !shared.admin_throttle.allows(peer) {
            return Some(throttle::refusal());
        }
        if token.matches(presented) {
            return None;
        }
        shared.admin_throttle.failed(peer);
    }
    if req.uri().path() == "/" && reading {
        return Some(login::page(StatusCode::UNAUTHORIZED, None));
    }
    let mut reply = reply::text(
        StatusCode::UNAUTHORIZED,
        "this admin endpoint needs `Authorization: Bearer <bridge.admin_token>`\n",
    );
    reply.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"ssegate admin\""),
    );
    Some(reply)
}

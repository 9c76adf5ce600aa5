//! The operator's actions (POST): rotate or reconnect one stream or all
//! (make-before-break: subscribers see no gap), disconnect subscribers (they
//! come back after the retry hint and resume), change the log filter, and
//! reload the configuration.

use std::sync::Arc;

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use serde_json::json;
use sse_conn_pool::Connector;

use crate::reload::{ReloadError, Reloader};
use crate::reply::{self, Reply};
use crate::state::Shared;

/// `GET` shows the log filter, `POST ?filter=...` changes it.
pub(super) fn log_level<C: Connector>(shared: &Shared<C>, req: &Request<Incoming>) -> Reply {
    let Some(log) = &shared.hooks.log else {
        return reply::text(
            StatusCode::NOT_FOUND,
            "this process does not let the log level change at runtime\n",
        );
    };
    if req.method() == Method::GET {
        return reply::text(StatusCode::OK, format!("{}\n", log.current()));
    }
    // A POST: `guard::action` let it through.
    let filter = req.uri().query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "filter")
            .map(|(_, v)| v.into_owned())
    });
    let Some(filter) = filter.filter(|f| !f.trim().is_empty() && f.len() <= 1024) else {
        return reply::text(
            StatusCode::BAD_REQUEST,
            "give the new filter: POST /admin/log-level?filter=info,sse_conn_pool=debug\n",
        );
    };
    match log.apply(&filter) {
        Ok(previous) => {
            tracing::warn!(%previous, now = %filter, "admin action: log filter changed");
            reply::text(StatusCode::OK, format!("{filter}\n"))
        }
        Err(why) => reply::text(
            StatusCode::BAD_REQUEST,
            format!("refused filter {filter:?}: {why}\n"),
        ),
    }
}

/// A `POST` to `path` (which `guard::action` let through).
pub(super) fn act<C: Connector>(shared: &Arc<Shared<C>>, path: &str) -> Reply {
    let pool = shared.hub.pool();
    match path {
        "/admin/reload" => {
            return match Reloader::new(shared.clone()).reload() {
                Ok(what) => reply::text(StatusCode::OK, format!("{what}\n")),
                Err(ReloadError::NoSource) => reply::text(
                    StatusCode::NOT_FOUND,
                    "this process has no config file to reload\n",
                ),
                Err(e) => reply::text(StatusCode::BAD_REQUEST, format!("{e}\n")),
            };
        }
        "/admin/rotate" => {
            let topics: Vec<String> = pool.snapshot().into_iter().map(|s| s.topic).collect();
            let rotating = topics.iter().filter(|t| pool.rotate(t)).count();
            tracing::info!(rotating, "admin action: rotate every stream");
            return reply::json(&json!({"action": "rotate", "streams": rotating}));
        }
        "/admin/disconnect" => {
            let subscribers = shared.hub.disconnect(None);
            tracing::info!(subscribers, "admin action: disconnect every subscriber");
            return reply::json(&json!({"action": "disconnect", "subscribers": subscribers}));
        }
        _ => {}
    }
    let Some((topic, verb)) = path
        .strip_prefix("/admin/streams/")
        .and_then(|rest| rest.rsplit_once('/'))
    else {
        return reply::text(
            StatusCode::NOT_FOUND,
            "actions: POST /admin/rotate, /admin/disconnect, /admin/reload, /admin/log-level, /admin/streams/{topic}/rotate|reconnect|disconnect\n",
        );
    };
    let done = match verb {
        "rotate" => pool.rotate(topic),
        "reconnect" => pool.reconnect(topic),
        "disconnect" => {
            let subscribers = shared.hub.disconnect(Some(topic));
            tracing::info!(topic, subscribers, "admin action: disconnect subscribers");
            return reply::json(
                &json!({"action": "disconnect", "topic": topic, "subscribers": subscribers}),
            );
        }
        _ => {
            return reply::text(
                StatusCode::NOT_FOUND,
                "actions on a stream: rotate, reconnect, disconnect\n",
            );
        }
    };
    if !done {
        return reply::text(
            StatusCode::NOT_FOUND,
            format!("no upstream stream for topic {topic:?}\n"),
        );
    }
    tracing::info!(topic, action = verb, "admin action");
    let mut reply = reply::json(&json!({"action": verb, "topic": topic}));
    *reply.status_mut() = StatusCode::ACCEPTED;
    reply
}

//! `POST /admin/login` and `/admin/logout`: the status page's form opens
//! and ends a browser session (see `session`).

use std::net::IpAddr;
use std::sync::Arc;

use http::header::{COOKIE, HeaderValue, LOCATION, SET_COOKIE};
use http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use sse_conn_pool::Connector;

use super::session::{self, Login, MAX_FORM};
use super::throttle;
use crate::metrics;
use crate::reply::{self, Reply};
use crate::state::Shared;

/// The status page's login form (admin token set, no session yet).
const LOGIN_PAGE: &str = include_str!("login.html");

/// The login form with `status`, and a message above it.
pub(super) fn page(status: StatusCode, message: Option<&str>) -> Reply {
    let mut reply = match message {
        Some(message) => reply::html(LOGIN_PAGE.replace(
            "<!--message-->",
            &format!("<p class=\"error\">{message}</p>"),
        )),
        None => reply::html(LOGIN_PAGE),
    };
    *reply.status_mut() = status;
    reply
}

/// The admin token, as the form field `token`, opens a browser session.
/// Wrong tokens count against `peer` (`throttle`).
pub(super) async fn login<C: Connector>(
    shared: &Arc<Shared<C>>,
    req: Request<Incoming>,
    peer: IpAddr,
) -> Reply {
    let Some(token) = shared.config.admin_token.clone() else {
        return reply::text(
            StatusCode::NOT_FOUND,
            "no bridge.admin_token is set: the status page needs no login\n",
        );
    };
    let body = http_body_util::Limited::new(req.into_body(), MAX_FORM).collect();
    let form = match tokio::time::timeout(shared.config.header_read_timeout, body).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(_)) => {
            return reply::text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the login form is at most {MAX_FORM} bytes\n"),
            );
        }
        Err(_) => {
            return reply::text(
                StatusCode::REQUEST_TIMEOUT,
                "the login form came too slowly\n",
            );
        }
    };
    if !shared.admin_throttle.allows(peer) {
        return throttle::refusal();
    }
    let presented = session::token_from_form(&form);
    let login = shared
        .sessions
        .login(presented.as_deref(), |p| token.matches(p));
    if login == Login::Wrong {
        shared.admin_throttle.failed(peer);
    }
    metrics::record_admin_sessions(shared.sessions.len());
    match login {
        Login::Session(id) => {
            tracing::info!("admin: a browser session was opened");
            redirect_home(Some(&id))
        }
        Login::Wrong => {
            tracing::warn!("admin: a login with a wrong token");
            page(
                StatusCode::UNAUTHORIZED,
                Some("That is not the admin token."),
            )
        }
    }
}

/// Ends the presented session and clears its cookie.
pub(super) fn logout<C: Connector>(shared: &Arc<Shared<C>>, req: &Request<Incoming>) -> Reply {
    let cookies = req
        .headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok());
    if let Some(id) = session::from_cookies(cookies) {
        shared.sessions.logout(id);
    }
    metrics::record_admin_sessions(shared.sessions.len());
    redirect_home(None)
}

/// Back to the status page, setting (or clearing) the session cookie.
fn redirect_home(session: Option<&str>) -> Reply {
    let mut reply = reply::text(StatusCode::SEE_OTHER, "");
    let headers = reply.headers_mut();
    headers.insert(LOCATION, HeaderValue::from_static("/"));
    if let Ok(cookie) = HeaderValue::from_str(&session::set_cookie(session)) {
        headers.insert(SET_COOKIE, cookie);
    }
    reply
}

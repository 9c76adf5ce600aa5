//! Browser sessions for the admin listener's read-only pages.
//!
//! The status page is opened in a browser, whose `EventSource` cannot send
//! an `Authorization` header. Rather than carry the admin token in the URL
//! (where it lands in history, logs and `Referer`s), the page shows a login
//! form when the token is set: `POST /admin/login` with the token sets a
//! session cookie (`HttpOnly`, `SameSite=Strict`, a random 256-bit id).
//!
//! The contract:
//! - a session authorises `GET` (and `HEAD`) only: the actions (`POST`)
//!   still need the `Authorization` header, so a cookie can never be used
//!   to forge an action from another page (no CSRF surface);
//! - sessions live in memory, at most [`MAX_SESSIONS`] (the oldest is
//!   forgotten first) for [`SESSION_TTL`]; a restart or `POST /admin/logout`
//!   ends them;
//! - wrong tokens are throttled per client address (`throttle`), so the
//!   token cannot be guessed quickly and a guesser never locks the real
//!   operator out.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

/// The cookie's name.
pub(crate) const COOKIE: &str = "ssegate_admin";
/// Sessions kept at once.
pub(crate) const MAX_SESSIONS: usize = 64;
/// How long a session lasts.
pub(crate) const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// The largest login form read.
pub(crate) const MAX_FORM: usize = 4096;

#[derive(Default)]
pub(crate) struct Sessions {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Session id (hex) to its expiry.
    live: HashMap<String, Instant>,
}

/// What a login attempt came to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Login {
    /// The cookie's value.
    Session(String),
    Wrong,
}

impl Sessions {
    /// Checks `presented` with `matches` and, if right, opens a session.
    pub(crate) fn login(&self, presented: Option<&str>, matches: impl Fn(&str) -> bool) -> Login {
        let now = Instant::now();
        if !presented.is_some_and(matches) {
            return Login::Wrong;
        }
        let mut state = self.state.lock();
        let Some(id) = random_id() else {
            // No randomness from the OS: no session rather than a guessable one.
            return Login::Wrong;
        };
        state.live.retain(|_, expires| *expires > now);
        if state.live.len() >= MAX_SESSIONS
            && let Some(oldest) = state
                .live
                .iter()
                .min_by_key(|(_, expires)| **expires)
                .map(|(id, _)| id.clone())
        {
            state.live.remove(&oldest);
        }
        state.live.insert(id.clone(), now + SESSION_TTL);
        Login::Session(id)
    }

    /// Whether the session `id` is live.
    pub(crate) fn valid(&self, id: &str) -> bool {
        let now = Instant::now();
        let state = self.state.lock();
        // A map lookup's time does not depend on how much of a wrong id
        // matched a live one: ids are hashed first.
        state.live.get(id).is_some_and(|expires| *expires > now)
    }

    pub(crate) fn logout(&self, id: &str) {
        self.state.lock().live.remove(id);
    }

    /// Sessions live now (the gauge `ssegate_admin_sessions`).
    pub(crate) fn len(&self) -> usize {
        let now = Instant::now();
        let state = self.state.lock();
        state.live.values().filter(|e| **e > now).count()
    }
}

/// 256 random bits from the OS, in hex.
fn random_id() -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The `Set-Cookie` value opening session `id` (or, with `None`, ending it).
pub(crate) fn set_cookie(id: Option<&str>) -> String {
    match id {
        Some(id) => format!(
            "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
            SESSION_TTL.as_secs()
        ),
        None => format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    }
}

/// The session id in a request's `Cookie` headers, if any.
pub(crate) fn from_cookies<'a>(headers: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    headers
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// The `token` field of an `application/x-www-form-urlencoded` body.
pub(crate) fn token_from_form(body: &[u8]) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "the-admin-token-0123";

    fn right(p: &str) -> bool {
        p == TOKEN
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_opens_with_the_token_and_expires() {
        let sessions = Sessions::default();
        let Login::Session(id) = sessions.login(Some(TOKEN), right) else {
            panic!("the right token opens a session");
        };
        assert_eq!(id.len(), 64, "256 bits");
        assert!(sessions.valid(&id));
        assert!(!sessions.valid("0000"), "an unknown id");
        tokio::time::advance(SESSION_TTL).await;
        assert!(!sessions.valid(&id), "expired after the TTL");
        assert_eq!(sessions.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_are_bounded_and_logout_ends_one() {
        let sessions = Sessions::default();
        let mut ids = Vec::new();
        for _ in 0..MAX_SESSIONS + 5 {
            tokio::time::advance(Duration::from_secs(1)).await;
            match sessions.login(Some(TOKEN), right) {
                Login::Session(id) => ids.push(id),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(sessions.len(), MAX_SESSIONS);
        assert!(!sessions.valid(&ids[0]), "the oldest is forgotten first");
        let newest = ids.last().expect("some");
        assert!(sessions.valid(newest));
        sessions.logout(newest);
        assert!(!sessions.valid(newest));
    }

    #[test]
    fn cookies_and_forms_are_read() {
        let headers = ["theme=dark", "a=1; ssegate_admin=abc; b=2"];
        assert_eq!(from_cookies(headers.into_iter()), Some("abc"));
        assert_eq!(from_cookies(["ssegate_administrator=x"].into_iter()), None);
        assert_eq!(
            token_from_form(b"user=x&token=a%20b%2Bc"),
            Some("a b+c".into())
        );
        assert_eq!(token_from_form(b"user=x"), None);
        let cookie = set_cookie(Some("abc"));
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        assert!(set_cookie(None).contains("Max-Age=0"));
    }
}

//! Optional authentication and authorisation of subscribers.
//!
//! Off unless `[bridge.auth]` names static tokens or a JWT verifier. When on,
//! every stream request must present a token, taken from (in this order)
//! `Authorization: Bearer <token>`, the cookie named by `auth.cookie`, or the
//! query parameter named by `auth.query_param` (browsers' `EventSource`
//! cannot send headers; both are off unless configured).
//!
//! - **Static tokens** (a file, or `SSEGATE_SUBSCRIBER_TOKENS`): one per line,
//!   `<name> <token> [<topic pattern>...]`. The name identifies the holder in
//!   the registry and the logs (the token never appears); no patterns means
//!   every topic. Compared in constant time.
//! - **JWT**: HS256, RS256 and ES256, each only if listed in `algorithms` and
//!   given a key (`none` is never accepted: it is not an algorithm here).
//!   `exp` is required, `nbf` checked, `aud` and `iss` when configured, with
//!   `leeway` on each. The topics a token may read come from a claim
//!   (`topics` by default): an array of patterns, or one space-separated
//!   string. A token without it may read nothing. The holder is its `sub`.
//! - **Key rotation**: `jwks_file`, a JSON Web Key Set (RFC 7517), holds
//!   several keys (at most 32). A token's `kid` picks its key; a token
//!   without one is tried against each key of its algorithm. Publish the
//!   next key in the set, reload, sign with it, and drop the old key at a
//!   later reload: no valid token is refused on the way.
//!
//! A pattern is a topic name where `*` stands for any run of characters
//! (`BTC-*`, `*`). A request is authorised only if every topic it names
//! matches one of its token's patterns, before anything is sent: replayed
//! events (a `Last-Event-ID` resume) pass the same check as live ones.
//!
//! Refusals: 401 with `WWW-Authenticate: Bearer` when the token is missing,
//! malformed, badly signed or expired; 403 when it is valid but a topic is
//! not allowed to it; 429 when its holder has `max_streams_per_token` streams
//! open. A stream ends when its token expires (after an
//! `event: ssegate-expired`), so the client comes back with a fresh token and
//! resumes where it was.
//!
//! Where things are: `config` (the `[bridge.auth]` settings), `tokens`
//! (static tokens), `jwt` (keys, JWK sets and verification), `grant` (what
//! a verified token may read), `verifier` (the [`AuthConfig`] loaded into
//! one verifier), `principals` (streams per token holder).

mod config;
mod grant;
mod jwt;
mod principals;
mod tokens;
mod verifier;

pub use config::{AuthConfig, AuthConfigError, JwtConfig, Secret};
pub(crate) use grant::Denied;
pub(crate) use principals::{PrincipalGuard, Principals};
pub(crate) use verifier::Authenticator;

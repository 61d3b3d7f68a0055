//! Console sessions: the admin secret, entered once on the sign-in page, is exchanged
//! for a random session token in an HttpOnly, SameSite=Strict cookie; the page never
//! stores the secret. Each session has its own CSRF token, which every state-changing
//! call made with the cookie must carry in `X-CSRF-Token` (a cross-site form can send
//! the cookie in some browsers' edge cases, never a custom header). Sessions live in
//! this process's memory and expire.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

/// The cookie's name.
pub const COOKIE: &str = "sy_session";
/// How long a session lasts.
pub const TTL: Duration = Duration::from_secs(8 * 3600);
/// Most sessions kept at once (the oldest go first).
const MAX: usize = 1024;

struct Session {
    csrf: String,
    expires: Instant,
}

/// The open sessions, by the SHA-256 of their token (a memory dump holds no usable token).
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
}

fn random_hex() -> String {
    let mut b = [0u8; 32];
    // The OS random source; it does not fail on Linux once booted.
    let _ = getrandom::fill(&mut b);
    hex::encode(b)
}

fn key(token: &str) -> [u8; 32] {
    crate::tenancy::hash_key(token.as_bytes())
}

impl Sessions {
    /// Opens a session: (token, csrf token).
    pub fn open(&self) -> (String, String) {
        let token = random_hex();
        let csrf = random_hex();
        let now = Instant::now();
        let mut m = self.map.lock();
        m.retain(|_, s| s.expires > now);
        if m.len() >= MAX {
            if let Some(oldest) = m.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k) {
                m.remove(&oldest);
            }
        }
        m.insert(
            key(&token),
            Session {
                csrf: csrf.clone(),
                expires: now + TTL,
            },
        );
        (token, csrf)
    }

    /// The CSRF token of a live session.
    pub fn csrf(&self, token: &str) -> Option<String> {
        let m = self.map.lock();
        m.get(&key(token))
            .filter(|s| s.expires > Instant::now())
            .map(|s| s.csrf.clone())
    }

    /// Ends a session.
    pub fn close(&self, token: &str) {
        self.map.lock().remove(&key(token));
    }
}

/// The session token in a `Cookie` header, if any.
pub fn token_of(cookie_header: &str) -> Option<&str> {
    cookie_header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == COOKIE && !v.is_empty()).then_some(v)
    })
}

/// `Set-Cookie` for a new session.
pub fn set_cookie(token: &str) -> String {
    format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        TTL.as_secs()
    )
}

/// `Set-Cookie` that ends the session in the browser.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn open_check_expire_close() {
        let s = Sessions::default();
        let (t, csrf) = s.open();
        assert_eq!(t.len(), 64);
        assert_eq!(s.csrf(&t), Some(csrf));
        assert_eq!(s.csrf("nope"), None);
        tokio::time::advance(TTL + Duration::from_secs(1)).await;
        assert_eq!(s.csrf(&t), None, "expired");
        let (t2, _) = s.open();
        s.close(&t2);
        assert_eq!(s.csrf(&t2), None);
    }

    #[test]
    fn cookies() {
        assert_eq!(token_of("a=b; sy_session=abc; c=d"), Some("abc"));
        assert_eq!(token_of("sy_session="), None);
        assert!(set_cookie("x").contains("HttpOnly; SameSite=Strict"));
        assert!(clear_cookie().contains("Max-Age=0"));
    }
}

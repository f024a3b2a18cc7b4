//! Failed password checks, counted per user id and per client address in fixed windows.
//! Past the limit, password checks for that user or from that address are refused until
//! the window ends. In memory, per process: each Lambda instance counts on its own.
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// Bounds on password checks.
#[derive(Debug, Clone, Copy)]
pub struct LoginLimits {
    /// Password checks (and hashes) that run at once: one per core by default.
    pub slots: usize,
    /// How long a check waits for a slot before it is a 503.
    pub wait: Duration,
    /// Failed checks for one user id within `window` before its checks are refused.
    pub user_failures: u32,
    /// Failed checks from one address within `window` before its checks are refused.
    pub addr_failures: u32,
    pub window: Duration,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            slots: std::thread::available_parallelism().map_or(1, |n| n.get()),
            wait: Duration::from_secs(5),
            user_failures: 10,
            addr_failures: 30,
            window: Duration::from_secs(60),
        }
    }
}

/// How many keys each map holds at most: a full map forgets ended windows, and past that
/// counts no new key (the keys it holds keep counting).
const MAX_KEYS: usize = 10_000;

#[derive(Clone, Copy, Debug)]
struct Window {
    started: Instant,
    failures: u32,
}

#[derive(Default)]
pub(super) struct Throttle {
    users: Mutex<HashMap<String, Window>>,
    addrs: Mutex<HashMap<IpAddr, Window>>,
}

/// Counts an attempt for `key` in its window (a new window when the last one ended).
fn count<K: std::hash::Hash + Eq + Clone>(map: &mut HashMap<K, Window>, key: &K, window: Duration, now: Instant) {
    if map.len() >= MAX_KEYS && !map.contains_key(key) {
        map.retain(|_, w| now.duration_since(w.started) < window);
        if map.len() >= MAX_KEYS {
            return;
        }
    }
    let w = map.entry(key.clone()).or_insert(Window { started: now, failures: 0 });
    if now.duration_since(w.started) >= window {
        *w = Window { started: now, failures: 0 };
    }
    w.failures += 1;
}

impl Throttle {
    /// Counts a password check for `user` (a valid user id, or `None`) from `client`
    /// before it runs, and refuses it while either has used up its window. Counting at
    /// the start, not after a failure, holds against checks that run at once and against
    /// clients that hang up before the answer; a right password gives its try back.
    pub(super) fn attempt(&self, limits: &LoginLimits, user: Option<&str>, client: Option<IpAddr>) -> Result<()> {
        let mut users = self.users.lock().expect("throttle");
        let mut addrs = self.addrs.lock().expect("throttle");
        let now = Instant::now();
        let window = limits.window;
        let blocked = |w: Option<&Window>, limit: u32| {
            w.filter(|w| now.duration_since(w.started) < window && w.failures >= limit)
                .map(|w| window - now.duration_since(w.started))
        };
        let wait = user
            .and_then(|u| blocked(users.get(u), limits.user_failures))
            .or_else(|| client.and_then(|a| blocked(addrs.get(&a), limits.addr_failures)));
        if let Some(wait) = wait {
            return Err(Error::Throttled {
                message: format!(
                    "too many failed logins for this user or from this address; retry in {} s, or use an API token",
                    wait.as_secs().max(1)
                ),
                retry_after: wait.as_secs().max(1),
            });
        }
        if let Some(u) = user {
            count(&mut users, &u.to_string(), window, now);
        }
        if let Some(a) = client {
            count(&mut addrs, &a, window, now);
        }
        Ok(())
    }

    /// A right password: the check does not count against the user, nor the address.
    pub(super) fn succeeded(&self, user: &str, client: Option<IpAddr>) {
        self.users.lock().expect("throttle").remove(user);
        if let Some(a) = client {
            if let Some(w) = self.addrs.lock().expect("throttle").get_mut(&a) {
                w.failures = w.failures.saturating_sub(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_refused_until_the_window_ends() {
        let limits = LoginLimits { user_failures: 3, addr_failures: 5, window: Duration::from_millis(300), ..Default::default() };
        let t = Throttle::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..3 {
            t.attempt(&limits, Some("u"), Some(a)).unwrap();
        }
        let e = t.attempt(&limits, Some("u"), None).unwrap_err();
        assert!(matches!(e, Error::Throttled { retry_after: 1, .. }), "{e:?}");
        // Another user from the same address has the address's two tries left.
        t.attempt(&limits, Some("v"), Some(a)).unwrap();
        t.attempt(&limits, Some("v"), Some(a)).unwrap();
        assert!(t.attempt(&limits, Some("w"), Some(a)).is_err(), "the address is past its limit");
        assert!(t.attempt(&limits, Some("w"), None).is_ok());
        // A right password gives its try back.
        t.succeeded("w", Some(a));
        assert!(t.attempt(&limits, None, Some(a)).is_ok());
        assert!(t.attempt(&limits, None, Some(a)).is_err());
        std::thread::sleep(Duration::from_millis(350));
        assert!(t.attempt(&limits, Some("u"), Some(a)).is_ok(), "the window ended");
        t.succeeded("u", None);
        assert!(t.users.lock().unwrap().get("u").is_none());
    }
}

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

#[derive(Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

#[derive(Default)]
pub(super) struct Throttle {
    users: Mutex<HashMap<String, Window>>,
    addrs: Mutex<HashMap<IpAddr, Window>>,
}

fn refused<K: std::hash::Hash + Eq>(
    map: &Mutex<HashMap<K, Window>>,
    key: &K,
    limit: u32,
    window: Duration,
) -> Option<Duration> {
    let map = map.lock().expect("throttle");
    let w = map.get(key)?;
    let age = w.started.elapsed();
    (age < window && w.failures >= limit).then(|| window - age)
}

fn count<K: std::hash::Hash + Eq>(map: &Mutex<HashMap<K, Window>>, key: K, window: Duration) {
    let mut map = map.lock().expect("throttle");
    if map.len() >= MAX_KEYS && !map.contains_key(&key) {
        map.retain(|_, w| w.started.elapsed() < window);
        if map.len() >= MAX_KEYS {
            return;
        }
    }
    let now = Instant::now();
    let w = map.entry(key).or_insert(Window { started: now, failures: 0 });
    if now.duration_since(w.started) >= window {
        *w = Window { started: now, failures: 0 };
    }
    w.failures += 1;
}

impl Throttle {
    /// Refuses a password check for `user` from `client` while either has failed too often.
    pub(super) fn check(&self, limits: &LoginLimits, user: &str, client: Option<IpAddr>) -> Result<()> {
        let wait = refused(&self.users, &user.to_string(), limits.user_failures, limits.window)
            .or_else(|| client.and_then(|a| refused(&self.addrs, &a, limits.addr_failures, limits.window)));
        match wait {
            None => Ok(()),
            Some(wait) => Err(Error::Throttled {
                message: format!(
                    "too many failed logins for this user or from this address; retry in {} s, or use an API token",
                    wait.as_secs().max(1)
                ),
                retry_after: wait.as_secs().max(1),
            }),
        }
    }

    pub(super) fn failed(&self, limits: &LoginLimits, user: &str, client: Option<IpAddr>) {
        count(&self.users, user.to_string(), limits.window);
        if let Some(a) = client {
            count(&self.addrs, a, limits.window);
        }
    }

    /// A right password ends the user's count (not the address's).
    pub(super) fn succeeded(&self, user: &str) {
        self.users.lock().expect("throttle").remove(user);
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
            t.check(&limits, "u", Some(a)).unwrap();
            t.failed(&limits, "u", Some(a));
        }
        let e = t.check(&limits, "u", None).unwrap_err();
        assert!(matches!(e, Error::Throttled { retry_after: 1, .. }), "{e:?}");
        // Another user from the same address still has two tries left.
        t.failed(&limits, "v", Some(a));
        t.check(&limits, "v", Some(a)).unwrap();
        t.failed(&limits, "v", Some(a));
        assert!(t.check(&limits, "w", Some(a)).is_err(), "the address is past its limit");
        assert!(t.check(&limits, "w", None).is_ok());
        std::thread::sleep(Duration::from_millis(350));
        assert!(t.check(&limits, "u", Some(a)).is_ok(), "the window ended");
        t.failed(&limits, "u", None);
        t.succeeded("u");
        assert!(t.users.lock().unwrap().get("u").is_none());
    }
}

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
    /// Open sign-ups (strux's `create-user`, which hashes a password) from one address
    /// within `window`, whatever their outcome, before they are refused.
    pub addr_sign_ups: u32,
    pub window: Duration,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            slots: std::thread::available_parallelism().map_or(1, |n| n.get()),
            wait: Duration::from_secs(5),
            user_failures: 10,
            addr_failures: 30,
            addr_sign_ups: 10,
            window: Duration::from_secs(60),
        }
    }
}

/// How many keys each table holds at most: a full table forgets ended windows, and past
/// that counts every new key in one shared window, with ten times a key's limit (so that
/// filling the table with made-up keys does not turn the throttle off).
const MAX_KEYS: usize = 10_000;
const OVERFLOW_FACTOR: u32 = 10;

#[derive(Clone, Copy, Debug)]
struct Window {
    started: Instant,
    failures: u32,
}

/// One table of windows, by user id or by address, and the window of what it cannot hold.
struct Keyed<K> {
    map: HashMap<K, Window>,
    overflow: Option<Window>,
}

impl<K> Default for Keyed<K> {
    fn default() -> Self {
        Keyed { map: HashMap::new(), overflow: None }
    }
}

impl<K: std::hash::Hash + Eq + Clone> Keyed<K> {
    /// The window `key` counts in, making room when the table is full; `None` for a new
    /// key that has a place.
    fn slot(&mut self, key: &K, window: Duration, now: Instant) -> Option<&mut Window> {
        if !self.map.contains_key(key) && self.map.len() >= MAX_KEYS {
            self.map.retain(|_, w| now.duration_since(w.started) < window);
            if self.map.len() >= MAX_KEYS {
                return Some(self.overflow.get_or_insert(Window { started: now, failures: 0 }));
            }
        }
        self.map.get_mut(key)
    }

    /// How long `key` is still refused for at `limit`, if it is.
    fn blocked(&mut self, key: &K, limit: u32, window: Duration, now: Instant) -> Option<Duration> {
        let overflowing = !self.map.contains_key(key) && self.map.len() >= MAX_KEYS;
        let limit = if overflowing { limit.saturating_mul(OVERFLOW_FACTOR) } else { limit };
        let w = self.slot(key, window, now)?;
        let age = now.duration_since(w.started);
        (age < window && w.failures >= limit).then(|| window - age)
    }

    /// Counts an attempt for `key` in its window (a new window when the last one ended).
    fn count(&mut self, key: &K, window: Duration, now: Instant) {
        let fresh = Window { started: now, failures: 0 };
        let w = match self.slot(key, window, now) {
            Some(w) => w,
            None => self.map.entry(key.clone()).or_insert(fresh),
        };
        if now.duration_since(w.started) >= window {
            *w = Window { started: now, failures: 0 };
        }
        w.failures += 1;
    }
}

#[derive(Default)]
pub(super) struct Throttle {
    users: Mutex<Keyed<String>>,
    addrs: Mutex<Keyed<IpAddr>>,
    sign_ups: Mutex<Keyed<IpAddr>>,
}

impl Throttle {
    /// Counts an open sign-up from `client`, and refuses it once the address has used up
    /// its window: each one costs a password hash, and leaves an account.
    pub(super) fn sign_up(&self, limits: &LoginLimits, client: Option<IpAddr>) -> Result<()> {
        let Some(a) = client else { return Ok(()) };
        let mut sign_ups = self.sign_ups.lock().expect("throttle");
        let now = Instant::now();
        if let Some(wait) = sign_ups.blocked(&a, limits.addr_sign_ups, limits.window, now) {
            return Err(Error::Throttled {
                message: format!("too many sign-ups from this address; retry in {} s", wait.as_secs().max(1)),
                retry_after: wait.as_secs().max(1),
            });
        }
        sign_ups.count(&a, limits.window, now);
        Ok(())
    }

    /// Counts a password check for `user` (a valid user id, or `None`) from `client`
    /// before it runs, and refuses it while either has used up its window. Counting at
    /// the start, not after a failure, holds against checks that run at once and against
    /// clients that hang up before the answer; a right password gives its try back.
    pub(super) fn attempt(&self, limits: &LoginLimits, user: Option<&str>, client: Option<IpAddr>) -> Result<()> {
        let mut users = self.users.lock().expect("throttle");
        let mut addrs = self.addrs.lock().expect("throttle");
        let (now, window) = (Instant::now(), limits.window);
        let user = user.map(str::to_string);
        let wait = user
            .as_ref()
            .and_then(|u| users.blocked(u, limits.user_failures, window, now))
            .or_else(|| client.and_then(|a| addrs.blocked(&a, limits.addr_failures, window, now)));
        if let Some(wait) = wait {
            return Err(Error::Throttled {
                message: format!(
                    "too many failed logins for this user or from this address; retry in {} s, or use an API token",
                    wait.as_secs().max(1)
                ),
                retry_after: wait.as_secs().max(1),
            });
        }
        if let Some(u) = &user {
            users.count(u, window, now);
        }
        if let Some(a) = client {
            addrs.count(&a, window, now);
        }
        Ok(())
    }

    /// A right password: the check does not count against the user, nor the address.
    pub(super) fn succeeded(&self, user: &str, client: Option<IpAddr>) {
        self.users.lock().expect("throttle").map.remove(user);
        if let Some(a) = client {
            if let Some(w) = self.addrs.lock().expect("throttle").map.get_mut(&a) {
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
        assert!(!t.users.lock().unwrap().map.contains_key("u"));
    }

    /// A table filled with made-up keys does not let new ones through: they count
    /// together, up to ten times a key's limit.
    #[test]
    fn a_full_table_throttles_new_keys_as_a_group() {
        let limits = LoginLimits { user_failures: 2, addr_failures: 1_000_000, ..Default::default() };
        let t = Throttle::default();
        for i in 0..MAX_KEYS {
            t.attempt(&limits, Some(&format!("filler{i}")), None).unwrap();
        }
        let mut allowed = 0;
        for i in 0..100 {
            if t.attempt(&limits, Some(&format!("new{}", i % 3)), None).is_ok() {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 20, "the overflow window holds 10 x 2");
        assert_eq!(t.users.lock().unwrap().map.len(), MAX_KEYS);
    }
}

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
    /// Checks started and not yet ended: they outlive windows.
    in_flight: u32,
}

impl Window {
    fn new(now: Instant) -> Self {
        Window { started: now, failures: 0, in_flight: 0 }
    }
}

/// How many checks from one address may run at once, as a multiple of its failure limit:
/// the right passwords of many users behind one address (a NAT, a CI fleet) checked
/// together are not refused, and guesses sent together are still bounded before any of
/// them has failed. A user id's checks in flight count as failures until they end
/// (identical credentials checked together are one check: `Authenticator::verify`).
const IN_FLIGHT_FACTOR: u32 = 4;

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
    /// The window `key` counts in, making room when the table is full (forgetting ended
    /// windows with nothing in flight); `None` for a new key that has a place.
    fn slot(&mut self, key: &K, window: Duration, now: Instant) -> Option<&mut Window> {
        if !self.map.contains_key(key) && self.map.len() >= MAX_KEYS {
            self.map.retain(|_, w| now.duration_since(w.started) < window || w.in_flight > 0);
            if self.map.len() >= MAX_KEYS {
                return Some(self.overflow.get_or_insert(Window::new(now)));
            }
        }
        self.map.get_mut(key)
    }

    /// How long `key` is still refused for at `limit`, if it is: its window holds `limit`
    /// failures (counting the checks in flight when `strict`), or, when not, its checks
    /// in flight are `IN_FLIGHT_FACTOR` times that many.
    fn blocked(&mut self, key: &K, limit: u32, strict: bool, window: Duration, now: Instant) -> Option<Duration> {
        let overflowing = !self.map.contains_key(key) && self.map.len() >= MAX_KEYS;
        let limit = if overflowing { limit.saturating_mul(OVERFLOW_FACTOR) } else { limit };
        let w = self.slot(key, window, now)?;
        let age = now.duration_since(w.started);
        // An ended window's failures no longer count; checks in flight do until they end.
        let failures = if age < window { w.failures } else { 0 };
        let counted = if strict { failures + w.in_flight } else { failures };
        if counted >= limit {
            return Some(if failures >= limit { window - age } else { Duration::from_secs(1) });
        }
        (!strict && w.in_flight >= limit.saturating_mul(IN_FLIGHT_FACTOR)).then_some(Duration::from_secs(1))
    }

    /// The window of `key`, made when missing and renewed when it ended.
    fn current(&mut self, key: &K, window: Duration, now: Instant) -> &mut Window {
        if self.slot(key, window, now).is_none() {
            self.map.insert(key.clone(), Window::new(now));
        }
        let w = self.slot(key, window, now).expect("a window was made above");
        if now.duration_since(w.started) >= window {
            *w = Window { in_flight: w.in_flight, ..Window::new(now) };
        }
        w
    }

    fn start(&mut self, key: &K, window: Duration, now: Instant) {
        self.current(key, window, now).in_flight += 1;
    }

    fn end(&mut self, key: &K, failed: bool, window: Duration, now: Instant) {
        let w = self.current(key, window, now);
        w.in_flight = w.in_flight.saturating_sub(1);
        if failed {
            w.failures += 1;
        }
    }
}

#[derive(Default)]
pub(super) struct Throttle {
    users: Mutex<Keyed<String>>,
    addrs: Mutex<Keyed<IpAddr>>,
    sign_ups: Mutex<Keyed<IpAddr>>,
}

/// A password check under way. [`Ticket::passed`] ends it; dropped otherwise (a wrong
/// password, or a client that hung up before the answer), it counts as a failure.
pub(super) struct Ticket<'a> {
    throttle: &'a Throttle,
    window: Duration,
    user: Option<String>,
    client: Option<IpAddr>,
    passed: bool,
}

impl Ticket<'_> {
    /// A right password: the check counts against neither the user nor the address, and
    /// the user's earlier failures are forgotten.
    pub(super) fn passed(mut self) {
        self.passed = true;
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let now = Instant::now();
        let failed = !self.passed;
        if let Some(u) = &self.user {
            let mut users = self.throttle.users.lock().expect("throttle");
            users.end(u, failed, self.window, now);
            if self.passed {
                if let Some(w) = users.map.get_mut(u) {
                    w.failures = 0;
                }
            }
        }
        if let Some(a) = &self.client {
            self.throttle.addrs.lock().expect("throttle").end(a, failed, self.window, now);
        }
    }
}

impl Throttle {
    /// Counts an open sign-up from `client`, and refuses it once the address has used up
    /// its window: each one costs a password hash, and leaves an account.
    pub(super) fn sign_up(&self, limits: &LoginLimits, client: Option<IpAddr>) -> Result<()> {
        let Some(a) = client else { return Ok(()) };
        let mut sign_ups = self.sign_ups.lock().expect("throttle");
        let now = Instant::now();
        if let Some(wait) = sign_ups.blocked(&a, limits.addr_sign_ups, true, limits.window, now) {
            return Err(Error::Throttled {
                message: format!("too many sign-ups from this address; retry in {} s", wait.as_secs().max(1)),
                retry_after: wait.as_secs().max(1),
            });
        }
        sign_ups.start(&a, limits.window, now);
        sign_ups.end(&a, true, limits.window, now);
        Ok(())
    }

    /// Starts a password check for `user` (a valid user id, or `None`) from `client`, or
    /// refuses it while either has used up its window. A check counts from its start: one
    /// whose ticket is dropped without passing is a failure, so checks sent together and
    /// clients that hang up before the answer are counted; while too many run at once,
    /// more are refused.
    pub(super) fn attempt(&self, limits: &LoginLimits, user: Option<&str>, client: Option<IpAddr>) -> Result<Ticket<'_>> {
        let mut users = self.users.lock().expect("throttle");
        let mut addrs = self.addrs.lock().expect("throttle");
        let (now, window) = (Instant::now(), limits.window);
        let user = user.map(str::to_string);
        let wait = user
            .as_ref()
            .and_then(|u| users.blocked(u, limits.user_failures, true, window, now))
            .or_else(|| client.and_then(|a| addrs.blocked(&a, limits.addr_failures, false, window, now)));
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
            users.start(u, window, now);
        }
        if let Some(a) = client {
            addrs.start(&a, window, now);
        }
        Ok(Ticket { throttle: self, window, user, client, passed: false })
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
            drop(t.attempt(&limits, Some("u"), Some(a)).unwrap());
        }
        let e = t.attempt(&limits, Some("u"), None).err().unwrap();
        assert!(matches!(e, Error::Throttled { retry_after: 1, .. }), "{e:?}");
        // Another user from the same address has the address's two tries left.
        drop(t.attempt(&limits, Some("v"), Some(a)).unwrap());
        drop(t.attempt(&limits, Some("v"), Some(a)).unwrap());
        assert!(t.attempt(&limits, Some("w"), Some(a)).is_err(), "the address is past its limit");
        // A right password counts against nothing.
        t.attempt(&limits, Some("w"), None).unwrap().passed();
        t.attempt(&limits, Some("w"), None).unwrap().passed();
        assert_eq!(t.users.lock().unwrap().map["w"].failures, 0);
        std::thread::sleep(Duration::from_millis(350));
        assert!(t.attempt(&limits, Some("u"), Some(a)).is_ok(), "the window ended");
    }

    /// A user's checks in flight count until they end; an address's may run to four
    /// times its limit; a hung-up check is a failure.
    #[test]
    fn checks_in_flight_are_bounded_and_end_as_they_end() {
        let limits = LoginLimits { user_failures: 3, addr_failures: 2, ..Default::default() };
        let t = Throttle::default();
        let a: IpAddr = "10.0.0.2".parse().unwrap();
        let running: Vec<Ticket> = (0..3).map(|_| t.attempt(&limits, Some("u"), None).unwrap()).collect();
        assert!(t.attempt(&limits, Some("u"), None).is_err(), "3 in flight is the user's limit");
        for ticket in running {
            ticket.passed();
        }
        let users: Vec<Ticket> = (0..8).map(|i| t.attempt(&limits, Some(&format!("n{i}")), Some(a)).unwrap()).collect();
        assert!(t.attempt(&limits, Some("n9"), Some(a)).is_err(), "8 in flight is 4 x the address's 2");
        for ticket in users {
            ticket.passed();
        }
        assert!(t.attempt(&limits, Some("n9"), Some(a)).is_ok());
        for _ in 0..20 {
            t.attempt(&limits, Some("u"), None).unwrap().passed();
        }
        // Three hang up (dropped without passing): three failures, and the user is refused.
        for _ in 0..3 {
            drop(t.attempt(&limits, Some("u"), None).unwrap());
        }
        assert!(t.attempt(&limits, Some("u"), None).is_err());
    }

    /// A table filled with made-up keys does not let new ones through: they count
    /// together, up to ten times a key's limit.
    #[test]
    fn a_full_table_throttles_new_keys_as_a_group() {
        let limits = LoginLimits { user_failures: 2, addr_failures: 1_000_000, ..Default::default() };
        let t = Throttle::default();
        for i in 0..MAX_KEYS {
            drop(t.attempt(&limits, Some(&format!("filler{i}")), None).unwrap());
        }
        let mut allowed = 0;
        for i in 0..100 {
            if let Ok(ticket) = t.attempt(&limits, Some(&format!("new{}", i % 3)), None) {
                drop(ticket);
                allowed += 1;
            }
        }
        assert_eq!(allowed, 20, "the overflow window holds 10 x 2");
        assert_eq!(t.users.lock().unwrap().map.len(), MAX_KEYS);
    }
}

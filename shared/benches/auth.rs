//! The per-request cost of authentication, with and without the credential cache.
//!
//! `cargo bench -p depot-core --bench auth` prints, for Basic credentials checked
//! against an argon2 hash, the median and p99 cost of one `authenticate` call when every
//! call runs the hash (cache disabled) and when the cache answers (the default), plus an
//! API token sent as `Bearer` without the cache (one sha256 and two table reads).
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use depot_core::auth::{Accounts, Authenticator, Authorizer, Identity, NewUser, CACHE_TTL};
use depot_core::store::embedded::EmbeddedTable;
use depot_core::store::Table;

fn stats(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let p = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    (p(0.5), p(0.99))
}

async fn measure(auth: &Authenticator, header: &str, n: usize) -> (Duration, Duration) {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let who = auth.authenticate(Some(header)).await.expect("valid credentials");
        samples.push(t.elapsed());
        assert!(matches!(who, Identity::User { .. }));
    }
    stats(samples)
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let table: Arc<dyn Table> = Arc::new(EmbeddedTable::open(&dir.path().join("bench.redb")).unwrap());
    let setup = Arc::new(Authenticator::new(table.clone(), Some("admin-password".into())));
    setup.bootstrap_admin(false).await.unwrap();
    let accounts = Accounts::new(table.clone(), setup.clone(), Arc::new(Authorizer::new(table.clone())));
    let admin = Identity::User { id: "admin".into(), admin: true, epoch: 0 };
    let user = NewUser { user_id: "ci".into(), name: None, pwd: "ci-password-1".into(), admin: false };
    accounts.create_user(&admin, user).await.unwrap();
    let (_, token) = accounts.create_token(&admin, "ci", "bench", None).await.unwrap();
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("ci:ci-password-1"));
    let bearer = format!("Bearer {token}");

    let uncached = Authenticator::with_cache_ttl(table.clone(), None, Duration::ZERO);
    let cached = Authenticator::with_cache_ttl(table.clone(), None, CACHE_TTL);
    // The test command only builds this; run in the debug profile (`cargo test
    // --all-targets`) it takes a tenth of the counts. Only `cargo bench` (optimised, full
    // counts) gives figures worth quoting.
    let scale = if cfg!(debug_assertions) { 10 } else { 1 };
    let (n_slow, n_fast, n_tok) = (30 / scale, 20_000 / scale, 2_000 / scale);
    let (slow_med, slow_p99) = measure(&uncached, &basic, n_slow).await;
    let (fast_med, fast_p99) = measure(&cached, &basic, n_fast).await;
    let (tok_med, tok_p99) = measure(&uncached, &bearer, n_tok).await;
    println!("authentication cost per request (embedded table):");
    println!("  Basic, no cache (argon2 every time): median {slow_med:?}, p99 {slow_p99:?} ({n_slow} requests)");
    println!("  Basic, cached:                       median {fast_med:?}, p99 {fast_p99:?} ({n_fast} requests)");
    println!("  Bearer token, no cache:              median {tok_med:?}, p99 {tok_p99:?} ({n_tok} requests)");
    println!("  ratio uncached/cached (median): {:.0}x", slow_med.as_secs_f64() / fast_med.as_secs_f64().max(1e-9));
}

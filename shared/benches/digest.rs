//! The throughput of computing a blob's digests (sha256, sha1, md5 and size in one
//! pass), which every stored byte goes through: uploads hash while streaming, and an
//! upload session's completion hashes the whole blob again.
//!
//! `cargo bench -p depot-core --bench digest` prints MB/s for `MultiHasher` over 256 MiB
//! fed in 64 KiB chunks (the median of 5 runs), and for each digest alone.
use std::time::Instant;

use depot_core::store::MultiHasher;
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

const TOTAL: usize = 256 << 20;
const CHUNK: usize = 64 << 10;

fn median_mb_s(mut run: impl FnMut(&[u8])) -> f64 {
    let chunk: Vec<u8> = (0..CHUNK).map(|i| (i * 31 % 251) as u8).collect();
    let mut rates: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..TOTAL / CHUNK {
                run(&chunk);
            }
            TOTAL as f64 / 1e6 / t.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[2]
}

fn alone<D: Digest + Default>() -> f64 {
    let mut d = D::default();
    let rate = median_mb_s(|c| d.update(c));
    std::hint::black_box(d.finalize());
    rate
}

fn main() {
    let mut all = MultiHasher::new();
    let multi = median_mb_s(|c| all.update(c));
    std::hint::black_box(all.finish());
    println!("all three digests: {multi:.0} MB/s");
    println!("sha256 alone: {:.0} MB/s", alone::<Sha256>());
    println!("sha1 alone: {:.0} MB/s", alone::<Sha1>());
    println!("md5 alone: {:.0} MB/s", alone::<Md5>());
}

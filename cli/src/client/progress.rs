//! Progress on standard error: an indicatif bar (bytes, rate, time left) on a terminal,
//! else a plain line every few seconds and one at the end, without ANSI codes, for CI logs.
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often plain progress lines are written.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Progress(Arc<Inner>);

struct Inner {
    bar: Option<indicatif::ProgressBar>,
    label: String,
    total: u64,
    done: AtomicU64,
    started: Instant,
    last_line: Mutex<Instant>,
    quiet: bool,
}

impl Progress {
    /// Progress of `label` over `total` bytes. `quiet` writes nothing.
    pub fn new(label: &str, total: u64, quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new(total);
            let style = indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec}, {eta} left",
            )
            .expect("a valid template")
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_message(label.to_string());
            bar
        });
        let now = Instant::now();
        Progress(Arc::new(Inner {
            bar,
            label: label.to_string(),
            total,
            done: AtomicU64::new(0),
            started: now,
            last_line: Mutex::new(now),
            quiet,
        }))
    }

    pub fn add(&self, n: u64) {
        let done = self.0.done.fetch_add(n, Ordering::Relaxed) + n;
        match &self.0.bar {
            Some(bar) => bar.set_position(done),
            None if !self.0.quiet => {
                let mut last = self.0.last_line.lock().expect("progress");
                if last.elapsed() >= PLAIN_EVERY {
                    *last = Instant::now();
                    drop(last);
                    eprintln!("{}", self.line(done));
                }
            }
            None => {}
        }
    }

    /// Moves to `done` bytes in all.
    pub fn set(&self, done: u64) {
        let before = self.0.done.load(Ordering::Relaxed);
        if done >= before {
            self.add(done - before);
        } else {
            self.sub(before - done);
        }
    }

    /// Takes back `n` bytes (a part that failed and is sent again).
    pub fn sub(&self, n: u64) {
        let done = self.0.done.fetch_sub(n.min(self.0.done.load(Ordering::Relaxed)), Ordering::Relaxed);
        if let Some(bar) = &self.0.bar {
            bar.set_position(done.saturating_sub(n));
        }
    }

    /// Ends the bar (or writes the last plain line).
    pub fn finish(&self) {
        let done = self.0.done.load(Ordering::Relaxed);
        match &self.0.bar {
            Some(bar) => bar.finish_and_clear(),
            None if !self.0.quiet => eprintln!("{}", self.line(done)),
            None => {}
        }
    }

    /// Prints `msg` above the bar (or as a line of its own).
    pub fn note(&self, msg: &str) {
        match &self.0.bar {
            Some(bar) => bar.println(msg),
            None if !self.0.quiet => eprintln!("{msg}"),
            None => {}
        }
    }

    fn line(&self, done: u64) -> String {
        let secs = self.0.started.elapsed().as_secs_f64().max(0.001);
        let rate = done as f64 / secs;
        let pct = if self.0.total == 0 { 100.0 } else { done as f64 * 100.0 / self.0.total as f64 };
        let left = if rate > 0.0 { (self.0.total.saturating_sub(done)) as f64 / rate } else { 0.0 };
        format!(
            "{}: {pct:.0}% ({} of {} bytes, {:.1} MB/s, {left:.0} s left)",
            self.0.label,
            done,
            self.0.total,
            rate / 1e6
        )
    }
}

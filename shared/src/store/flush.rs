//! The embedded table's file, flushed on a thread of its own, so that the writer thread
//! applies the next group of writes while the last one's flush runs.
//!
//! [`FlushedFile`] is the redb storage backend of the table's file. Its `sync_data`
//! does not flush: it asks [`Flushes`] for a flush, and returns. The flusher thread
//! flushes the file (fdatasync), then runs what was waiting for that flush: the answers
//! to the group that committed before it. Two rules keep redb's own guarantees, which
//! rely on a commit being durable once its `sync_data` returns:
//! - no write reaches the file while a flush asked for is not done (`write` and
//!   `set_len` wait for it), so that nothing of a later commit lands before an earlier
//!   commit is durable, and no page that the last durable commit holds is reused too
//!   early;
//! - no writer is answered before the flush after its commit is done.
//!
//! What changes: a read may see a commit up to one flush before its writers are
//! answered. A crash in that window loses that commit, whose writers were never
//! answered, and every later one, never the earlier ones.
use std::fmt;
use std::fs::File;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use redb::backends::FileBackend;
use redb::StorageBackend;

/// What runs once the flush it waited for is done, or failed.
pub(super) type Job = Box<dyn FnOnce(io::Result<()>) + Send>;

/// The flushes asked for and done, and the jobs waiting for them.
#[derive(Default)]
struct State {
    /// Flushes asked for, counted from the start.
    asked: u64,
    /// The flushes done: every one asked for up to this count.
    done: u64,
    /// A flush that failed: every later write fails with it (as redb's own storage
    /// error does, until the file is opened again).
    failed: Option<String>,
    /// Each job with the count of flushes it waits for.
    jobs: Vec<(u64, Job)>,
    /// The flusher is to end once nothing is left to flush or answer.
    closing: bool,
    /// The flusher has ended: a flush asked for now is done on the asking thread.
    ended: bool,
}

/// The flusher's state, shared by the backend, the writer thread and the flusher.
#[derive(Default)]
pub(super) struct Flushes {
    state: Mutex<State>,
    changed: Condvar,
}

impl Flushes {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn failure(e: &str) -> io::Error {
        io::Error::other(format!("flushing the database file failed: {e}"))
    }

    /// Waits until every flush asked for so far is done; the error of one that failed.
    pub(super) fn settle(&self) -> io::Result<()> {
        let mut s = self.lock();
        while s.done < s.asked && s.failed.is_none() && !s.ended {
            s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        match &s.failed {
            Some(e) => Err(Self::failure(e)),
            None => Ok(()),
        }
    }

    /// Asks for a flush of everything written so far. False when the flusher has
    /// ended: the caller flushes itself.
    fn ask(&self) -> bool {
        let mut s = self.lock();
        if s.ended {
            return false;
        }
        s.asked += 1;
        self.changed.notify_all();
        true
    }

    /// Runs `job` once every flush asked for so far is done (with the error, if one
    /// failed); at once when there is none, or when the flusher has ended.
    pub(super) fn after(&self, job: Job) {
        let mut s = self.lock();
        if s.ended || (s.done == s.asked && s.failed.is_none()) {
            let result = match &s.failed {
                Some(e) => Err(Self::failure(e)),
                None => Ok(()),
            };
            drop(s);
            return job(result);
        }
        let at = s.asked;
        s.jobs.push((at, job));
        self.changed.notify_all();
    }

    /// The flusher thread's loop: flushes with `sync` whatever was asked for, and runs
    /// the jobs each flush lets go; ends once closing with nothing left.
    fn run(&self, mut sync: impl FnMut() -> io::Result<()>) {
        let mut s = self.lock();
        loop {
            let (ready, waiting): (Vec<_>, Vec<_>) =
                std::mem::take(&mut s.jobs).into_iter().partition(|(at, _)| *at <= s.done || s.failed.is_some());
            s.jobs = waiting;
            if !ready.is_empty() {
                let failed = s.failed.clone();
                drop(s);
                for (_, job) in ready {
                    job(match &failed {
                        Some(e) => Err(Self::failure(e)),
                        None => Ok(()),
                    });
                }
                s = self.lock();
                continue;
            }
            if s.done < s.asked && s.failed.is_none() {
                let target = s.asked;
                drop(s);
                let result = sync();
                s = self.lock();
                match result {
                    Ok(()) => s.done = target,
                    Err(e) => {
                        tracing::error!(error = %e, "flushing the database file failed; every later write fails");
                        s.failed = Some(e.to_string());
                    }
                }
                self.changed.notify_all();
                continue;
            }
            if s.closing && s.jobs.is_empty() && (s.done == s.asked || s.failed.is_some()) {
                s.ended = true;
                self.changed.notify_all();
                return;
            }
            s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// The flusher thread: ends, once everything asked of it is done, when this is dropped.
pub(super) struct Flusher {
    pub(super) flushes: Arc<Flushes>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flusher {
    /// Starts the thread, which flushes with `sync`.
    pub(super) fn spawn(sync: impl FnMut() -> io::Result<()> + Send + 'static) -> io::Result<Self> {
        let flushes = Arc::new(Flushes::default());
        let theirs = flushes.clone();
        let thread = std::thread::Builder::new().name("depot-table-flush".into()).spawn(move || theirs.run(sync))?;
        Ok(Flusher { flushes, thread: Some(thread) })
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        {
            let mut s = self.flushes.lock();
            s.closing = true;
            self.flushes.changed.notify_all();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // Ended even if the thread panicked: nothing waits for it any more.
        let mut s = self.flushes.lock();
        s.ended = true;
        self.flushes.changed.notify_all();
    }
}

/// redb's file backend, with its flushes handed to the flusher (see the module's notes).
pub(super) struct FlushedFile {
    inner: FileBackend,
    flushes: Arc<Flushes>,
}

impl fmt::Debug for FlushedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlushedFile").field("inner", &self.inner).finish()
    }
}

impl FlushedFile {
    /// The backend of `file` (locked, as redb locks its own files), and its flusher,
    /// which flushes a handle of its own to the same file.
    pub(super) fn open(file: File) -> Result<(Self, Flusher), redb::DatabaseError> {
        let theirs = file.try_clone()?;
        let inner = FileBackend::new(file)?;
        let flusher = Flusher::spawn(move || theirs.sync_data())?;
        Ok((FlushedFile { inner, flushes: flusher.flushes.clone() }, flusher))
    }
}

impl StorageBackend for FlushedFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn read(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        self.inner.read(offset, len)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.flushes.settle()?;
        self.inner.set_len(len)
    }

    fn sync_data(&self, eventual: bool) -> io::Result<()> {
        if self.flushes.ask() {
            return Ok(());
        }
        self.flushes.settle()?;
        self.inner.sync_data(eventual)
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.flushes.settle()?;
        self.inner.write(offset, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::time::Duration;

    /// A flusher whose every flush waits for the test to let it go.
    fn gated() -> (Flusher, mpsc::Sender<io::Result<()>>, Arc<AtomicUsize>) {
        let (go, gate) = mpsc::channel::<io::Result<()>>();
        let started = Arc::new(AtomicUsize::new(0));
        let counted = started.clone();
        let gate = Mutex::new(gate);
        let flusher = Flusher::spawn(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            gate.lock().unwrap().recv().unwrap_or(Ok(()))
        })
        .unwrap();
        (flusher, go, started)
    }

    fn wait_for(what: &str, f: impl Fn() -> bool) {
        for _ in 0..500 {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!("{what} did not happen");
    }

    #[test]
    fn a_job_waits_for_the_flush_asked_before_it_and_a_write_waits_too() {
        let (flusher, go, started) = gated();
        let flushes = flusher.flushes.clone();
        assert!(flushes.ask());
        let (answered, answers) = mpsc::channel();
        flushes.after(Box::new(move |r| answered.send(r.is_ok()).unwrap()));
        wait_for("the flush", || started.load(Ordering::SeqCst) == 1);
        // The flush runs and has not returned: no answer, and a write waits.
        assert!(answers.recv_timeout(Duration::from_millis(50)).is_err(), "answered before its flush");
        let writer = {
            let flushes = flushes.clone();
            std::thread::spawn(move || flushes.settle().is_ok())
        };
        std::thread::sleep(Duration::from_millis(30));
        assert!(!writer.is_finished(), "a write went ahead of a flush asked before it");
        go.send(Ok(())).unwrap();
        assert_eq!(answers.recv_timeout(Duration::from_secs(5)), Ok(true));
        assert!(writer.join().unwrap());
        // Nothing asked: a job runs at once.
        let (answered, answers) = mpsc::channel();
        flushes.after(Box::new(move |r| answered.send(r.is_ok()).unwrap()));
        assert_eq!(answers.try_recv(), Ok(true));
        drop(go);
        drop(flusher);
    }

    #[test]
    fn a_failed_flush_fails_its_jobs_and_every_later_write() {
        let (flusher, go, started) = gated();
        let flushes = flusher.flushes.clone();
        flushes.ask();
        let (answered, answers) = mpsc::channel();
        let a = answered.clone();
        flushes.after(Box::new(move |r| a.send(r.is_ok()).unwrap()));
        wait_for("the flush", || started.load(Ordering::SeqCst) == 1);
        go.send(Err(io::Error::other("disk gone"))).unwrap();
        assert_eq!(answers.recv_timeout(Duration::from_secs(5)), Ok(false));
        let e = flushes.settle().unwrap_err();
        assert!(e.to_string().contains("disk gone"), "{e}");
        flushes.after(Box::new(move |r| answered.send(r.is_ok()).unwrap()));
        assert_eq!(answers.recv_timeout(Duration::from_secs(5)), Ok(false));
        drop(flusher);
    }

    #[test]
    fn closing_flushes_what_was_asked_and_answers_every_job() {
        let (flusher, go, _) = gated();
        let flushes = flusher.flushes.clone();
        flushes.ask();
        let (answered, answers) = mpsc::channel();
        flushes.after(Box::new(move |r| answered.send(r.is_ok()).unwrap()));
        go.send(Ok(())).unwrap();
        drop(flusher);
        assert_eq!(answers.try_recv(), Ok(true));
        // Ended: a flush asked for now is the caller's own.
        assert!(!flushes.ask());
    }
}

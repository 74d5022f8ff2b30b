//! A small persistent thread pool for splitting one matrix product across threads.
//!
//! Generation makes hundreds of small products per token, so the hand-off must cost
//! little. A job is `parts` independent calls `f(k)`; the caller and the workers all
//! claim parts from one atomic word, so if a worker is slow to wake (or descheduled
//! on a busy machine) the caller simply does the parts nobody has started; it only
//! ever waits for parts already running. Workers spin on that word for
//! 100 µs after each job (the next product of a token follows within
//! microseconds) and then park on a condvar. A hand-off costs several times less than
//! `rayon::join` (`dispatch` in `benches/kernels.rs`; figures in PERF.md), which
//! matters for the hundreds of small products of each generated token.

use std::cell::UnsafeCell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use std::vec::Vec;

/// How long an idle worker spins before it parks. Products within a token follow
/// each other within microseconds, so the workers stay awake through a token; between
/// tokens (or when the machine is busy) they sleep instead of taking CPU time from
/// the thread they would help.
const SPIN_TIME: Duration = Duration::from_micros(100);

/// How long `run` spins for parts still running on other threads before it starts
/// yielding its CPU (that thread may be waiting for this CPU).
const WAIT_SPIN_TIME: Duration = Duration::from_micros(50);

/// Spin hints between two looks at the clock.
const PAUSES: u32 = 16;

/// Spins (`PAUSES` hints at a time) while `busy()` holds, for at most `limit`;
/// returns whether `busy()` still holds.
fn spin_while(limit: Duration, busy: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while busy() {
        for _ in 0..PAUSES {
            core::hint::spin_loop();
        }
        if start.elapsed() > limit {
            return busy();
        }
    }
    false
}

/// The most parts one job may have (the width of the part fields of the state word).
pub const MAX_PARTS: usize = 0xffff;

/// The job of the current sequence number: called with the part index.
type Job = *const (dyn Fn(usize) + Sync);

/// The state word: `seq << 48 | parts << 32 | front << 16 | back` — the job's
/// sequence number (mod 2¹⁶), its number of parts, the parts claimed from the front
/// (by the caller, in order) and from the back (by the workers). Claims are
/// compare-and-swaps on the whole word, so a claim always belongs to the job that is
/// current when it succeeds. With two threads the caller keeps the first half and
/// the worker the second from one call to the next, so each keeps its rows of a
/// matrix in its own cache; either takes over the other's parts if that one is late.
fn pack(seq: u64, parts: usize, front: usize, back: usize) -> u64 {
    ((seq & 0xffff) << 48) | ((parts as u64) << 32) | ((front as u64) << 16) | back as u64
}

fn unpack(s: u64) -> (u64, usize, usize, usize) {
    (
        s >> 48,
        ((s >> 32) & 0xffff) as usize,
        ((s >> 16) & 0xffff) as usize,
        (s & 0xffff) as usize,
    )
}

struct Shared {
    state: AtomicU64,
    /// Written only by `run` while no part of the previous job is running or can be
    /// claimed; read after a successful claim.
    job: UnsafeCell<Option<Job>>,
    /// Parts of the current job that have finished.
    done: AtomicUsize,
    /// A part panicked.
    panicked: AtomicBool,
    /// Tells the workers to exit.
    stop: AtomicBool,
    /// Workers parked (or about to park) on `wake`.
    sleeping: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
}

// SAFETY: `job` is the only non-Sync field. `run` writes it before publishing the new
// state word (SeqCst) and only after every claimed part of the previous job is done;
// a worker reads it only after claiming a part of the new job (a SeqCst CAS on that
// word), so writes and reads never overlap.
unsafe impl Sync for Shared {}
// SAFETY: as above; the raw job pointer is only dereferenced under that protocol.
unsafe impl Send for Shared {}

impl Shared {
    /// Claims and runs parts of job `seq` until none is left: from the front (the
    /// caller) or from the back (workers).
    fn work(&self, seq: u64, from_back: bool) {
        let mut s = self.state.load(Ordering::SeqCst);
        loop {
            let (sq, parts, front, back) = unpack(s);
            if sq != seq || front + back >= parts {
                return;
            }
            let (next, part) = if from_back {
                (pack(sq, parts, front, back + 1), parts - 1 - back)
            } else {
                (pack(sq, parts, front + 1, back), front)
            };
            match self
                .state
                .compare_exchange_weak(s, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => {
                    // SAFETY: we hold an unfinished part of job `seq`, so `run` has
                    // written `job` for it and waits (keeping `f` alive and `job`
                    // unchanged) until `done` counts this part.
                    if let Some(job) = unsafe { *self.job.get() } {
                        // SAFETY: as above, the closure outlives this call.
                        let f = unsafe { &*job };
                        if catch_unwind(AssertUnwindSafe(|| f(part))).is_err() {
                            self.panicked.store(true, Ordering::Relaxed);
                        }
                    }
                    self.done.fetch_add(1, Ordering::Release);
                    s = self.state.load(Ordering::SeqCst);
                }
                Err(cur) => s = cur,
            }
        }
    }
}

/// A pool of `workers` threads plus the calling thread.
pub struct Pool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// Sequence number of the last job.
    seq: core::cell::Cell<u64>,
}

impl Pool {
    /// Starts `workers` threads (so `run` uses up to `workers + 1` threads).
    ///
    /// # Panics
    /// If the operating system cannot start a thread.
    pub fn new(workers: usize) -> Pool {
        let shared = Arc::new(Shared {
            state: AtomicU64::new(0),
            job: UnsafeCell::new(None),
            done: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            sleeping: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        let workers = (0..workers)
            .map(|w| {
                let s = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(std::format!("llmrt-kernel-{w}"))
                    .spawn(move || worker(&s))
                    .expect("cannot spawn a kernel thread")
            })
            .collect();
        Pool {
            shared,
            workers,
            seq: core::cell::Cell::new(0),
        }
    }

    /// Threads `run` can use: the workers plus the caller.
    pub fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Calls `f(k)` once for every `k in 0..parts` on the calling thread (from
    /// `k = 0` up) and the workers (from `k = parts - 1` down; whoever is free claims
    /// the next part) and returns when all are done.
    ///
    /// # Panics
    /// If `parts > MAX_PARTS`, or if `f` panicked on any thread (after all parts have
    /// finished).
    pub fn run(&self, parts: usize, f: &(dyn Fn(usize) + Sync)) {
        assert!(parts <= MAX_PARTS, "too many parts");
        if parts <= 1 || self.workers.is_empty() {
            (0..parts).for_each(f);
            return;
        }
        let s = &*self.shared;
        let seq = (self.seq.get() + 1) & 0xffff;
        self.seq.set(seq);
        let job: *const (dyn Fn(usize) + Sync + '_) = f;
        // SAFETY: every part of the previous job has finished (the previous `run`
        // waited for `done == parts`) and its state word has no part left, so no
        // thread reads `job` now. The lifetime is erased, but `f` outlives every use:
        // this function returns only after all parts are done.
        unsafe {
            *s.job.get() = Some(core::mem::transmute::<
                *const (dyn Fn(usize) + Sync + '_),
                Job,
            >(job))
        };
        s.done.store(0, Ordering::SeqCst);
        s.state.store(pack(seq, parts, 0, 0), Ordering::SeqCst);
        if s.sleeping.load(Ordering::SeqCst) > 0 {
            let _g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        s.work(seq, false);
        // Only parts already running on other threads are left: wait for them.
        let left = || s.done.load(Ordering::Acquire) != parts;
        if spin_while(WAIT_SPIN_TIME, left) {
            while left() {
                std::thread::yield_now();
            }
        }
        if s.panicked.swap(false, Ordering::Relaxed) {
            resume_unwind(std::boxed::Box::new("a kernel part panicked"));
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let s = &*self.shared;
        s.stop.store(true, Ordering::SeqCst);
        // A new sequence number with no parts wakes everyone up.
        s.state
            .store(pack(self.seq.get() + 1, 0, 0, 0), Ordering::SeqCst);
        {
            let _g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}

impl core::fmt::Debug for Pool {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Pool")
            .field("threads", &self.threads())
            .finish()
    }
}

/// A worker: waits for each new job (spinning, then parked) and helps with its parts.
fn worker(s: &Shared) {
    // The sequence number the pool started with, not the current one: a thread that
    // starts late (busy machine) must still see the jobs, and the stop, posted
    // before it ran.
    let mut seen = 0;
    loop {
        let idle = || unpack(s.state.load(Ordering::Acquire)).0 == seen;
        if spin_while(SPIN_TIME, idle) {
            let mut g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.sleeping.fetch_add(1, Ordering::SeqCst);
            while unpack(s.state.load(Ordering::SeqCst)).0 == seen {
                g = s.wake.wait(g).unwrap_or_else(|e| e.into_inner());
            }
            s.sleeping.fetch_sub(1, Ordering::SeqCst);
            drop(g);
        }
        let seq = unpack(s.state.load(Ordering::Acquire)).0;
        seen = seq;
        if s.stop.load(Ordering::SeqCst) {
            return;
        }
        s.work(seq, true);
    }
}

//! A small persistent thread pool for splitting one matrix product across threads.
//!
//! Generation makes hundreds of small products per token, so the hand-off must cost
//! little: workers spin on an epoch counter for a while after each job (the next
//! product usually follows within microseconds) and only then park on a condvar. The
//! caller runs part 0 itself and spins until the workers are done. Measured against
//! `rayon::join` in `benches/kernels.rs` (`dispatch` group).

use std::cell::UnsafeCell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::vec::Vec;

/// Spins (each a `spin_loop` hint) a worker makes before it parks.
const SPIN: u32 = 1 << 14;

/// The job of the current epoch: called with the part index.
type Job = *const (dyn Fn(usize) + Sync);

struct Shared {
    /// Bumped once per job; a worker runs the job when it sees a new value.
    epoch: AtomicU64,
    /// Written only by the caller of `run` while no worker reads it (before the epoch
    /// is bumped, after `pending` reaches 0).
    job: UnsafeCell<Option<Job>>,
    /// Parts of the current job: worker w runs part w+1 if w+1 < parts.
    parts: AtomicUsize,
    /// Workers that have not finished the current job.
    pending: AtomicUsize,
    /// A worker's part panicked.
    panicked: AtomicBool,
    /// Tells the workers to exit.
    stop: AtomicBool,
    /// Workers parked (or about to park) on `wake`.
    sleeping: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
}

// SAFETY: `job` is the only non-Sync field; it is written by `run` only while every
// worker is idle (between jobs), and read by workers only after they observe the new
// epoch (Acquire), which `run` publishes (Release) after writing it.
unsafe impl Sync for Shared {}
// SAFETY: as above; the raw job pointer is only dereferenced under that protocol.
unsafe impl Send for Shared {}

/// A pool of `workers` threads plus the calling thread.
pub struct Pool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    /// Starts `workers` threads (so `run` can use `workers + 1` threads).
    pub fn new(workers: usize) -> Pool {
        let shared = Arc::new(Shared {
            epoch: AtomicU64::new(0),
            job: UnsafeCell::new(None),
            parts: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
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
                    .spawn(move || worker(&s, w))
                    .expect("cannot spawn a kernel thread")
            })
            .collect();
        Pool { shared, workers }
    }

    /// Threads `run` can use: the workers plus the caller.
    pub fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Calls `f(k)` once for every `k in 0..parts`, part 0 on the calling thread and
    /// the others on the workers, and returns when all are done.
    ///
    /// # Panics
    /// If `parts > self.threads()`, or if `f` panicked on any thread (after all parts
    /// have finished).
    pub fn run(&self, parts: usize, f: &(dyn Fn(usize) + Sync)) {
        assert!(parts <= self.threads(), "more parts than threads");
        if parts <= 1 {
            if parts == 1 {
                f(0);
            }
            return;
        }
        let s = &*self.shared;
        let job: *const (dyn Fn(usize) + Sync + '_) = f;
        // SAFETY: all workers are idle (the previous `run` waited for `pending == 0`),
        // so nobody reads `job` now; the lifetime is erased, but `f` outlives every
        // use because this function waits for all workers before returning.
        unsafe {
            *s.job.get() = Some(core::mem::transmute::<
                *const (dyn Fn(usize) + Sync + '_),
                Job,
            >(job))
        };
        s.parts.store(parts, Ordering::Relaxed);
        s.pending.store(self.workers.len(), Ordering::Relaxed);
        s.epoch.fetch_add(1, Ordering::SeqCst);
        if s.sleeping.load(Ordering::SeqCst) > 0 {
            let _g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        // Our part; a panic must not unwind past the workers still using `f`.
        let mine = catch_unwind(AssertUnwindSafe(|| f(0)));
        let mut spins = 0u32;
        while s.pending.load(Ordering::Acquire) != 0 {
            spins = spins.wrapping_add(1);
            if spins < SPIN {
                core::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        if let Err(p) = mine {
            resume_unwind(p);
        }
        if s.panicked.swap(false, Ordering::Relaxed) {
            panic!("a kernel worker thread panicked");
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let s = &*self.shared;
        s.stop.store(true, Ordering::SeqCst);
        s.epoch.fetch_add(1, Ordering::SeqCst);
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

/// Worker `w`: waits for each new epoch and runs part `w + 1` of its job.
fn worker(s: &Shared, w: usize) {
    let mut seen = 0u64;
    loop {
        // Spin, then park until the epoch moves.
        let mut spins = 0u32;
        let mut epoch = s.epoch.load(Ordering::Acquire);
        while epoch == seen {
            if spins < SPIN {
                spins += 1;
                core::hint::spin_loop();
            } else {
                let mut g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
                s.sleeping.fetch_add(1, Ordering::SeqCst);
                while s.epoch.load(Ordering::SeqCst) == seen {
                    g = s.wake.wait(g).unwrap_or_else(|e| e.into_inner());
                }
                s.sleeping.fetch_sub(1, Ordering::SeqCst);
                drop(g);
            }
            epoch = s.epoch.load(Ordering::Acquire);
        }
        seen = epoch;
        if s.stop.load(Ordering::SeqCst) {
            return;
        }
        // SAFETY: the new epoch was published (Release/SeqCst) after `job` was
        // written, and `run` does not touch `job` or drop `f` until `pending` is 0.
        let job = unsafe { *s.job.get() };
        if let Some(job) = job {
            if w + 1 < s.parts.load(Ordering::Relaxed) {
                // SAFETY: `f` is alive until this worker decrements `pending` (above).
                let f = unsafe { &*job };
                if catch_unwind(AssertUnwindSafe(|| f(w + 1))).is_err() {
                    s.panicked.store(true, Ordering::Relaxed);
                }
            }
        }
        s.pending.fetch_sub(1, Ordering::Release);
    }
}

//! Live handles. A handle given to C is the address of an `Arc` that a registry (one per
//! handle type) holds; every call looks the address up before using it. So a NULL,
//! freed, foreign or wrong-type pointer is an `LLMRT_ERR_BAD_HANDLE`, never a wild read,
//! and an object stays alive for the duration of any call that is using it even if
//! another thread frees the handle meanwhile. (An address can be reused once freed, so
//! a stale handle may name a newer object of the same type: still memory-safe.)

use crate::status::{Fail, Res, LLMRT_ERR_BAD_HANDLE};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// The live objects of one handle type, by address.
pub(crate) struct Registry<T> {
    live: Mutex<BTreeMap<usize, Arc<T>>>,
    /// The type's name in messages ("model", "context").
    what: &'static str,
}

impl<T> Registry<T> {
    /// An empty registry for handles called `what`.
    pub const fn new(what: &'static str) -> Self {
        Registry {
            live: Mutex::new(BTreeMap::new()),
            what,
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<usize, Arc<T>>> {
        // Nothing panics while the lock is held; a poisoned map is still consistent.
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers `value` and returns its handle (a non-NULL address).
    pub fn insert(&self, value: T) -> usize {
        let arc = Arc::new(value);
        let addr = Arc::as_ptr(&arc) as usize;
        self.lock().insert(addr, arc);
        addr
    }

    /// The object behind handle `addr`.
    pub fn get(&self, addr: usize) -> Res<Arc<T>> {
        if addr == 0 {
            return Err(crate::status::null(self.what));
        }
        self.lock()
            .get(&addr)
            .cloned()
            .ok_or_else(|| self.bad(addr))
    }

    /// Unregisters handle `addr` and returns its object (dropped by the caller, outside
    /// the lock); `None` for NULL.
    pub fn remove(&self, addr: usize) -> Res<Option<Arc<T>>> {
        if addr == 0 {
            return Ok(None);
        }
        let removed = self.lock().remove(&addr);
        removed.map(Some).ok_or_else(|| self.bad(addr))
    }

    fn bad(&self, addr: usize) -> Fail {
        Fail::new(
            LLMRT_ERR_BAD_HANDLE,
            format!(
                "{addr:#x} is not a live {} handle (freed already, or not one)",
                self.what
            ),
        )
    }
}

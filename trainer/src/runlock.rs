//! The exclusive lock of a run folder: one writer at a time (`train`, `train --resume`,
//! `export` into the run). The lock is an `flock` on `<run>/.lock`, held for the
//! writer's lifetime and released by the kernel when the process ends, however it
//! ends; the file records the holder's pid and host so that a refused writer can
//! name it. A file still holding a record while nobody holds the lock was left by a
//! process that died: it is taken over, with a note.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The lock file's name inside a run folder.
pub const LOCK_FILE: &str = ".lock";

/// A held run-folder lock; dropping it clears the record and releases the lock.
#[derive(Debug)]
pub struct RunLock {
    file: File,
    path: PathBuf,
}

/// The holder record written into the lock file: `pid <pid> on <host>`.
fn record() -> String {
    format!("pid {} on {}", std::process::id(), host())
}

/// This machine's name (`/proc/sys/kernel/hostname`, `$HOSTNAME`), or `unknown host`.
fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown host".into())
}

impl RunLock {
    /// Takes the lock of run folder `dir` (created if missing). Another live writer:
    /// an error naming it. A record left by a dead writer: taken over, and the
    /// returned note says whose it was.
    pub fn acquire(dir: &Path) -> Result<(RunLock, Option<String>), String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the run folder {}: {e}", dir.display()))?;
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| format!("cannot open the run lock {}: {e}", path.display()))?;
        let mut held = String::new();
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let _ = file.read_to_string(&mut held);
                let who = held.trim();
                let who = if who.is_empty() {
                    "another process"
                } else {
                    who
                };
                return Err(format!(
                    "run folder {} is in use by {who} (lock {}): wait for it to finish or choose another --out",
                    dir.display(),
                    path.display()
                ));
            }
            Err(TryLockError::Error(e)) => {
                return Err(format!("cannot lock {}: {e}", path.display()))
            }
        }
        let _ = file.read_to_string(&mut held);
        let stale = held.trim();
        let note = (!stale.is_empty()).then(|| {
            format!(
                "took over the lock of {} left by {stale}, which is no longer running",
                dir.display()
            )
        });
        let write = |file: &mut File| -> std::io::Result<()> {
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            writeln!(file, "{}", record())?;
            file.sync_all()
        };
        write(&mut file)
            .map_err(|e| format!("cannot write the run lock {}: {e}", path.display()))?;
        Ok((RunLock { file, path }, note))
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // A cleared record marks a clean release. Unlock explicitly rather than leave it
        // to the close: a child forked by another thread at this moment shares the open
        // file description until it execs, and would keep the lock held that long.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("llm-runlock-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn one_holder_at_a_time_and_a_clean_release() {
        let d = dir("one");
        let (lock, note) = RunLock::acquire(&d).unwrap();
        assert_eq!(note, None);
        let text = std::fs::read_to_string(lock.path()).unwrap();
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        // flock locks belong to the open file description: a second open in this
        // process is refused like another process would be.
        let e = RunLock::acquire(&d).unwrap_err();
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        drop(lock);
        let (_again, note) = RunLock::acquire(&d).unwrap();
        assert_eq!(note, None, "a clean release leaves no stale record");
    }

    #[test]
    fn a_dead_holders_record_is_taken_over_with_a_note() {
        let d = dir("stale");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(LOCK_FILE), "pid 4194999 on elsewhere\n").unwrap();
        let (_lock, note) = RunLock::acquire(&d).unwrap();
        let note = note.expect("a note");
        assert!(note.contains("pid 4194999 on elsewhere"), "{note}");
    }
}

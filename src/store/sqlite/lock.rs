//! One gateway per store: an exclusive lock on `<database>-lock`, held while the store is
//! open, so that a second gateway started on the same store refuses to start rather than
//! deliver its queue twice and sweep away bodies the first is about to commit.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::store::StoreError;

/// How long opening waits for the lock of a store that is closing in this process.
const WAIT: Duration = Duration::from_secs(2);

/// Locks the store of `database` (its real path, links resolved); the lock lasts as long
/// as the returned file is open.
pub(super) fn lock(database: &Path) -> Result<File, StoreError> {
    let mut name = database.file_name().unwrap_or_default().to_os_string();
    name.push("-lock");
    let path = database.with_file_name(name);
    let failed = |e: std::io::Error| StoreError::Database(format!("{}: {e}", path.display()));
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(failed)?;
    let waiting = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(TryLockError::WouldBlock) if waiting.elapsed() < WAIT => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(TryLockError::WouldBlock) => {
                return Err(StoreError::Database(format!(
                    "{}: in use by another hookgate process; one store serves one gateway",
                    database.display()
                )));
            }
            Err(TryLockError::Error(e)) => return Err(failed(e)),
        }
    }
}

//! Large bodies, each in a file of its own beside the database.
//!
//! SQLite writes what it stores twice: into the WAL at the commit, and into the database
//! file at the next checkpoint, which the following commits wait for. For a body of a
//! megabyte those copies were most of the gateway's work. A body of [`IN_FILE_FROM`] bytes or
//! more is written once instead, to `<database>-bodies/<event id>`, and synced before the
//! transaction that records its event commits; the event's row keeps only its size.
//!
//! A file no event refers to (left by a crash after the write and before the commit, or
//! after a purge committed and before its files went) is removed when the store next opens.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, OptionalExtension};

use crate::store::StoreError;

/// Bodies this long or longer are kept in a file of their own.
pub(super) const IN_FILE_FROM: usize = 64 * 1024;

/// A file younger than this is never taken for an orphan: another process may be about to
/// commit its event.
const ORPHAN_AGE: Duration = Duration::from_secs(60);

/// The folder of body files that belongs to one database.
#[derive(Debug)]
pub(super) struct Bodies {
    dir: PathBuf,
}

impl Bodies {
    /// The folder beside `database`, created readable by its owner only.
    pub(super) fn beside(database: &Path) -> Result<Bodies, StoreError> {
        let mut name = database.file_name().unwrap_or_default().to_os_string();
        name.push("-bodies");
        let dir = database.with_file_name(name);
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| failed(&dir, &e))?;
        Ok(Bodies { dir })
    }

    fn path(&self, event_id: &str) -> PathBuf {
        self.dir.join(event_id)
    }

    /// Writes and syncs the body of `event_id`. Its name in the folder is durable once
    /// [`Bodies::sync_names`] has returned.
    pub(super) fn write(&self, event_id: &str, body: &[u8]) -> Result<(), StoreError> {
        let path = self.path(event_id);
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut file| {
                file.write_all(body)?;
                file.sync_data()
            });
        written.map_err(|e| {
            self.remove(event_id);
            failed(&path, &e)
        })
    }

    /// Syncs the folder, so that the files written into it so far keep their names after a
    /// power loss.
    pub(super) fn sync_names(&self) -> Result<(), StoreError> {
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| failed(&self.dir, &e))
    }

    /// The body of `event_id`, `size` bytes long.
    pub(super) fn read(&self, event_id: &str, size: i64) -> Result<Vec<u8>, StoreError> {
        let path = self.path(event_id);
        let body = std::fs::read(&path).map_err(|e| failed(&path, &e))?;
        if body.len() as i64 != size {
            return Err(StoreError::Database(format!(
                "{}: {} bytes where the event records {size}",
                path.display(),
                body.len()
            )));
        }
        Ok(body)
    }

    /// Removes the body of `event_id`; one already gone is not an error.
    pub(super) fn remove(&self, event_id: &str) {
        let path = self.path(event_id);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                tracing::warn!(path = %path.display(), error = %e, "could not remove a body file");
            }
            _ => {}
        }
    }

    /// Removes the files older than a minute that no event refers to; returns how many.
    pub(super) fn sweep(&self, conn: &Connection) -> Result<usize, StoreError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| failed(&self.dir, &e))?;
        let mut known = conn.prepare("SELECT 1 FROM events WHERE id = ?1")?;
        let now = SystemTime::now();
        let mut removed = 0;
        for entry in entries {
            let entry = entry.map_err(|e| failed(&self.dir, &e))?;
            let name = entry.file_name();
            let Some(event_id) = name.to_str() else {
                continue;
            };
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|at| now.duration_since(at).unwrap_or_default() >= ORPHAN_AGE);
            if old
                && known
                    .query_row([event_id], |_| Ok(()))
                    .optional()?
                    .is_none()
            {
                self.remove(event_id);
                removed += 1;
            }
        }
        Ok(removed)
    }
}

fn failed(path: &Path, error: &io::Error) -> StoreError {
    StoreError::Database(format!("{}: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use rusqlite::Connection;

    use super::super::SqliteStore;
    use super::super::test_support::{delivered, event, open};
    use super::*;
    use crate::store::{NewEvent, Store, now_ms};

    /// An event for upstream `a` whose body is `size` bytes that differ from one another.
    fn sized(key: &str, size: usize) -> NewEvent {
        let mut event = event("r", key, Duration::from_secs(60), &["a"]);
        event.body = Bytes::from((0..size).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
        event
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    fn row(db: &Path, id: &str) -> (i64, Option<i64>) {
        Connection::open(db)
            .unwrap()
            .query_row(
                "SELECT length(body), body_file FROM events WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
    }

    #[tokio::test]
    async fn a_large_body_is_kept_in_a_file_of_its_own_and_read_back_whole() {
        let (dir, store) = open();
        let db = dir.path().join("data/test.db");
        let folder = dir.path().join("data/test.db-bodies");
        let large = sized("large", IN_FILE_FROM);
        let small = sized("small", IN_FILE_FROM - 1);

        let stored = store.accept(large.clone()).await.unwrap();
        let kept = store.accept(small.clone()).await.unwrap();

        assert_eq!(files(&folder), std::slice::from_ref(&stored.id));
        assert_eq!(std::fs::read(folder.join(&stored.id)).unwrap(), large.body);
        assert_eq!(row(&db, &stored.id), (0, Some(IN_FILE_FROM as i64)));
        assert_eq!(row(&db, &kept.id), (IN_FILE_FROM as i64 - 1, None));
        let due = store.due("a", now_ms(), 10, &[]).await.unwrap();
        let body = |id: &str| due.iter().find(|d| d.event_id == id).unwrap().body.clone();
        assert_eq!(body(&stored.id), large.body);
        assert_eq!(body(&kept.id), small.body);
        let shown = store.event(&stored.id).await.unwrap().unwrap();
        assert_eq!(shown.event.size, IN_FILE_FROM as i64);
    }

    #[tokio::test]
    async fn a_duplicate_leaves_no_file_behind() {
        let (dir, store) = open();
        let first = store.accept(sized("k", IN_FILE_FROM)).await.unwrap();
        let again = store.accept(sized("k", IN_FILE_FROM + 1)).await.unwrap();
        assert!(again.duplicate);
        assert_eq!(files(&dir.path().join("data/test.db-bodies")), [first.id]);
    }

    #[tokio::test]
    async fn purging_an_event_removes_its_body_file() {
        let (dir, store) = open();
        let accepted = store.accept(sized("k", IN_FILE_FROM)).await.unwrap();
        store
            .record(delivered(accepted.deliveries[0]))
            .await
            .unwrap();
        let purged = store.purge(now_ms() + 1).await.unwrap();
        assert_eq!(purged.events, 1);
        assert!(files(&dir.path().join("data/test.db-bodies")).is_empty());
    }

    #[tokio::test]
    async fn a_body_file_of_the_wrong_size_fails_the_read_rather_than_send_part_of_it() {
        let (dir, store) = open();
        let accepted = store.accept(sized("k", IN_FILE_FROM)).await.unwrap();
        let file = dir.path().join("data/test.db-bodies").join(&accepted.id);
        std::fs::write(&file, b"cut short").unwrap();
        let error = store.due("a", now_ms(), 10, &[]).await.unwrap_err();
        assert!(
            error.to_string().contains("bytes where the event records"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn files_no_event_refers_to_go_when_the_store_opens_once_a_minute_old() {
        let (dir, store) = open();
        let db = dir.path().join("data/test.db");
        let folder = dir.path().join("data/test.db-bodies");
        let kept = store.accept(sized("k", IN_FILE_FROM)).await.unwrap();
        drop(store);
        let old = SystemTime::now() - Duration::from_secs(120);
        for name in ["orphan", "young"] {
            std::fs::write(folder.join(name), b"left by a crash").unwrap();
        }
        for name in ["orphan", kept.id.as_str()] {
            let file = File::options().write(true).open(folder.join(name)).unwrap();
            file.set_modified(old).unwrap();
        }

        let store = SqliteStore::open(&db).unwrap();

        let mut expected = vec![kept.id.clone(), "young".to_owned()];
        expected.sort();
        assert_eq!(files(&folder), expected);
        let due = store.due("a", now_ms(), 10, &[]).await.unwrap();
        assert_eq!(due[0].body.len(), IN_FILE_FROM);
    }
}

//! Large bodies, each in a file of its own beside the database.
//!
//! SQLite writes what it stores twice: into the WAL at the commit, and into the database
//! file at the next checkpoint, which the following commits wait for. For a body of a
//! megabyte those copies were most of the gateway's work. A body of [`IN_FILE_FROM`] bytes or
//! more is written once instead, to `<database>-bodies/<event id>`, and synced before the
//! transaction that records its event commits; the event's row keeps only its size.
//!
//! A file no event refers to (left by a crash after the write and before the commit, or
//! after a purge committed and before its files went) is removed when the store next opens;
//! the store's lock keeps any other gateway from writing meanwhile.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{Connection, OptionalExtension};

use crate::store::StoreError;

/// Bodies this long or longer are kept in a file of their own.
pub(super) const IN_FILE_FROM: usize = 64 * 1024;

/// The start of the names of the files that prove the folder takes writes; a name that
/// starts with a dot is never a body's.
const PROBE: &str = ".probe-";

/// The folder of body files that belongs to one database.
#[derive(Debug)]
pub(super) struct Bodies {
    dir: PathBuf,
    probes: AtomicU64,
}

/// Why a body could not be read back.
#[derive(Debug)]
pub(super) enum Unread {
    /// The file itself: gone, of the wrong size, not a plain file, or not readable.
    File(StoreError),
    /// The folder cannot be read, so nothing can be said of the file.
    Folder(StoreError),
}

impl Bodies {
    /// The folder beside `database`, created readable by its owner only.
    pub(super) fn beside(database: &Path) -> Result<Bodies, StoreError> {
        let mut name = database.file_name().unwrap_or_default().to_os_string();
        name.push("-bodies");
        let dir = database.with_file_name(name);
        if dir.exists() && !dir.is_dir() {
            return Err(StoreError::Database(format!(
                "{}: is not a folder; the store keeps its large bodies there",
                dir.display()
            )));
        }
        create(&dir)?;
        Ok(Bodies {
            dir,
            probes: AtomicU64::new(0),
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Opens a new file in the folder, making the folder again should it have gone.
    fn open_new(&self, path: &Path, options: &OpenOptions) -> io::Result<File> {
        match options.open(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                create(&self.dir).map_err(|_| e)?;
                options.open(path)
            }
            opened => opened,
        }
    }

    /// Writes and syncs the body of `event_id`. Its name in the folder is durable once
    /// [`Bodies::sync_names`] has returned.
    pub(super) fn write(&self, event_id: &str, body: &[u8]) -> Result<(), StoreError> {
        let path = self.path(event_id);
        let mut options = OpenOptions::new();
        options.write(true).create_new(true).mode(0o600);
        let mut file = self
            .open_new(&path, &options)
            .map_err(|e| failed(&path, &e))?;
        file.write_all(body)
            .and_then(|()| file.sync_data())
            .map_err(|e| {
                self.remove(event_id);
                failed(&path, &e)
            })
    }

    /// Succeeds when the folder takes a new file: one of a name of its own, written, then
    /// removed whatever came of the write.
    pub(super) fn probe(&self) -> Result<(), StoreError> {
        let n = self.probes.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PROBE}{}-{n}", std::process::id());
        let path = self.path(&name);
        let mut options = OpenOptions::new();
        options.write(true).create_new(true).mode(0o600);
        let written = self.open_new(&path, &options).and_then(|mut file| {
            let written = file.write_all(b"ok");
            self.remove(&name);
            written
        });
        written.map_err(|e| failed(&path, &e))
    }

    /// Syncs the folder, so that the files written into it so far keep their names after a
    /// power loss.
    pub(super) fn sync_names(&self) -> Result<(), StoreError> {
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| failed(&self.dir, &e))
    }

    /// The body of `event_id`, `size` bytes long. Only a plain file is read, and no more of
    /// it than one byte past `size`.
    pub(super) fn read(&self, event_id: &str, size: i64) -> Result<Vec<u8>, Unread> {
        let path = self.path(event_id);
        let size = u64::try_from(size).unwrap_or(0);
        let read = || -> io::Result<Vec<u8>> {
            if !std::fs::symlink_metadata(&path)?.is_file() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "not a plain file",
                ));
            }
            let mut body = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            File::open(&path)?.take(size + 1).read_to_end(&mut body)?;
            Ok(body)
        };
        match read() {
            Ok(body) if body.len() as u64 == size => Ok(body),
            Ok(body) => {
                let found = if body.len() as u64 > size {
                    "more bytes".to_owned()
                } else {
                    format!("{} bytes", body.len())
                };
                Err(Unread::File(StoreError::Database(format!(
                    "{}: {found} where the event records {size}",
                    path.display()
                ))))
            }
            Err(e) if std::fs::read_dir(&self.dir).is_ok() => Err(Unread::File(failed(&path, &e))),
            Err(e) => Err(Unread::Folder(failed(&path, &e))),
        }
    }

    /// Removes the body of `event_id`; one already gone is not an error. Says whether a
    /// file went.
    pub(super) fn remove(&self, event_id: &str) -> bool {
        let path = self.path(event_id);
        match std::fs::remove_file(&path) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "could not remove a body file");
                false
            }
        }
    }

    /// Removes the files that no event refers to, and probes a crash left; returns how many
    /// went. Run when the store opens, before anything is written: no body of this process
    /// is on its way in, and the store's lock keeps every other process out.
    pub(super) fn sweep(&self, conn: &Connection) -> Result<usize, StoreError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| failed(&self.dir, &e))?;
        let mut known = conn.prepare("SELECT 1 FROM events WHERE id = ?1")?;
        let mut removed = 0;
        for entry in entries {
            let entry = entry.map_err(|e| failed(&self.dir, &e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                continue;
            };
            let unused = if name.starts_with('.') {
                name.starts_with(PROBE)
            } else {
                known.query_row([name], |_| Ok(())).optional()?.is_none()
            };
            if unused && self.remove(name) {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Makes the folder, readable by its owner only, unless it is there.
fn create(dir: &Path) -> Result<(), StoreError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| failed(dir, &e))
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
    use crate::store::inspect::DeliveryState;
    use crate::store::{NewEvent, Store, StoreError, now_ms};

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
    async fn a_body_that_cannot_be_read_makes_its_delivery_a_dead_letter_and_holds_up_none() {
        let (dir, store) = open();
        let folder = dir.path().join("data/test.db-bodies");
        let cut = store.accept(sized("cut", IN_FILE_FROM)).await.unwrap();
        let gone = store.accept(sized("gone", IN_FILE_FROM)).await.unwrap();
        let small = store.accept(sized("small", 10)).await.unwrap();
        std::fs::write(folder.join(&cut.id), b"cut short").unwrap();
        std::fs::remove_file(folder.join(&gone.id)).unwrap();

        let due = store.due("a", now_ms(), 10, &[]).await.unwrap();

        let ids: Vec<_> = due.iter().map(|d| d.event_id.as_str()).collect();
        assert_eq!(ids, [small.id.as_str()]);
        for (accepted, why) in [
            (&cut, "bytes where the event records"),
            (&gone, "No such file"),
        ] {
            let view = store
                .delivery(accepted.deliveries[0])
                .await
                .unwrap()
                .unwrap();
            assert_eq!(view.state, DeliveryState::Dead);
            let error = view.last_error.unwrap();
            assert!(
                error.starts_with("not sent: its body cannot be read"),
                "{error}"
            );
            assert!(error.contains(why), "{error}");
        }
        assert_eq!(store.due("a", now_ms(), 10, &[]).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn files_no_event_refers_to_go_when_the_store_next_opens() {
        let (dir, store) = open();
        let db = dir.path().join("data/test.db");
        let folder = dir.path().join("data/test.db-bodies");
        let kept = store.accept(sized("k", IN_FILE_FROM)).await.unwrap();
        drop(store);
        std::fs::write(folder.join("left-by-a-crash"), b"partial").unwrap();

        let store = SqliteStore::open(&db).unwrap();

        assert_eq!(files(&folder), [kept.id]);
        let due = store.due("a", now_ms(), 10, &[]).await.unwrap();
        assert_eq!(due[0].body.len(), IN_FILE_FROM);
    }

    #[tokio::test]
    async fn a_second_store_on_the_same_database_is_refused_while_the_first_is_open() {
        let (dir, store) = open();
        let error = SqliteStore::open(&dir.path().join("data/test.db")).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("in use by another hookgate process"),
            "{error}"
        );
        drop(store);
    }

    #[tokio::test]
    async fn a_body_file_that_is_not_a_plain_file_is_set_aside_without_being_opened() {
        let (dir, store) = open();
        let folder = dir.path().join("data/test.db-bodies");
        let fifo = store.accept(sized("fifo", IN_FILE_FROM)).await.unwrap();
        let path = folder.join(&fifo.id);
        std::fs::remove_file(&path).unwrap();
        let made = std::process::Command::new("mkfifo").arg(&path).status();
        assert!(made.unwrap().success());

        let read = tokio::time::timeout(Duration::from_secs(5), store.due("a", now_ms(), 10, &[]));
        assert!(
            read.await
                .expect("a pipe is not waited on")
                .unwrap()
                .is_empty()
        );
        let view = store.delivery(fifo.deliveries[0]).await.unwrap().unwrap();
        assert_eq!(view.state, DeliveryState::Dead);
        assert!(view.last_error.unwrap().contains("not a plain file"));
    }

    #[tokio::test]
    async fn a_folder_that_cannot_be_read_fails_the_read_and_sets_nothing_aside() {
        let (dir, store) = open();
        let folder = dir.path().join("data/test.db-bodies");
        let moved = dir.path().join("data/elsewhere");
        let large = sized("k", IN_FILE_FROM);
        let accepted = store.accept(large.clone()).await.unwrap();
        std::fs::rename(&folder, &moved).unwrap();

        assert!(store.due("a", now_ms(), 10, &[]).await.is_err());
        let view = store
            .delivery(accepted.deliveries[0])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(view.state, DeliveryState::Pending);

        std::fs::rename(&moved, &folder).unwrap();
        let due = store.due("a", now_ms(), 10, &[]).await.unwrap();
        assert_eq!(due[0].body, large.body);
    }

    #[tokio::test]
    async fn the_lock_outlasts_a_folder_made_again_and_probes_leave_no_file() {
        let (dir, store) = open();
        let db = dir.path().join("data/test.db");
        let folder = dir.path().join("data/test.db-bodies");
        std::fs::remove_dir(&folder).unwrap();
        store.ping().await.unwrap();
        store.ping().await.unwrap();
        assert!(files(&folder).is_empty(), "{:?}", files(&folder));
        let error = SqliteStore::open(&db).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("in use by another hookgate process"),
            "{error}"
        );
        drop(store);

        std::fs::write(folder.join(".probe-1-0"), b"left by a crash").unwrap();
        let _store = SqliteStore::open(&db).unwrap();
        assert!(files(&folder).is_empty(), "{:?}", files(&folder));
    }

    #[tokio::test]
    async fn a_folder_that_went_is_made_again_for_the_next_large_body() {
        let (dir, store) = open();
        let folder = dir.path().join("data/test.db-bodies");
        std::fs::remove_dir(&folder).unwrap();
        store.ping().await.unwrap();
        std::fs::remove_dir(&folder).unwrap();
        let accepted = store.accept(sized("k", IN_FILE_FROM)).await.unwrap();
        assert_eq!(files(&folder), [accepted.id]);
    }

    #[tokio::test]
    async fn the_store_is_not_ready_while_its_folder_takes_no_file() {
        let (dir, store) = open();
        let folder = dir.path().join("data/test.db-bodies");
        std::fs::remove_dir(&folder).unwrap();
        std::fs::write(&folder, b"not a folder").unwrap();
        let error = store.ping().await.unwrap_err();
        assert!(error.to_string().contains("test.db-bodies"), "{error}");
        let refused = store.accept(sized("k", IN_FILE_FROM)).await.unwrap_err();
        assert!(matches!(refused, StoreError::Database(_)));
        std::fs::remove_file(&folder).unwrap();
        store.ping().await.unwrap();
    }
}

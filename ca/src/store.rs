//! The CA's files in its state folder: `ca.db` (SQLite, 0600) and `ca-key.pem` (0600, written
//! atomically and never readable by others, not even for a moment).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;

use crate::CaError;

/// The database file's name in the state folder.
pub(crate) const DB_FILE: &str = "ca.db";
/// The CA key file's name in the state folder.
pub(crate) const KEY_FILE: &str = "ca-key.pem";
/// The schema version kept in SQLite's `user_version`.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE authority (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    cert_der BLOB NOT NULL,
    key_kind TEXT NOT NULL,
    organization TEXT,
    crl_url TEXT,
    crl_number INTEGER NOT NULL DEFAULT 0,
    revision INTEGER NOT NULL DEFAULT 0,
    last_crl_der BLOB,
    last_crl_revision INTEGER,
    last_crl_this_update INTEGER,
    last_crl_next_update INTEGER
);
CREATE TABLE certs (
    serial TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    common_name TEXT NOT NULL,
    user TEXT,
    not_before INTEGER NOT NULL,
    not_after INTEGER NOT NULL,
    issued_at INTEGER NOT NULL,
    revoked_at INTEGER,
    reason INTEGER,
    cert_der BLOB NOT NULL
);
CREATE INDEX certs_user ON certs (user);
";

/// Creates the state folder (0700) if it is missing. An existing folder keeps its mode.
pub(crate) fn ensure_state_dir(state: &Path) -> Result<(), CaError> {
    if state.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(state).map_err(CaError::io(state))?;
    fs::set_permissions(state, fs::Permissions::from_mode(0o700)).map_err(CaError::io(state))
}

/// Writes `contents` to `dir/name` as a new 0600 file, atomically: into a temporary file
/// created 0600, synced, then linked under its name (which fails if the name exists, so a file
/// is never replaced) and the folder synced.
pub(crate) fn write_private_file_new(
    dir: &Path,
    name: &str,
    contents: &[u8],
) -> Result<PathBuf, CaError> {
    let path = dir.join(name);
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce)?;
    let tmp = dir.join(format!(".{name}.{}.tmp", hex::encode(nonce)));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(CaError::io(&tmp))?;
        // The mode given at creation is already 0600 or less (the umask only removes bits);
        // this makes it exactly 0600.
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(CaError::io(&tmp))?;
        file.write_all(contents).map_err(CaError::io(&tmp))?;
        file.sync_all().map_err(CaError::io(&tmp))?;
        fs::hard_link(&tmp, &path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                CaError::AlreadyExists(dir.to_path_buf())
            } else {
                CaError::Io {
                    path: path.clone(),
                    source: e,
                }
            }
        })
    })();
    // The temporary name goes in every case; the linked name stays on success.
    let removed = fs::remove_file(&tmp);
    result?;
    removed.map_err(CaError::io(&tmp))?;
    sync_dir(dir)?;
    Ok(path)
}

fn sync_dir(dir: &Path) -> Result<(), CaError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(CaError::io(dir))
}

/// Refuses a key file that group or others may read or write.
pub(crate) fn check_private_mode(path: &Path) -> Result<(), CaError> {
    let meta = fs::metadata(path).map_err(CaError::io(path))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(CaError::KeyFileMode(path.to_path_buf()));
    }
    Ok(())
}

/// An open CA database and its path (for errors).
#[derive(Debug)]
pub(crate) struct Db {
    pub(crate) conn: Connection,
    pub(crate) path: PathBuf,
}

impl Db {
    /// Maps a SQLite error to [`CaError::Database`] naming this file.
    pub(crate) fn err(&self) -> impl Fn(rusqlite::Error) -> CaError + '_ {
        |source| CaError::Database {
            path: self.path.clone(),
            source,
        }
    }

    /// Creates a new database (the file must not exist: it is made 0600 empty first, so that
    /// it is private from its first byte; the journal files SQLite adds beside it take its
    /// mode) with the current schema.
    pub(crate) fn create(state: &Path) -> Result<Self, CaError> {
        let path = state.join(DB_FILE);
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    CaError::AlreadyExists(state.to_path_buf())
                } else {
                    CaError::Io {
                        path: path.clone(),
                        source: e,
                    }
                }
            })?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
            .map_err(CaError::io(&path))?;
        let db = Self::connect(path)?;
        let schema = format!("BEGIN; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;");
        db.conn.execute_batch(&schema).map_err(db.err())?;
        Ok(db)
    }

    /// Opens the existing database of a state folder, refusing a newer schema.
    pub(crate) fn open(state: &Path) -> Result<Self, CaError> {
        let path = state.join(DB_FILE);
        if !path.is_file() {
            return Err(CaError::NotFound(state.to_path_buf()));
        }
        let db = Self::connect(path)?;
        let version: i64 = db
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(db.err())?;
        if version > SCHEMA_VERSION {
            return Err(CaError::NewerSchema {
                path: db.path.clone(),
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        if version < SCHEMA_VERSION {
            return Err(CaError::Corrupt(format!(
                "{} has schema version {version}, expected {SCHEMA_VERSION}",
                db.path.display()
            )));
        }
        Ok(db)
    }

    fn connect(path: PathBuf) -> Result<Self, CaError> {
        let conn = Connection::open(&path).map_err(|source| CaError::Database {
            path: path.clone(),
            source,
        })?;
        let db = Self { conn, path };
        db.conn
            .busy_timeout(Duration::from_secs(5))
            .map_err(db.err())?;
        Ok(db)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_file_is_0600_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_private_file_new(dir.path(), "k.pem", b"secret").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(fs::read(&path).unwrap(), b"secret");
        let again = write_private_file_new(dir.path(), "k.pem", b"other");
        assert!(matches!(again, Err(CaError::AlreadyExists(_))));
        assert_eq!(fs::read(&path).unwrap(), b"secret");
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn group_readable_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_private_file_new(dir.path(), "k.pem", b"secret").unwrap();
        check_private_mode(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            check_private_mode(&path),
            Err(CaError::KeyFileMode(_))
        ));
    }

    #[test]
    fn database_refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::create(dir.path()).unwrap();
        db.conn.execute_batch("PRAGMA user_version = 99").unwrap();
        drop(db);
        assert!(matches!(
            Db::open(dir.path()),
            Err(CaError::NewerSchema { found: 99, .. })
        ));
        assert!(matches!(
            Db::create(dir.path()),
            Err(CaError::AlreadyExists(_))
        ));
    }
}

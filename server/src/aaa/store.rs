//! What the SQLite files of the state folder (the user database, the accounting spool) share:
//! a private file (0600 in a 0700 folder), a busy timeout for the other processes that use it
//! (the `user` command, the web UI), the schema version in SQLite's `user_version`, and the
//! errors of all that.

use std::fs;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;

/// Errors opening or using one of the SQLite files, in words an admin can act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened, read or written.
    #[error("{what} {path}: {source}")]
    Database {
        /// Which file it is, in words ("user database").
        what: &'static str,
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// Creating the state folder or the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file was written by a newer roadgate.
    #[error("{what} {path} has schema version {found}; this roadgate knows up to {known}")]
    NewerSchema {
        /// Which file it is, in words.
        what: &'static str,
        /// The database file.
        path: PathBuf,
        /// Its `user_version`.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
}

/// An open SQLite file with its schema version as found (0 for a new file).
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) conn: Connection,
    pub(crate) path: PathBuf,
    pub(crate) version: i64,
}

/// Opens the file `name` in the folder `state` (both made private, see [`private_file`]), or
/// an in-memory database when `state` is `None`, and reads its schema version, refusing one
/// newer than `known`. `what` names the file in errors.
pub(crate) fn open(
    state: Option<&Path>,
    name: &str,
    what: &'static str,
    known: i64,
) -> Result<Opened, StoreError> {
    let (conn, path) = match state {
        Some(state) => {
            let path = private_file(state, name)
                .map_err(|(path, source)| StoreError::Io { path, source })?;
            (Connection::open(&path), path)
        }
        None => (Connection::open_in_memory(), PathBuf::from(":memory:")),
    };
    let db = |source| StoreError::Database {
        what,
        path: path.clone(),
        source,
    };
    let conn = conn.map_err(db)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(db)?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(db)?;
    if version > known {
        return Err(StoreError::NewerSchema {
            what,
            path,
            found: version,
            known,
        });
    }
    Ok(Opened {
        conn,
        path,
        version,
    })
}

/// Makes `state` a 0700 folder (created if missing) and `name` inside it a 0600 file (created
/// empty if missing, so that it is private from its first byte; the files SQLite adds beside a
/// database take its mode). Returns the file's path, or the path that failed with the error.
pub(crate) fn private_file(state: &Path, name: &str) -> Result<PathBuf, (PathBuf, std::io::Error)> {
    let at = |path: &Path| {
        let path = path.to_path_buf();
        move |e| (path, e)
    };
    fs::create_dir_all(state).map_err(at(state))?;
    fs::set_permissions(state, fs::Permissions::from_mode(0o700)).map_err(at(state))?;
    let path = state.join(name);
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(at(&path))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).map_err(at(&path))?;
    Ok(path)
}

//! The web UI's own database: administrator accounts, API tokens and the audit log.
//!
//! One SQLite file at a path the caller gives, created with mode 0600. Passwords are stored as
//! Argon2id PHC strings (`$argon2id$v=19$m=19456,t=2,p=1$...`); API tokens and session tokens
//! only as SHA-256 hashes.
//!
//! The server's CLI uses [`create_admin`] and [`set_admin_password`] (`roadgate admin add`); the
//! web UI opens the same file with [`AdminStore::open`].

use std::fs::OpenOptions;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::util::{now_unix, random_token};

/// The schema version this code writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

/// The shortest admin password accepted.
pub const MIN_PASSWORD_LEN: usize = 10;

/// What went wrong with the admin database.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("admin database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("admin database file: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Invalid(String),
    #[error("no administrator named {0:?}")]
    NoSuchAdmin(String),
    #[error("an administrator named {0:?} already exists")]
    Exists(String),
    #[error("the admin database was written by a newer roadgate (schema {0})")]
    NewerSchema(i64),
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// An administrator as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdminInfo {
    pub name: String,
    /// Unix seconds.
    pub created: i64,
    pub last_login: Option<i64>,
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// Unix seconds.
    pub ts: i64,
    /// The administrator (or the name tried, for a failed login).
    pub admin: String,
    /// What was done, e.g. "login", "user.add", "cert.issue", "p12.download".
    pub action: String,
    /// What it was done to (a user name, a serial, a session id).
    pub target: String,
    /// The client's address.
    pub source: String,
    /// "ok", or why not ("wrong password", "locked", the backend's message).
    pub result: String,
}

/// The admin database, shared by the request handlers (the connection is behind a mutex; the
/// handlers call it from `spawn_blocking`).
#[derive(Clone, Debug)]
pub struct AdminStore {
    conn: Arc<Mutex<Connection>>,
}

/// Creates an administrator in the database at `path` (created if missing).
pub fn create_admin(path: &Path, name: &str, password: &str) -> Result<(), AdminError> {
    AdminStore::open(path)?.create_admin(name, password)
}

/// Sets an administrator's password in the database at `path`.
pub fn set_admin_password(path: &Path, name: &str, password: &str) -> Result<(), AdminError> {
    AdminStore::open(path)?.set_password(name, password)
}

/// Checks an administrator name: 1 to 64 of `A-Z a-z 0-9 . _ @ -`.
pub fn validate_admin_name(name: &str) -> Result<(), AdminError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-');
    if name.is_empty() || name.len() > 64 || !name.chars().all(ok_char) {
        return Err(AdminError::Invalid(
            "an administrator name is 1 to 64 letters, digits, '.', '_', '@' or '-'".into(),
        ));
    }
    Ok(())
}

fn validate_password(password: &str) -> Result<(), AdminError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(AdminError::Invalid(format!(
            "an administrator password has at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    if password.len() > 1024 {
        return Err(AdminError::Invalid(
            "an administrator password has at most 1024 bytes".into(),
        ));
    }
    Ok(())
}

/// An Argon2id PHC string for `password` with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, AdminError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| AdminError::Hash(e.to_string()))
}

/// Whether `password` matches the PHC string `hash` (false for a malformed hash).
pub fn verify_password(password: &str, hash: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// A hash that no password matches, verified against for unknown names so that a login for a
/// name that does not exist takes as long as one for a name that does.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let random = random_token();
        hash_password(&random).unwrap_or_default()
    })
}

/// SHA-256 of an API token, as stored.
fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// The prefix of every API token, so that it is recognisable in a secret scanner.
pub const API_TOKEN_PREFIX: &str = "rgw_";

impl AdminStore {
    /// Opens (or creates, mode 0600) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<AdminStore, AdminError> {
        // Create the file ourselves so that it never exists with wider permissions.
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        let conn = Connection::open(path)?;
        Self::init(conn)
    }

    /// An in-memory database (tests, demos).
    pub fn open_in_memory() -> Result<AdminStore, AdminError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<AdminStore, AdminError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(AdminError::NewerSchema(version));
        }
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS admins (
                 name TEXT PRIMARY KEY,
                 hash TEXT NOT NULL,
                 created INTEGER NOT NULL,
                 last_login INTEGER
             );
             CREATE TABLE IF NOT EXISTS audit (
                 id INTEGER PRIMARY KEY,
                 ts INTEGER NOT NULL,
                 admin TEXT NOT NULL,
                 action TEXT NOT NULL,
                 target TEXT NOT NULL,
                 source TEXT NOT NULL,
                 result TEXT NOT NULL
             );
             CREATE INDEX IF NOT EXISTS audit_ts ON audit(ts);
             CREATE TABLE IF NOT EXISTS api_tokens (
                 id INTEGER PRIMARY KEY,
                 admin TEXT NOT NULL REFERENCES admins(name) ON DELETE CASCADE,
                 label TEXT NOT NULL,
                 hash BLOB NOT NULL UNIQUE,
                 created INTEGER NOT NULL,
                 last_used INTEGER
             );
             PRAGMA user_version = 1;",
        )?;
        conn.execute_batch("PRAGMA foreign_keys = ON;")?;
        Ok(AdminStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves the connection usable: SQLite rolls back.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds an administrator.
    pub fn create_admin(&self, name: &str, password: &str) -> Result<(), AdminError> {
        validate_admin_name(name)?;
        validate_password(password)?;
        let hash = hash_password(password)?;
        let conn = self.conn();
        let n = conn.execute(
            "INSERT OR IGNORE INTO admins (name, hash, created) VALUES (?1, ?2, ?3)",
            params![name, hash, now_unix()],
        )?;
        if n == 0 {
            return Err(AdminError::Exists(name.into()));
        }
        Ok(())
    }

    /// Changes an administrator's password.
    pub fn set_password(&self, name: &str, password: &str) -> Result<(), AdminError> {
        validate_password(password)?;
        let hash = hash_password(password)?;
        let n = self.conn().execute(
            "UPDATE admins SET hash = ?2 WHERE name = ?1",
            params![name, hash],
        )?;
        if n == 0 {
            return Err(AdminError::NoSuchAdmin(name.into()));
        }
        Ok(())
    }

    /// Deletes an administrator (and its API tokens).
    pub fn delete_admin(&self, name: &str) -> Result<(), AdminError> {
        let n = self
            .conn()
            .execute("DELETE FROM admins WHERE name = ?1", params![name])?;
        if n == 0 {
            return Err(AdminError::NoSuchAdmin(name.into()));
        }
        Ok(())
    }

    /// Every administrator, by name.
    pub fn list_admins(&self) -> Result<Vec<AdminInfo>, AdminError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT name, created, last_login FROM admins ORDER BY name")?;
        let rows = stmt.query_map([], |r| {
            Ok(AdminInfo {
                name: r.get(0)?,
                created: r.get(1)?,
                last_login: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Whether `password` is `name`'s. Takes about as long for an unknown name. Slow (Argon2):
    /// call it off the async runtime.
    pub fn verify_login(&self, name: &str, password: &str) -> Result<bool, AdminError> {
        let hash: Option<String> = self
            .conn()
            .query_row(
                "SELECT hash FROM admins WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()?;
        Ok(match hash {
            Some(h) => verify_password(password, &h),
            None => {
                verify_password(password, dummy_hash());
                false
            }
        })
    }

    /// Notes a successful login.
    pub fn record_login(&self, name: &str) -> Result<(), AdminError> {
        self.conn().execute(
            "UPDATE admins SET last_login = ?2 WHERE name = ?1",
            params![name, now_unix()],
        )?;
        Ok(())
    }

    /// Appends an audit record.
    pub fn audit(&self, entry: &AuditEntry) -> Result<(), AdminError> {
        self.conn().execute(
            "INSERT INTO audit (ts, admin, action, target, source, result)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                entry.ts,
                entry.admin,
                entry.action,
                entry.target,
                entry.source,
                entry.result
            ],
        )?;
        Ok(())
    }

    /// The newest `limit` audit records, newest first.
    pub fn recent_audit(&self, limit: usize) -> Result<Vec<AuditEntry>, AdminError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT ts, admin, action, target, source, result FROM audit
             ORDER BY id DESC LIMIT ?1",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![limit], |r| {
            Ok(AuditEntry {
                ts: r.get(0)?,
                admin: r.get(1)?,
                action: r.get(2)?,
                target: r.get(3)?,
                source: r.get(4)?,
                result: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Makes an API token for `admin` and returns it; only its hash is stored, so this is the
    /// one time it can be seen. It authenticates `/api/v1` requests as
    /// `Authorization: Bearer <token>` (no CSRF token needed) and `/metrics` if so configured.
    pub fn create_api_token(&self, admin: &str, label: &str) -> Result<String, AdminError> {
        let token = format!("{API_TOKEN_PREFIX}{}", random_token());
        let conn = self.conn();
        let exists: Option<String> = conn
            .query_row(
                "SELECT name FROM admins WHERE name = ?1",
                params![admin],
                |r| r.get(0),
            )
            .optional()?;
        if exists.is_none() {
            return Err(AdminError::NoSuchAdmin(admin.into()));
        }
        conn.execute(
            "INSERT INTO api_tokens (admin, label, hash, created) VALUES (?1, ?2, ?3, ?4)",
            params![admin, label, token_hash(&token), now_unix()],
        )?;
        Ok(token)
    }

    /// The administrator an API token belongs to, if it is a valid one.
    pub fn verify_api_token(&self, token: &str) -> Result<Option<String>, AdminError> {
        if !token.starts_with(API_TOKEN_PREFIX) {
            return Ok(None);
        }
        let conn = self.conn();
        // Looked up by hash: equal hashes are found by the index, so no secret is compared
        // byte by byte in Rust.
        let hash = token_hash(token);
        let admin: Option<String> = conn
            .query_row(
                "SELECT admin FROM api_tokens WHERE hash = ?1",
                params![hash],
                |r| r.get(0),
            )
            .optional()?;
        if admin.is_some() {
            conn.execute(
                "UPDATE api_tokens SET last_used = ?2 WHERE hash = ?1",
                params![hash, now_unix()],
            )?;
        }
        Ok(admin)
    }

    /// Deletes every API token of `admin`; returns how many there were.
    pub fn revoke_api_tokens(&self, admin: &str) -> Result<usize, AdminError> {
        Ok(self
            .conn()
            .execute("DELETE FROM api_tokens WHERE admin = ?1", params![admin])?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_verify_and_change_password() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.db");
        create_admin(&path, "root", "correct horse battery").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let store = AdminStore::open(&path).unwrap();
        assert!(store.verify_login("root", "correct horse battery").unwrap());
        assert!(!store.verify_login("root", "wrong password!").unwrap());
        assert!(
            !store
                .verify_login("nobody", "correct horse battery")
                .unwrap()
        );
        assert!(matches!(
            store.create_admin("root", "another password"),
            Err(AdminError::Exists(_))
        ));
        set_admin_password(&path, "root", "a new long password").unwrap();
        assert!(!store.verify_login("root", "correct horse battery").unwrap());
        assert!(store.verify_login("root", "a new long password").unwrap());
        assert!(matches!(
            store.set_password("ghost", "a new long password"),
            Err(AdminError::NoSuchAdmin(_))
        ));
        let hash: String = store
            .conn()
            .query_row("SELECT hash FROM admins", [], |r| r.get(0))
            .unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
    }

    #[test]
    fn names_and_passwords_are_checked() {
        let store = AdminStore::open_in_memory().unwrap();
        assert!(store.create_admin("", "long enough pw").is_err());
        assert!(store.create_admin("a b", "long enough pw").is_err());
        assert!(store.create_admin("ok", "short").is_err());
        store.create_admin("ok", "long enough pw").unwrap();
    }

    #[test]
    fn api_tokens() {
        let store = AdminStore::open_in_memory().unwrap();
        store.create_admin("ops", "long enough pw").unwrap();
        let token = store.create_api_token("ops", "grafana").unwrap();
        assert_eq!(
            store.verify_api_token(&token).unwrap().as_deref(),
            Some("ops")
        );
        assert_eq!(store.verify_api_token("rgw_nope").unwrap(), None);
        assert_eq!(store.revoke_api_tokens("ops").unwrap(), 1);
        assert_eq!(store.verify_api_token(&token).unwrap(), None);
        assert!(store.create_api_token("ghost", "x").is_err());
    }

    #[test]
    fn audit_round_trip() {
        let store = AdminStore::open_in_memory().unwrap();
        for i in 0..3 {
            store
                .audit(&AuditEntry {
                    ts: i,
                    admin: "root".into(),
                    action: "user.add".into(),
                    target: format!("u{i}"),
                    source: "127.0.0.1".into(),
                    result: "ok".into(),
                })
                .unwrap();
        }
        let recent = store.recent_audit(2).unwrap();
        assert_eq!(recent.len(), 2);
        assert_eq!(recent[0].target, "u2");
    }
}

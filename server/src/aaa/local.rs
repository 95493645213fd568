//! Local users, kept in the embedded SQLite database of the state folder.
//!
//! A local user record holds the NT hash of the password (MD4 of its UTF-16LE form), never the
//! password itself. That one value serves two PPP methods:
//!
//! - MS-CHAPv2 (RFC 2759) works from the NT hash alone, and so does the MPPE key material of
//!   RFC 3079 that RADIUS accounting and the clients' key derivation need;
//! - PAP sends the password in clear (inside IPsec): its NT hash is computed and compared in
//!   constant time with the stored one.
//!
//! CHAP-MD5 (RFC 1994) needs the clear-text password on the server, which a local user record
//! does not keep on purpose: a stolen database then gives no password that works elsewhere
//! without cracking. Local users therefore cannot use CHAP-MD5; RADIUS users can.
//!
//! The database file is created 0600 inside a 0700 state folder. Schema changes are versioned
//! with SQLite's `user_version`.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

use super::store::{self, StoreError};
use zeroize::Zeroizing;

/// File name of the database inside the state folder.
pub const DATABASE_FILE: &str = "roadgate.db";

/// Longest user name accepted (bytes). RADIUS User-Name allows 253.
pub const MAX_USER_NAME: usize = 253;

/// Longest password accepted, in characters (the MS-CHAPv2 limit, RFC 2759 §8: 256 Unicode
/// characters).
pub const MAX_PASSWORD_CHARS: usize = 256;

/// The schema version this build writes.
const SCHEMA_VERSION: i64 = 1;

/// The file in error messages.
const WHAT: &str = "user database";

/// Errors of the user store, in words an admin can act on.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The database file could not be opened, read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No such user.
    #[error("no user named {0:?}")]
    NoSuchUser(String),
    /// A user of that name exists already.
    #[error("user {0:?} exists already")]
    Exists(String),
    /// The user name cannot be used.
    #[error("invalid user name {0:?}: {1}")]
    InvalidName(String, &'static str),
    /// The password cannot be used.
    #[error("invalid password: {0}")]
    InvalidPassword(&'static str),
    /// Another user has this static address.
    #[error("static address {addr} is already given to user {owner:?}")]
    AddressTaken {
        /// The address.
        addr: Ipv4Addr,
        /// Who has it.
        owner: String,
    },
}

/// A local user as the server sees it when authenticating.
pub struct User {
    /// The user name as stored.
    pub name: String,
    /// MD4 of the UTF-16LE password.
    pub nt_hash: Zeroizing<[u8; 16]>,
    /// Whether the user may connect.
    pub enabled: bool,
    /// Address always given to this user, if any.
    pub static_ip: Option<Ipv4Addr>,
    /// Most simultaneous sessions; `None` is no limit.
    pub max_sessions: Option<u32>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("nt_hash", &"<secret>")
            .field("enabled", &self.enabled)
            .field("static_ip", &self.static_ip)
            .field("max_sessions", &self.max_sessions)
            .finish()
    }
}

/// What `user list` shows: everything but the hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// The user name.
    pub name: String,
    /// Whether the user may connect.
    pub enabled: bool,
    /// Static address, if any.
    pub static_ip: Option<Ipv4Addr>,
    /// Session limit, if any.
    pub max_sessions: Option<u32>,
}

/// Per-user options given to `add` and `set`.
#[derive(Debug, Clone, Default)]
pub struct UserOptions {
    /// `Some(None)` clears the static address.
    pub static_ip: Option<Option<Ipv4Addr>>,
    /// `Some(None)` removes the limit.
    pub max_sessions: Option<Option<u32>>,
    /// Enable or disable.
    pub enabled: Option<bool>,
}

/// The local user store.
#[derive(Debug)]
pub struct UserStore {
    conn: Connection,
    path: PathBuf,
}

impl UserStore {
    /// Opens (creating if needed) the database in `state`, a folder made 0700 if missing.
    pub fn open(state: &Path) -> Result<Self, UserError> {
        Self::init(Some(state))
    }

    /// Opens an in-memory store (tests).
    pub fn in_memory() -> Result<Self, UserError> {
        Self::init(None)
    }

    fn init(state: Option<&Path>) -> Result<Self, UserError> {
        let opened = store::open(state, DATABASE_FILE, WHAT, SCHEMA_VERSION)?;
        let store = UserStore {
            conn: opened.conn,
            path: opened.path,
        };
        store.migrate(opened.version)?;
        Ok(store)
    }

    fn db<T>(&self, r: rusqlite::Result<T>) -> Result<T, UserError> {
        r.map_err(|source| {
            UserError::Store(StoreError::Database {
                what: WHAT,
                path: self.path.clone(),
                source,
            })
        })
    }

    fn migrate(&self, version: i64) -> Result<(), UserError> {
        if version < 1 {
            self.db(self.conn.execute_batch(
                "BEGIN;
                 CREATE TABLE users (
                     name TEXT NOT NULL PRIMARY KEY COLLATE NOCASE,
                     nt_hash BLOB NOT NULL CHECK (length(nt_hash) = 16),
                     enabled INTEGER NOT NULL DEFAULT 1,
                     static_ip TEXT UNIQUE,
                     max_sessions INTEGER CHECK (max_sessions IS NULL OR max_sessions >= 0),
                     created INTEGER NOT NULL DEFAULT (unixepoch()),
                     updated INTEGER NOT NULL DEFAULT (unixepoch())
                 );
                 PRAGMA user_version = 1;
                 COMMIT;",
            ))?;
        }
        Ok(())
    }

    /// Adds a user.
    pub fn add(&self, name: &str, password: &str, opts: &UserOptions) -> Result<(), UserError> {
        check_name(name)?;
        let hash = Zeroizing::new(password_hash(password)?);
        if self.find(name)?.is_some() {
            return Err(UserError::Exists(name.to_string()));
        }
        let static_ip = opts.static_ip.flatten();
        if let Some(addr) = static_ip {
            self.check_address_free(addr, name)?;
        }
        self.db(self.conn.execute(
            "INSERT INTO users (name, nt_hash, enabled, static_ip, max_sessions)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                name,
                &hash[..],
                opts.enabled.unwrap_or(true),
                static_ip.map(|a| a.to_string()),
                opts.max_sessions.flatten()
            ],
        ))?;
        Ok(())
    }

    /// Deletes a user.
    pub fn delete(&self, name: &str) -> Result<(), UserError> {
        let n = self.db(self
            .conn
            .execute("DELETE FROM users WHERE name = ?1", params![name]))?;
        if n == 0 {
            return Err(UserError::NoSuchUser(name.to_string()));
        }
        Ok(())
    }

    /// Sets a new password.
    pub fn set_password(&self, name: &str, password: &str) -> Result<(), UserError> {
        let hash = Zeroizing::new(password_hash(password)?);
        let n = self.db(self.conn.execute(
            "UPDATE users SET nt_hash = ?2, updated = unixepoch() WHERE name = ?1",
            params![name, &hash[..]],
        ))?;
        if n == 0 {
            return Err(UserError::NoSuchUser(name.to_string()));
        }
        Ok(())
    }

    /// Changes per-user options; fields left `None` keep their value.
    pub fn set_options(&self, name: &str, opts: &UserOptions) -> Result<(), UserError> {
        let Some(user) = self.find(name)? else {
            return Err(UserError::NoSuchUser(name.to_string()));
        };
        if let Some(Some(addr)) = opts.static_ip {
            self.check_address_free(addr, &user.name)?;
        }
        let enabled = opts.enabled.unwrap_or(user.enabled);
        let static_ip = opts.static_ip.unwrap_or(user.static_ip);
        let max_sessions = opts.max_sessions.unwrap_or(user.max_sessions);
        self.db(self.conn.execute(
            "UPDATE users SET enabled = ?2, static_ip = ?3, max_sessions = ?4, updated = unixepoch()
             WHERE name = ?1",
            params![
                name,
                enabled,
                static_ip.map(|a| a.to_string()),
                max_sessions
            ],
        ))?;
        Ok(())
    }

    /// The user of that name (user names compare without regard to ASCII case, as Windows
    /// does), or `None`.
    pub fn find(&self, name: &str) -> Result<Option<User>, UserError> {
        let row = self.db(self
            .conn
            .query_row(
                "SELECT name, nt_hash, enabled, static_ip, max_sessions FROM users
                     WHERE name = ?1",
                params![name],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Vec<u8>>(1)?,
                        r.get::<_, bool>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, Option<u32>>(4)?,
                    ))
                },
            )
            .optional())?;
        let Some((name, hash, enabled, static_ip, max_sessions)) = row else {
            return Ok(None);
        };
        let hash = Zeroizing::new(hash);
        let mut nt_hash = Zeroizing::new([0u8; 16]);
        if hash.len() == 16 {
            nt_hash.copy_from_slice(&hash);
        }
        Ok(Some(User {
            name,
            nt_hash,
            enabled,
            static_ip: static_ip.and_then(|s| s.parse().ok()),
            max_sessions,
        }))
    }

    /// Every user, by name.
    pub fn list(&self) -> Result<Vec<UserInfo>, UserError> {
        let mut stmt = self.db(self
            .conn
            .prepare("SELECT name, enabled, static_ip, max_sessions FROM users ORDER BY name"))?;
        let rows = self.db(stmt.query_map([], |r| {
            Ok(UserInfo {
                name: r.get(0)?,
                enabled: r.get(1)?,
                static_ip: r.get::<_, Option<String>>(2)?.and_then(|s| s.parse().ok()),
                max_sessions: r.get(3)?,
            })
        }))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(self.db(row)?);
        }
        Ok(out)
    }

    /// Every static address with its user (to reserve them in the pool at start).
    pub fn static_addresses(&self) -> Result<Vec<(String, Ipv4Addr)>, UserError> {
        Ok(self
            .list()?
            .into_iter()
            .filter_map(|u| u.static_ip.map(|a| (u.name, a)))
            .collect())
    }

    fn check_address_free(&self, addr: Ipv4Addr, for_user: &str) -> Result<(), UserError> {
        let owner: Option<String> = self.db(self
            .conn
            .query_row(
                "SELECT name FROM users WHERE static_ip = ?1 AND name <> ?2",
                params![addr.to_string(), for_user],
                |r| r.get(0),
            )
            .optional())?;
        match owner {
            Some(owner) => Err(UserError::AddressTaken { addr, owner }),
            None => Ok(()),
        }
    }
}

/// Checks a user name: printable, no backslash (clients send `DOMAIN\user` and the domain is
/// dropped before lookup), within [`MAX_USER_NAME`].
pub fn check_name(name: &str) -> Result<(), UserError> {
    let bad = |why| Err(UserError::InvalidName(name.to_string(), why));
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_USER_NAME {
        return bad("longer than 253 bytes");
    }
    if name.contains('\\') {
        return bad("contains a backslash (clients' DOMAIN\\ prefixes are stripped)");
    }
    if name.chars().any(char::is_control) {
        return bad("contains control characters");
    }
    if name.trim() != name {
        return bad("starts or ends with white space");
    }
    Ok(())
}

/// The NT hash of a password, after checking its length.
fn password_hash(password: &str) -> Result<[u8; 16], UserError> {
    if password.is_empty() {
        return Err(UserError::InvalidPassword("empty"));
    }
    if password.chars().count() > MAX_PASSWORD_CHARS {
        return Err(UserError::InvalidPassword(
            "longer than 256 characters (the MS-CHAPv2 limit)",
        ));
    }
    Ok(pppd_lite::mschapv2::nt_password_hash(password))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn add_find_list_and_delete() {
        let s = UserStore::in_memory().unwrap();
        s.add("alice", "pw1", &UserOptions::default()).unwrap();
        s.add(
            "bob",
            "pw2",
            &UserOptions {
                static_ip: Some(Some(Ipv4Addr::new(10, 0, 0, 9))),
                max_sessions: Some(Some(2)),
                enabled: Some(false),
            },
        )
        .unwrap();
        let a = s.find("ALICE").unwrap().unwrap();
        assert_eq!(a.name, "alice");
        assert_eq!(*a.nt_hash, pppd_lite::mschapv2::nt_password_hash("pw1"));
        assert!(a.enabled);
        let b = s.find("bob").unwrap().unwrap();
        assert!(!b.enabled);
        assert_eq!(b.static_ip, Some(Ipv4Addr::new(10, 0, 0, 9)));
        assert_eq!(b.max_sessions, Some(2));
        assert_eq!(
            s.list()
                .unwrap()
                .iter()
                .map(|u| u.name.as_str())
                .collect::<Vec<_>>(),
            ["alice", "bob"]
        );
        assert!(matches!(
            s.add("Alice", "x", &UserOptions::default()),
            Err(UserError::Exists(_))
        ));
        s.delete("alice").unwrap();
        assert!(s.find("alice").unwrap().is_none());
        assert!(matches!(s.delete("alice"), Err(UserError::NoSuchUser(_))));
    }

    #[test]
    fn passwords_options_and_addresses() {
        let s = UserStore::in_memory().unwrap();
        s.add("u", "old", &UserOptions::default()).unwrap();
        s.set_password("u", "new").unwrap();
        assert_eq!(
            *s.find("u").unwrap().unwrap().nt_hash,
            pppd_lite::mschapv2::nt_password_hash("new")
        );
        let ip = Ipv4Addr::new(10, 1, 1, 1);
        s.set_options(
            "u",
            &UserOptions {
                static_ip: Some(Some(ip)),
                ..Default::default()
            },
        )
        .unwrap();
        s.add("v", "pw", &UserOptions::default()).unwrap();
        assert!(matches!(
            s.set_options(
                "v",
                &UserOptions {
                    static_ip: Some(Some(ip)),
                    ..Default::default()
                }
            ),
            Err(UserError::AddressTaken { .. })
        ));
        // Setting one's own address again is fine; clearing works.
        s.set_options(
            "u",
            &UserOptions {
                static_ip: Some(Some(ip)),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(s.static_addresses().unwrap(), vec![("u".to_string(), ip)]);
        s.set_options(
            "u",
            &UserOptions {
                static_ip: Some(None),
                enabled: Some(false),
                ..Default::default()
            },
        )
        .unwrap();
        let u = s.find("u").unwrap().unwrap();
        assert_eq!((u.static_ip, u.enabled), (None, false));
        assert!(matches!(
            s.set_password("nobody", "x"),
            Err(UserError::NoSuchUser(_))
        ));
    }

    #[test]
    fn bad_names_and_passwords_are_refused() {
        let s = UserStore::in_memory().unwrap();
        for name in ["", "DOM\\user", " lead", "tab\t", &"x".repeat(254)] {
            assert!(
                matches!(
                    s.add(name, "pw", &UserOptions::default()),
                    Err(UserError::InvalidName(..))
                ),
                "{name:?}"
            );
        }
        assert!(matches!(
            s.add("ok", "", &UserOptions::default()),
            Err(UserError::InvalidPassword(_))
        ));
        assert!(matches!(
            s.add("ok", &"p".repeat(257), &UserOptions::default()),
            Err(UserError::InvalidPassword(_))
        ));
        s.add("ok", &"p".repeat(256), &UserOptions::default())
            .unwrap();
        // Debug output never shows the hash.
        let dbg = format!("{:?}", s.find("ok").unwrap().unwrap());
        assert!(
            dbg.contains("<secret>") && !dbg.contains("nt_hash: ["),
            "{dbg}"
        );
    }

    #[test]
    fn file_is_private_and_survives_reopen() {
        let dir = std::env::temp_dir().join(format!("rg-users-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        {
            let s = UserStore::open(&dir).unwrap();
            s.add("persist", "pw", &UserOptions::default()).unwrap();
        }
        let meta = fs::metadata(dir.join(DATABASE_FILE)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let s = UserStore::open(&dir).unwrap();
        assert!(s.find("persist").unwrap().is_some());
        // A database from a newer roadgate is refused, not damaged.
        s.conn.execute_batch("PRAGMA user_version = 99").unwrap();
        drop(s);
        assert!(matches!(
            UserStore::open(&dir),
            Err(UserError::Store(StoreError::NewerSchema { found: 99, .. }))
        ));
        fs::remove_dir_all(&dir).unwrap();
    }
}

//! The errors of the CA's own operations (files, database, issuing, exports). Verification of
//! peer certificates has its own error, [`crate::VerifyError`].

use std::path::PathBuf;

/// What went wrong in a CA operation, in words an admin can act on. No variant carries key
/// material or passwords.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// `Ca::init` found a CA (its database or its key file) in the folder already.
    #[error("a CA already exists in {0}")]
    AlreadyExists(PathBuf),
    /// `Ca::open` found no CA in the folder.
    #[error("no CA in {0} (ca.db and ca-key.pem are missing)")]
    NotFound(PathBuf),
    /// A file or folder could not be created, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The CA key file can be read by other users than its owner.
    #[error("{0} is readable by group or others (it must be mode 0600)")]
    KeyFileMode(PathBuf),
    /// The database could not be opened, read or written.
    #[error("CA database {path}: {source}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The database was written by a newer build.
    #[error("CA database {path} has schema version {found}; this build knows up to {known}")]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// Its `user_version`.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
    /// The stored CA data does not hang together (a missing row, a certificate that does not
    /// parse, a key that does not match the certificate).
    #[error("the CA data is inconsistent: {0}")]
    Corrupt(String),
    /// A parameter was refused before anything was issued.
    #[error("invalid parameter: {0}")]
    InvalidParams(String),
    /// No certificate with this serial was issued by this CA.
    #[error("no certificate with serial {0}")]
    UnknownSerial(String),
    /// The certificate is revoked already.
    #[error("certificate {0} is already revoked")]
    AlreadyRevoked(String),
    /// The CA's own certificate cannot be revoked by its CRL.
    #[error("certificate {0} is the CA certificate itself and cannot be revoked")]
    RevokeCa(String),
    /// Building or signing a certificate or CRL failed.
    #[error("certificate building failed: {0}")]
    Certificate(#[from] rcgen::Error),
    /// A key could not be generated, parsed or used.
    #[error("key: {0}")]
    Key(String),
    /// A PEM or DER input could not be decoded, or an output could not be encoded.
    #[error("encoding: {0}")]
    Encoding(String),
    /// Writing a PKCS#12 file failed.
    #[error("PKCS#12: {0}")]
    Pkcs12(String),
    /// The operating system's random number generator failed.
    #[error("random number generator: {0}")]
    Random(String),
    /// No unused serial number was found in a few random draws (the random source is broken).
    #[error("could not draw an unused serial number")]
    SerialExhausted,
}

impl CaError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}

impl From<der::Error> for CaError {
    fn from(e: der::Error) -> Self {
        Self::Encoding(e.to_string())
    }
}

impl From<getrandom::Error> for CaError {
    fn from(e: getrandom::Error) -> Self {
        Self::Random(e.to_string())
    }
}

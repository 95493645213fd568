//! IKEv1 cryptographic building blocks (RFC 2409 §5, §5.5, §5.7, §6, Appendix B; RFC 3526;
//! RFC 5903; RFC 3947 §3.2).
//!
//! Everything here is a thin layer over audited primitives: aws-lc-rs for hashes and HMAC,
//! RustCrypto `aes`/`des`/`cbc` for the ISAKMP ciphers, aws-lc-rs `agreement` for ECDH and
//! `crypto-bigint` (constant-time Montgomery exponentiation) for the MODP groups. No primitive
//! is implemented here.
//!
//! Conventions:
//! * secrets (DH private values, g^xy, SKEYID*, cipher keys, KEYMAT) are returned in
//!   [`Zeroizing`] buffers; compare authenticators with [`ct_eq`];
//! * nothing here panics on peer-supplied input: every length and range is checked and reported
//!   through [`DhError`] or [`CryptoError`].
//!
//! This module is cross-checked byte for byte against an independent Python implementation
//! (`tests/python/ike_crypto_ref.py`, driven by `server/tests/ike_crypto_crosscheck.rs`).

mod cipher;
mod dh;
mod hash;
mod kdf;

pub use cipher::{CipherAlg, CryptoError, ENC_3DES_CBC, ENC_AES_CBC};
pub use dh::{DhError, DhGroup, DhPrivate, validate_public};
pub use hash::{HashAlg, Prf};
pub use kdf::{
    Phase1Keys, derive_phase1, exchange_iv, expand_key, hash_i, hash_r, info_hash, keymat, nat_d,
    qm_hash1, qm_hash2, qm_hash3, skeyid_psk, skeyid_sig,
};
pub use zeroize::Zeroizing;

/// Constant-time equality of two byte strings (the length is not secret). Use this to check
/// HASH_I, HASH(1..3), Informational hashes and anything else a peer presents as proof.
#[must_use]
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::ct_eq;

    #[test]
    fn ct_eq_basics() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}

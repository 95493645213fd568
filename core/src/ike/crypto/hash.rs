//! Negotiated hash (IKE attribute class 2) and the PRF derived from it.

use aws_lc_rs::{digest, hmac};
use zeroize::Zeroizing;

/// IKE hash algorithm (attribute class 2: RFC 2409 Appendix A, SHA-2 values from the IANA
/// "IPSEC Hash Algorithm" registry).
/// MD5 (1) and Tiger (3) are deliberately not supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlg {
    /// SHA-1, attribute value 2.
    Sha1,
    /// SHA2-256, attribute value 4.
    Sha256,
    /// SHA2-384, attribute value 5.
    Sha384,
    /// SHA2-512, attribute value 6.
    Sha512,
}

impl HashAlg {
    /// All supported hashes, in attribute order.
    pub const ALL: [HashAlg; 4] = [Self::Sha1, Self::Sha256, Self::Sha384, Self::Sha512];

    /// Maps an IKE hash attribute value; `None` for unknown or unsupported (MD5, Tiger) values.
    #[must_use]
    pub fn from_attr(v: u16) -> Option<Self> {
        match v {
            2 => Some(Self::Sha1),
            4 => Some(Self::Sha256),
            5 => Some(Self::Sha384),
            6 => Some(Self::Sha512),
            _ => None,
        }
    }

    /// The IKE hash attribute value.
    #[must_use]
    pub fn attr(self) -> u16 {
        match self {
            Self::Sha1 => 2,
            Self::Sha256 => 4,
            Self::Sha384 => 5,
            Self::Sha512 => 6,
        }
    }

    /// Digest length in bytes.
    #[must_use]
    pub fn output_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }

    /// Human-readable name ("SHA1", "SHA2-256", ...).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA2-256",
            Self::Sha384 => "SHA2-384",
            Self::Sha512 => "SHA2-512",
        }
    }

    fn digest_alg(self) -> &'static digest::Algorithm {
        match self {
            Self::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            Self::Sha256 => &digest::SHA256,
            Self::Sha384 => &digest::SHA384,
            Self::Sha512 => &digest::SHA512,
        }
    }

    fn hmac_alg(self) -> hmac::Algorithm {
        match self {
            Self::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Self::Sha256 => hmac::HMAC_SHA256,
            Self::Sha384 => hmac::HMAC_SHA384,
            Self::Sha512 => hmac::HMAC_SHA512,
        }
    }

    /// Hash of the concatenation of `parts`.
    #[must_use]
    pub fn digest(self, parts: &[&[u8]]) -> Vec<u8> {
        let mut ctx = digest::Context::new(self.digest_alg());
        for part in parts {
            ctx.update(part);
        }
        ctx.finish().as_ref().to_vec()
    }
}

/// The PRF: HMAC of the negotiated hash (RFC 2409 §4: when no PRF attribute is negotiated, the
/// HMAC version of the hash is the PRF).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prf(pub HashAlg);

impl Prf {
    /// `prf(key, parts[0] | parts[1] | ...)`.
    #[must_use]
    pub fn compute(&self, key: &[u8], parts: &[&[u8]]) -> Zeroizing<Vec<u8>> {
        let key = hmac::Key::new(self.0.hmac_alg(), key);
        let mut ctx = hmac::Context::with_key(&key);
        for part in parts {
            ctx.update(part);
        }
        Zeroizing::new(ctx.sign().as_ref().to_vec())
    }

    /// Output length in bytes (that of the hash).
    #[must_use]
    pub fn output_len(&self) -> usize {
        self.0.output_len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap_or_default()
    }

    #[test]
    fn attr_round_trip() {
        for h in HashAlg::ALL {
            assert_eq!(HashAlg::from_attr(h.attr()), Some(h));
            assert_eq!(h.digest(&[b"x"]).len(), h.output_len());
            assert_eq!(Prf(h).compute(b"k", &[b"x"]).len(), Prf(h).output_len());
        }
        for v in [0, 1, 3, 7, 0xffff] {
            assert_eq!(HashAlg::from_attr(v), None);
        }
    }

    #[test]
    fn digest_known_answers() {
        // FIPS 180 "abc" examples, split into parts to check concatenation.
        assert_eq!(
            HashAlg::Sha1.digest(&[b"a", b"", b"bc"]),
            hex("a9993e364706816aba3e25717850c26c9cd0d89d")
        );
        assert_eq!(
            HashAlg::Sha256.digest(&[b"ab", b"c"]),
            hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
    }

    #[test]
    fn hmac_known_answers() {
        // RFC 4231 test case 2 (key "Jefe") and RFC 2202 test case 2 for SHA-1.
        let data: &[&[u8]] = &[b"what do ya want ", b"for nothing?"];
        assert_eq!(
            Prf(HashAlg::Sha1).compute(b"Jefe", data).as_slice(),
            hex("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79")
        );
        assert_eq!(
            Prf(HashAlg::Sha256).compute(b"Jefe", data).as_slice(),
            hex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        );
        assert_eq!(
            Prf(HashAlg::Sha512).compute(b"Jefe", data).as_slice(),
            hex(concat!(
                "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554",
                "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
            ))
        );
    }
}

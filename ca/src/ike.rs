//! IKEv1 RSA signatures (RFC 2409 §5.1): the raw HASH_I / HASH_R bytes are padded with
//! PKCS#1 v1.5 type 1 and signed, with no DigestInfo around them (what `openssl pkeyutl
//! -sign` does with an RSA key and no digest). PKCS#1 v1.5 is deterministic, so the same key
//! and hash always give the same signature.

use std::fmt;

use rsa::{Pkcs1v15Sign, RsaPrivateKey};

use crate::keys::{PrivateKeyDer, rsa_from_pkcs8};
use crate::{CaError, PublicKey};

/// An RSA private key prepared for IKEv1 signatures (parse once, sign per exchange).
#[derive(Clone)]
pub struct IkeRsaSigner {
    key: RsaPrivateKey,
}

impl fmt::Debug for IkeRsaSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "IkeRsaSigner({} bytes modulus, redacted)",
            self.signature_len()
        )
    }
}

impl IkeRsaSigner {
    /// Takes an RSA private key in PKCS#8 DER.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, CaError> {
        Ok(Self {
            key: rsa_from_pkcs8(der)?,
        })
    }

    /// Takes an RSA private key from a [`PrivateKeyDer`].
    pub fn new(key: &PrivateKeyDer) -> Result<Self, CaError> {
        Self::from_pkcs8_der(key.as_bytes())
    }

    /// The signature length in bytes (the modulus length).
    pub fn signature_len(&self) -> usize {
        rsa::traits::PublicKeyParts::size(&self.key)
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        use rsa::traits::PublicKeyParts;
        PublicKey::Rsa {
            n: strip_zeros(self.key.n().to_be_bytes().as_ref()),
            e: strip_zeros(self.key.e().to_be_bytes().as_ref()),
        }
    }

    /// Signs `hash` (HASH_I or HASH_R as is). Fails when the hash does not fit the modulus
    /// with PKCS#1 v1.5 padding (more than the modulus length minus 11 bytes).
    pub fn sign(&self, hash: &[u8]) -> Result<Vec<u8>, CaError> {
        self.key
            .sign(Pkcs1v15Sign::new_unprefixed(), hash)
            .map_err(|e| CaError::Key(format!("RSA signing: {e}")))
    }
}

fn strip_zeros(bytes: &[u8]) -> Vec<u8> {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes[start..].to_vec()
}

/// Signs an IKEv1 HASH_I/HASH_R with an RSA private key in PKCS#8 DER (see [`IkeRsaSigner`]
/// to parse the key once).
pub fn sign_ike_rsa(private_key_pkcs8_der: &[u8], hash: &[u8]) -> Result<Vec<u8>, CaError> {
    IkeRsaSigner::from_pkcs8_der(private_key_pkcs8_der)?.sign(hash)
}

/// Whether `signature` is the IKEv1 RSA signature of `hash` by `public_key`. False for a
/// non-RSA key, a key the rsa crate refuses (under 1024 or over 8192 bits), or any mismatch.
pub fn verify_ike_rsa(public_key: &PublicKey, hash: &[u8], signature: &[u8]) -> bool {
    match public_key.to_rsa() {
        Some(key) => key
            .verify(Pkcs1v15Sign::new_unprefixed(), hash, signature)
            .is_ok(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KeyKind;

    #[test]
    fn sign_then_verify_and_reject_changes() {
        let key = KeyKind::Rsa2048.generate().unwrap();
        let signer = IkeRsaSigner::from_pkcs8_der(&key.serialize_der()).unwrap();
        assert_eq!(signer.signature_len(), 256);
        let hash = [0x5au8; 20];
        let sig = signer.sign(&hash).unwrap();
        assert_eq!(sig.len(), 256);
        // Deterministic.
        assert_eq!(sig, signer.sign(&hash).unwrap());
        let public = signer.public_key();
        assert!(verify_ike_rsa(&public, &hash, &sig));
        let mut other = hash;
        other[0] ^= 1;
        assert!(!verify_ike_rsa(&public, &other, &sig));
        let mut bad = sig.clone();
        bad[100] ^= 0x80;
        assert!(!verify_ike_rsa(&public, &hash, &bad));
        assert!(!verify_ike_rsa(&public, &hash, &sig[1..]));
        // Too long for the padding.
        assert!(signer.sign(&[0u8; 250]).is_err());
        // Not RSA.
        let ec = KeyKind::EcdsaP256.generate().unwrap();
        assert!(IkeRsaSigner::from_pkcs8_der(&ec.serialize_der()).is_err());
        assert!(!verify_ike_rsa(
            &PublicKey::Other {
                algorithm: "1.2.3".into()
            },
            &hash,
            &sig
        ));
    }
}

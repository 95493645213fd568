//! Signature checks on certificates and CRLs (RSA PKCS#1 v1.5 with the rsa crate, ECDSA with
//! p256/p384), and the public keys of peer certificates.

use const_oid::db::rfc5912;
use der::asn1::ObjectIdentifier;
use der::{Decode, Encode};
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::{Pkcs1v15Sign, RsaPublicKey};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384, Sha512};
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::spki::AlgorithmIdentifierOwned;

/// Why a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SigError {
    /// The algorithm (or the pairing of algorithm and key) is not one this crate checks.
    Unsupported(String),
    /// The signature is wrong for the message and key.
    Bad,
}

/// A peer's public key, as found in its certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PublicKey {
    /// An RSA key: modulus and public exponent, big-endian without leading zero bytes.
    Rsa {
        /// The modulus `n`.
        n: Vec<u8>,
        /// The public exponent `e`.
        e: Vec<u8>,
    },
    /// An ECDSA key on P-256: the SEC1 encoded point.
    EcP256 {
        /// The uncompressed (or compressed) point.
        point: Vec<u8>,
    },
    /// An ECDSA key on P-384: the SEC1 encoded point.
    EcP384 {
        /// The uncompressed (or compressed) point.
        point: Vec<u8>,
    },
    /// Another algorithm (Ed25519, DSA, an unsupported curve...): its algorithm OID in dotted
    /// form. Such a key can be reported but not used for signatures here.
    Other {
        /// The algorithm OID, dotted.
        algorithm: String,
    },
}

impl PublicKey {
    /// The key of a SubjectPublicKeyInfo in DER.
    pub fn from_spki_der(spki_der: &[u8]) -> Result<Self, der::Error> {
        let spki = SubjectPublicKeyInfoOwned::from_der(spki_der)?;
        Ok(Self::from_spki(&spki))
    }

    pub(crate) fn from_spki(spki: &SubjectPublicKeyInfoOwned) -> Self {
        let bits = spki.subject_public_key.raw_bytes();
        let oid = spki.algorithm.oid;
        if oid == rfc5912::RSA_ENCRYPTION {
            if let Ok(key) = pkcs1::RsaPublicKeyRef::from_der(bits) {
                return Self::Rsa {
                    n: key.modulus.as_bytes().to_vec(),
                    e: key.public_exponent.as_bytes().to_vec(),
                };
            }
        } else if oid == rfc5912::ID_EC_PUBLIC_KEY {
            match ec_curve(&spki.algorithm) {
                Some(rfc5912::SECP_256_R_1) => {
                    return Self::EcP256 {
                        point: bits.to_vec(),
                    };
                }
                Some(rfc5912::SECP_384_R_1) => {
                    return Self::EcP384 {
                        point: bits.to_vec(),
                    };
                }
                _ => {}
            }
        }
        Self::Other {
            algorithm: oid.to_string(),
        }
    }

    /// The RSA key, if this is one the rsa crate accepts (1024 to 8192 bits).
    pub(crate) fn to_rsa(&self) -> Option<RsaPublicKey> {
        let Self::Rsa { n, e } = self else {
            return None;
        };
        let key = pkcs1::RsaPublicKeyRef {
            modulus: der::asn1::UintRef::new(n).ok()?,
            public_exponent: der::asn1::UintRef::new(e).ok()?,
        };
        RsaPublicKey::from_pkcs1_der(&key.to_der().ok()?).ok()
    }
}

/// The named curve of an id-ecPublicKey AlgorithmIdentifier.
fn ec_curve(alg: &AlgorithmIdentifierOwned) -> Option<ObjectIdentifier> {
    alg.parameters
        .as_ref()?
        .decode_as::<ObjectIdentifier>()
        .ok()
}

/// Whether RSA signature parameters are as RFC 4055 requires: absent or NULL.
fn null_or_absent(alg: &AlgorithmIdentifierOwned) -> bool {
    match &alg.parameters {
        None => true,
        Some(p) => p.is_null(),
    }
}

/// Checks `signature` over `message` by the key `spki` with the signature algorithm `alg`:
/// sha1/sha256/sha384/sha512WithRSAEncryption and ecdsa-with-SHA256/SHA384 on P-256/P-384.
pub(crate) fn verify_signed(
    spki: &SubjectPublicKeyInfoOwned,
    alg: &AlgorithmIdentifierOwned,
    message: &[u8],
    signature: &[u8],
) -> Result<(), SigError> {
    let unsupported = || {
        SigError::Unsupported(format!(
            "signature algorithm {} with key algorithm {}",
            alg.oid, spki.algorithm.oid
        ))
    };
    let key = PublicKey::from_spki(spki);
    let rsa_scheme = match alg.oid {
        rfc5912::SHA_1_WITH_RSA_ENCRYPTION => {
            Some((Pkcs1v15Sign::new::<Sha1>(), Sha1::digest(message).to_vec()))
        }
        rfc5912::SHA_256_WITH_RSA_ENCRYPTION => Some((
            Pkcs1v15Sign::new::<Sha256>(),
            Sha256::digest(message).to_vec(),
        )),
        rfc5912::SHA_384_WITH_RSA_ENCRYPTION => Some((
            Pkcs1v15Sign::new::<Sha384>(),
            Sha384::digest(message).to_vec(),
        )),
        rfc5912::SHA_512_WITH_RSA_ENCRYPTION => Some((
            Pkcs1v15Sign::new::<Sha512>(),
            Sha512::digest(message).to_vec(),
        )),
        _ => None,
    };
    if let Some((scheme, digest)) = rsa_scheme {
        if !null_or_absent(alg) {
            return Err(unsupported());
        }
        let rsa = key.to_rsa().ok_or_else(unsupported)?;
        return rsa
            .verify(scheme, &digest, signature)
            .map_err(|_| SigError::Bad);
    }
    let digest = match alg.oid {
        rfc5912::ECDSA_WITH_SHA_256 => Sha256::digest(message).to_vec(),
        rfc5912::ECDSA_WITH_SHA_384 => Sha384::digest(message).to_vec(),
        // Ed25519, RSA-PSS and the rest are not used by IKEv1 peers.
        _ => return Err(unsupported()),
    };
    if alg.parameters.is_some() {
        return Err(unsupported());
    }
    match &key {
        PublicKey::EcP256 { point } => {
            let vk =
                p256::ecdsa::VerifyingKey::from_sec1_bytes(point).map_err(|_| SigError::Bad)?;
            let sig = p256::ecdsa::Signature::from_der(signature).map_err(|_| SigError::Bad)?;
            vk.verify_prehash(&digest, &sig).map_err(|_| SigError::Bad)
        }
        PublicKey::EcP384 { point } => {
            let vk =
                p384::ecdsa::VerifyingKey::from_sec1_bytes(point).map_err(|_| SigError::Bad)?;
            let sig = p384::ecdsa::Signature::from_der(signature).map_err(|_| SigError::Bad)?;
            vk.verify_prehash(&digest, &sig).map_err(|_| SigError::Bad)
        }
        _ => Err(unsupported()),
    }
}

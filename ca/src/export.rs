//! PKCS#12 exports of an issued certificate with its key and the CA certificate, and the
//! one-time passwords that protect them.
//!
//! Two formats, written by the `p12-keystore` crate (on RustCrypto's pkcs12/pkcs5/des/aes):
//!
//! * [`P12Format::Legacy`]: key and certificate bags encrypted with
//!   pbeWithSHAAnd3-KeyTripleDES-CBC, SHA-1 MAC. macOS/iOS reject PKCS#12 files made with
//!   OpenSSL 3's defaults ("wrong password"), and Windows 7/8 read only this scheme
//!   (`shared/clients/CLIENTS.md` §1.6, §2.6). It is the choice for Apple devices and Windows.
//! * [`P12Format::Aes256`]: PBES2 with PBKDF2-HMAC-SHA256 and AES-256-CBC, HMAC-SHA256 MAC, as
//!   OpenSSL 3 writes by default; for strongSwan, current Windows and Linux.

use sha1::{Digest, Sha1};

use crate::CaError;
use crate::keys::PrivateKeyDer;

/// The PBKDF / PKCS#12 KDF iteration count for both encryption and MAC (OpenSSL's default).
pub const P12_ITERATIONS: u32 = 2048;

/// The encryption and MAC scheme of a PKCS#12 file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum P12Format {
    /// PBE-SHA1-3DES for key and certificates, SHA-1 MAC: Apple devices, older Windows.
    #[default]
    Legacy,
    /// PBES2/PBKDF2-HMAC-SHA256/AES-256-CBC, HMAC-SHA256 MAC.
    Aes256,
}

/// A PKCS#12 file holding `cert_der` with its private key `key` (PKCS#8), then the CA
/// certificates `ca_chain` (issuer first, root last), protected by `password`.
///
/// `friendly_name` names the key entry (what a keychain shows). The localKeyID is the SHA-1
/// of the certificate, as OpenSSL sets it. An empty password is refused: iOS and macOS
/// cannot import such a file.
pub fn export_p12(
    cert_der: &[u8],
    key: &PrivateKeyDer,
    ca_chain: &[&[u8]],
    password: &str,
    format: P12Format,
    friendly_name: &str,
) -> Result<Vec<u8>, CaError> {
    if password.is_empty() {
        return Err(CaError::InvalidParams(
            "a PKCS#12 password must not be empty (iOS and macOS cannot import it)".into(),
        ));
    }
    let p12 = |e: p12_keystore::error::Error| CaError::Pkcs12(e.to_string());
    let mut certs = vec![p12_keystore::Certificate::from_der(cert_der).map_err(p12)?];
    for ca in ca_chain {
        certs.push(p12_keystore::Certificate::from_der(ca).map_err(p12)?);
    }
    let private_key = p12_keystore::PrivateKey::from_der(key.as_bytes()).map_err(p12)?;
    let local_key_id = Sha1::digest(cert_der).to_vec();
    let chain = p12_keystore::PrivateKeyChain::new(local_key_id, private_key, certs);
    let mut store = p12_keystore::KeyStore::new();
    let alias = if friendly_name.is_empty() {
        "key"
    } else {
        friendly_name
    };
    store.add_entry(alias, p12_keystore::KeyStoreEntry::PrivateKeyChain(chain));
    let (encryption, mac) = match format {
        P12Format::Legacy => (
            p12_keystore::EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc,
            p12_keystore::MacAlgorithm::HmacSha1,
        ),
        P12Format::Aes256 => (
            p12_keystore::EncryptionAlgorithm::PbeWithHmacSha256AndAes256,
            p12_keystore::MacAlgorithm::HmacSha256,
        ),
    };
    store
        .writer(password)
        .encryption_algorithm(encryption)
        .encryption_iterations(P12_ITERATIONS)
        .mac_algorithm(mac)
        .mac_iterations(P12_ITERATIONS)
        .write()
        .map_err(p12)
}

/// The symbols of one-time passwords: digits and capital letters without 0, 1, I and O,
/// which are easily mistaken for one another. 32 symbols, so each carries 5 bits.
const OTP_ALPHABET: &[u8; 32] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";

/// A random password that a person can type on a phone: four groups of four symbols from
/// an unambiguous alphabet (`7KQ2-M9XD-...`), 80 bits from the OS random source.
pub fn one_time_password() -> Result<String, CaError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    let mut out = String::with_capacity(19);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        // 32 divides 256: the low five bits are uniform.
        out.push(char::from(OTP_ALPHABET[usize::from(b & 0x1f)]));
    }
    bytes.fill(0);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_time_passwords_have_the_promised_shape() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let p = one_time_password().unwrap();
            assert_eq!(p.len(), 19);
            let groups: Vec<&str> = p.split('-').collect();
            assert_eq!(groups.len(), 4);
            for g in groups {
                assert_eq!(g.len(), 4);
                assert!(g.bytes().all(|b| OTP_ALPHABET.contains(&b)));
            }
            assert!(seen.insert(p));
        }
    }

    #[test]
    fn alphabet_has_no_ambiguous_symbols() {
        for b in b"01IO" {
            assert!(!OTP_ALPHABET.contains(b));
        }
        let mut sorted = OTP_ALPHABET.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 32);
    }
}

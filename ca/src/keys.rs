//! Key kinds, key generation, the private-key container and the PEM helpers.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use der::pem::{self, LineEnding};
use pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rcgen::{KeyPair, RsaKeySize};
use rsa::pkcs1::DecodeRsaPrivateKey;
use zeroize::Zeroizing;

use crate::CaError;

/// The PEM label of a certificate.
pub(crate) const CERT_LABEL: &str = "CERTIFICATE";
/// The PEM label of a PKCS#8 private key.
const PKCS8_LABEL: &str = "PRIVATE KEY";
/// The PEM label of a PKCS#1 RSA private key.
const PKCS1_LABEL: &str = "RSA PRIVATE KEY";
/// The largest key or certificate file read (a PEM key of RSA 8192 is about 6.5 KiB).
const MAX_PEM_FILE: u64 = 1 << 20;

/// The kind of key pair generated for the CA or for an issued certificate.
///
/// RSA 2048 is the default: Apple's and Android's racoon and the Windows IKEv1 client sign
/// with RSA only (`shared/clients/CLIENTS.md` §1.6, §2.6). ECDSA P-256 suits strongSwan and
/// other peers that support RFC 4754 in IKEv1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KeyKind {
    /// RSA with a 2048-bit modulus, signing with SHA-256.
    #[default]
    Rsa2048,
    /// RSA with a 3072-bit modulus, signing with SHA-256.
    Rsa3072,
    /// ECDSA on P-256, signing with SHA-256.
    EcdsaP256,
}

impl KeyKind {
    /// The name used in the database and in configuration: `rsa2048`, `rsa3072`, `ecdsa-p256`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rsa2048 => "rsa2048",
            Self::Rsa3072 => "rsa3072",
            Self::EcdsaP256 => "ecdsa-p256",
        }
    }

    /// Whether the key is RSA (and so can do keyEncipherment and IKEv1 RSA signatures).
    pub fn is_rsa(self) -> bool {
        matches!(self, Self::Rsa2048 | Self::Rsa3072)
    }

    /// A fresh random key pair of this kind (through aws-lc-rs).
    pub(crate) fn generate(self) -> Result<KeyPair, CaError> {
        let generated = match self {
            Self::Rsa2048 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048),
            Self::Rsa3072 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_3072),
            Self::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        };
        generated.map_err(|e| CaError::Key(format!("generating a {} key: {e}", self.as_str())))
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyKind {
    type Err = CaError;

    fn from_str(s: &str) -> Result<Self, CaError> {
        match s.to_ascii_lowercase().as_str() {
            "rsa2048" | "rsa-2048" | "rsa" => Ok(Self::Rsa2048),
            "rsa3072" | "rsa-3072" => Ok(Self::Rsa3072),
            "ecdsa-p256" | "ecdsa" | "p256" | "p-256" => Ok(Self::EcdsaP256),
            _ => Err(CaError::InvalidParams(format!(
                "unknown key kind {s:?} (rsa2048, rsa3072 or ecdsa-p256)"
            ))),
        }
    }
}

/// A private key as PKCS#8 DER. The bytes are wiped when it is dropped, and `Debug` does not
/// show them.
#[derive(Clone, PartialEq, Eq)]
pub struct PrivateKeyDer(Zeroizing<Vec<u8>>);

impl PrivateKeyDer {
    /// Takes PKCS#8 DER, checking that it is a well-formed PKCS#8 structure.
    pub fn from_pkcs8_der(der: Vec<u8>) -> Result<Self, CaError> {
        let der = Zeroizing::new(der);
        pkcs8::PrivateKeyInfoRef::try_from(der.as_slice())
            .map_err(|e| CaError::Key(format!("not a PKCS#8 private key: {e}")))?;
        Ok(Self(der))
    }

    /// The PKCS#8 DER bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The key as a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), wiped when dropped.
    pub fn to_pem(&self) -> Result<Zeroizing<String>, CaError> {
        let pem = pem::encode_string(PKCS8_LABEL, LineEnding::LF, &self.0)
            .map_err(|e| CaError::Encoding(e.to_string()))?;
        Ok(Zeroizing::new(pem))
    }
}

impl fmt::Debug for PrivateKeyDer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKeyDer({} bytes, redacted)", self.0.len())
    }
}

/// Reads a private key file: PKCS#8 (`PRIVATE KEY`) or PKCS#1 RSA (`RSA PRIVATE KEY`) PEM, the
/// first such block in the file (text around it, such as OpenSSL's "Bag Attributes", is
/// skipped). Encrypted keys are refused. The key comes back as PKCS#8 DER.
pub fn load_private_key_pem(path: &Path) -> Result<PrivateKeyDer, CaError> {
    let text = read_text_file(path)?;
    parse_private_key_pem(&text).map_err(|e| match e {
        CaError::Key(why) => CaError::Key(format!("{}: {why}", path.display())),
        other => other,
    })
}

/// Parses PEM text holding a PKCS#8 or PKCS#1 RSA private key, like [`load_private_key_pem`].
pub fn parse_private_key_pem(text: &str) -> Result<PrivateKeyDer, CaError> {
    for block in pem_blocks(text) {
        let label = pem::decode_label(block.as_bytes())
            .map_err(|e| CaError::Key(format!("bad PEM: {e}")))?;
        match label {
            PKCS8_LABEL | PKCS1_LABEL => {}
            "ENCRYPTED PRIVATE KEY" => {
                return Err(CaError::Key(
                    "encrypted private keys are not supported".into(),
                ));
            }
            l if l.contains("PRIVATE KEY") => {
                return Err(CaError::Key(format!("unsupported key type {l:?}")));
            }
            _ => continue,
        }
        let (_, der) =
            pem::decode_vec(block.as_bytes()).map_err(|e| CaError::Key(format!("bad PEM: {e}")))?;
        let der = Zeroizing::new(der);
        if label == PKCS8_LABEL {
            return PrivateKeyDer::from_pkcs8_der(der.to_vec());
        }
        let key = rsa::RsaPrivateKey::from_pkcs1_der(&der)
            .map_err(|e| CaError::Key(format!("bad PKCS#1 RSA key: {e}")))?;
        let pkcs8 = key
            .to_pkcs8_der()
            .map_err(|e| CaError::Key(format!("converting to PKCS#8: {e}")))?;
        return PrivateKeyDer::from_pkcs8_der(pkcs8.as_bytes().to_vec());
    }
    Err(CaError::Key(
        "no PRIVATE KEY or RSA PRIVATE KEY block".into(),
    ))
}

/// The RSA key inside PKCS#8 DER.
pub(crate) fn rsa_from_pkcs8(der: &[u8]) -> Result<rsa::RsaPrivateKey, CaError> {
    rsa::RsaPrivateKey::from_pkcs8_der(der)
        .map_err(|e| CaError::Key(format!("not an RSA PKCS#8 key: {e}")))
}

/// A certificate as PEM (`-----BEGIN CERTIFICATE-----`, LF line ends).
pub fn cert_to_pem(cert_der: &[u8]) -> Result<String, CaError> {
    pem::encode_string(CERT_LABEL, LineEnding::LF, cert_der)
        .map_err(|e| CaError::Encoding(e.to_string()))
}

/// Every `CERTIFICATE` block of PEM text, as DER, in file order (other blocks are skipped).
pub fn certs_from_pem(text: &str) -> Result<Vec<Vec<u8>>, CaError> {
    let mut out = Vec::new();
    for block in pem_blocks(text) {
        let label = pem::decode_label(block.as_bytes())
            .map_err(|e| CaError::Encoding(format!("bad PEM: {e}")))?;
        if label != CERT_LABEL {
            continue;
        }
        let (_, der) = pem::decode_vec(block.as_bytes())
            .map_err(|e| CaError::Encoding(format!("bad PEM certificate: {e}")))?;
        out.push(der);
    }
    Ok(out)
}

/// Reads a certificate file: PEM (every `CERTIFICATE` block) or a single DER certificate.
pub fn load_certs(path: &Path) -> Result<Vec<Vec<u8>>, CaError> {
    let bytes = read_small_file(path)?;
    match std::str::from_utf8(&bytes) {
        Ok(text) if text.contains("-----BEGIN") => certs_from_pem(text),
        _ => Ok(vec![bytes]),
    }
}

/// Reads a file of at most [`MAX_PEM_FILE`] bytes as text, wiped when dropped.
pub(crate) fn read_text_file(path: &Path) -> Result<Zeroizing<String>, CaError> {
    let bytes = Zeroizing::new(read_small_file(path)?);
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| CaError::Encoding(format!("{} is not UTF-8 text", path.display())))?;
    Ok(Zeroizing::new(text.to_owned()))
}

/// Reads a file of at most [`MAX_PEM_FILE`] bytes.
pub(crate) fn read_small_file(path: &Path) -> Result<Vec<u8>, CaError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(CaError::io(path))?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(CaError::io(path))?;
    if bytes.len() as u64 > MAX_PEM_FILE {
        return Err(CaError::Encoding(format!(
            "{} is larger than {MAX_PEM_FILE} bytes",
            path.display()
        )));
    }
    Ok(bytes)
}

/// The PEM blocks of a text, each from its `-----BEGIN` line to the end of its `-----END` line
/// (text between blocks is ignored; a block without an end is dropped).
fn pem_blocks(text: &str) -> Vec<&str> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let from_begin = &rest[start..];
        let Some(end_marker) = from_begin.find("-----END ") else {
            break;
        };
        let after_end = &from_begin[end_marker..];
        let line_len = after_end.find('\n').map_or(after_end.len(), |i| i + 1);
        let block_len = end_marker + line_len;
        blocks.push(&from_begin[..block_len]);
        rest = &from_begin[block_len..];
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_kind_names_round_trip() {
        for kind in [KeyKind::Rsa2048, KeyKind::Rsa3072, KeyKind::EcdsaP256] {
            assert_eq!(kind.as_str().parse::<KeyKind>().unwrap(), kind);
        }
        assert!("dsa".parse::<KeyKind>().is_err());
    }

    #[test]
    fn pem_blocks_skip_text_between_blocks() {
        let text = "Bag Attributes\n-----BEGIN A-----\nAAAA\n-----END A-----\njunk\n-----BEGIN B-----\nBBBB\n-----END B-----";
        let blocks = pem_blocks(text);
        assert_eq!(blocks.len(), 2);
        assert!(blocks[0].starts_with("-----BEGIN A") && blocks[0].ends_with("-----END A-----\n"));
        assert!(blocks[1].ends_with("-----END B-----"));
        assert!(pem_blocks("-----BEGIN A-----\nno end").is_empty());
    }

    #[test]
    fn private_key_debug_is_redacted() {
        let key = KeyKind::EcdsaP256.generate().unwrap();
        let der = PrivateKeyDer::from_pkcs8_der(key.serialize_der()).unwrap();
        let shown = format!("{der:?}");
        assert!(shown.contains("redacted"));
        assert!(!shown.contains(&format!("{:?}", &der.as_bytes()[..8])));
    }

    #[test]
    fn pkcs1_and_pkcs8_pem_give_the_same_key() {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        let key = KeyKind::Rsa2048.generate().unwrap();
        let pkcs8 = PrivateKeyDer::from_pkcs8_der(key.serialize_der()).unwrap();
        let rsa = rsa_from_pkcs8(pkcs8.as_bytes()).unwrap();
        let pkcs1_pem = rsa.to_pkcs1_pem(LineEnding::LF).unwrap();
        let from_pkcs1 = parse_private_key_pem(&format!("header\n{}", *pkcs1_pem)).unwrap();
        let from_pkcs8 = parse_private_key_pem(&pkcs8.to_pem().unwrap()).unwrap();
        assert_eq!(
            rsa_from_pkcs8(from_pkcs1.as_bytes()).unwrap(),
            rsa_from_pkcs8(from_pkcs8.as_bytes()).unwrap()
        );
        assert!(
            parse_private_key_pem(
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAA==\n-----END ENCRYPTED PRIVATE KEY-----\n"
            )
            .is_err()
        );
        assert!(parse_private_key_pem("nothing here").is_err());
    }
}

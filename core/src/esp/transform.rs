//! ESP transforms: the cipher and integrity algorithms an SA can use, their sizes, and the keyed
//! state that runs them.
//!
//! | name | RFC | key (KEYMAT bytes) | IV | block / alignment | ICV |
//! | --- | --- | --- | --- | --- | --- |
//! | AES-CBC | 3602 | 16, 24, 32 | 16 | 16 | from the integrity algorithm |
//! | 3DES-CBC | 2451 | 24 | 8 | 8 | from the integrity algorithm |
//! | AES-GCM-16 | 4106 | 16, 24, 32 (+ 4 salt) | 8 | 4 | 16 (GCM tag) |
//! | NULL | 2410 | 0 | 0 | 4 | from the integrity algorithm |
//!
//! | integrity | RFC | key | ICV |
//! | --- | --- | --- | --- |
//! | HMAC-SHA1-96 | 2404 | 20 | 12 |
//! | HMAC-SHA-256-128 | 4868 | 32 | 16 |
//! | HMAC-SHA-256-96 | (draft-ietf-ipsec-ciph-sha-256-00; Android 6/7, old Linux) | 32 | 12 |
//! | HMAC-SHA-384-192 | 4868 | 48 | 24 |
//! | HMAC-SHA-512-256 | 4868 | 64 | 32 |
//!
//! AES (CBC and GCM) and HMAC run on aws-lc-rs (AES-NI / PCLMULQDQ / SHA extensions where the
//! CPU has them); 3DES runs on RustCrypto `des` + `cbc`, since aws-lc-rs only offers DES behind
//! a feature this crate does not enable. Nothing here is a hand-written primitive.

use aws_lc_rs::{aead, cipher, hmac};
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, InnerIvInit, KeyInit, inout::InOutBuf};
use zeroize::Zeroize;

use super::EspError;

/// Length of the GCM tag (ICV) of the `AES-GCM-16` transforms (RFC 4106 §6: 16 octets).
pub const GCM_ICV_LEN: usize = 16;
/// Length of the salt that ends the GCM KEYMAT (RFC 4106 §8.1).
pub const GCM_SALT_LEN: usize = 4;
/// The largest IV of any supported transform.
pub const MAX_IV_LEN: usize = 16;

/// The confidentiality part of an ESP transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encryption {
    /// AES-CBC, RFC 3602 (IKEv1 ESP transform ID 12). `key_len` is 16, 24 or 32.
    AesCbc {
        /// Key length in bytes: 16, 24 or 32.
        key_len: usize,
    },
    /// 3DES-EDE-CBC, RFC 2451 (transform ID 3); 24-byte key.
    TripleDesCbc,
    /// AES-GCM with a 16-octet ICV, RFC 4106 (transform ID 20). `key_len` is 16, 24 or 32; the
    /// KEYMAT holds 4 more bytes of salt.
    AesGcm16 {
        /// AES key length in bytes (without the salt): 16, 24 or 32.
        key_len: usize,
    },
    /// No encryption, RFC 2410 (transform ID 11); needs an integrity algorithm.
    Null,
}

impl Encryption {
    /// Length of the cipher key in bytes (for GCM without the salt).
    pub fn key_len(&self) -> usize {
        match *self {
            Encryption::AesCbc { key_len } | Encryption::AesGcm16 { key_len } => key_len,
            Encryption::TripleDesCbc => 24,
            Encryption::Null => 0,
        }
    }

    /// KEYMAT bytes this cipher takes: the key, and for GCM the 4-byte salt after it.
    pub fn keymat_len(&self) -> usize {
        match self {
            Encryption::AesGcm16 { .. } => self.key_len() + GCM_SALT_LEN,
            _ => self.key_len(),
        }
    }

    /// Length of the explicit IV carried in every packet.
    pub fn iv_len(&self) -> usize {
        match self {
            Encryption::AesCbc { .. } => 16,
            Encryption::TripleDesCbc | Encryption::AesGcm16 { .. } => 8,
            Encryption::Null => 0,
        }
    }

    /// What payload + padding + the 2 trailer bytes are padded to a multiple of: the cipher
    /// block for CBC, ESP's 4-byte alignment (RFC 4303 §2.4) for GCM and NULL.
    pub fn block_len(&self) -> usize {
        match self {
            Encryption::AesCbc { .. } => 16,
            Encryption::TripleDesCbc => 8,
            Encryption::AesGcm16 { .. } | Encryption::Null => 4,
        }
    }

    /// ICV produced by the cipher itself (combined-mode algorithms only).
    pub fn aead_icv_len(&self) -> usize {
        match self {
            Encryption::AesGcm16 { .. } => GCM_ICV_LEN,
            _ => 0,
        }
    }

    /// Whether this is a combined-mode (AEAD) algorithm that needs no separate integrity.
    pub fn is_aead(&self) -> bool {
        matches!(self, Encryption::AesGcm16 { .. })
    }

    fn check(&self) -> Result<(), EspError> {
        match *self {
            Encryption::AesCbc { key_len } | Encryption::AesGcm16 { key_len }
                if !matches!(key_len, 16 | 24 | 32) =>
            {
                Err(EspError::BadSuite)
            }
            _ => Ok(()),
        }
    }
}

/// The integrity part of an ESP transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Integrity {
    /// No separate integrity algorithm: only valid with a combined-mode cipher (GCM).
    None,
    /// HMAC-SHA1-96, RFC 2404 (auth algorithm 2).
    HmacSha1_96,
    /// HMAC-SHA-256-128, RFC 4868 (auth algorithm 5).
    HmacSha256_128,
    /// HMAC-SHA-256 truncated to 96 bits, as sent by Android 6/7 and old Linux kernels (the
    /// pre-RFC 4868 draft). Interoperates only with peers that have the same bug; pick it per SA.
    HmacSha256_96,
    /// HMAC-SHA-384-192, RFC 4868 (auth algorithm 6).
    HmacSha384_192,
    /// HMAC-SHA-512-256, RFC 4868 (auth algorithm 7).
    HmacSha512_256,
}

impl Integrity {
    /// Length of the HMAC key in bytes (the hash output length, RFC 2404 §3 / RFC 4868 §2.1.1).
    pub fn key_len(&self) -> usize {
        match self {
            Integrity::None => 0,
            Integrity::HmacSha1_96 => 20,
            Integrity::HmacSha256_128 | Integrity::HmacSha256_96 => 32,
            Integrity::HmacSha384_192 => 48,
            Integrity::HmacSha512_256 => 64,
        }
    }

    /// Length of the (truncated) ICV in bytes.
    pub fn icv_len(&self) -> usize {
        match self {
            Integrity::None => 0,
            Integrity::HmacSha1_96 | Integrity::HmacSha256_96 => 12,
            Integrity::HmacSha256_128 => 16,
            Integrity::HmacSha384_192 => 24,
            Integrity::HmacSha512_256 => 32,
        }
    }

    fn algorithm(&self) -> Option<hmac::Algorithm> {
        match self {
            Integrity::None => None,
            Integrity::HmacSha1_96 => Some(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY),
            Integrity::HmacSha256_128 | Integrity::HmacSha256_96 => Some(hmac::HMAC_SHA256),
            Integrity::HmacSha384_192 => Some(hmac::HMAC_SHA384),
            Integrity::HmacSha512_256 => Some(hmac::HMAC_SHA512),
        }
    }
}

/// A negotiated ESP transform: cipher plus integrity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Suite {
    /// Confidentiality algorithm.
    pub encryption: Encryption,
    /// Integrity algorithm; [`Integrity::None`] exactly when `encryption` is GCM.
    pub integrity: Integrity,
}

impl Suite {
    /// KEYMAT bytes an SA of this suite takes: the encryption key (+ GCM salt) first, then the
    /// integrity key, the order in which RFC 2409 §5.5 KEYMAT is consumed.
    pub fn keymat_len(&self) -> usize {
        self.encryption.keymat_len() + self.integrity.key_len()
    }

    /// Bytes before the payload: SPI (4) + sequence number (4) + IV.
    pub fn header_len(&self) -> usize {
        8 + self.encryption.iv_len()
    }

    /// Length of the ICV at the end of every packet.
    pub fn icv_len(&self) -> usize {
        self.encryption.aead_icv_len() + self.integrity.icv_len()
    }

    /// The most bytes [`OutboundSa::encrypt`](super::OutboundSa::encrypt) appends after the
    /// payload: padding (at most `block_len - 1`, as padding is always minimal) + pad length +
    /// next header + ICV.
    pub fn max_trailer_len(&self) -> usize {
        self.encryption.block_len() - 1 + 2 + self.icv_len()
    }

    /// Bytes a packet of this suite adds around a payload of `payload_len` bytes.
    pub fn overhead(&self, payload_len: usize) -> usize {
        let block = self.encryption.block_len();
        let pad = (block - (payload_len + 2) % block) % block;
        self.header_len() + pad + 2 + self.icv_len()
    }

    /// The shortest packet that can be valid: header, one block (or 4 bytes) of ciphertext
    /// holding at least the two trailer bytes, ICV.
    pub fn min_packet_len(&self) -> usize {
        self.header_len() + self.encryption.block_len() + self.icv_len()
    }

    /// Checks that the combination is one this module runs: key lengths are 16/24/32, GCM goes
    /// without separate integrity (RFC 4106 §7 leaves none to negotiate), every other cipher
    /// with one (NULL + none would protect nothing; CBC without integrity is open to active
    /// attacks, RFC 4303 §3.2).
    pub fn check(&self) -> Result<(), EspError> {
        self.encryption.check()?;
        match (self.encryption.is_aead(), self.integrity) {
            (true, Integrity::None) => Ok(()),
            (false, i) if i != Integrity::None => Ok(()),
            _ => Err(EspError::BadSuite),
        }
    }
}

/// Which way an SA's cipher state runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Out,
    In,
}

/// GCM salt: the last 4 KEYMAT bytes, the implicit part of every nonce (RFC 4106 §4).
pub(crate) struct Salt([u8; GCM_SALT_LEN]);

impl Drop for Salt {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Keyed cipher state for one direction. The aws-lc-rs keys wipe their key schedules when
/// dropped; `des::TdesEde3` does with the `zeroize` feature, which this crate enables.
pub(crate) enum CipherState {
    AesCbcEnc(cipher::EncryptingKey),
    AesCbcDec(cipher::DecryptingKey),
    Tdes(des::TdesEde3),
    AesGcm { key: aead::LessSafeKey, salt: Salt },
    Null,
}

impl core::fmt::Debug for CipherState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never the key: only which cipher it is.
        f.write_str(match self {
            CipherState::AesCbcEnc(_) => "AesCbcEnc",
            CipherState::AesCbcDec(_) => "AesCbcDec",
            CipherState::Tdes(_) => "Tdes",
            CipherState::AesGcm { .. } => "AesGcm",
            CipherState::Null => "Null",
        })
    }
}

impl CipherState {
    pub(crate) fn new(enc: Encryption, key: &[u8], dir: Direction) -> Result<Self, EspError> {
        if key.len() != enc.keymat_len() {
            return Err(EspError::BadKey);
        }
        Ok(match enc {
            Encryption::AesCbc { key_len } => {
                let alg = match key_len {
                    16 => &cipher::AES_128,
                    24 => &cipher::AES_192,
                    32 => &cipher::AES_256,
                    _ => return Err(EspError::BadSuite),
                };
                let unbound =
                    cipher::UnboundCipherKey::new(alg, key).map_err(|_| EspError::BadKey)?;
                match dir {
                    Direction::Out => CipherState::AesCbcEnc(
                        cipher::EncryptingKey::cbc(unbound).map_err(|_| EspError::BadKey)?,
                    ),
                    Direction::In => CipherState::AesCbcDec(
                        cipher::DecryptingKey::cbc(unbound).map_err(|_| EspError::BadKey)?,
                    ),
                }
            }
            Encryption::TripleDesCbc => {
                CipherState::Tdes(des::TdesEde3::new_from_slice(key).map_err(|_| EspError::BadKey)?)
            }
            Encryption::AesGcm16 { key_len } => {
                let alg = match key_len {
                    16 => &aead::AES_128_GCM,
                    24 => &aead::AES_192_GCM,
                    32 => &aead::AES_256_GCM,
                    _ => return Err(EspError::BadSuite),
                };
                let (aes_key, salt_bytes) =
                    key.split_at_checked(key_len).ok_or(EspError::BadKey)?;
                let salt: [u8; GCM_SALT_LEN] =
                    salt_bytes.try_into().map_err(|_| EspError::BadKey)?;
                let unbound = aead::UnboundKey::new(alg, aes_key).map_err(|_| EspError::BadKey)?;
                CipherState::AesGcm {
                    key: aead::LessSafeKey::new(unbound),
                    salt: Salt(salt),
                }
            }
            Encryption::Null => CipherState::Null,
        })
    }

    /// CBC-encrypts `data` (a whole number of blocks) in place under `iv`.
    pub(crate) fn cbc_encrypt(&self, iv: &[u8], data: &mut [u8]) -> Result<(), EspError> {
        match self {
            CipherState::AesCbcEnc(key) => {
                let iv: [u8; 16] = iv.try_into().map_err(|_| EspError::Crypto)?;
                let ctx = cipher::EncryptionContext::Iv128(iv.into());
                key.less_safe_encrypt(data, ctx)
                    .map(|_| ())
                    .map_err(|_| EspError::Crypto)
            }
            CipherState::Tdes(c) => {
                let mut mode = cbc::Encryptor::<des::TdesEde3>::inner_iv_slice_init(c.clone(), iv)
                    .map_err(|_| EspError::Crypto)?;
                let (blocks, tail) = InOutBuf::from(data).into_chunks();
                if !tail.is_empty() {
                    return Err(EspError::Crypto);
                }
                mode.encrypt_blocks_inout(blocks);
                Ok(())
            }
            _ => Err(EspError::Crypto),
        }
    }

    /// CBC-decrypts `data` (a whole number of blocks) in place under `iv`.
    pub(crate) fn cbc_decrypt(&self, iv: &[u8], data: &mut [u8]) -> Result<(), EspError> {
        match self {
            CipherState::AesCbcDec(key) => {
                let iv: [u8; 16] = iv.try_into().map_err(|_| EspError::Crypto)?;
                let ctx = cipher::DecryptionContext::Iv128(iv.into());
                key.decrypt(data, ctx)
                    .map(|_| ())
                    .map_err(|_| EspError::Crypto)
            }
            CipherState::Tdes(c) => {
                let mut mode = cbc::Decryptor::<des::TdesEde3>::inner_iv_slice_init(c.clone(), iv)
                    .map_err(|_| EspError::Crypto)?;
                let (blocks, tail) = InOutBuf::from(data).into_chunks();
                if !tail.is_empty() {
                    return Err(EspError::Crypto);
                }
                mode.decrypt_blocks_inout(blocks);
                Ok(())
            }
            _ => Err(EspError::Crypto),
        }
    }

    /// GCM-seals `data` in place; returns the 16-byte tag.
    pub(crate) fn gcm_seal(
        &self,
        iv: [u8; 8],
        aad: [u8; 8],
        data: &mut [u8],
    ) -> Result<aead::Tag, EspError> {
        let CipherState::AesGcm { key, salt } = self else {
            return Err(EspError::Crypto);
        };
        key.seal_in_place_separate_tag(gcm_nonce(salt, iv), aead::Aad::from(aad), data)
            .map_err(|_| EspError::Crypto)
    }

    /// GCM-opens `data_and_tag` in place. On failure the would-be plaintext is wiped, so no
    /// unauthenticated plaintext is ever left in the caller's buffer.
    pub(crate) fn gcm_open(
        &self,
        iv: [u8; 8],
        aad: [u8; 8],
        data_and_tag: &mut [u8],
    ) -> Result<(), EspError> {
        let CipherState::AesGcm { key, salt } = self else {
            return Err(EspError::Crypto);
        };
        match key.open_in_place(gcm_nonce(salt, iv), aead::Aad::from(aad), data_and_tag) {
            Ok(_) => Ok(()),
            Err(_) => {
                data_and_tag.fill(0);
                Err(EspError::AuthFailed)
            }
        }
    }
}

fn gcm_nonce(salt: &Salt, iv: [u8; 8]) -> aead::Nonce {
    let mut n = [0u8; aead::NONCE_LEN];
    n[..GCM_SALT_LEN].copy_from_slice(&salt.0);
    n[GCM_SALT_LEN..].copy_from_slice(&iv);
    aead::Nonce::assume_unique_for_key(n)
}

/// Keyed integrity state (HMAC); `None` for combined-mode suites. aws-lc-rs keeps the HMAC key
/// as precomputed inner/outer hash states and cleanses them on drop.
pub(crate) struct Auth {
    key: Option<hmac::Key>,
    icv_len: usize,
}

impl core::fmt::Debug for Auth {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Auth")
            .field("icv_len", &self.icv_len)
            .finish_non_exhaustive()
    }
}

impl Auth {
    pub(crate) fn new(integrity: Integrity, key: &[u8]) -> Result<Self, EspError> {
        if key.len() != integrity.key_len() {
            return Err(EspError::BadKey);
        }
        Ok(Auth {
            key: integrity.algorithm().map(|alg| hmac::Key::new(alg, key)),
            icv_len: integrity.icv_len(),
        })
    }

    /// Writes the truncated ICV of `data` into `icv` (exactly `icv_len` bytes).
    pub(crate) fn sign(&self, data: &[u8], icv: &mut [u8]) -> Result<(), EspError> {
        let Some(key) = &self.key else { return Ok(()) };
        let tag = hmac::sign(key, data);
        let full = tag.as_ref();
        let truncated = full.get(..self.icv_len).ok_or(EspError::Crypto)?;
        if icv.len() != truncated.len() {
            return Err(EspError::Crypto);
        }
        icv.copy_from_slice(truncated);
        Ok(())
    }

    /// Checks `icv` against the truncated HMAC of `data`, in constant time.
    pub(crate) fn verify(&self, data: &[u8], icv: &[u8]) -> Result<(), EspError> {
        let Some(key) = &self.key else { return Ok(()) };
        let tag = hmac::sign(key, data);
        let truncated = tag.as_ref().get(..self.icv_len).ok_or(EspError::Crypto)?;
        if bool::from(subtle::ConstantTimeEq::ct_eq(truncated, icv)) {
            Ok(())
        } else {
            Err(EspError::AuthFailed)
        }
    }
}

/// Runs an [`Integrity`] algorithm directly (the truncated ICV of `data` under `key`), e.g. to
/// check it against published test vectors. Returns the ICV length written into `out`.
pub fn compute_icv(
    integrity: Integrity,
    key: &[u8],
    data: &[u8],
    out: &mut [u8],
) -> Result<usize, EspError> {
    let auth = Auth::new(integrity, key)?;
    let n = integrity.icv_len();
    let out = out.get_mut(..n).ok_or(EspError::BufferTooSmall)?;
    auth.sign(data, out)?;
    Ok(n)
}

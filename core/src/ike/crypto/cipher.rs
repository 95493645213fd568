//! ISAKMP payload encryption: AES-CBC (RFC 3602) and 3DES-CBC, raw CBC without padding (the
//! ISAKMP layer pads with zeros itself, RFC 2409 Appendix B).

use aes::cipher::{Array, BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};

/// Errors from the symmetric layer. None of them can be caused by a well-formed message with
/// correctly derived keys, except `NotBlockAligned` for a truncated ciphertext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// Key of the wrong length for the cipher.
    #[error("cipher key has length {got}, expected {expected}")]
    KeyLength {
        /// Required length in bytes.
        expected: usize,
        /// Length given.
        got: usize,
    },
    /// IV of the wrong length for the cipher.
    #[error("IV has length {got}, expected {expected}")]
    IvLength {
        /// Required length (the block size).
        expected: usize,
        /// Length given.
        got: usize,
    },
    /// The data is not a whole number of blocks.
    #[error("data length {len} is not a multiple of the block size {block}")]
    NotBlockAligned {
        /// Length given.
        len: usize,
        /// Block size.
        block: usize,
    },
    /// A 3DES key whose DES subkeys are weak or semi-weak, or repeat (K1 = K2, K2 = K3 or
    /// K1 = K3), so that 3DES would degrade.
    #[error("weak 3DES key")]
    WeakKey,
}

/// ISAKMP encryption algorithm (attribute class 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CipherAlg {
    /// AES-CBC (value 7), with a key of 16, 24 or 32 bytes.
    AesCbc {
        /// Key length in bytes: 16, 24 or 32.
        key_len: usize,
    },
    /// 3DES-CBC (value 5), 24-byte key (three DES keys, parity bits ignored).
    TripleDesCbc,
}

/// IKE encryption algorithm value for 3DES-CBC.
pub const ENC_3DES_CBC: u16 = 5;
/// IKE encryption algorithm value for AES-CBC.
pub const ENC_AES_CBC: u16 = 7;

impl CipherAlg {
    /// Every variant supported, for tests and proposal lists.
    pub const ALL: [CipherAlg; 4] = [
        Self::AesCbc { key_len: 16 },
        Self::AesCbc { key_len: 24 },
        Self::AesCbc { key_len: 32 },
        Self::TripleDesCbc,
    ];

    /// Maps the Encryption Algorithm attribute and the optional Key Length attribute (bits).
    ///
    /// * AES-CBC (7) requires Key Length 128, 192 or 256: RFC 3602 §5.3 says the attribute
    ///   MUST be specified in Phase 1, and strongSwan refuses a proposal without it; so a
    ///   missing Key Length yields `None` (no silent default of 128).
    /// * 3DES-CBC (5) has a fixed key; RFC 2409 Appendix A says Key Length MUST NOT be used
    ///   with fixed-length ciphers, so a present attribute yields `None`.
    #[must_use]
    pub fn from_attrs(enc: u16, key_len_bits: Option<u16>) -> Option<Self> {
        match (enc, key_len_bits) {
            (ENC_AES_CBC, Some(bits @ (128 | 192 | 256))) => Some(Self::AesCbc {
                key_len: usize::from(bits / 8),
            }),
            (ENC_3DES_CBC, None) => Some(Self::TripleDesCbc),
            _ => None,
        }
    }

    /// The Encryption Algorithm attribute value.
    #[must_use]
    pub fn enc_attr(self) -> u16 {
        match self {
            Self::AesCbc { .. } => ENC_AES_CBC,
            Self::TripleDesCbc => ENC_3DES_CBC,
        }
    }

    /// The Key Length attribute value in bits, if one is sent.
    #[must_use]
    pub fn key_len_attr(self) -> Option<u16> {
        match self {
            Self::AesCbc { key_len } => u16::try_from(key_len * 8).ok(),
            Self::TripleDesCbc => None,
        }
    }

    /// Key length in bytes.
    #[must_use]
    pub fn key_len(self) -> usize {
        match self {
            Self::AesCbc { key_len } => key_len,
            Self::TripleDesCbc => 24,
        }
    }

    /// Block (and IV) length in bytes.
    #[must_use]
    pub fn block_len(self) -> usize {
        match self {
            Self::AesCbc { .. } => 16,
            Self::TripleDesCbc => 8,
        }
    }

    /// "AES-CBC-256", "3DES-CBC".
    #[must_use]
    pub fn name(self) -> String {
        match self {
            Self::AesCbc { key_len } => format!("AES-CBC-{}", key_len * 8),
            Self::TripleDesCbc => "3DES-CBC".to_owned(),
        }
    }

    fn check(self, key: &[u8], iv: &[u8], buf: &[u8]) -> Result<(), CryptoError> {
        if key.len() != self.key_len() {
            return Err(CryptoError::KeyLength {
                expected: self.key_len(),
                got: key.len(),
            });
        }
        if iv.len() != self.block_len() {
            return Err(CryptoError::IvLength {
                expected: self.block_len(),
                got: iv.len(),
            });
        }
        if !buf.len().is_multiple_of(self.block_len()) {
            return Err(CryptoError::NotBlockAligned {
                len: buf.len(),
                block: self.block_len(),
            });
        }
        if self == Self::TripleDesCbc && !tdes_key_ok(key) {
            return Err(CryptoError::WeakKey);
        }
        Ok(())
    }

    /// CBC-encrypts `buf` in place (no padding: `buf.len()` must be a multiple of the block).
    /// The last ciphertext block is the IV of the next message (RFC 2409 Appendix B).
    pub fn encrypt(self, key: &[u8], iv: &[u8], buf: &mut [u8]) -> Result<(), CryptoError> {
        self.check(key, iv, buf)?;
        match self {
            Self::AesCbc { key_len: 16 } => enc::<cbc::Encryptor<aes::Aes128>>(key, iv, buf),
            Self::AesCbc { key_len: 24 } => enc::<cbc::Encryptor<aes::Aes192>>(key, iv, buf),
            Self::AesCbc { key_len: 32 } => enc::<cbc::Encryptor<aes::Aes256>>(key, iv, buf),
            Self::AesCbc { key_len } => Err(CryptoError::KeyLength {
                expected: 16,
                got: key_len,
            }),
            Self::TripleDesCbc => enc::<cbc::Encryptor<des::TdesEde3>>(key, iv, buf),
        }
    }

    /// CBC-decrypts `buf` in place (no padding removal). Remember the last *ciphertext* block
    /// before calling this if it is needed as the next IV.
    pub fn decrypt(self, key: &[u8], iv: &[u8], buf: &mut [u8]) -> Result<(), CryptoError> {
        self.check(key, iv, buf)?;
        match self {
            Self::AesCbc { key_len: 16 } => dec::<cbc::Decryptor<aes::Aes128>>(key, iv, buf),
            Self::AesCbc { key_len: 24 } => dec::<cbc::Decryptor<aes::Aes192>>(key, iv, buf),
            Self::AesCbc { key_len: 32 } => dec::<cbc::Decryptor<aes::Aes256>>(key, iv, buf),
            Self::AesCbc { key_len } => Err(CryptoError::KeyLength {
                expected: 16,
                got: key_len,
            }),
            Self::TripleDesCbc => dec::<cbc::Decryptor<des::TdesEde3>>(key, iv, buf),
        }
    }
}

/// DES ignores the low (parity) bit of each key byte, so normalise to odd parity before the
/// `des` crate's weak/semi-weak/repeated-subkey test, which compares bytes exactly.
fn tdes_key_ok(key: &[u8]) -> bool {
    let normalised: zeroize::Zeroizing<Vec<u8>> = zeroize::Zeroizing::new(
        key.iter()
            .map(|&b| {
                let high = b & 0xfe;
                high | u8::from(high.count_ones() % 2 == 0)
            })
            .collect(),
    );
    // weak_key_test asserts a length of 8, 16 or 24: `check` has already verified 24.
    normalised.len() == 24 && des::weak_key_test(&normalised).is_ok()
}

fn enc<M: KeyIvInit + BlockModeEncrypt>(
    key: &[u8],
    iv: &[u8],
    buf: &mut [u8],
) -> Result<(), CryptoError> {
    let mut mode = M::new_from_slices(key, iv).map_err(|_| CryptoError::KeyLength {
        expected: M::key_size(),
        got: key.len(),
    })?;
    let (blocks, rest) = Array::slice_as_chunks_mut(buf);
    if !rest.is_empty() {
        return Err(CryptoError::NotBlockAligned {
            len: buf.len(),
            block: M::block_size(),
        });
    }
    mode.encrypt_blocks(blocks);
    Ok(())
}

fn dec<M: KeyIvInit + BlockModeDecrypt>(
    key: &[u8],
    iv: &[u8],
    buf: &mut [u8],
) -> Result<(), CryptoError> {
    let mut mode = M::new_from_slices(key, iv).map_err(|_| CryptoError::KeyLength {
        expected: M::key_size(),
        got: key.len(),
    })?;
    let (blocks, rest) = Array::slice_as_chunks_mut(buf);
    if !rest.is_empty() {
        return Err(CryptoError::NotBlockAligned {
            len: buf.len(),
            block: M::block_size(),
        });
    }
    mode.decrypt_blocks(blocks);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap_or_default()
    }

    fn check_vector(c: CipherAlg, key: &str, iv: &str, pt: &[u8], ct: &str) {
        let (key, iv, ct) = (hex(key), hex(iv), hex(ct));
        let mut buf = pt.to_vec();
        assert_eq!(c.encrypt(&key, &iv, &mut buf), Ok(()));
        assert_eq!(buf, ct, "{}", c.name());
        assert_eq!(c.decrypt(&key, &iv, &mut buf), Ok(()));
        assert_eq!(buf, pt, "{}", c.name());
    }

    #[test]
    fn attrs() {
        assert_eq!(
            CipherAlg::from_attrs(7, Some(256)),
            Some(CipherAlg::AesCbc { key_len: 32 })
        );
        assert_eq!(
            CipherAlg::from_attrs(7, Some(128)),
            Some(CipherAlg::AesCbc { key_len: 16 })
        );
        assert_eq!(CipherAlg::from_attrs(7, None), None);
        assert_eq!(CipherAlg::from_attrs(7, Some(64)), None);
        assert_eq!(CipherAlg::from_attrs(7, Some(257)), None);
        assert_eq!(
            CipherAlg::from_attrs(5, None),
            Some(CipherAlg::TripleDesCbc)
        );
        assert_eq!(CipherAlg::from_attrs(5, Some(192)), None);
        assert_eq!(CipherAlg::from_attrs(1, None), None); // DES
        assert_eq!(CipherAlg::from_attrs(0, None), None);
        for c in CipherAlg::ALL {
            assert_eq!(
                CipherAlg::from_attrs(c.enc_attr(), c.key_len_attr()),
                Some(c)
            );
        }
        assert_eq!(CipherAlg::AesCbc { key_len: 32 }.name(), "AES-CBC-256");
        assert_eq!(CipherAlg::TripleDesCbc.name(), "3DES-CBC");
        assert_eq!(CipherAlg::TripleDesCbc.key_len(), 24);
        assert_eq!(CipherAlg::TripleDesCbc.block_len(), 8);
        assert_eq!(CipherAlg::AesCbc { key_len: 24 }.block_len(), 16);
    }

    #[test]
    fn aes_cbc_rfc3602_cases_1_and_2() {
        let aes128 = CipherAlg::AesCbc { key_len: 16 };
        check_vector(
            aes128,
            "06a9214036b8a15b512e03d534120006",
            "3dafba429d9eb430b422da802c9fac41",
            b"Single block msg",
            "e353779c1079aeb82708942dbe77181a",
        );
        check_vector(
            aes128,
            "c286696d887c9aa0611bbb3e2025a45a",
            "562e17996d093d28ddb3ba695a2e6f58",
            &hex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"),
            "d296cd94c2cccf8a3a863028b5e1dc0a7586602d253cfff91b8266bea6d61ab1",
        );
    }

    #[test]
    fn aes_cbc_sp800_38a_192_256() {
        // NIST SP 800-38A F.2.3 (first block) and F.2.5 (first two blocks)
        check_vector(
            CipherAlg::AesCbc { key_len: 24 },
            "8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b",
            "000102030405060708090a0b0c0d0e0f",
            &hex("6bc1bee22e409f96e93d7e117393172a"),
            "4f021db243bc633d7178183a9fa071e8",
        );
        check_vector(
            CipherAlg::AesCbc { key_len: 32 },
            "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
            "000102030405060708090a0b0c0d0e0f",
            &hex("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"),
            "f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d",
        );
    }

    #[test]
    fn tdes_cbc_sp800_67_example() {
        // NIST SP 800-67 Rev. 1 example (TDEA ECB): keys 0123456789ABCDEF, 23456789ABCDEF01,
        // 456789ABCDEF0123; "The qufck brown fox jump" -> A826FD8CE53B855F CCE21C8112256FE6
        // 68D5C05DD9B6B900. As CBC with IV 0, feeding P1, P2^C1, P3^C2 yields C1, C2, C3.
        let c = [
            hex("a826fd8ce53b855f"),
            hex("cce21c8112256fe6"),
            hex("68d5c05dd9b6b900"),
        ];
        let p: Vec<&[u8]> = vec![b"The qufc", b"k brown ", b"fox jump"];
        let mut pt = p[0].to_vec();
        for i in 1..3 {
            pt.extend(p[i].iter().zip(&c[i - 1]).map(|(a, b)| a ^ b));
        }
        check_vector(
            CipherAlg::TripleDesCbc,
            "0123456789abcdef23456789abcdef01456789abcdef0123",
            "0000000000000000",
            &pt,
            "a826fd8ce53b855fcce21c8112256fe668d5c05dd9b6b900",
        );
    }

    #[test]
    fn round_trips_and_errors() {
        for c in CipherAlg::ALL {
            let key: Vec<u8> = (0..c.key_len()).map(|i| (i * 37 + 11) as u8).collect();
            let iv = vec![0x5a; c.block_len()];
            for blocks in [0usize, 1, 2, 7] {
                let pt: Vec<u8> = (0..blocks * c.block_len()).map(|i| i as u8).collect();
                let mut buf = pt.clone();
                assert_eq!(c.encrypt(&key, &iv, &mut buf), Ok(()));
                if blocks > 0 {
                    assert_ne!(buf, pt);
                }
                assert_eq!(c.decrypt(&key, &iv, &mut buf), Ok(()));
                assert_eq!(buf, pt);
            }
            let mut odd = vec![0u8; c.block_len() + 1];
            assert_eq!(
                c.encrypt(&key, &iv, &mut odd),
                Err(CryptoError::NotBlockAligned {
                    len: c.block_len() + 1,
                    block: c.block_len()
                })
            );
            assert!(c.decrypt(&key, &iv, &mut odd).is_err());
            let mut buf = vec![0u8; c.block_len()];
            assert!(matches!(
                c.encrypt(&key[1..], &iv, &mut buf),
                Err(CryptoError::KeyLength { .. })
            ));
            assert!(matches!(
                c.decrypt(&key, &iv[1..], &mut buf),
                Err(CryptoError::IvLength { .. })
            ));
        }
        let mut buf = [0u8; 16];
        assert!(
            CipherAlg::AesCbc { key_len: 20 }
                .encrypt(&[0; 20], &[0; 16], &mut buf)
                .is_err()
        );
    }

    #[test]
    fn tdes_weak_keys_refused() {
        let mut buf = [0u8; 8];
        let k1 = hex("0123456789abcdef");
        let k2 = hex("23456789abcdef01");
        let repeated = [k1.clone(), k1.clone(), k2.clone()].concat();
        assert_eq!(
            CipherAlg::TripleDesCbc.encrypt(&repeated, &[0; 8], &mut buf),
            Err(CryptoError::WeakKey)
        );
        let weak = [hex("0101010101010101"), k1.clone(), k2.clone()].concat();
        assert_eq!(
            CipherAlg::TripleDesCbc.decrypt(&weak, &[0; 8], &mut buf),
            Err(CryptoError::WeakKey)
        );
        // the same weak key with different parity bits, and a semi-weak key
        let weak = [hex("0000000000000000"), k1.clone(), k2.clone()].concat();
        assert_eq!(
            CipherAlg::TripleDesCbc.encrypt(&weak, &[0; 8], &mut buf),
            Err(CryptoError::WeakKey)
        );
        let semi_weak = [k1.clone(), hex("01fe01fe01fe01fe"), k2.clone()].concat();
        assert_eq!(
            CipherAlg::TripleDesCbc.encrypt(&semi_weak, &[0; 8], &mut buf),
            Err(CryptoError::WeakKey)
        );
        // K1 = K3 up to parity
        let mut k3 = k1.clone();
        k3[0] ^= 1;
        let two_key = [k1, k2, k3].concat();
        assert_eq!(
            CipherAlg::TripleDesCbc.encrypt(&two_key, &[0; 8], &mut buf),
            Err(CryptoError::WeakKey)
        );
    }
}

#[cfg(test)]
mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Arbitrary (peer-controlled) ciphertext lengths and contents: an error or a round
        /// trip, never a panic.
        #[test]
        fn arbitrary_buffers(data in proptest::collection::vec(any::<u8>(), 0..100), ci in 0usize..4, key_byte in any::<u8>()) {
            let c = CipherAlg::ALL[ci];
            let key: Vec<u8> = (0..c.key_len()).map(|i| key_byte.wrapping_add((i as u8).wrapping_mul(31))).collect();
            let iv = vec![key_byte; c.block_len()];
            let mut buf = data.clone();
            match c.decrypt(&key, &iv, &mut buf) {
                Ok(()) => {
                    prop_assert_eq!(c.encrypt(&key, &iv, &mut buf), Ok(()));
                    prop_assert_eq!(buf, data);
                }
                Err(e) => {
                    let expected = matches!(e, CryptoError::NotBlockAligned { .. } | CryptoError::WeakKey);
                    prop_assert!(expected, "unexpected error {:?}", e);
                }
            }
        }
    }
}

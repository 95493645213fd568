//! CHAP with MD5 (RFC 1994 §4.1): `Response = MD5(Identifier || secret || Challenge)`.

use md5::{Digest as _, Md5};
use subtle::ConstantTimeEq;

/// The 16-octet CHAP-MD5 response for `identifier`, `secret` and `challenge`.
pub fn chap_md5_response(identifier: u8, secret: &[u8], challenge: &[u8]) -> [u8; 16] {
    let mut md5 = Md5::new();
    md5.update([identifier]);
    md5.update(secret);
    md5.update(challenge);
    md5.finalize().into()
}

/// Checks a peer's CHAP-MD5 response in constant time. A response that is not 16 octets long
/// is rejected.
pub fn verify_chap_md5(identifier: u8, secret: &[u8], challenge: &[u8], response: &[u8]) -> bool {
    let expected = chap_md5_response(identifier, secret, challenge);
    // `ct_eq` on slices of different lengths returns false (length is not secret).
    bool::from(expected.as_slice().ct_eq(response))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mschapv2::tests::a;

    const CHALLENGE: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
    // Produced with:
    // python3 -c 'import hashlib; print(hashlib.md5(bytes([0x2a]) + b"secret" + bytes(range(16))).hexdigest())'
    const EXPECTED: &str = "03dc98c5a832692b49df73cf48fcb4e9";

    #[test]
    fn chap_md5_known_answer() {
        assert_eq!(
            chap_md5_response(0x2a, b"secret", &CHALLENGE),
            a::<16>(EXPECTED)
        );
        assert!(verify_chap_md5(
            0x2a,
            b"secret",
            &CHALLENGE,
            &a::<16>(EXPECTED)
        ));
    }

    #[test]
    fn chap_md5_rejects_wrong_response() {
        let good = a::<16>(EXPECTED);
        for i in 0..16 {
            let mut bad = good;
            bad[i] ^= 0x80;
            assert!(!verify_chap_md5(0x2a, b"secret", &CHALLENGE, &bad));
        }
        assert!(!verify_chap_md5(0x2b, b"secret", &CHALLENGE, &good));
        assert!(!verify_chap_md5(0x2a, b"Secret", &CHALLENGE, &good));
        assert!(!verify_chap_md5(0x2a, b"secret", &CHALLENGE[..15], &good));
        assert!(!verify_chap_md5(0x2a, b"secret", &CHALLENGE, &good[..15]));
        assert!(!verify_chap_md5(0x2a, b"secret", &CHALLENGE, &[]));
    }
}

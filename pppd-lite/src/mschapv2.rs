//! MS-CHAPv2 (RFC 2759 §8) response computation and verification, server side.
//!
//! The server stores NT password hashes (`MD4(UTF-16LE(password))`), not passwords, so every
//! function that RFC 2759 defines over a `Password` takes the 16-octet NT hash instead. The
//! `*_from_password` helpers exist for tests and for clients.
//!
//! MD4, SHA-1 and DES come from the RustCrypto crates; only the RFC 2759 compositions are here.

use des::Des;
use des::cipher::{BlockCipherEncrypt, KeyInit};
use md4::{Digest as _, Md4};
use sha1::Sha1;
use subtle::ConstantTimeEq;

/// "Magic server to client signing constant" (RFC 2759 §8.7, `Magic1`).
const MAGIC1: &[u8; 39] = b"Magic server to client signing constant";
/// "Pad to make it do more than one iteration" (RFC 2759 §8.7, `Magic2`).
const MAGIC2: &[u8; 41] = b"Pad to make it do more than one iteration";

/// `NtPasswordHash()` (RFC 2759 §8.3): MD4 over the UTF-16LE encoding of the password.
pub fn nt_password_hash(password: &str) -> [u8; 16] {
    let mut md4 = Md4::new();
    for unit in password.encode_utf16() {
        md4.update(unit.to_le_bytes());
    }
    md4.finalize().into()
}

/// `HashNtPasswordHash()` (RFC 2759 §8.4): MD4 of the 16-octet NT hash.
pub fn hash_nt_password_hash(nt_hash: &[u8; 16]) -> [u8; 16] {
    Md4::digest(nt_hash).into()
}

/// Strips a Windows `DOMAIN\` prefix: RFC 2759 §8.2 hashes only the user name proper, and
/// Windows clients send `DOMAIN\user` in the Name field.
pub fn strip_domain(user_name: &str) -> &str {
    match user_name.rsplit_once('\\') {
        Some((_, user)) => user,
        None => user_name,
    }
}

/// `ChallengeHash()` (RFC 2759 §8.2): first 8 octets of
/// `SHA1(PeerChallenge || AuthenticatorChallenge || UserName)`, with any `DOMAIN\` prefix
/// stripped from the user name.
pub fn challenge_hash(
    peer_challenge: &[u8; 16],
    authenticator_challenge: &[u8; 16],
    user_name: &str,
) -> [u8; 8] {
    let mut sha = Sha1::new();
    sha.update(peer_challenge);
    sha.update(authenticator_challenge);
    sha.update(strip_domain(user_name).as_bytes());
    let digest = sha.finalize();
    let mut out = [0u8; 8];
    out.copy_from_slice(&digest[..8]);
    out
}

/// Expands 7 octets (56 key bits) into an 8-octet DES key, each octet carrying 7 key bits in its
/// high bits and an odd-parity bit in its low bit (RFC 2759 §8.6 `DesEncrypt`, example in §9.3).
fn des_key_from_7(raw: &[u8]) -> [u8; 8] {
    let mut bits: u64 = 0;
    for &b in raw.iter().take(7) {
        bits = (bits << 8) | u64::from(b);
    }
    let mut key = [0u8; 8];
    for (i, k) in key.iter_mut().enumerate() {
        // Bits 55..=49 for octet 0, 48..=42 for octet 1, and so on.
        let seven = ((bits >> (49 - 7 * i)) & 0x7f) as u8;
        let byte = seven << 1;
        let parity = u8::from(byte.count_ones().is_multiple_of(2));
        *k = byte | parity;
    }
    key
}

/// `DesEncrypt()` (RFC 2759 §8.6): encrypts one 8-octet block with a 7-octet key.
fn des_encrypt(clear: &[u8; 8], key7: &[u8]) -> [u8; 8] {
    let key = des_key_from_7(key7);
    let cipher = Des::new(&key.into());
    let mut block = (*clear).into();
    cipher.encrypt_block(&mut block);
    block.into()
}

/// `ChallengeResponse()` (RFC 2759 §8.5): the NT hash zero-padded to 21 octets, split into three
/// 7-octet DES keys, each encrypting the 8-octet challenge.
pub fn challenge_response(challenge: &[u8; 8], nt_hash: &[u8; 16]) -> [u8; 24] {
    let mut z = [0u8; 21];
    z[..16].copy_from_slice(nt_hash);
    let mut out = [0u8; 24];
    for (chunk, key7) in out.chunks_exact_mut(8).zip(z.chunks_exact(7)) {
        chunk.copy_from_slice(&des_encrypt(challenge, key7));
    }
    out
}

/// `GenerateNTResponse()` (RFC 2759 §8.1), from the stored NT hash.
pub fn generate_nt_response(
    authenticator_challenge: &[u8; 16],
    peer_challenge: &[u8; 16],
    user_name: &str,
    nt_hash: &[u8; 16],
) -> [u8; 24] {
    let challenge = challenge_hash(peer_challenge, authenticator_challenge, user_name);
    challenge_response(&challenge, nt_hash)
}

/// `GenerateNTResponse()` (RFC 2759 §8.1) from a clear-text password (the peer's view).
pub fn generate_nt_response_from_password(
    authenticator_challenge: &[u8; 16],
    peer_challenge: &[u8; 16],
    user_name: &str,
    password: &str,
) -> [u8; 24] {
    generate_nt_response(
        authenticator_challenge,
        peer_challenge,
        user_name,
        &nt_password_hash(password),
    )
}

/// Server-side check of the peer's 24-octet NT-Response, compared in constant time.
pub fn verify_nt_response(
    authenticator_challenge: &[u8; 16],
    peer_challenge: &[u8; 16],
    user_name: &str,
    nt_hash: &[u8; 16],
    response: &[u8; 24],
) -> bool {
    let expected =
        generate_nt_response(authenticator_challenge, peer_challenge, user_name, nt_hash);
    bool::from(expected.ct_eq(response))
}

/// `GenerateAuthenticatorResponse()` (RFC 2759 §8.7) from the stored NT hash: `"S="` followed by
/// 40 uppercase hexadecimal digits.
pub fn authenticator_response(
    nt_hash: &[u8; 16],
    nt_response: &[u8; 24],
    peer_challenge: &[u8; 16],
    authenticator_challenge: &[u8; 16],
    user_name: &str,
) -> String {
    let digest = authenticator_response_bytes(
        nt_hash,
        nt_response,
        peer_challenge,
        authenticator_challenge,
        user_name,
    );
    authenticator_response_text(&digest)
}

/// The `"S=<40 uppercase hex digits>"` text of a 20-octet authenticator response.
pub fn authenticator_response_text(digest: &[u8; 20]) -> String {
    format!("S={}", upper_hex(digest))
}

/// `GenerateAuthenticatorResponse()` (RFC 2759 §8.7) as the raw 20-octet SHA-1 digest.
pub fn authenticator_response_bytes(
    nt_hash: &[u8; 16],
    nt_response: &[u8; 24],
    peer_challenge: &[u8; 16],
    authenticator_challenge: &[u8; 16],
    user_name: &str,
) -> [u8; 20] {
    let hash_hash = hash_nt_password_hash(nt_hash);
    let mut sha = Sha1::new();
    sha.update(hash_hash);
    sha.update(nt_response);
    sha.update(MAGIC1);
    let digest = sha.finalize();

    let challenge = challenge_hash(peer_challenge, authenticator_challenge, user_name);
    let mut sha = Sha1::new();
    sha.update(digest);
    sha.update(challenge);
    sha.update(MAGIC2);
    sha.finalize().into()
}

/// The text of an MS-CHAPv2 Failure packet (RFC 2759 §6):
/// `E=eeeeeeeeee R=r C=cccccccccccccccccccccccccccccccc V=3 M=<msg>`.
///
/// `challenge` is the authenticator challenge the peer must use on retry (RFC 2759 §6: 32 hex
/// digits). An empty `message` omits the `M=` field.
pub fn failure_message(error: u32, retry: bool, challenge: &[u8; 16], message: &str) -> String {
    let mut s = format!(
        "E={} R={} C={} V=3",
        error,
        u8::from(retry),
        upper_hex(challenge)
    );
    if !message.is_empty() {
        s.push_str(" M=");
        s.push_str(message);
    }
    s
}

/// RFC 2759 §6 failure codes.
pub mod error {
    /// `ERROR_RESTRICTED_LOGON_HOURS`
    pub const RESTRICTED_LOGON_HOURS: u32 = 646;
    /// `ERROR_ACCT_DISABLED`
    pub const ACCT_DISABLED: u32 = 647;
    /// `ERROR_PASSWD_EXPIRED`
    pub const PASSWD_EXPIRED: u32 = 648;
    /// `ERROR_NO_DIALIN_PERMISSION`
    pub const NO_DIALIN_PERMISSION: u32 = 649;
    /// `ERROR_AUTHENTICATION_FAILURE`
    pub const AUTHENTICATION_FAILURE: u32 = 691;
    /// `ERROR_CHANGING_PASSWORD`
    pub const CHANGING_PASSWORD: u32 = 709;
}

pub(crate) fn upper_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn h(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    pub(crate) fn a<const N: usize>(s: &str) -> [u8; N] {
        h(s).try_into().unwrap()
    }

    // RFC 2759 §9.2 "Hash Example".
    pub(crate) const AUTH_CHALLENGE: &str = "5B 5D 7C 7D 7B 3F 2F 3E 3C 2C 60 21 32 26 26 28";
    pub(crate) const PEER_CHALLENGE: &str = "21 40 23 24 25 5E 26 2A 28 29 5F 2B 3A 33 7C 7E";
    pub(crate) const NT_RESPONSE: &str =
        "82 30 9E CD 8D 70 8B 5E A0 8F AA 39 81 CD 83 54 42 33 11 4A 3D 85 D6 DF";
    pub(crate) const PASSWORD_HASH: &str = "44 EB BA 8D 53 12 B8 D6 11 47 44 11 F5 69 89 AE";
    pub(crate) const PASSWORD_HASH_HASH: &str = "41 C0 0C 58 4B D2 D9 1C 40 17 A2 A1 2F A5 9F 3F";

    #[test]
    fn rfc2759_9_2_end_to_end() {
        let auth: [u8; 16] = a(AUTH_CHALLENGE);
        let peer: [u8; 16] = a(PEER_CHALLENGE);
        let nt_hash = nt_password_hash("clientPass");
        assert_eq!(nt_hash, a::<16>(PASSWORD_HASH));
        assert_eq!(hash_nt_password_hash(&nt_hash), a::<16>(PASSWORD_HASH_HASH));
        let challenge = challenge_hash(&peer, &auth, "User");
        assert_eq!(challenge, a::<8>("D0 2E 43 86 BC E9 12 26"));
        assert_eq!(
            challenge_response(&challenge, &nt_hash),
            a::<24>(NT_RESPONSE)
        );
        let response = generate_nt_response(&auth, &peer, "User", &nt_hash);
        assert_eq!(response, a::<24>(NT_RESPONSE));
        assert_eq!(
            generate_nt_response_from_password(&auth, &peer, "User", "clientPass"),
            response
        );
        assert!(verify_nt_response(
            &auth, &peer, "User", &nt_hash, &response
        ));
        assert_eq!(
            authenticator_response(&nt_hash, &response, &peer, &auth, "User"),
            "S=407A5589115FD0D6209F510FE9C04566932CDA56"
        );
    }

    #[test]
    fn rfc2759_9_2_with_domain_prefix() {
        let auth: [u8; 16] = a(AUTH_CHALLENGE);
        let peer: [u8; 16] = a(PEER_CHALLENGE);
        let nt_hash: [u8; 16] = a(PASSWORD_HASH);
        assert_eq!(
            challenge_hash(&peer, &auth, "DOMAIN\\User"),
            a::<8>("D0 2E 43 86 BC E9 12 26")
        );
        let response = a::<24>(NT_RESPONSE);
        assert!(verify_nt_response(
            &auth,
            &peer,
            "DOMAIN\\User",
            &nt_hash,
            &response
        ));
        assert_eq!(
            authenticator_response(&nt_hash, &response, &peer, &auth, "DOMAIN\\User"),
            "S=407A5589115FD0D6209F510FE9C04566932CDA56"
        );
    }

    #[test]
    fn rfc2759_9_3_des_key_parity() {
        let hash = nt_password_hash("MyPw");
        assert_eq!(
            hash,
            a::<16>("FC 15 6A F7 ED CD 6C 0E DD E3 33 7D 42 7F 4E AC")
        );
        assert_eq!(
            des_key_from_7(&hash[..7]),
            a::<8>("FD 0B 5B 5E 7F 6E 34 D9")
        );
        assert_eq!(
            des_key_from_7(&hash[7..14]),
            a::<8>("0E 6E 79 67 37 EA 08 FE")
        );
    }

    #[test]
    fn rejects_wrong_response() {
        let auth: [u8; 16] = a(AUTH_CHALLENGE);
        let peer: [u8; 16] = a(PEER_CHALLENGE);
        let nt_hash: [u8; 16] = a(PASSWORD_HASH);
        let good = a::<24>(NT_RESPONSE);
        for i in 0..24 {
            let mut bad = good;
            bad[i] ^= 0x01;
            assert!(!verify_nt_response(&auth, &peer, "User", &nt_hash, &bad));
        }
        // Wrong password, wrong user name, wrong challenges.
        let other = nt_password_hash("clientPasS");
        assert!(!verify_nt_response(&auth, &peer, "User", &other, &good));
        assert!(!verify_nt_response(&auth, &peer, "user", &nt_hash, &good));
        assert!(!verify_nt_response(&peer, &auth, "User", &nt_hash, &good));
    }

    #[test]
    fn failure_message_format() {
        let c: [u8; 16] = a(AUTH_CHALLENGE);
        assert_eq!(
            failure_message(
                error::AUTHENTICATION_FAILURE,
                true,
                &c,
                "Authentication failed"
            ),
            "E=691 R=1 C=5B5D7C7D7B3F2F3E3C2C602132262628 V=3 M=Authentication failed"
        );
        assert_eq!(
            failure_message(error::ACCT_DISABLED, false, &c, ""),
            "E=647 R=0 C=5B5D7C7D7B3F2F3E3C2C602132262628 V=3"
        );
    }

    #[test]
    fn strip_domain_cases() {
        assert_eq!(strip_domain("User"), "User");
        assert_eq!(strip_domain("DOMAIN\\User"), "User");
        assert_eq!(strip_domain("A\\B\\User"), "User");
        assert_eq!(strip_domain("DOMAIN\\"), "");
    }
}

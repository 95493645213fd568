//! MPPE start keys from MS-CHAPv2 credentials (RFC 3079 §3.3 and §3.4).
//!
//! Only the master/start keys are derived here: they are what RADIUS `MS-MPPE-Send-Key` and
//! `MS-MPPE-Recv-Key` carry. The transient session keys (`GetNewKeyFromSHA`) and RC4 are not
//! built.

use sha1::{Digest as _, Sha1};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::mschapv2::hash_nt_password_hash;

/// "This is the MPPE Master Key" (RFC 3079 §3.4, `Magic1`).
const MAGIC1: &[u8; 27] = b"This is the MPPE Master Key";
/// RFC 3079 §3.4 `Magic2`: client send key, server receive key.
const MAGIC2: &[u8; 84] =
    b"On the client side, this is the send key; on the server side, it is the receive key.";
/// RFC 3079 §3.4 `Magic3`: client receive key, server send key.
const MAGIC3: &[u8; 84] =
    b"On the client side, this is the receive key; on the server side, it is the send key.";
const SHS_PAD1: [u8; 40] = [0x00; 40];
const SHS_PAD2: [u8; 40] = [0xf2; 40];

/// `GetMasterKey()` (RFC 3079 §3.4): first 16 octets of
/// `SHA1(PasswordHashHash || NTResponse || Magic1)`.
pub fn get_master_key(password_hash_hash: &[u8; 16], nt_response: &[u8; 24]) -> [u8; 16] {
    let mut sha = Sha1::new();
    sha.update(password_hash_hash);
    sha.update(nt_response);
    sha.update(MAGIC1);
    let digest = sha.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// `GetAsymetricStartKey()` (RFC 3079 §3.4). `key_len` is clamped to 8..=16 octets as the RFC
/// allows (8 for 40- and 56-bit keys, 16 for 128-bit keys).
pub fn get_asymmetric_start_key(
    master_key: &[u8; 16],
    key_len: usize,
    is_send: bool,
    is_server: bool,
) -> Vec<u8> {
    let magic = if is_send == is_server { MAGIC3 } else { MAGIC2 };
    let mut sha = Sha1::new();
    sha.update(master_key);
    sha.update(SHS_PAD1);
    sha.update(magic);
    sha.update(SHS_PAD2);
    let digest = sha.finalize();
    digest[..key_len.clamp(8, 16)].to_vec()
}

/// The server's 128-bit MPPE start keys after a successful MS-CHAPv2 exchange.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct MsChapV2Keys {
    /// Server → peer key (RADIUS `MS-MPPE-Send-Key`).
    pub send: [u8; 16],
    /// Peer → server key (RADIUS `MS-MPPE-Recv-Key`).
    pub recv: [u8; 16],
}

impl core::fmt::Debug for MsChapV2Keys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("MsChapV2Keys { .. }")
    }
}

impl MsChapV2Keys {
    /// Derives the server-side send/receive start keys from the user's stored NT hash and the
    /// peer's (already verified) NT-Response.
    pub fn server(nt_hash: &[u8; 16], nt_response: &[u8; 24]) -> Self {
        let mut hash_hash = hash_nt_password_hash(nt_hash);
        let mut master = get_master_key(&hash_hash, nt_response);
        let mut send = [0u8; 16];
        let mut recv = [0u8; 16];
        let mut s = get_asymmetric_start_key(&master, 16, true, true);
        let mut r = get_asymmetric_start_key(&master, 16, false, true);
        send.copy_from_slice(&s);
        recv.copy_from_slice(&r);
        hash_hash.zeroize();
        master.zeroize();
        s.zeroize();
        r.zeroize();
        Self { send, recv }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mschapv2::tests::{NT_RESPONSE, PASSWORD_HASH, PASSWORD_HASH_HASH, a};

    const MASTER_KEY: &str = "FD EC E3 71 7A 8C 83 8C B3 88 E5 27 AE 3C DD 31";
    // RFC 3079 §3.5.3 SendStartKey128 (server send = client receive, Magic3).
    const SEND_START_KEY_128: &str = "8B 7C DC 14 9B 99 3A 1B A1 18 CB 15 3F 56 DC CB";
    // Not in RFC 3079: the other direction (Magic2) for the same MasterKey, produced with
    // python3 -c 'import hashlib; print(hashlib.sha1(bytes.fromhex("FDECE3717A8C838CB388E527AE3CDD31")
    //   + b"\0"*40 + b"On the client side, this is the send key; on the server side, it is the
    //   receive key." + b"\xf2"*40).hexdigest()[:32])'
    const RECV_START_KEY_128: &str = "D5 F0 E9 52 1E 3E A9 58 96 45 E8 60 51 C8 22 26";

    #[test]
    fn rfc3079_3_5_3_master_key() {
        let master = get_master_key(&a(PASSWORD_HASH_HASH), &a(NT_RESPONSE));
        assert_eq!(master, a::<16>(MASTER_KEY));
    }

    #[test]
    fn rfc3079_3_5_3_start_keys() {
        let master: [u8; 16] = a(MASTER_KEY);
        let send = get_asymmetric_start_key(&master, 16, true, true);
        assert_eq!(send, a::<16>(SEND_START_KEY_128));
        // The peer's receive key equals the server's send key, and vice versa.
        assert_eq!(get_asymmetric_start_key(&master, 16, false, false), send);
        let recv = get_asymmetric_start_key(&master, 16, false, true);
        assert_eq!(recv, a::<16>(RECV_START_KEY_128));
        assert_eq!(get_asymmetric_start_key(&master, 16, true, false), recv);
        // RFC 3079 §3.5.1/§3.5.2: 8-octet start keys are the prefix.
        assert_eq!(
            get_asymmetric_start_key(&master, 8, true, true),
            a::<8>("8B 7C DC 14 9B 99 3A 1B")
        );
    }

    #[test]
    fn server_keys_from_nt_hash() {
        let keys = MsChapV2Keys::server(&a(PASSWORD_HASH), &a(NT_RESPONSE));
        assert_eq!(keys.send, a::<16>(SEND_START_KEY_128));
        assert_eq!(keys.recv, a::<16>(RECV_START_KEY_128));
        assert_eq!(format!("{keys:?}"), "MsChapV2Keys { .. }");
    }
}

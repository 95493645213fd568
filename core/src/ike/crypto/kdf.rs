//! IKEv1 key derivation and authentication hashes (RFC 2409 §5, §5.5, §5.7, Appendix B) and the
//! NAT-D hash (RFC 3947 §3.2).
//!
//! Notation as in RFC 2409: `|` is concatenation, `Ni_b`/`Nr_b` are nonce payload *bodies*,
//! `SAi_b` the initiator's whole SA payload body, `IDii_b`/`IDir_b` the ID payload bodies (all
//! without generic payload headers), `CKY-I`/`CKY-R` the cookies, `g^xi`/`g^xr` the public
//! values and `g^xy` the shared secret.

use std::fmt;
use std::net::IpAddr;

use zeroize::Zeroizing;

use super::{CipherAlg, HashAlg, Prf};

/// RFC 2409 §5: SKEYID for pre-shared keys: `prf(pre-shared-key, Ni_b | Nr_b)`.
#[must_use]
pub fn skeyid_psk(prf: Prf, psk: &[u8], ni: &[u8], nr: &[u8]) -> Zeroizing<Vec<u8>> {
    prf.compute(psk, &[ni, nr])
}

/// RFC 2409 §5: SKEYID for signatures: `prf(Ni_b | Nr_b, g^xy)`.
#[must_use]
pub fn skeyid_sig(prf: Prf, ni: &[u8], nr: &[u8], gxy: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut key = Zeroizing::new(Vec::with_capacity(ni.len() + nr.len()));
    key.extend_from_slice(ni);
    key.extend_from_slice(nr);
    prf.compute(&key, &[gxy])
}

/// The phase-1 key schedule.
pub struct Phase1Keys {
    /// SKEYID (as passed to [`derive_phase1`]).
    pub skeyid: Zeroizing<Vec<u8>>,
    /// SKEYID_d = prf(SKEYID, g^xy | CKY-I | CKY-R | 0): keys phase-2 KEYMAT.
    pub skeyid_d: Zeroizing<Vec<u8>>,
    /// SKEYID_a = prf(SKEYID, SKEYID_d | g^xy | CKY-I | CKY-R | 1): keys HASH(n).
    pub skeyid_a: Zeroizing<Vec<u8>>,
    /// SKEYID_e = prf(SKEYID, SKEYID_a | g^xy | CKY-I | CKY-R | 2): source of the cipher key.
    pub skeyid_e: Zeroizing<Vec<u8>>,
    /// The ISAKMP SA cipher key: `cipher.key_len()` bytes of SKEYID_e, expanded per
    /// Appendix B when SKEYID_e is shorter (see [`expand_key`]).
    pub enc_key: Zeroizing<Vec<u8>>,
    /// The IV of the first encrypted phase-1 message: hash(g^xi | g^xr) truncated to the
    /// block length (Appendix B). Later messages chain from the last ciphertext block.
    pub iv: Vec<u8>,
}

impl fmt::Debug for Phase1Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Phase1Keys")
            .field("iv", &hex::encode(&self.iv))
            .finish_non_exhaustive()
    }
}

/// Appendix B key expansion: the first `len` bytes of `skeyid_e` if it is long enough, else of
/// `Ka = K1 | K2 | ...` with `K1 = prf(SKEYID_e, 0)` (0 a single octet) and
/// `Kn = prf(SKEYID_e, K(n-1))`.
#[must_use]
pub fn expand_key(prf: Prf, skeyid_e: &[u8], len: usize) -> Zeroizing<Vec<u8>> {
    if skeyid_e.len() >= len {
        return Zeroizing::new(skeyid_e[..len].to_vec());
    }
    let mut out = Zeroizing::new(Vec::with_capacity(len + prf.output_len()));
    let mut k = prf.compute(skeyid_e, &[&[0u8]]);
    loop {
        out.extend_from_slice(&k);
        if out.len() >= len {
            break;
        }
        k = prf.compute(skeyid_e, &[&k]);
    }
    out.truncate(len);
    out
}

/// SKEYID_d = prf(SKEYID, g^xy | CKY-I | CKY-R | 0);
/// SKEYID_a = prf(SKEYID, SKEYID_d | g^xy | CKY-I | CKY-R | 1);
/// SKEYID_e = prf(SKEYID, SKEYID_a | g^xy | CKY-I | CKY-R | 2); then the cipher key and the
/// phase-1 IV (Appendix B).
///
/// `prf` and `hash` are both given because RFC 2409 allows a negotiated PRF; with no PRF
/// attribute (the only case Roadgate accepts) `prf` is `Prf(hash)`.
#[allow(clippy::too_many_arguments)] // the RFC's inputs, named as there
#[must_use]
pub fn derive_phase1(
    prf: Prf,
    hash: HashAlg,
    cipher: CipherAlg,
    skeyid: Zeroizing<Vec<u8>>,
    gxy: &[u8],
    cky_i: &[u8; 8],
    cky_r: &[u8; 8],
    gxi: &[u8],
    gxr: &[u8],
) -> Phase1Keys {
    let skeyid_d = prf.compute(&skeyid, &[gxy, cky_i, cky_r, &[0]]);
    let skeyid_a = prf.compute(&skeyid, &[&skeyid_d, gxy, cky_i, cky_r, &[1]]);
    let skeyid_e = prf.compute(&skeyid, &[&skeyid_a, gxy, cky_i, cky_r, &[2]]);
    let enc_key = expand_key(prf, &skeyid_e, cipher.key_len());
    let mut iv = hash.digest(&[gxi, gxr]);
    iv.truncate(cipher.block_len());
    Phase1Keys {
        skeyid,
        skeyid_d,
        skeyid_a,
        skeyid_e,
        enc_key,
        iv,
    }
}

/// HASH_I = prf(SKEYID, g^xi | g^xr | CKY-I | CKY-R | SAi_b | IDii_b) (RFC 2409 §5).
#[allow(clippy::too_many_arguments)]
#[must_use]
pub fn hash_i(
    prf: Prf,
    skeyid: &[u8],
    gxi: &[u8],
    gxr: &[u8],
    cky_i: &[u8; 8],
    cky_r: &[u8; 8],
    sai_b: &[u8],
    idii_b: &[u8],
) -> Zeroizing<Vec<u8>> {
    prf.compute(skeyid, &[gxi, gxr, cky_i, cky_r, sai_b, idii_b])
}

/// HASH_R = prf(SKEYID, g^xr | g^xi | CKY-R | CKY-I | SAi_b | IDir_b) (RFC 2409 §5).
/// Note the order: responder values first, and it is still the *initiator's* SA body.
#[allow(clippy::too_many_arguments)]
#[must_use]
pub fn hash_r(
    prf: Prf,
    skeyid: &[u8],
    gxi: &[u8],
    gxr: &[u8],
    cky_i: &[u8; 8],
    cky_r: &[u8; 8],
    sai_b: &[u8],
    idir_b: &[u8],
) -> Zeroizing<Vec<u8>> {
    prf.compute(skeyid, &[gxr, gxi, cky_r, cky_i, sai_b, idir_b])
}

/// IV for the first message of a new exchange (Quick Mode, Informational) =
/// hash(last phase-1 CBC output block | M-ID) truncated to the block size (Appendix B);
/// M-ID in network byte order.
#[must_use]
pub fn exchange_iv(
    hash: HashAlg,
    phase1_last_block: &[u8],
    message_id: u32,
    block_len: usize,
) -> Vec<u8> {
    let mut iv = hash.digest(&[phase1_last_block, &message_id.to_be_bytes()]);
    iv.truncate(block_len);
    iv
}

/// Quick Mode HASH(1) = prf(SKEYID_a, M-ID | rest), `rest` being the message from the payload
/// after HASH(1) to the end (SA | Ni [| KE] [| IDci | IDcr] [| NAT-OA ...]), headers included.
#[must_use]
pub fn qm_hash1(prf: Prf, skeyid_a: &[u8], message_id: u32, rest: &[u8]) -> Zeroizing<Vec<u8>> {
    prf.compute(skeyid_a, &[&message_id.to_be_bytes(), rest])
}

/// Quick Mode HASH(2) = prf(SKEYID_a, M-ID | Ni_b | rest), `rest` being the responder's message
/// after HASH(2).
#[must_use]
pub fn qm_hash2(
    prf: Prf,
    skeyid_a: &[u8],
    message_id: u32,
    ni_b: &[u8],
    rest: &[u8],
) -> Zeroizing<Vec<u8>> {
    prf.compute(skeyid_a, &[&message_id.to_be_bytes(), ni_b, rest])
}

/// Quick Mode HASH(3) = prf(SKEYID_a, 0 | M-ID | Ni_b | Nr_b), 0 a single octet.
#[must_use]
pub fn qm_hash3(
    prf: Prf,
    skeyid_a: &[u8],
    message_id: u32,
    ni_b: &[u8],
    nr_b: &[u8],
) -> Zeroizing<Vec<u8>> {
    prf.compute(skeyid_a, &[&[0u8], &message_id.to_be_bytes(), ni_b, nr_b])
}

/// Informational HASH(1) = prf(SKEYID_a, M-ID | N/D), `rest` being the Notification or Delete
/// payload(s) after the hash payload, headers included (RFC 2409 §5.7).
#[must_use]
pub fn info_hash(prf: Prf, skeyid_a: &[u8], message_id: u32, rest: &[u8]) -> Zeroizing<Vec<u8>> {
    prf.compute(skeyid_a, &[&message_id.to_be_bytes(), rest])
}

/// KEYMAT (RFC 2409 §5.5): `K1 = prf(SKEYID_d, [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b)`,
/// `Kn = prf(SKEYID_d, K(n-1) | [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b)`, concatenated and
/// truncated to `len` bytes. `spi` is the 4-byte SPI of the direction (the SPI chosen by the
/// receiver of that direction's traffic); `ni_b`/`nr_b` are the Quick Mode nonces.
#[allow(clippy::too_many_arguments)]
#[must_use]
pub fn keymat(
    prf: Prf,
    skeyid_d: &[u8],
    pfs_gxy: Option<&[u8]>,
    protocol: u8,
    spi: &[u8],
    ni_b: &[u8],
    nr_b: &[u8],
    len: usize,
) -> Zeroizing<Vec<u8>> {
    let pfs = pfs_gxy.unwrap_or_default();
    let proto = [protocol];
    let mut out = Zeroizing::new(Vec::with_capacity(len + prf.output_len()));
    let mut prev: Option<Zeroizing<Vec<u8>>> = None;
    while out.len() < len {
        let k = match &prev {
            None => prf.compute(skeyid_d, &[pfs, &proto, spi, ni_b, nr_b]),
            Some(p) => prf.compute(skeyid_d, &[p, pfs, &proto, spi, ni_b, nr_b]),
        };
        out.extend_from_slice(&k);
        prev = Some(k);
    }
    out.truncate(len);
    out
}

/// NAT-D (RFC 3947 §3.2): HASH(CKY-I | CKY-R | IP | Port) with the negotiated hash; IP is 4
/// or 16 octets, the port 2 octets, all in network byte order.
#[must_use]
pub fn nat_d(hash: HashAlg, cky_i: &[u8; 8], cky_r: &[u8; 8], addr: IpAddr, port: u16) -> Vec<u8> {
    let port = port.to_be_bytes();
    match addr {
        IpAddr::V4(a) => hash.digest(&[cky_i, cky_r, &a.octets(), &port]),
        IpAddr::V6(a) => hash.digest(&[cky_i, cky_r, &a.octets(), &port]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CKY_I: [u8; 8] = *b"cookie-i";
    const CKY_R: [u8; 8] = *b"cookie-r";

    #[test]
    fn skeyid_definitions() {
        let prf = Prf(HashAlg::Sha256);
        assert_eq!(
            skeyid_psk(prf, b"psk", b"ni", b"nr"),
            prf.compute(b"psk", &[b"ninr"])
        );
        assert_eq!(
            skeyid_sig(prf, b"ni", b"nr", b"gxy"),
            prf.compute(b"ninr", &[b"gxy"])
        );
    }

    #[test]
    fn expansion_when_skeyid_e_is_short() {
        // SHA-1 gives 20 bytes: AES-256 (32) and 3DES (24) need Appendix B expansion.
        let prf = Prf(HashAlg::Sha1);
        let skeyid_e = prf.compute(b"k", &[b"e"]);
        let k1 = prf.compute(&skeyid_e, &[&[0u8]]);
        let k2 = prf.compute(&skeyid_e, &[&k1]);
        let ka = [k1.as_slice(), k2.as_slice()].concat();
        assert_eq!(expand_key(prf, &skeyid_e, 32).as_slice(), &ka[..32]);
        assert_eq!(expand_key(prf, &skeyid_e, 24).as_slice(), &ka[..24]);
        let k3 = prf.compute(&skeyid_e, &[&k2]);
        let ka3 = [ka.as_slice(), k3.as_slice()].concat();
        assert_eq!(expand_key(prf, &skeyid_e, 41).as_slice(), &ka3[..41]);
        // long enough: plain truncation, no expansion
        assert_eq!(expand_key(prf, &skeyid_e, 16).as_slice(), &skeyid_e[..16]);
        assert_eq!(
            expand_key(prf, &skeyid_e, 20).as_slice(),
            skeyid_e.as_slice()
        );
        assert!(expand_key(prf, &skeyid_e, 0).is_empty());

        let keys = derive_phase1(
            prf,
            HashAlg::Sha1,
            CipherAlg::AesCbc { key_len: 32 },
            Zeroizing::new(b"skeyid".to_vec()),
            b"gxy",
            &CKY_I,
            &CKY_R,
            b"gxi",
            b"gxr",
        );
        assert_eq!(keys.skeyid_e.len(), 20);
        assert_eq!(keys.enc_key.len(), 32);
        assert_eq!(keys.enc_key, expand_key(prf, &keys.skeyid_e, 32));
        assert_eq!(&keys.enc_key[..20], {
            let k1 = prf.compute(&keys.skeyid_e, &[&[0u8]]);
            k1.to_vec()
        });
        assert_eq!(keys.iv, HashAlg::Sha1.digest(&[b"gxigxr"])[..16].to_vec());
        assert!(!format!("{keys:?}").contains("enc_key"));
    }

    #[test]
    fn phase1_chain() {
        let prf = Prf(HashAlg::Sha384);
        let skeyid = Zeroizing::new(vec![7u8; 48]);
        let keys = derive_phase1(
            prf,
            HashAlg::Sha384,
            CipherAlg::TripleDesCbc,
            skeyid.clone(),
            b"G",
            &CKY_I,
            &CKY_R,
            b"I",
            b"R",
        );
        let d = prf.compute(&skeyid, &[b"G", &CKY_I, &CKY_R, &[0]]);
        let a = prf.compute(&skeyid, &[&d, b"G", &CKY_I, &CKY_R, &[1]]);
        let e = prf.compute(&skeyid, &[&a, b"G", &CKY_I, &CKY_R, &[2]]);
        assert_eq!(
            (&keys.skeyid_d, &keys.skeyid_a, &keys.skeyid_e),
            (&d, &a, &e)
        );
        assert_eq!(keys.enc_key.as_slice(), &e[..24]);
        assert_eq!(keys.iv.len(), 8);
        assert_eq!(keys.skeyid, skeyid);
    }

    #[test]
    fn exchange_iv_definition() {
        let last = [0xabu8; 16];
        let iv = exchange_iv(HashAlg::Sha256, &last, 0x0102_0304, 16);
        let mut input = last.to_vec();
        input.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(iv, HashAlg::Sha256.digest(&[&input])[..16].to_vec());
        assert_eq!(exchange_iv(HashAlg::Sha1, &last[..8], 7, 8).len(), 8);
        assert_ne!(
            exchange_iv(HashAlg::Sha1, &last, 1, 16),
            exchange_iv(HashAlg::Sha1, &last, 2, 16)
        );
    }

    #[test]
    fn auth_hashes_order() {
        let prf = Prf(HashAlg::Sha1);
        let hi = hash_i(prf, b"s", b"XI", b"XR", &CKY_I, &CKY_R, b"SA", b"ID");
        let hr = hash_r(prf, b"s", b"XI", b"XR", &CKY_I, &CKY_R, b"SA", b"ID");
        assert_eq!(hi, prf.compute(b"s", &[b"XIXRcookie-icookie-rSAID"]));
        assert_eq!(hr, prf.compute(b"s", &[b"XRXIcookie-rcookie-iSAID"]));
        let mid = 0x1122_3344u32;
        assert_eq!(
            qm_hash1(prf, b"a", mid, b"rest"),
            prf.compute(b"a", &[b"\x11\x22\x33\x44rest"])
        );
        assert_eq!(
            qm_hash2(prf, b"a", mid, b"NI", b"rest"),
            prf.compute(b"a", &[b"\x11\x22\x33\x44NIrest"])
        );
        assert_eq!(
            qm_hash3(prf, b"a", mid, b"NI", b"NR"),
            prf.compute(b"a", &[b"\x00\x11\x22\x33\x44NINR"])
        );
        assert_eq!(
            info_hash(prf, b"a", mid, b"N"),
            prf.compute(b"a", &[b"\x11\x22\x33\x44N"])
        );
    }

    #[test]
    fn keymat_blocks() {
        let prf = Prf(HashAlg::Sha1);
        let spi = [0xc0, 0xff, 0xee, 0x01];
        let seed = [&[50u8][..], &spi, b"ni", b"nr"].concat();
        let k1 = prf.compute(b"d", &[&seed]);
        let k2 = prf.compute(b"d", &[&k1, &seed]);
        let k3 = prf.compute(b"d", &[&k2, &seed]);
        let all = [k1.as_slice(), &k2, &k3].concat();
        // ESP AES-256 + HMAC-SHA1: 32 + 20 = 52 bytes, three SHA-1 blocks
        let km = keymat(prf, b"d", None, 50, &spi, b"ni", b"nr", 52);
        assert_eq!(km.as_slice(), &all[..52]);
        assert_eq!(
            keymat(prf, b"d", None, 50, &spi, b"ni", b"nr", 20).as_slice(),
            &k1[..]
        );
        assert!(keymat(prf, b"d", None, 50, &spi, b"ni", b"nr", 0).is_empty());
        // PFS: g(qm)^xy first
        let seed = [&b"G"[..], &[50u8], &spi, b"ni", b"nr"].concat();
        let k1 = prf.compute(b"d", &[&seed]);
        let k2 = prf.compute(b"d", &[&k1, &seed]);
        let km = keymat(prf, b"d", Some(b"G"), 50, &spi, b"ni", b"nr", 40);
        assert_eq!(km.as_slice(), [k1.as_slice(), &k2].concat().as_slice());
    }

    #[test]
    fn nat_d_definition() {
        let v4: IpAddr = "192.0.2.1".parse().unwrap_or(IpAddr::from([0u8; 4]));
        let d = nat_d(HashAlg::Sha1, &CKY_I, &CKY_R, v4, 4500);
        let mut input = b"cookie-icookie-r".to_vec();
        input.extend_from_slice(&[192, 0, 2, 1, 0x11, 0x94]);
        assert_eq!(d, HashAlg::Sha1.digest(&[&input]));
        let v6: IpAddr = "2001:db8::1".parse().unwrap_or(IpAddr::from([0u8; 16]));
        let d6 = nat_d(HashAlg::Sha256, &CKY_I, &CKY_R, v6, 500);
        assert_eq!(d6.len(), 32);
        let mut input = b"cookie-icookie-r".to_vec();
        input.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        input.extend_from_slice(&[0; 11]);
        input.extend_from_slice(&[1, 0x01, 0xf4]);
        assert_eq!(d6, HashAlg::Sha256.digest(&[&input]));
    }
}

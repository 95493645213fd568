//! Hashes, PRFs and the RFC 2409 key derivations, written for the client from the RFC text
//! (§5, §5.5, Appendix B) on top of the RustCrypto hash crates, independently of the server's
//! `ike::crypto`.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Digest;

/// The negotiated hash (RFC 2409 Appendix A, RFC 4868 for SHA-2 in IKEv1 practice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

fn mac<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let Ok(mut m) = <M as KeyInit>::new_from_slice(key) else {
        return Vec::new();
    };
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

fn dig<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
    let mut d = D::new();
    for p in parts {
        d.update(p);
    }
    d.finalize().to_vec()
}

impl Hash {
    pub fn output_len(self) -> usize {
        match self {
            Hash::Sha1 => 20,
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }

    /// The hash of the concatenation of `parts`.
    pub fn digest(self, parts: &[&[u8]]) -> Vec<u8> {
        match self {
            Hash::Sha1 => dig::<sha1::Sha1>(parts),
            Hash::Sha256 => dig::<sha2::Sha256>(parts),
            Hash::Sha384 => dig::<sha2::Sha384>(parts),
            Hash::Sha512 => dig::<sha2::Sha512>(parts),
        }
    }

    /// prf = HMAC with this hash (RFC 2409 §4: no PRF negotiated, the HMAC of the hash is used).
    pub fn prf(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        match self {
            Hash::Sha1 => mac::<Hmac<sha1::Sha1>>(key, parts),
            Hash::Sha256 => mac::<Hmac<sha2::Sha256>>(key, parts),
            Hash::Sha384 => mac::<Hmac<sha2::Sha384>>(key, parts),
            Hash::Sha512 => mac::<Hmac<sha2::Sha512>>(key, parts),
        }
    }
}

/// Phase-1 key material (RFC 2409 §5 with pre-shared keys, Appendix B for the cipher key).
#[derive(Debug, Clone)]
pub struct P1Keys {
    pub skeyid: Vec<u8>,
    pub skeyid_d: Vec<u8>,
    pub skeyid_a: Vec<u8>,
    pub skeyid_e: Vec<u8>,
    pub enc_key: Vec<u8>,
    /// hash(g^xi | g^xr) truncated to the block length: the IV of message 5.
    pub iv: Vec<u8>,
}

#[allow(clippy::too_many_arguments)]
pub fn phase1_keys(
    h: Hash,
    psk: &[u8],
    ni_b: &[u8],
    nr_b: &[u8],
    gxy: &[u8],
    gxi: &[u8],
    gxr: &[u8],
    icky: &[u8; 8],
    rcky: &[u8; 8],
    key_len: usize,
    block_len: usize,
) -> P1Keys {
    let skeyid = skeyid_psk(h, psk, ni_b, nr_b);
    phase1_keys_from(h, skeyid, gxy, gxi, gxr, icky, rcky, key_len, block_len)
}

/// SKEYID for pre-shared keys (RFC 2409 §5): prf(pre-shared-key, Ni_b | Nr_b).
pub fn skeyid_psk(h: Hash, psk: &[u8], ni_b: &[u8], nr_b: &[u8]) -> Vec<u8> {
    h.prf(psk, &[ni_b, nr_b])
}

/// SKEYID for signature authentication (RFC 2409 §5): prf(Ni_b | Nr_b, g^xy).
pub fn skeyid_sig(h: Hash, ni_b: &[u8], nr_b: &[u8], gxy: &[u8]) -> Vec<u8> {
    let mut key = ni_b.to_vec();
    key.extend_from_slice(nr_b);
    h.prf(&key, &[gxy])
}

/// Phase-1 key material from SKEYID, whichever way it was made (RFC 2409 §5, Appendix B).
#[allow(clippy::too_many_arguments)]
pub fn phase1_keys_from(
    h: Hash,
    skeyid: Vec<u8>,
    gxy: &[u8],
    gxi: &[u8],
    gxr: &[u8],
    icky: &[u8; 8],
    rcky: &[u8; 8],
    key_len: usize,
    block_len: usize,
) -> P1Keys {
    // SKEYID_d = prf(SKEYID, g^xy | CKY-I | CKY-R | 0)
    let skeyid_d = h.prf(&skeyid, &[gxy, icky, rcky, &[0]]);
    // SKEYID_a = prf(SKEYID, SKEYID_d | g^xy | CKY-I | CKY-R | 1)
    let skeyid_a = h.prf(&skeyid, &[&skeyid_d, gxy, icky, rcky, &[1]]);
    // SKEYID_e = prf(SKEYID, SKEYID_a | g^xy | CKY-I | CKY-R | 2)
    let skeyid_e = h.prf(&skeyid, &[&skeyid_a, gxy, icky, rcky, &[2]]);
    // Appendix B: when SKEYID_e is too short, Ka = K1 | K2 | ..., K1 = prf(SKEYID_e, 0),
    // Kn = prf(SKEYID_e, Kn-1).
    let enc_key = if skeyid_e.len() >= key_len {
        skeyid_e[..key_len].to_vec()
    } else {
        let mut out = Vec::new();
        let mut k = h.prf(&skeyid_e, &[&[0]]);
        out.extend_from_slice(&k);
        while out.len() < key_len {
            k = h.prf(&skeyid_e, &[&k]);
            out.extend_from_slice(&k);
        }
        out.truncate(key_len);
        out
    };
    let mut iv = h.digest(&[gxi, gxr]);
    iv.truncate(block_len);
    P1Keys {
        skeyid,
        skeyid_d,
        skeyid_a,
        skeyid_e,
        enc_key,
        iv,
    }
}

/// The first IV of a phase-2 or Informational exchange: hash(last phase-1 CBC block | M-ID).
pub fn phase2_iv(h: Hash, p1_last_block: &[u8], mid: u32, block_len: usize) -> Vec<u8> {
    let mut iv = h.digest(&[p1_last_block, &mid.to_be_bytes()]);
    iv.truncate(block_len);
    iv
}

/// KEYMAT (RFC 2409 §5.5), expanded: K1 = prf(SKEYID_d, [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b),
/// Kn = prf(SKEYID_d, Kn-1 | [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b).
#[allow(clippy::too_many_arguments)]
pub fn keymat(
    h: Hash,
    skeyid_d: &[u8],
    gqm: Option<&[u8]>,
    protocol: u8,
    spi: u32,
    ni_b: &[u8],
    nr_b: &[u8],
    len: usize,
) -> Vec<u8> {
    let spi = spi.to_be_bytes();
    let g = gqm.unwrap_or(&[]);
    let mut out = Vec::new();
    let mut k = h.prf(skeyid_d, &[g, &[protocol], &spi, ni_b, nr_b]);
    out.extend_from_slice(&k);
    while out.len() < len {
        k = h.prf(skeyid_d, &[&k, g, &[protocol], &spi, ni_b, nr_b]);
        out.extend_from_slice(&k);
    }
    out.truncate(len);
    out
}

/// NAT-D (RFC 3947 §3.2): HASH(CKY-I | CKY-R | IP | Port), with the negotiated hash.
pub fn nat_d(h: Hash, icky: &[u8; 8], rcky: &[u8; 8], addr: std::net::SocketAddr) -> Vec<u8> {
    let port = addr.port().to_be_bytes();
    match addr.ip() {
        std::net::IpAddr::V4(a) => h.digest(&[icky, rcky, &a.octets(), &port]),
        std::net::IpAddr::V6(a) => h.digest(&[icky, rcky, &a.octets(), &port]),
    }
}

/// Equality without early exit (the values are MACs).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha256_rfc4231_case2() {
        let out = Hash::Sha256.prf(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex::encode(out),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn hmac_sha1_rfc2202_case2() {
        let out = Hash::Sha1.prf(b"Jefe", &[b"what do ya want for nothing?"]);
        assert_eq!(hex::encode(out), "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
    }
}

//! Diffie-Hellman groups: MODP (RFC 2409 §6, RFC 3526) and ECP (RFC 5903).

use core::fmt;
use std::sync::OnceLock;

use aws_lc_rs::agreement;
use crypto_bigint::modular::{FixedMontyForm, FixedMontyParams};
use crypto_bigint::{Odd, Uint};
use subtle::{ConstantTimeEq, ConstantTimeGreater, ConstantTimeLess};
use zeroize::{Zeroize, Zeroizing};

/// A Diffie-Hellman group known to IKEv1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DhGroup {
    /// Group 1, 768-bit MODP (RFC 2409 §6.1). Known so that it can be named in logs and
    /// refused by policy ([`DhGroup::policy_allowed`] is false); it still works.
    Modp768,
    /// Group 2, 1024-bit MODP (RFC 2409 §6.2).
    Modp1024,
    /// Group 5, 1536-bit MODP (RFC 3526 §2).
    Modp1536,
    /// Group 14, 2048-bit MODP (RFC 3526 §3).
    Modp2048,
    /// Group 15, 3072-bit MODP (RFC 3526 §4).
    Modp3072,
    /// Group 16, 4096-bit MODP (RFC 3526 §5).
    Modp4096,
    /// Group 19, NIST P-256 (RFC 5903).
    Ecp256,
    /// Group 20, NIST P-384 (RFC 5903).
    Ecp384,
}

/// Why a Diffie-Hellman value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DhError {
    /// The value does not have the group's fixed length (RFC 2409 §5: KE data is padded to
    /// the group's length; RFC 5903: x || y).
    #[error("Diffie-Hellman value has length {got}, expected {expected}")]
    WrongLength {
        /// Required length in bytes.
        expected: usize,
        /// Length received.
        got: usize,
    },
    /// The peer's public value is unusable: MODP not in 1 < y < p-1 (or the agreement
    /// degenerated to 1 / p-1); ECP not a point on the curve, or the identity.
    #[error("invalid Diffie-Hellman public value")]
    InvalidPublic,
    /// A private value handed to [`DhPrivate::from_secret`] is out of range
    /// (MODP: not 1 < x < p-1 or longer than the prime; ECP: not 0 < d < n or wrong length).
    #[error("invalid Diffie-Hellman private value")]
    InvalidSecret,
}

/// Decodes hex at compile time, ignoring ASCII whitespace, so the primes below are written
/// exactly as the RFCs print them. A malformed constant fails the build, never at run time.
const fn hex_const<const N: usize>(s: &str) -> [u8; N] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => panic!("bad hex digit"),
        }
    }
    let bytes = s.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    let mut n = 0;
    let mut hi: Option<u8> = None;
    while i < bytes.len() {
        let c = bytes[i];
        i += 1;
        if c.is_ascii_whitespace() {
            continue;
        }
        let v = nibble(c);
        match hi {
            None => hi = Some(v),
            Some(h) => {
                assert!(n < N, "hex constant too long");
                out[n] = (h << 4) | v;
                n += 1;
                hi = None;
            }
        }
    }
    assert!(n == N && hi.is_none(), "hex constant too short");
    out
}

// RFC 2409 §6.1: 2^768 - 2^704 - 1 + 2^64 * { [2^638 pi] + 149686 }
static MODP_768: [u8; 96] = hex_const(
    "FFFFFFFF FFFFFFFF C90FDAA2 2168C234 C4C6628B 80DC1CD1
     29024E08 8A67CC74 020BBEA6 3B139B22 514A0879 8E3404DD
     EF9519B3 CD3A431B 302B0A6D F25F1437 4FE1356D 6D51C245
     E485B576 625E7EC6 F44C42E9 A63A3620 FFFFFFFF FFFFFFFF",
);

// RFC 2409 §6.2: 2^1024 - 2^960 - 1 + 2^64 * { [2^894 pi] + 129093 }
static MODP_1024: [u8; 128] = hex_const(
    "FFFFFFFF FFFFFFFF C90FDAA2 2168C234 C4C6628B 80DC1CD1
     29024E08 8A67CC74 020BBEA6 3B139B22 514A0879 8E3404DD
     EF9519B3 CD3A431B 302B0A6D F25F1437 4FE1356D 6D51C245
     E485B576 625E7EC6 F44C42E9 A637ED6B 0BFF5CB6 F406B7ED
     EE386BFB 5A899FA5 AE9F2411 7C4B1FE6 49286651 ECE65381
     FFFFFFFF FFFFFFFF",
);

// RFC 3526 §2: 2^1536 - 2^1472 - 1 + 2^64 * { [2^1406 pi] + 741804 }
static MODP_1536: [u8; 192] = hex_const(
    "FFFFFFFF FFFFFFFF C90FDAA2 2168C234 C4C6628B 80DC1CD1
     29024E08 8A67CC74 020BBEA6 3B139B22 514A0879 8E3404DD
     EF9519B3 CD3A431B 302B0A6D F25F1437 4FE1356D 6D51C245
     E485B576 625E7EC6 F44C42E9 A637ED6B 0BFF5CB6 F406B7ED
     EE386BFB 5A899FA5 AE9F2411 7C4B1FE6 49286651 ECE45B3D
     C2007CB8 A163BF05 98DA4836 1C55D39A 69163FA8 FD24CF5F
     83655D23 DCA3AD96 1C62F356 208552BB 9ED52907 7096966D
     670C354E 4ABC9804 F1746C08 CA237327 FFFFFFFF FFFFFFFF",
);

// RFC 3526 §3: 2^2048 - 2^1984 - 1 + 2^64 * { [2^1918 pi] + 124476 }
static MODP_2048: [u8; 256] = hex_const(
    "FFFFFFFF FFFFFFFF C90FDAA2 2168C234 C4C6628B 80DC1CD1
     29024E08 8A67CC74 020BBEA6 3B139B22 514A0879 8E3404DD
     EF9519B3 CD3A431B 302B0A6D F25F1437 4FE1356D 6D51C245
     E485B576 625E7EC6 F44C42E9 A637ED6B 0BFF5CB6 F406B7ED
     EE386BFB 5A899FA5 AE9F2411 7C4B1FE6 49286651 ECE45B3D
     C2007CB8 A163BF05 98DA4836 1C55D39A 69163FA8 FD24CF5F
     83655D23 DCA3AD96 1C62F356 208552BB 9ED52907 7096966D
     670C354E 4ABC9804 F1746C08 CA18217C 32905E46 2E36CE3B
     E39E772C 180E8603 9B2783A2 EC07A28F B5C55DF0 6F4C52C9
     DE2BCBF6 95581718 3995497C EA956AE5 15D22618 98FA0510
     15728E5A 8AACAA68 FFFFFFFF FFFFFFFF",
);

// RFC 3526 §4: 2^3072 - 2^3008 - 1 + 2^64 * { [2^2942 pi] + 1690314 }
static MODP_3072: [u8; 384] = hex_const(
    "FFFFFFFF FFFFFFFF C90FDAA2 2168C234 C4C6628B 80DC1CD1
     29024E08 8A67CC74 020BBEA6 3B139B22 514A0879 8E3404DD
     EF9519B3 CD3A431B 302B0A6D F25F1437 4FE1356D 6D51C245
     E485B576 625E7EC6 F44C42E9 A637ED6B 0BFF5CB6 F406B7ED
     EE386BFB 5A899FA5 AE9F2411 7C4B1FE6 49286651 ECE45B3D
     C2007CB8 A163BF05 98DA4836 1C55D39A 69163FA8 FD24CF5F
     83655D23 DCA3AD96 1C62F356 208552BB 9ED52907 7096966D
     670C354E 4ABC9804 F1746C08 CA18217C 32905E46 2E36CE3B
     E39E772C 180E8603 9B2783A2 EC07A28F B5C55DF0 6F4C52C9
     DE2BCBF6 95581718 3995497C EA956AE5 15D22618 98FA0510
     15728E5A 8AAAC42D AD33170D 04507A33 A85521AB DF1CBA64
     ECFB8504 58DBEF0A 8AEA7157 5D060C7D B3970F85 A6E1E4C7
     ABF5AE8C DB0933D7 1E8C94E0 4A25619D CEE3D226 1AD2EE6B
     F12FFA06 D98A0864 D8760273 3EC86A64 521F2B18 177B200C
     BBE11757 7A615D6C 770988C0 BAD946E2 08E24FA0 74E5AB31
     43DB5BFC E0FD108E 4B82D120 A93AD2CA FFFFFFFF FFFFFFFF",
);

// RFC 3526 §5: 2^4096 - 2^4032 - 1 + 2^64 * { [2^3966 pi] + 240904 }
static MODP_4096: [u8; 512] = hex_const(
    "FFFFFFFF FFFFFFFF C90FDAA2 2168C234 C4C6628B 80DC1CD1
     29024E08 8A67CC74 020BBEA6 3B139B22 514A0879 8E3404DD
     EF9519B3 CD3A431B 302B0A6D F25F1437 4FE1356D 6D51C245
     E485B576 625E7EC6 F44C42E9 A637ED6B 0BFF5CB6 F406B7ED
     EE386BFB 5A899FA5 AE9F2411 7C4B1FE6 49286651 ECE45B3D
     C2007CB8 A163BF05 98DA4836 1C55D39A 69163FA8 FD24CF5F
     83655D23 DCA3AD96 1C62F356 208552BB 9ED52907 7096966D
     670C354E 4ABC9804 F1746C08 CA18217C 32905E46 2E36CE3B
     E39E772C 180E8603 9B2783A2 EC07A28F B5C55DF0 6F4C52C9
     DE2BCBF6 95581718 3995497C EA956AE5 15D22618 98FA0510
     15728E5A 8AAAC42D AD33170D 04507A33 A85521AB DF1CBA64
     ECFB8504 58DBEF0A 8AEA7157 5D060C7D B3970F85 A6E1E4C7
     ABF5AE8C DB0933D7 1E8C94E0 4A25619D CEE3D226 1AD2EE6B
     F12FFA06 D98A0864 D8760273 3EC86A64 521F2B18 177B200C
     BBE11757 7A615D6C 770988C0 BAD946E2 08E24FA0 74E5AB31
     43DB5BFC E0FD108E 4B82D120 A9210801 1A723C12 A787E6D7
     88719A10 BDBA5B26 99C32718 6AF4E23C 1A946834 B6150BDA
     2583E9CA 2AD44CE8 DBBBC2DB 04DE8EF9 2E8EFC14 1FBECAA6
     287C5947 4E6BC05D 99B2964F A090C3A2 233BA186 515BE7ED
     1F612970 CEE2D7AF B81BDD76 2170481C D0069127 D5B05AA9
     93B4EA98 8D8FDDC1 86FFB7DC 90A6C08F 4DF435C9 34063199
     FFFFFFFF FFFFFFFF",
);

/// The generator of every MODP group here (RFC 2409 §6, RFC 3526).
pub(crate) const MODP_GENERATOR: u8 = 2;

/// Length in bytes of the random private exponent [`DhPrivate::generate`] draws for a MODP
/// group. RFC 3526 §8 asks for an exponent of at least twice the group's strength and gives
/// two strength estimates with the exponent sizes they imply:
///
/// | group | modulus  | estimate 1 | exponent | estimate 2 | exponent |
/// |-------|----------|------------|----------|------------|----------|
/// |   5   | 1536-bit |     90     |   180-   |    120     |   240-   |
/// |  14   | 2048-bit |    110     |   220-   |    160     |   320-   |
/// |  15   | 3072-bit |    130     |   260-   |    210     |   420-   |
/// |  16   | 4096-bit |    150     |   300-   |    240     |   480-   |
///
/// We take twice the larger estimate (the second), rounded up to a multiple of 32 bits, and
/// never less than 256 bits: 1536 → 256, 2048 → 320, 3072 → 448, 4096 → 480. Groups 1 and 2
/// are not in the table and get the 256-bit floor, well above twice what a 768- or 1024-bit
/// modulus offers. The exponent's length is public (the exponentiation's running time depends
/// on it), its value is not.
const fn modp_exponent_len(group: DhGroup) -> usize {
    match group {
        DhGroup::Modp2048 => 40,
        DhGroup::Modp3072 => 56,
        DhGroup::Modp4096 => 60,
        _ => 32,
    }
}

impl DhGroup {
    /// Every group known here, in IANA number order.
    pub const ALL: [DhGroup; 8] = [
        Self::Modp768,
        Self::Modp1024,
        Self::Modp1536,
        Self::Modp2048,
        Self::Modp3072,
        Self::Modp4096,
        Self::Ecp256,
        Self::Ecp384,
    ];

    /// Maps an IKE "Group Description" value (attribute class 4).
    #[must_use]
    pub fn from_id(id: u16) -> Option<Self> {
        match id {
            1 => Some(Self::Modp768),
            2 => Some(Self::Modp1024),
            5 => Some(Self::Modp1536),
            14 => Some(Self::Modp2048),
            15 => Some(Self::Modp3072),
            16 => Some(Self::Modp4096),
            19 => Some(Self::Ecp256),
            20 => Some(Self::Ecp384),
            _ => None,
        }
    }

    /// The IANA group number.
    #[must_use]
    pub fn id(self) -> u16 {
        match self {
            Self::Modp768 => 1,
            Self::Modp1024 => 2,
            Self::Modp1536 => 5,
            Self::Modp2048 => 14,
            Self::Modp3072 => 15,
            Self::Modp4096 => 16,
            Self::Ecp256 => 19,
            Self::Ecp384 => 20,
        }
    }

    /// Length in bytes of a public value (KE payload body) and, for MODP, of g^xy.
    /// MODP: the prime's length; ECP: x || y.
    #[must_use]
    pub fn public_len(self) -> usize {
        match self.modp_prime() {
            Some(p) => p.len(),
            None => 2 * self.ecp_field_len(),
        }
    }

    /// Length in bytes of the shared secret g^xy: the prime's length for MODP, the x
    /// coordinate for ECP.
    #[must_use]
    pub fn shared_len(self) -> usize {
        match self.modp_prime() {
            Some(p) => p.len(),
            None => self.ecp_field_len(),
        }
    }

    /// "MODP-2048", "ECP-256", ...
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Modp768 => "MODP-768",
            Self::Modp1024 => "MODP-1024",
            Self::Modp1536 => "MODP-1536",
            Self::Modp2048 => "MODP-2048",
            Self::Modp3072 => "MODP-3072",
            Self::Modp4096 => "MODP-4096",
            Self::Ecp256 => "ECP-256",
            Self::Ecp384 => "ECP-384",
        }
    }

    /// Whether Roadgate's policy accepts the group: everything but the 768-bit group 1.
    #[must_use]
    pub fn policy_allowed(self) -> bool {
        self != Self::Modp768
    }

    /// Whether this is an elliptic-curve group.
    #[must_use]
    pub fn is_ecp(self) -> bool {
        matches!(self, Self::Ecp256 | Self::Ecp384)
    }

    /// The big-endian prime of a MODP group (`None` for ECP groups).
    #[must_use]
    pub fn modp_prime(self) -> Option<&'static [u8]> {
        match self {
            Self::Modp768 => Some(&MODP_768),
            Self::Modp1024 => Some(&MODP_1024),
            Self::Modp1536 => Some(&MODP_1536),
            Self::Modp2048 => Some(&MODP_2048),
            Self::Modp3072 => Some(&MODP_3072),
            Self::Modp4096 => Some(&MODP_4096),
            Self::Ecp256 | Self::Ecp384 => None,
        }
    }

    fn ecp_field_len(self) -> usize {
        match self {
            Self::Ecp384 => 48,
            _ => 32,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// MODP arithmetic, on crypto-bigint's constant-time Montgomery exponentiation. The limb count is
// a const generic, so each group size gets its own stack-allocated instance.

/// Which MODP operation failed.
#[derive(Debug, PartialEq, Eq)]
enum ModpFault {
    /// The base is not in 1 < b < p-1.
    Base,
    /// The exponent is not in 1 < x < p-1.
    Exponent,
    /// The result is 1 or p-1 (only a small-subgroup base can cause it).
    Degenerate,
}

/// A MODP group's Montgomery parameters and range bound, computed once per process.
struct ModpParams<const L: usize> {
    monty: FixedMontyParams<L>,
    p_minus_1: Uint<L>,
}

impl<const L: usize> ModpParams<L> {
    /// The parameters for prime `p` (exactly `L` limbs long), set up on first use.
    fn get(
        cell: &'static OnceLock<Option<Self>>,
        p: &'static [u8],
    ) -> Result<&'static Self, ModpFault> {
        cell.get_or_init(|| {
            if p.len() != L * 8 {
                return None;
            }
            let p_int = Uint::<L>::from_be_slice(p);
            let modulus = Option::<Odd<Uint<L>>>::from(Odd::new(p_int))?;
            Some(Self {
                // Variable time in the modulus only, which is public.
                monty: FixedMontyParams::new_vartime(modulus),
                p_minus_1: p_int.wrapping_sub(&Uint::<L>::ONE),
            })
        })
        .as_ref()
        .ok_or(ModpFault::Base)
    }
}

/// `base^exp mod p` for 64-bit-limbed primes; `base` must have the prime's length, `exp` at
/// most that length. Constant time in the exponent's value (not its byte length).
fn modp_pow_limbs<const L: usize>(
    params: &ModpParams<L>,
    base: &[u8],
    exp: &[u8],
) -> Result<Zeroizing<Vec<u8>>, ModpFault> {
    let width = L * 8;
    if base.len() != width || exp.len() > width {
        return Err(ModpFault::Exponent);
    }
    let one = Uint::<L>::ONE;
    let p_minus_1 = params.p_minus_1;

    // Public value: plain range check.
    let b = Uint::<L>::from_be_slice(base);
    if !bool::from(b.ct_gt(&one) & b.ct_lt(&p_minus_1)) {
        return Err(ModpFault::Base);
    }

    // Secret exponent: left-pad into a zeroized buffer, range check without branching on bits.
    let mut padded = Zeroizing::new(vec![0u8; width]);
    padded[width - exp.len()..].copy_from_slice(exp);
    let mut x = Uint::<L>::from_be_slice(&padded);
    let exp_ok = bool::from(x.ct_gt(&one) & x.ct_lt(&p_minus_1));
    if !exp_ok {
        x.zeroize();
        return Err(ModpFault::Exponent);
    }
    let exp_bits = u32::try_from(exp.len() * 8).unwrap_or(u32::MAX);

    // Fixed-window exponentiation over only the exponent's (public) bit length, with Almost
    // Montgomery Multiplication (no per-step final subtraction; fully reduced at the end).
    let mut r = FixedMontyForm::new(&b, &params.monty)
        .pow_amm_bounded_exp(&x, exp_bits)
        .retrieve();
    x.zeroize();
    let degenerate = r.ct_eq(&one) | r.ct_eq(&p_minus_1);
    let out = Zeroizing::new(r.to_be_bytes().as_ref().to_vec());
    r.zeroize();
    if bool::from(degenerate) {
        return Err(ModpFault::Degenerate);
    }
    Ok(out)
}

/// Dispatches to the limb count of `group`'s prime, with its parameters set up once.
fn modp_pow(group: DhGroup, base: &[u8], exp: &[u8]) -> Result<Zeroizing<Vec<u8>>, ModpFault> {
    static P768: OnceLock<Option<ModpParams<12>>> = OnceLock::new();
    static P1024: OnceLock<Option<ModpParams<16>>> = OnceLock::new();
    static P1536: OnceLock<Option<ModpParams<24>>> = OnceLock::new();
    static P2048: OnceLock<Option<ModpParams<32>>> = OnceLock::new();
    static P3072: OnceLock<Option<ModpParams<48>>> = OnceLock::new();
    static P4096: OnceLock<Option<ModpParams<64>>> = OnceLock::new();
    match group {
        DhGroup::Modp768 => modp_pow_limbs(ModpParams::get(&P768, &MODP_768)?, base, exp),
        DhGroup::Modp1024 => modp_pow_limbs(ModpParams::get(&P1024, &MODP_1024)?, base, exp),
        DhGroup::Modp1536 => modp_pow_limbs(ModpParams::get(&P1536, &MODP_1536)?, base, exp),
        DhGroup::Modp2048 => modp_pow_limbs(ModpParams::get(&P2048, &MODP_2048)?, base, exp),
        DhGroup::Modp3072 => modp_pow_limbs(ModpParams::get(&P3072, &MODP_3072)?, base, exp),
        DhGroup::Modp4096 => modp_pow_limbs(ModpParams::get(&P4096, &MODP_4096)?, base, exp),
        DhGroup::Ecp256 | DhGroup::Ecp384 => Err(ModpFault::Base),
    }
}

/// 1 < y < p-1 for a public value of exactly the prime's length `L * 8`.
fn modp_in_range<const L: usize>(params: &ModpParams<L>, y: &[u8]) -> bool {
    if y.len() != L * 8 {
        return false;
    }
    let y = Uint::<L>::from_be_slice(y);
    bool::from(y.ct_gt(&Uint::<L>::ONE) & y.ct_lt(&params.p_minus_1))
}

/// Checks a peer's public value without any private key: exactly `group.public_len()` bytes;
/// MODP: 1 < y < p-1 (crypto-bigint comparison); ECP: `x || y` is a point on the curve and not
/// the identity (aws-lc parses and validates it). Costs a comparison or a point decoding, far
/// less than generating our own key, so a responder calls it before it makes one.
pub fn validate_public(group: DhGroup, peer_public: &[u8]) -> Result<(), DhError> {
    static P768: OnceLock<Option<ModpParams<12>>> = OnceLock::new();
    static P1024: OnceLock<Option<ModpParams<16>>> = OnceLock::new();
    static P1536: OnceLock<Option<ModpParams<24>>> = OnceLock::new();
    static P2048: OnceLock<Option<ModpParams<32>>> = OnceLock::new();
    static P3072: OnceLock<Option<ModpParams<48>>> = OnceLock::new();
    static P4096: OnceLock<Option<ModpParams<64>>> = OnceLock::new();
    let expected = group.public_len();
    if peer_public.len() != expected {
        return Err(DhError::WrongLength {
            expected,
            got: peer_public.len(),
        });
    }
    let bad = |_| DhError::InvalidPublic;
    let ok = match group {
        DhGroup::Modp768 => {
            modp_in_range(ModpParams::get(&P768, &MODP_768).map_err(bad)?, peer_public)
        }
        DhGroup::Modp1024 => modp_in_range(
            ModpParams::get(&P1024, &MODP_1024).map_err(bad)?,
            peer_public,
        ),
        DhGroup::Modp1536 => modp_in_range(
            ModpParams::get(&P1536, &MODP_1536).map_err(bad)?,
            peer_public,
        ),
        DhGroup::Modp2048 => modp_in_range(
            ModpParams::get(&P2048, &MODP_2048).map_err(bad)?,
            peer_public,
        ),
        DhGroup::Modp3072 => modp_in_range(
            ModpParams::get(&P3072, &MODP_3072).map_err(bad)?,
            peer_public,
        ),
        DhGroup::Modp4096 => modp_in_range(
            ModpParams::get(&P4096, &MODP_4096).map_err(bad)?,
            peer_public,
        ),
        DhGroup::Ecp256 | DhGroup::Ecp384 => {
            let Some(alg) = ecdh_alg(group) else {
                return Err(DhError::InvalidPublic);
            };
            if peer_public.iter().all(|&b| b == 0) {
                return Err(DhError::InvalidPublic);
            }
            let mut sec1 = [0u8; SEC1_MAX];
            sec1[0] = 0x04;
            sec1[1..=expected].copy_from_slice(peer_public);
            let unparsed = agreement::UnparsedPublicKey::new(alg, &sec1[..=expected]);
            agreement::ParsedPublicKey::try_from(&unparsed).is_ok()
        }
    };
    if ok {
        Ok(())
    } else {
        Err(DhError::InvalidPublic)
    }
}

fn modp_generator(group: DhGroup) -> Vec<u8> {
    let mut g = vec![0u8; group.public_len()];
    if let Some(last) = g.last_mut() {
        *last = MODP_GENERATOR;
    }
    g
}

// ---------------------------------------------------------------------------------------------

enum Secret {
    /// Big-endian exponent (its byte length is public, its value is not).
    Modp(Zeroizing<Vec<u8>>),
    /// An aws-lc ECDH P-256 or P-384 key (`agreement::agree` borrows it, does not consume it).
    Ecp(agreement::PrivateKey),
}

/// Our Diffie-Hellman private value and the matching public value.
/// The secret is zeroized on drop (`Zeroizing` for MODP exponents; for ECP, aws-lc clears
/// the key's memory when it frees it); `Debug` shows only the group and the public value.
pub struct DhPrivate {
    group: DhGroup,
    secret: Secret,
    public: Vec<u8>,
}

impl fmt::Debug for DhPrivate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DhPrivate")
            .field("group", &self.group)
            .field("public", &hex::encode(&self.public))
            .finish_non_exhaustive()
    }
}

/// The aws-lc ECDH algorithm of an ECP group.
fn ecdh_alg(group: DhGroup) -> Option<&'static agreement::Algorithm> {
    match group {
        DhGroup::Ecp256 => Some(&agreement::ECDH_P256),
        DhGroup::Ecp384 => Some(&agreement::ECDH_P384),
        _ => None,
    }
}

/// Longest SEC1 uncompressed point here: `0x04 || x || y` for P-384.
const SEC1_MAX: usize = 1 + 2 * 48;

impl DhPrivate {
    /// Draws a fresh private value from `rng`: any `rand_core` 0.10 [`rand_core::CryptoRng`]
    /// (infallible), e.g. `rand::rng()`, the OS generator as
    /// `rand_core::UnwrapErr(rand::rngs::SysRng)`, or a seeded `ChaCha20Rng` in tests.
    /// MODP: a uniformly random exponent of the group's length (256 to 480 bits, see
    /// `modp_exponent_len`); ECP: a uniformly random non-zero scalar drawn by aws-lc from its
    /// own system-seeded DRBG, so `rng` is not used for ECP (unless aws-lc's generator fails,
    /// when the scalar is drawn from `rng` instead) and seeding it does not make ECP keys
    /// reproducible; use [`DhPrivate::from_secret`] for fixed ECP keys.
    ///
    /// ```
    /// use roadgate_core::ike::crypto::{DhGroup, DhPrivate};
    /// let ours = DhPrivate::generate(DhGroup::Modp2048, &mut rand::rng());
    /// let peer = DhPrivate::generate(DhGroup::Modp2048, &mut rand_core::UnwrapErr(rand::rngs::SysRng));
    /// assert_eq!(ours.shared_secret(peer.public()).ok(), peer.shared_secret(ours.public()).ok());
    /// ```
    pub fn generate<R: rand_core::CryptoRng + ?Sized>(group: DhGroup, rng: &mut R) -> Self {
        match ecdh_alg(group) {
            Some(alg) => agreement::PrivateKey::generate(alg)
                .ok()
                .and_then(|sk| Self::from_ecdh_key(group, sk).ok())
                .unwrap_or_else(|| Self::ecp_from_rng(group, rng)),
            None => loop {
                let mut x = Zeroizing::new(vec![0u8; modp_exponent_len(group)]);
                rng.fill_bytes(&mut x);
                // Only x in {0, 1} is refused (probability 2^-255): draw again.
                if let Ok(k) = Self::from_secret(group, &x) {
                    break k;
                }
            },
        }
    }

    /// ECP key from `rng`, used only if aws-lc's own generation fails: a uniform scalar by
    /// rejection (d = 0 or d >= n is refused; probability below 2^-32 per draw for P-256).
    fn ecp_from_rng<R: rand_core::CryptoRng + ?Sized>(group: DhGroup, rng: &mut R) -> Self {
        for _ in 0..64 {
            let mut d = Zeroizing::new(vec![0u8; group.shared_len()]);
            rng.fill_bytes(&mut d);
            if let Ok(k) = Self::from_secret(group, &d) {
                return k;
            }
        }
        // Not reachable with a working aws-lc; without one there is no key to return.
        panic!("aws-lc refused 64 random {} scalars", group.name());
    }

    /// Builds a private value from big-endian secret bytes: a MODP exponent (1 < x < p-1, at
    /// most the prime's length; its byte length is treated as public) or an ECP scalar of
    /// exactly the field length (0 < d < n). For tests and known answers.
    pub fn from_secret(group: DhGroup, secret: &[u8]) -> Result<Self, DhError> {
        match ecdh_alg(group) {
            Some(alg) => {
                if secret.len() != group.shared_len() {
                    return Err(DhError::InvalidSecret);
                }
                // aws-lc refuses d = 0 and d >= n.
                let sk = agreement::PrivateKey::from_private_key(alg, secret)
                    .map_err(|_| DhError::InvalidSecret)?;
                Self::from_ecdh_key(group, sk)
            }
            None => {
                if secret.is_empty() || secret.len() > group.public_len() {
                    return Err(DhError::InvalidSecret);
                }
                let public = modp_pow(group, &modp_generator(group), secret)
                    .map_err(|_| DhError::InvalidSecret)?;
                Ok(Self {
                    group,
                    secret: Secret::Modp(Zeroizing::new(secret.to_vec())),
                    public: public.to_vec(),
                })
            }
        }
    }

    /// Wraps an aws-lc key, with its public value as RFC 5903 `x || y` (aws-lc gives SEC1
    /// `0x04 || x || y`).
    fn from_ecdh_key(group: DhGroup, sk: agreement::PrivateKey) -> Result<Self, DhError> {
        let sec1 = sk
            .compute_public_key()
            .map_err(|_| DhError::InvalidSecret)?;
        match sec1.as_ref().split_first() {
            Some((0x04, xy)) if xy.len() == group.public_len() => Ok(Self {
                group,
                public: xy.to_vec(),
                secret: Secret::Ecp(sk),
            }),
            _ => Err(DhError::InvalidSecret),
        }
    }

    /// The group.
    #[must_use]
    pub fn group(&self) -> DhGroup {
        self.group
    }

    /// Our public value, exactly `group().public_len()` bytes: g^x left-padded to the prime's
    /// length (MODP) or x || y (ECP, RFC 5903 §7, no point-format octet).
    #[must_use]
    pub fn public(&self) -> &[u8] {
        &self.public
    }

    /// g^xy from the peer's public value, which is validated first: its length must be
    /// exactly `public_len()`; MODP: 1 < y < p-1; ECP: a point on the curve (not the identity).
    /// MODP result: left-padded to the prime's length (RFC 2409 g^xy); ECP: the x coordinate
    /// (RFC 5903 §9).
    pub fn shared_secret(&self, peer_public: &[u8]) -> Result<Zeroizing<Vec<u8>>, DhError> {
        let expected = self.group.public_len();
        if peer_public.len() != expected {
            return Err(DhError::WrongLength {
                expected,
                got: peer_public.len(),
            });
        }
        match &self.secret {
            Secret::Modp(x) => {
                modp_pow(self.group, peer_public, x).map_err(|_| DhError::InvalidPublic)
            }
            Secret::Ecp(sk) => {
                // The identity has no affine x || y; all zeros, which some stacks send for it,
                // is refused outright (aws-lc would also find (0, 0) off the curve).
                if peer_public.iter().all(|&b| b == 0) {
                    return Err(DhError::InvalidPublic);
                }
                // x || y -> SEC1 0x04 || x || y; aws-lc checks the coordinates are below the
                // field prime and the point is on the curve before multiplying.
                let mut sec1 = [0u8; SEC1_MAX];
                sec1[0] = 0x04;
                sec1[1..=expected].copy_from_slice(peer_public);
                let peer = agreement::UnparsedPublicKey::new(sk.algorithm(), &sec1[..=expected]);
                // The agreement's output is the x coordinate of d * Q (RFC 5903 §9).
                let shared = agreement::agree(sk, peer, DhError::InvalidPublic, |z| {
                    Ok(Zeroizing::new(z.to_vec()))
                })?;
                if shared.len() != self.group.shared_len() {
                    return Err(DhError::InvalidPublic);
                }
                Ok(shared)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    const MODP: [DhGroup; 6] = [
        DhGroup::Modp768,
        DhGroup::Modp1024,
        DhGroup::Modp1536,
        DhGroup::Modp2048,
        DhGroup::Modp3072,
        DhGroup::Modp4096,
    ];

    fn shr1(p: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; p.len()];
        let mut carry = 0u8;
        for (o, &b) in v.iter_mut().zip(p) {
            *o = (b >> 1) | carry;
            carry = b << 7;
        }
        v
    }

    fn rng() -> ChaCha20Rng {
        ChaCha20Rng::seed_from_u64(2409)
    }

    #[test]
    fn ids_names_lengths() {
        for g in DhGroup::ALL {
            assert_eq!(DhGroup::from_id(g.id()), Some(g));
        }
        for id in [0, 3, 4, 17, 18, 21, 24, 0xffff] {
            assert_eq!(DhGroup::from_id(id), None);
        }
        let lens: Vec<_> = DhGroup::ALL.iter().map(|g| g.public_len()).collect();
        assert_eq!(lens, [96, 128, 192, 256, 384, 512, 64, 96]);
        assert_eq!(DhGroup::Modp2048.name(), "MODP-2048");
        assert_eq!(DhGroup::Ecp256.name(), "ECP-256");
        assert!(!DhGroup::Modp768.policy_allowed());
        assert!(DhGroup::Modp1024.policy_allowed());
    }

    /// Structural checks on the constants, plus Fermat base 2 and the generator's order, run
    /// with the same exponentiation the groups use. (The primes are additionally derived from
    /// pi and Miller-Rabin-tested by the Python reference; the cross-check compares the hex.)
    #[test]
    fn modp_constants() {
        for g in MODP {
            let p = g.modp_prime().unwrap_or_default();
            let bits = match g {
                DhGroup::Modp768 => 768,
                DhGroup::Modp1024 => 1024,
                DhGroup::Modp1536 => 1536,
                DhGroup::Modp2048 => 2048,
                DhGroup::Modp3072 => 3072,
                _ => 4096,
            };
            assert_eq!(p.len() * 8, bits, "{}", g.name());
            // 2^N - 2^(N-64) - 1 + 2^64 * (...): top and bottom 64 bits are all ones.
            assert!(p[..8].iter().chain(&p[p.len() - 8..]).all(|&b| b == 0xff));
            // p = 7 mod 8 (so 2 is a quadratic residue, of order q = (p-1)/2).
            assert_eq!(p[p.len() - 1] & 7, 7);
            // Fermat: 2^(p-1) = 1 (mod p). modp_pow refuses a result of 1 by design, so
            // check 2^(p-2) * 2 = 1, i.e. 2^(p-2) = (p+1)/2.
            let mut pm2 = p.to_vec();
            let last = pm2.len() - 1;
            pm2[last] -= 2;
            let r = modp_pow(g, &modp_generator(g), &pm2);
            let half_p_plus_1 = {
                // (p+1)/2 = (p >> 1) + 1, p being odd.
                let mut v = shr1(p);
                for byte in v.iter_mut().rev() {
                    let (sum, carry) = byte.overflowing_add(1);
                    *byte = sum;
                    if !carry {
                        break;
                    }
                }
                v
            };
            assert_eq!(r.map(|v| v.to_vec()), Ok(half_p_plus_1), "{}", g.name());
            // Generator order q: 2^q = 1, which modp_pow reports as Degenerate.
            let q = shr1(p);
            assert_eq!(
                modp_pow(g, &modp_generator(g), &q).map(|v| v.to_vec()),
                Err(ModpFault::Degenerate),
                "{}",
                g.name()
            );
            assert_eq!(MODP_GENERATOR, 2);
        }
    }

    #[test]
    fn agreement_every_group() {
        let mut rng = rng();
        for g in DhGroup::ALL {
            let a = DhPrivate::generate(g, &mut rng);
            let b = DhPrivate::generate(g, &mut rng);
            assert_eq!(a.group(), g);
            assert_eq!(a.public().len(), g.public_len());
            assert_ne!(a.public(), b.public());
            let ab = a.shared_secret(b.public());
            let ba = b.shared_secret(a.public());
            let ab = ab.unwrap_or_else(|e| panic!("{}: {e}", g.name()));
            assert_eq!(Ok(ab.clone()), ba, "{}", g.name());
            assert_eq!(ab.len(), g.shared_len());
            assert!(!format!("{a:?}").contains("secret:"));
        }
    }

    #[test]
    fn modp_known_answer_small_exponent() {
        // x = 2: g^x = 4, and g^xy with y = 4 is 4^2 = 16.
        for g in MODP {
            let k = DhPrivate::from_secret(g, &[2]).unwrap_or_else(|e| panic!("{e}"));
            let mut four = vec![0u8; g.public_len()];
            four[g.public_len() - 1] = 4;
            assert_eq!(k.public(), four.as_slice());
            let mut sixteen = vec![0u8; g.public_len()];
            sixteen[g.public_len() - 1] = 16;
            assert_eq!(k.shared_secret(&four).map(|v| v.to_vec()), Ok(sixteen));
        }
    }

    #[test]
    fn modp_rejects_bad_publics() {
        let mut rng = rng();
        for g in MODP {
            let k = DhPrivate::generate(g, &mut rng);
            let p = g.modp_prime().unwrap_or_default().to_vec();
            let n = p.len();
            let mut one = vec![0u8; n];
            one[n - 1] = 1;
            let mut pm1 = p.clone();
            pm1[n - 1] -= 1;
            let all_ff = vec![0xffu8; n];
            for bad in [vec![0u8; n], one, pm1, p.clone(), all_ff] {
                assert_eq!(
                    k.shared_secret(&bad),
                    Err(DhError::InvalidPublic),
                    "{}",
                    g.name()
                );
            }
            let short = &k.public()[1..];
            assert_eq!(
                k.shared_secret(short),
                Err(DhError::WrongLength {
                    expected: n,
                    got: n - 1
                })
            );
            let mut long = vec![0u8];
            long.extend_from_slice(k.public());
            assert_eq!(
                k.shared_secret(&long),
                Err(DhError::WrongLength {
                    expected: n,
                    got: n + 1
                })
            );
            assert_eq!(
                k.shared_secret(&[]),
                Err(DhError::WrongLength {
                    expected: n,
                    got: 0
                })
            );
        }
    }

    #[test]
    fn modp_rejects_bad_secrets() {
        let g = DhGroup::Modp1024;
        let p = g.modp_prime().unwrap_or_default();
        let mut pm1 = p.to_vec();
        pm1[127] -= 1;
        for bad in [
            &[][..],
            &[0],
            &[1],
            &[0, 1],
            &pm1,
            p,
            &[0xff; 128],
            &[1; 129],
        ] {
            assert_eq!(
                DhPrivate::from_secret(g, bad).map(|_| ()),
                Err(DhError::InvalidSecret)
            );
        }
        let mut pm2 = p.to_vec();
        pm2[127] -= 2;
        assert!(DhPrivate::from_secret(g, &pm2).is_ok());
    }

    #[test]
    fn ecp_rejects_bad_publics() {
        let mut rng = rng();
        for g in [DhGroup::Ecp256, DhGroup::Ecp384] {
            let k = DhPrivate::generate(g, &mut rng);
            let n = g.public_len();
            // identity has no affine encoding; all-zero (0, 0) is not on the curve
            assert_eq!(k.shared_secret(&vec![0u8; n]), Err(DhError::InvalidPublic));
            // off-curve: flip a bit of y
            let mut off = k.public().to_vec();
            off[n - 1] ^= 1;
            assert_eq!(k.shared_secret(&off), Err(DhError::InvalidPublic));
            // coordinates >= field prime
            assert_eq!(
                k.shared_secret(&vec![0xffu8; n]),
                Err(DhError::InvalidPublic)
            );
            // our own public value is a valid point
            assert!(k.shared_secret(k.public()).is_ok());
            for bad_len in [0, n - 1, n + 1, n / 2 + 1] {
                assert_eq!(
                    k.shared_secret(&vec![4u8; bad_len]),
                    Err(DhError::WrongLength {
                        expected: n,
                        got: bad_len
                    })
                );
            }
            // a compressed or tagged encoding is not what RFC 5903 sends
            let mut tagged = vec![0x04];
            tagged.extend_from_slice(&k.public()[..n - 1]);
            assert_eq!(k.shared_secret(&tagged), Err(DhError::InvalidPublic));
        }
    }

    #[test]
    fn ecp_secret_range_and_known_answer() {
        // d = 1: the public value is the base point G (FIPS 186-4 D.1.2.3).
        let mut one = [0u8; 32];
        one[31] = 1;
        let k = DhPrivate::from_secret(DhGroup::Ecp256, &one).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            hex::encode(k.public()),
            concat!(
                "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296",
                "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5"
            )
        );
        assert_eq!(
            DhPrivate::from_secret(DhGroup::Ecp256, &[0u8; 32]).map(|_| ()),
            Err(DhError::InvalidSecret)
        );
        assert_eq!(
            DhPrivate::from_secret(DhGroup::Ecp256, &[0xffu8; 32]).map(|_| ()),
            Err(DhError::InvalidSecret)
        );
        assert_eq!(
            DhPrivate::from_secret(DhGroup::Ecp384, &one).map(|_| ()),
            Err(DhError::InvalidSecret)
        );
    }

    #[test]
    fn modp_exponent_lengths() {
        // Twice RFC 3526 §8's larger strength estimate, never under 256 bits.
        for (g, min_bits) in [
            (DhGroup::Modp768, 256),
            (DhGroup::Modp1024, 256),
            (DhGroup::Modp1536, 240),
            (DhGroup::Modp2048, 320),
            (DhGroup::Modp3072, 420),
            (DhGroup::Modp4096, 480),
        ] {
            let len = modp_exponent_len(g);
            assert!(len * 8 >= min_bits.max(256), "{}", g.name());
            assert!(len < g.public_len());
            let k = DhPrivate::generate(g, &mut rng());
            match &k.secret {
                Secret::Modp(x) => assert_eq!(x.len(), len, "{}", g.name()),
                Secret::Ecp(_) => panic!("{}: not a MODP secret", g.name()),
            }
        }
    }

    #[test]
    fn ecp_fallback_from_rng() {
        // The path generate takes if aws-lc's own generation fails: deterministic in the rng.
        for g in [DhGroup::Ecp256, DhGroup::Ecp384] {
            let a = DhPrivate::ecp_from_rng(g, &mut rng());
            let b = DhPrivate::ecp_from_rng(g, &mut rng());
            assert_eq!(a.public(), b.public());
            let c = DhPrivate::generate(g, &mut rng());
            assert_ne!(a.public(), c.public());
            let ac = a.shared_secret(c.public()).map(|v| v.to_vec());
            assert_eq!(ac, c.shared_secret(a.public()).map(|v| v.to_vec()));
        }
    }

    #[test]
    fn ecp_known_answers() {
        // d = 1 on P-384: the base point (FIPS 186-4 D.1.2.4).
        let mut one = [0u8; 48];
        one[47] = 1;
        let k = DhPrivate::from_secret(DhGroup::Ecp384, &one).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            hex::encode(k.public()),
            concat!(
                "aa87ca22be8b05378eb1c71ef320ad746e1d3b628ba79b9859f741e082542a38",
                "5502f25dbf55296c3a545e3872760ab7",
                "3617de4a96262c6f5d9e98bf9292dc29f8f41dbd289a147ce9da3113b5f0b8c0",
                "0a60b1ce1d7e819d7a431d7c90ea0e5f"
            )
        );
        let mut rng = rng();
        for g in [DhGroup::Ecp256, DhGroup::Ecp384] {
            // from_secret is deterministic, generate is not.
            let n = g.shared_len();
            let mut d = vec![0x11u8; n];
            d[0] = 0x7f;
            let a = DhPrivate::from_secret(g, &d).unwrap_or_else(|e| panic!("{e}"));
            let b = DhPrivate::from_secret(g, &d).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(a.public(), b.public());
            // With d = 1 the shared secret is the peer's own x coordinate.
            let mut one = vec![0u8; n];
            one[n - 1] = 1;
            let unit = DhPrivate::from_secret(g, &one).unwrap_or_else(|e| panic!("{e}"));
            let peer = DhPrivate::generate(g, &mut rng);
            assert_eq!(
                unit.shared_secret(peer.public()).map(|v| v.to_vec()),
                Ok(peer.public()[..n].to_vec()),
                "{}",
                g.name()
            );
            // Wrong-length scalars are refused before aws-lc sees them.
            for bad in [&one[1..], &[&[0u8][..], &one].concat()[..], &[]] {
                assert_eq!(
                    DhPrivate::from_secret(g, bad).map(|_| ()),
                    Err(DhError::InvalidSecret)
                );
            }
        }
    }
}

#[cfg(test)]
mod prop {
    use super::*;
    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn validate_public_without_a_key() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        for g in DhGroup::ALL {
            let peer = DhPrivate::generate(g, &mut rng);
            assert_eq!(validate_public(g, peer.public()), Ok(()), "{}", g.name());
            let len = g.public_len();
            assert!(matches!(
                validate_public(g, &[1]),
                Err(DhError::WrongLength { got: 1, .. })
            ));
            assert_eq!(
                validate_public(g, &vec![0; len]),
                Err(DhError::InvalidPublic)
            );
            let mut one = vec![0u8; len];
            one[len - 1] = 1;
            assert_eq!(
                validate_public(g, &one),
                Err(DhError::InvalidPublic),
                "{}",
                g.name()
            );
            if let Some(p) = g.modp_prime() {
                let mut pm1 = p.to_vec();
                pm1[len - 1] -= 1;
                assert_eq!(validate_public(g, &pm1), Err(DhError::InvalidPublic));
                assert_eq!(validate_public(g, p), Err(DhError::InvalidPublic));
                let mut two = vec![0u8; len];
                two[len - 1] = 2;
                assert_eq!(validate_public(g, &two), Ok(()));
            } else {
                // (1, 1) is not on either curve.
                let mut off = vec![0u8; len];
                off[len / 2 - 1] = 1;
                off[len - 1] = 1;
                assert_eq!(validate_public(g, &off), Err(DhError::InvalidPublic));
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Arbitrary peer values (any length, and the right length with arbitrary content)
        /// never panic; the only success is a full-length secret.
        #[test]
        fn peer_values_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), gi in 0usize..3) {
            let group = [DhGroup::Modp1024, DhGroup::Ecp256, DhGroup::Ecp384][gi];
            let k = DhPrivate::generate(group, &mut ChaCha20Rng::seed_from_u64(7));
            let mut sized = bytes.clone();
            sized.resize(group.public_len(), 0x5c);
            for input in [&bytes, &sized] {
                if let Ok(s) = k.shared_secret(input) {
                    prop_assert_eq!(s.len(), group.shared_len());
                }
            }
        }

        /// The check without a key agrees with the agreement's own check (a degenerate
        /// result aside, which only the agreement can see).
        #[test]
        fn validate_public_agrees_with_shared_secret(bytes in proptest::collection::vec(any::<u8>(), 0..200), gi in 0usize..3) {
            let group = [DhGroup::Modp1024, DhGroup::Ecp256, DhGroup::Ecp384][gi];
            let k = DhPrivate::generate(group, &mut ChaCha20Rng::seed_from_u64(9));
            let mut sized = bytes.clone();
            sized.resize(group.public_len(), 0x5c);
            for input in [&bytes, &sized] {
                if validate_public(group, input).is_err() {
                    prop_assert!(k.shared_secret(input).is_err());
                }
            }
        }

        #[test]
        fn secrets_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..140), gi in 0usize..3) {
            let group = [DhGroup::Modp1024, DhGroup::Ecp256, DhGroup::Ecp384][gi];
            if let Ok(k) = DhPrivate::from_secret(group, &bytes) {
                prop_assert_eq!(k.public().len(), group.public_len());
            }
        }
    }
}

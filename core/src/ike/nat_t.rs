//! NAT traversal for IKEv1: RFC 3947 and the draft-ietf-ipsec-nat-t-ike-02/03 variants that Windows,
//! Apple and Android clients still announce (CLIENTS.md §5.3).
//!
//! The variant is chosen from the peer's vendor IDs in Main Mode message 1; it fixes the payload
//! numbers of NAT-D and NAT-OA and the encapsulation-mode values of Quick Mode.

pub use crate::isakmp::vendor_id::NatTVariant as Variant;
use crate::isakmp::vendor_id::{self, KnownVendor};

/// The variants we answer, best first. Drafts 00/01 do not float to 4500, and drafts 04-08 and
/// Apple's unversioned one use other payload numbers; every client of CLIENTS.md also sends the
/// RFC 3947 vendor ID, so these are never needed.
const SPOKEN: [Variant; 4] = [
    Variant::Rfc3947,
    Variant::Draft03,
    Variant::Draft02N,
    Variant::Draft02,
];

/// The vendor ID that announces a variant we speak (sent back in message 2).
pub fn vendor_id_of(v: Variant) -> Option<&'static [u8]> {
    match v {
        Variant::Rfc3947 => Some(&vendor_id::RFC3947),
        Variant::Draft03 => Some(&vendor_id::NATT_DRAFT_03),
        Variant::Draft02N => Some(&vendor_id::NATT_DRAFT_02_N),
        Variant::Draft02 => Some(&vendor_id::NATT_DRAFT_02),
        _ => None,
    }
}

/// What a peer announced in its vendor IDs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerVendors {
    /// The best NAT-T variant we also speak.
    pub nat_t: Option<Variant>,
    /// NAT-T drafts we do not speak (04-08 and Apple's unversioned one use payloads 15/16).
    pub other_nat_t: bool,
    pub dpd: bool,
    /// The FRAGMENTATION vendor ID; `fragmentation_bare` when sent without capability bits (Windows).
    pub fragmentation: bool,
    pub fragmentation_bare: bool,
    /// Windows' "MS NT5 ISAKMPOAKLEY" version (9 for Windows 8 to 11).
    pub ms_nt5: Option<u32>,
    /// Windows signals INITIAL-CONTACT with this vendor ID instead of a notify (CLIENTS.md §1.1).
    pub ms_initial_contact: bool,
    pub xauth: bool,
    pub names: Vec<String>,
}

impl PeerVendors {
    pub fn from_vids<'a>(vids: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut p = Self::default();
        for vid in vids {
            match vendor_id::classify(vid) {
                Some(known) => {
                    match known {
                        KnownVendor::NatT(v) => {
                            let rank = |x: Variant| SPOKEN.iter().position(|s| *s == x);
                            match rank(v) {
                                Some(r) if p.nat_t.and_then(rank).is_none_or(|cur| r < cur) => {
                                    p.nat_t = Some(v)
                                }
                                Some(_) => {}
                                None => p.other_nat_t = true,
                            }
                        }
                        KnownVendor::Dpd { .. } => p.dpd = true,
                        KnownVendor::Fragmentation { capabilities } => {
                            p.fragmentation = true;
                            p.fragmentation_bare = capabilities.is_none();
                        }
                        KnownVendor::MsNt5 { version } => p.ms_nt5 = Some(version.unwrap_or(0)),
                        KnownVendor::MsInitialContact => p.ms_initial_contact = true,
                        KnownVendor::Xauth => p.xauth = true,
                        _ => {}
                    }
                    p.names.push(known.to_string());
                }
                None => p.names.push(format!("unknown {}", hex::encode(vid))),
            }
        }
        p
    }

    /// A Microsoft client (its MS NT5 vendor ID, or the bare FRAGMENTATION one).
    pub fn is_windows(&self) -> bool {
        self.ms_nt5.is_some() || self.fragmentation_bare
    }
}

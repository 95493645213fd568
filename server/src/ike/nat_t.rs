//! NAT traversal for IKEv1: RFC 3947 and the draft-ietf-ipsec-nat-t-ike-02/03 variants that Windows,
//! Apple and Android clients still announce (CLIENTS.md §5.3).
//!
//! The variant is chosen from the peer's vendor IDs in Main Mode message 1; it fixes the payload
//! numbers of NAT-D and NAT-OA and the encapsulation-mode values of Quick Mode.

use crate::isakmp::{encap_mode, payload_type, vendor_id};

/// The NAT-T dialect agreed with a peer, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Variant {
    Rfc3947,
    Draft03,
    Draft02N,
    Draft02,
}

impl Variant {
    /// The vendor ID that announces this variant (sent back in message 2).
    pub fn vendor_id(self) -> &'static [u8] {
        match self {
            Self::Rfc3947 => &vendor_id::RFC3947,
            Self::Draft03 => &vendor_id::NATT_DRAFT_03,
            Self::Draft02N => &vendor_id::NATT_DRAFT_02_N,
            Self::Draft02 => &vendor_id::NATT_DRAFT_02,
        }
    }
    pub fn nat_d_payload(self) -> u8 {
        match self {
            Self::Rfc3947 => payload_type::NAT_D,
            _ => payload_type::NAT_D_DRAFT,
        }
    }
    pub fn nat_oa_payload(self) -> u8 {
        match self {
            Self::Rfc3947 => payload_type::NAT_OA,
            _ => payload_type::NAT_OA_DRAFT,
        }
    }
    pub fn udp_transport(self) -> u16 {
        match self {
            Self::Rfc3947 => encap_mode::UDP_TRANSPORT,
            _ => encap_mode::UDP_TRANSPORT_DRAFT,
        }
    }
    pub fn udp_tunnel(self) -> u16 {
        match self {
            Self::Rfc3947 => encap_mode::UDP_TUNNEL,
            _ => encap_mode::UDP_TUNNEL_DRAFT,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::Rfc3947 => "RFC 3947",
            Self::Draft03 => "draft-03",
            Self::Draft02N => "draft-02\\n",
            Self::Draft02 => "draft-02",
        }
    }

    fn from_vid(vid: &[u8]) -> Option<Self> {
        [Self::Rfc3947, Self::Draft03, Self::Draft02N, Self::Draft02]
            .into_iter()
            .find(|v| v.vendor_id() == vid)
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
            if let Some(v) = Variant::from_vid(vid) {
                p.nat_t = Some(p.nat_t.map_or(v, |cur| cur.min(v)));
                p.names.push(format!("NAT-T {}", v.name()));
                continue;
            }
            match vendor_id::classify(vid) {
                Some(known) => {
                    use vendor_id::KnownVendor as K;
                    match &known {
                        K::NatT(_) => p.other_nat_t = true,
                        K::Dpd => p.dpd = true,
                        K::Fragmentation { capabilities } => {
                            p.fragmentation = true;
                            p.fragmentation_bare = capabilities.is_none();
                        }
                        K::MsNt5 { version } => p.ms_nt5 = Some(*version),
                        K::MsInitialContact => p.ms_initial_contact = true,
                        K::Xauth => p.xauth = true,
                        _ => {}
                    }
                    p.names.push(known.name());
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

//! Well-known vendor IDs (RFC 2408 §3.16) and their recognition.
//!
//! Most are the MD5 of a defining string (checked in the unit tests); the strings are given in
//! each constant's documentation.

use std::fmt;

use super::{encap_mode, payload_type};

const fn h(s: &str) -> [u8; 16] {
    // const hex decoder for the 32-digit literals below (a malformed literal fails to compile).
    let b = s.as_bytes();
    assert!(b.len() == 32);
    let mut out = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        out[i] = (nibble(b[2 * i]) << 4) | nibble(b[2 * i + 1]);
        i += 1;
    }
    out
}

const fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => panic!("not a lower-case hex digit"),
    }
}

/// NAT-T, RFC 3947 §3.1: MD5("RFC 3947").
pub const RFC3947: [u8; 16] = h("4a131c81070358455c5728f20e95452f");
/// MD5("draft-ietf-ipsec-nat-t-ike-00").
pub const NATT_DRAFT_00: [u8; 16] = h("4485152d18b6bbcd0be8a8469579ddcc");
/// MD5("draft-ietf-ipsec-nat-t-ike-01").
pub const NATT_DRAFT_01: [u8; 16] = h("16f6ca16e4a4066d83821a0f0aeaa862");
/// MD5("draft-ietf-ipsec-nat-t-ike-02").
pub const NATT_DRAFT_02: [u8; 16] = h("cd60464335df21f87cfdb2fc68b6a448");
/// MD5("draft-ietf-ipsec-nat-t-ike-02\n"): the draft-02 VID as Windows and others send it,
/// with the trailing newline.
pub const NATT_DRAFT_02_N: [u8; 16] = h("90cb80913ebb696e086381b5ec427b1f");
/// MD5("draft-ietf-ipsec-nat-t-ike-03").
pub const NATT_DRAFT_03: [u8; 16] = h("7d9419a65310ca6f2c179d9215529d56");
/// MD5("draft-ietf-ipsec-nat-t-ike-04").
pub const NATT_DRAFT_04: [u8; 16] = h("9909b64eed937c6573de52ace952fa6b");
/// MD5("draft-ietf-ipsec-nat-t-ike-05").
pub const NATT_DRAFT_05: [u8; 16] = h("80d0bb3def54565ee84645d4c85ce3ee");
/// MD5("draft-ietf-ipsec-nat-t-ike-06").
pub const NATT_DRAFT_06: [u8; 16] = h("4d1e0e136deafa34c4f3ea9f02ec7285");
/// MD5("draft-ietf-ipsec-nat-t-ike-07").
pub const NATT_DRAFT_07: [u8; 16] = h("439b59f8ba676c4c7737ae22eab8f582");
/// MD5("draft-ietf-ipsec-nat-t-ike-08").
pub const NATT_DRAFT_08: [u8; 16] = h("8f8d83826d246b6fc7a8a6a428c11de8");
/// MD5("draft-ietf-ipsec-nat-t-ike"): Apple racoon's unversioned draft VID.
pub const NATT_APPLE: [u8; 16] = h("4df37928e9fc4fd1b3262170d515c662");

/// Dead Peer Detection, RFC 3706 §5.1: 14 fixed bytes, then major 1 and minor 0.
pub const DPD: [u8; 16] = h("afcad71368a1f1c96b8696fc77570100");
/// The 14-byte DPD prefix (RFC 3706 §5.1 HASHED_VENDOR_ID) before the version bytes.
pub const DPD_PREFIX: [u8; 14] = [
    0xaf, 0xca, 0xd7, 0x13, 0x68, 0xa1, 0xf1, 0xc9, 0x6b, 0x86, 0x96, 0xfc, 0x77, 0x57,
];

/// MD5("FRAGMENTATION"): IKEv1 fragmentation. Windows sends these 16 bytes alone; racoon,
/// Cisco and strongSwan append a 4-byte capability word. Matched as a prefix.
pub const FRAGMENTATION: [u8; 16] = h("4048b7d56ebce88525e7de7f00d6c2d3");
/// MD5("MS NT5 ISAKMPOAKLEY"): Windows, followed by a 4-byte version
/// (2 = Windows 2000 … 9 = Windows 8 and later). Matched as a prefix.
pub const MS_NT5: [u8; 16] = h("1e2b516905991c7d7c96fcbfb587e461");
/// MD5("Vid-Initial-Contact"): Windows signals INITIAL-CONTACT with this VID.
pub const MS_VID_INITIAL_CONTACT: [u8; 16] = h("26244d38eddb61b3172a36e3d0cfb819");
/// MD5("MS-Negotiation Discovery Capable").
pub const MS_NEGOTIATION_DISCOVERY: [u8; 16] = h("fb1de3cdf341b7ea16b7e5be0855f120");
/// MD5("IKE CGA version 1").
pub const MS_IKE_CGA_V1: [u8; 16] = h("e3a5966a76379fe707228231e5ce8652");
/// Microsoft AuthIP "KEY_MODS" VID as seen from Windows 10 (followed by `00000001`); name as
/// in libreswan's table, defining string unknown. Matched as a prefix.
pub const MS_AUTHIP_KEY_MODS: [u8; 16] = h("01528bbbc00696121849ab9a1c5b2a51");
/// XAUTH: the first 8 bytes of MD5("draft-ietf-ipsra-isakmp-xauth-06.txt").
pub const XAUTH: [u8; 8] = [0x09, 0x00, 0x26, 0x89, 0xdf, 0xd6, 0xb7, 0x12];
/// Cisco Unity: the first 14 bytes of MD5("CISCO-UNITY"), then major 1, minor 0.
pub const CISCO_UNITY: [u8; 16] = h("12f5f28c457168a9702d9fe274cc0100");

/// The NAT-Traversal flavours announced by vendor ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NatTVariant {
    Draft00,
    Draft01,
    Draft02,
    /// draft-02 with the trailing newline in the hashed string.
    Draft02N,
    Draft03,
    Draft04,
    Draft05,
    Draft06,
    Draft07,
    Draft08,
    /// Apple's unversioned "draft-ietf-ipsec-nat-t-ike".
    Apple,
    Rfc3947,
}

impl NatTVariant {
    /// Payload type of NAT-D in this flavour (racoon's `natt_fill_options`).
    pub fn nat_d_payload(self) -> u8 {
        use NatTVariant::*;
        match self {
            Rfc3947 => payload_type::NAT_D,
            Draft00 | Draft01 | Draft02 | Draft02N | Draft03 => payload_type::NAT_D_DRAFT,
            Draft04 | Draft05 | Draft06 | Draft07 | Draft08 | Apple => payload_type::NAT_D_APPLE,
        }
    }

    /// Payload type of NAT-OA in this flavour. For drafts 04-08 and Apple this is 16, which
    /// SoftEther accepts; Apple's racoon itself sends no NAT-OA with those.
    pub fn nat_oa_payload(self) -> u8 {
        use NatTVariant::*;
        match self {
            Rfc3947 => payload_type::NAT_OA,
            Draft00 | Draft01 | Draft02 | Draft02N | Draft03 => payload_type::NAT_OA_DRAFT,
            Draft04 | Draft05 | Draft06 | Draft07 | Draft08 | Apple => payload_type::NAT_OA_APPLE,
        }
    }

    /// Encapsulation mode for UDP-encapsulated transport (RFC 3947 §5.1 or the draft value).
    pub fn udp_transport_mode(self) -> u16 {
        if self.uses_draft_encap_modes() {
            encap_mode::UDP_TRANSPORT_DRAFT
        } else {
            encap_mode::UDP_TRANSPORT
        }
    }

    /// Encapsulation mode for UDP-encapsulated tunnel (RFC 3947 §5.1 or the draft value).
    pub fn udp_tunnel_mode(self) -> u16 {
        if self.uses_draft_encap_modes() {
            encap_mode::UDP_TUNNEL_DRAFT
        } else {
            encap_mode::UDP_TUNNEL
        }
    }

    fn uses_draft_encap_modes(self) -> bool {
        use NatTVariant::*;
        matches!(self, Draft00 | Draft01 | Draft02 | Draft02N | Draft03)
    }

    /// Whether IKE moves to port 4500 (drafts 00 and 01 do not float).
    pub fn floats_to_4500(self) -> bool {
        !matches!(self, NatTVariant::Draft00 | NatTVariant::Draft01)
    }

    /// Name for logs.
    pub fn name(self) -> &'static str {
        use NatTVariant::*;
        match self {
            Draft00 => "draft-ietf-ipsec-nat-t-ike-00",
            Draft01 => "draft-ietf-ipsec-nat-t-ike-01",
            Draft02 => "draft-ietf-ipsec-nat-t-ike-02",
            Draft02N => "draft-ietf-ipsec-nat-t-ike-02\\n",
            Draft03 => "draft-ietf-ipsec-nat-t-ike-03",
            Draft04 => "draft-ietf-ipsec-nat-t-ike-04",
            Draft05 => "draft-ietf-ipsec-nat-t-ike-05",
            Draft06 => "draft-ietf-ipsec-nat-t-ike-06",
            Draft07 => "draft-ietf-ipsec-nat-t-ike-07",
            Draft08 => "draft-ietf-ipsec-nat-t-ike-08",
            Apple => "draft-ietf-ipsec-nat-t-ike (Apple)",
            Rfc3947 => "RFC 3947",
        }
    }
}

/// A recognised vendor ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KnownVendor {
    /// NAT-Traversal support, in one of its flavours.
    NatT(NatTVariant),
    /// RFC 3706 Dead Peer Detection (any version bytes).
    Dpd {
        major: u8,
        minor: u8,
    },
    /// IKEv1 fragmentation; `capabilities` is the 4-byte word after the prefix if present
    /// (absent from Windows, present from racoon/Cisco/strongSwan).
    Fragmentation {
        capabilities: Option<u32>,
    },
    /// "MS NT5 ISAKMPOAKLEY" with the 4-byte Windows version if present.
    MsNt5 {
        version: Option<u32>,
    },
    MsInitialContact,
    MsNegotiationDiscovery,
    MsIkeCga,
    MsAuthIpKeyMods,
    Xauth,
    CiscoUnity,
}

impl KnownVendor {
    /// Name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            KnownVendor::NatT(v) => v.name(),
            KnownVendor::Dpd { .. } => "DPD (RFC 3706)",
            KnownVendor::Fragmentation { .. } => "FRAGMENTATION",
            KnownVendor::MsNt5 { .. } => "MS NT5 ISAKMPOAKLEY",
            KnownVendor::MsInitialContact => "MS Vid-Initial-Contact",
            KnownVendor::MsNegotiationDiscovery => "MS-Negotiation Discovery Capable",
            KnownVendor::MsIkeCga => "IKE CGA version 1",
            KnownVendor::MsAuthIpKeyMods => "MS AuthIP KEY_MODS",
            KnownVendor::Xauth => "XAUTH",
            KnownVendor::CiscoUnity => "Cisco Unity",
        }
    }
}

impl fmt::Display for KnownVendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KnownVendor::Dpd { major, minor } => write!(f, "{} v{major}.{minor}", self.name()),
            KnownVendor::Fragmentation {
                capabilities: Some(c),
            } => write!(f, "{} caps 0x{c:08x}", self.name()),
            KnownVendor::MsNt5 { version: Some(v) } => {
                write!(f, "{} version {v}", self.name())
            }
            _ => f.write_str(self.name()),
        }
    }
}

const NATT: [(&[u8; 16], NatTVariant); 12] = [
    (&RFC3947, NatTVariant::Rfc3947),
    (&NATT_DRAFT_00, NatTVariant::Draft00),
    (&NATT_DRAFT_01, NatTVariant::Draft01),
    (&NATT_DRAFT_02, NatTVariant::Draft02),
    (&NATT_DRAFT_02_N, NatTVariant::Draft02N),
    (&NATT_DRAFT_03, NatTVariant::Draft03),
    (&NATT_DRAFT_04, NatTVariant::Draft04),
    (&NATT_DRAFT_05, NatTVariant::Draft05),
    (&NATT_DRAFT_06, NatTVariant::Draft06),
    (&NATT_DRAFT_07, NatTVariant::Draft07),
    (&NATT_DRAFT_08, NatTVariant::Draft08),
    (&NATT_APPLE, NatTVariant::Apple),
];

/// Matches `prefix` followed by nothing (`Some(None)`) or by a 4-byte big-endian word
/// (`Some(Some(word))`); anything else gives `None`.
fn suffix_word(vid: &[u8], prefix: &[u8; 16]) -> Option<Option<u32>> {
    let rest = vid.strip_prefix(prefix.as_slice())?;
    match rest.len() {
        0 => Some(None),
        _ => <[u8; 4]>::try_from(rest)
            .ok()
            .map(|w| Some(u32::from_be_bytes(w))),
    }
}

/// Recognises a vendor ID payload body. NAT-T, the Microsoft 16-byte IDs and Cisco Unity must
/// match exactly; FRAGMENTATION, MS NT5 and MS KEY_MODS are matched as a 16-byte prefix with an
/// optional 4-byte suffix; DPD by its 14-byte prefix with 2 version bytes; XAUTH by its 8 bytes
/// (exact or as a prefix of a 16-byte VID).
pub fn classify(vid: &[u8]) -> Option<KnownVendor> {
    if let Some(&(_, v)) = NATT.iter().find(|(k, _)| k.as_slice() == vid) {
        return Some(KnownVendor::NatT(v));
    }
    if let Some(rest) = vid.strip_prefix(DPD_PREFIX.as_slice())
        && let [major, minor] = *rest
    {
        return Some(KnownVendor::Dpd { major, minor });
    }
    if let Some(capabilities) = suffix_word(vid, &FRAGMENTATION) {
        return Some(KnownVendor::Fragmentation { capabilities });
    }
    if let Some(version) = suffix_word(vid, &MS_NT5) {
        return Some(KnownVendor::MsNt5 { version });
    }
    if suffix_word(vid, &MS_AUTHIP_KEY_MODS).is_some() {
        return Some(KnownVendor::MsAuthIpKeyMods);
    }
    let exact: [(&[u8], KnownVendor); 4] = [
        (&MS_VID_INITIAL_CONTACT, KnownVendor::MsInitialContact),
        (
            &MS_NEGOTIATION_DISCOVERY,
            KnownVendor::MsNegotiationDiscovery,
        ),
        (&MS_IKE_CGA_V1, KnownVendor::MsIkeCga),
        (&CISCO_UNITY, KnownVendor::CiscoUnity),
    ];
    if let Some(&(_, k)) = exact.iter().find(|(id, _)| *id == vid) {
        return Some(k);
    }
    if (vid.len() == 8 || vid.len() == 16) && vid.starts_with(&XAUTH) {
        return Some(KnownVendor::Xauth);
    }
    None
}

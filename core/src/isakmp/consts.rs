//! Numbers assigned by RFC 2408 (ISAKMP), RFC 2407 (IPsec DOI), RFC 2409 (IKE), RFC 3947
//! (NAT-T) and their companions. Each module cites where its values are defined.

/// Header flags (RFC 2408 §3.1).
pub mod flags {
    /// E: the payloads after the header are encrypted.
    pub const ENCRYPTION: u8 = 1;
    /// C: commit bit (RFC 2408 §3.1, RFC 2409 §5.5 CONNECTED).
    pub const COMMIT: u8 = 2;
    /// A: authentication only (the payloads are not encrypted).
    pub const AUTH_ONLY: u8 = 4;
}

/// Exchange types (RFC 2408 §3.1, §4.1; RFC 2409 §5; draft-dukes-ike-mode-cfg).
pub mod exchange {
    pub const NONE: u8 = 0;
    pub const BASE: u8 = 1;
    /// Identity Protection, i.e. IKE Main Mode (RFC 2409 §5).
    pub const MAIN: u8 = 2;
    /// Same value as [`MAIN`], under its RFC 2408 name.
    pub const IDENTITY_PROTECTION: u8 = MAIN;
    pub const AUTH_ONLY: u8 = 3;
    /// IKE Aggressive Mode.
    pub const AGGRESSIVE: u8 = 4;
    pub const INFORMATIONAL: u8 = 5;
    /// Transaction exchange (mode-config / XAUTH, draft-dukes-ike-mode-cfg §3.3).
    pub const TRANSACTION: u8 = 6;
    /// IKE Quick Mode (RFC 2409 §5.5).
    pub const QUICK: u8 = 32;
    /// IKE New Group Mode (RFC 2409 §5.6).
    pub const NEW_GROUP: u8 = 33;
}

/// Payload types (RFC 2408 §3.1; RFC 3947 §3.2, §5.2; the NAT-T drafts; Cisco fragmentation).
pub mod payload_type {
    pub const NONE: u8 = 0;
    pub const SA: u8 = 1;
    pub const PROPOSAL: u8 = 2;
    pub const TRANSFORM: u8 = 3;
    pub const KE: u8 = 4;
    pub const ID: u8 = 5;
    pub const CERT: u8 = 6;
    pub const CERT_REQ: u8 = 7;
    pub const HASH: u8 = 8;
    pub const SIG: u8 = 9;
    pub const NONCE: u8 = 10;
    pub const NOTIFY: u8 = 11;
    pub const DELETE: u8 = 12;
    pub const VENDOR_ID: u8 = 13;
    /// Mode-config attribute payload (draft-dukes-ike-mode-cfg §3.2).
    pub const ATTRIBUTES: u8 = 14;
    /// NAT-D as sent by racoon (Apple) for NAT-T drafts 04..08 and the unversioned draft VID.
    pub const NAT_D_APPLE: u8 = 15;
    /// NAT-OA counterpart of [`NAT_D_APPLE`].
    pub const NAT_OA_APPLE: u8 = 16;
    /// NAT-D (RFC 3947 §3.2).
    pub const NAT_D: u8 = 20;
    /// NAT-OA (RFC 3947 §5.2).
    pub const NAT_OA: u8 = 21;
    /// NAT-D of draft-ietf-ipsec-nat-t-ike-00..03.
    pub const NAT_D_DRAFT: u8 = 130;
    /// NAT-OA of draft-ietf-ipsec-nat-t-ike-00..03.
    pub const NAT_OA_DRAFT: u8 = 131;
    /// Cisco / Microsoft IKEv1 fragmentation payload.
    pub const FRAGMENT: u8 = 132;
}

/// Domain of Interpretation (RFC 2408 §3.4, RFC 2407 §4.6.1).
pub mod doi {
    /// The generic ISAKMP DOI (0).
    pub const ISAKMP: u32 = 0;
    /// The IPsec DOI (RFC 2407).
    pub const IPSEC: u32 = 1;
}

/// IPsec DOI situation bits (RFC 2407 §4.2).
pub mod situation {
    pub const IDENTITY_ONLY: u32 = 1;
    /// Labelled secrecy: adds labelled-domain fields to the SA payload (not decoded).
    pub const SECRECY: u32 = 2;
    /// Labelled integrity: adds labelled-domain fields to the SA payload (not decoded).
    pub const INTEGRITY: u32 = 4;
}

/// Protocol identifiers (RFC 2407 §4.4.1).
pub mod protocol {
    pub const ISAKMP: u8 = 1;
    pub const IPSEC_AH: u8 = 2;
    pub const IPSEC_ESP: u8 = 3;
    pub const IPCOMP: u8 = 4;
}

/// Transform identifiers (RFC 2407 §4.4.2-4.4.5; IANA "IPSEC ESP Transform Identifiers";
/// RFC 3602 AES-CBC, RFC 4106 AES-GCM, RFC 4868 SHA-2 for AH).
pub mod transform {
    /// ISAKMP protocol: the only transform, the IKE hybrid (RFC 2407 §4.4.2).
    pub const KEY_IKE: u8 = 1;

    // AH transform IDs (RFC 2407 §4.4.3, RFC 4868 §4).
    pub const AH_MD5: u8 = 2;
    pub const AH_SHA: u8 = 3;
    pub const AH_DES: u8 = 4;
    pub const AH_SHA2_256: u8 = 5;
    pub const AH_SHA2_384: u8 = 6;
    pub const AH_SHA2_512: u8 = 7;

    // ESP transform IDs (RFC 2407 §4.4.4 and later IANA assignments).
    pub const DES_IV64: u8 = 1;
    pub const DES: u8 = 2;
    /// ESP_3DES.
    #[doc(alias = "3DES")]
    #[doc(alias = "ESP_3DES")]
    pub const TRIPLE_DES: u8 = 3;
    /// ESP_3DES, same as [`TRIPLE_DES`].
    pub const DES3: u8 = TRIPLE_DES;
    pub const RC5: u8 = 4;
    pub const IDEA: u8 = 5;
    pub const CAST: u8 = 6;
    pub const BLOWFISH: u8 = 7;
    pub const THREE_IDEA: u8 = 8;
    pub const DES_IV32: u8 = 9;
    pub const RC4: u8 = 10;
    pub const NULL: u8 = 11;
    /// RFC 3602.
    pub const AES_CBC: u8 = 12;
    pub const AES_CTR: u8 = 13;
    pub const AES_CCM_8: u8 = 14;
    pub const AES_CCM_12: u8 = 15;
    pub const AES_CCM_16: u8 = 16;
    /// RFC 4106.
    pub const AES_GCM_8: u8 = 18;
    pub const AES_GCM_12: u8 = 19;
    pub const AES_GCM_16: u8 = 20;
    pub const NULL_AUTH_AES_GMAC: u8 = 23;

    // IPComp transform IDs (RFC 2407 §4.4.5).
    pub const IPCOMP_OUI: u8 = 1;
    pub const IPCOMP_DEFLATE: u8 = 2;
    pub const IPCOMP_LZS: u8 = 3;
}

/// Phase 1 (Oakley) SA attribute classes (RFC 2409 Appendix A).
pub mod p1attr {
    pub const ENCRYPTION: u16 = 1;
    pub const HASH: u16 = 2;
    pub const AUTH_METHOD: u16 = 3;
    /// Group Description.
    pub const GROUP: u16 = 4;
    pub const GROUP_TYPE: u16 = 5;
    pub const GROUP_PRIME: u16 = 6;
    pub const GROUP_GENERATOR_ONE: u16 = 7;
    pub const GROUP_GENERATOR_TWO: u16 = 8;
    pub const GROUP_CURVE_A: u16 = 9;
    pub const GROUP_CURVE_B: u16 = 10;
    pub const LIFE_TYPE: u16 = 11;
    /// Variable length: clients send it as a 4-byte variable attribute when it exceeds 0xffff.
    pub const LIFE_DURATION: u16 = 12;
    pub const PRF: u16 = 13;
    pub const KEY_LENGTH: u16 = 14;
    pub const FIELD_SIZE: u16 = 15;
    pub const GROUP_ORDER: u16 = 16;
}

/// Phase 1 encryption algorithms (RFC 2409 Appendix A; IANA: AES-CBC 7, Camellia 8).
pub mod p1enc {
    pub const DES: u16 = 1;
    pub const IDEA: u16 = 2;
    pub const BLOWFISH: u16 = 3;
    pub const RC5: u16 = 4;
    /// 3DES-CBC.
    #[doc(alias = "3DES")]
    pub const TRIPLE_DES: u16 = 5;
    /// 3DES-CBC, same as [`TRIPLE_DES`].
    pub const DES3: u16 = TRIPLE_DES;
    pub const CAST: u16 = 6;
    /// RFC 3602; key length given by the KEY_LENGTH attribute.
    pub const AES_CBC: u16 = 7;
    pub const CAMELLIA_CBC: u16 = 8;
}

/// Phase 1 hash algorithms (RFC 2409 Appendix A; IANA: SHA2 4-6, RFC 4868).
pub mod p1hash {
    pub const MD5: u16 = 1;
    pub const SHA1: u16 = 2;
    pub const TIGER: u16 = 3;
    pub const SHA2_256: u16 = 4;
    pub const SHA2_384: u16 = 5;
    pub const SHA2_512: u16 = 6;
}

/// Phase 1 authentication methods (RFC 2409 Appendix A; RFC 4754 ECDSA;
/// draft-ietf-ipsec-isakmp-xauth / -hybrid-auth private-use values).
pub mod auth_method {
    pub const PSK: u16 = 1;
    pub const DSS: u16 = 2;
    pub const RSA_SIG: u16 = 3;
    pub const RSA_ENC: u16 = 4;
    pub const RSA_REV_ENC: u16 = 5;
    pub const ECDSA_SHA256: u16 = 9;
    pub const ECDSA_SHA384: u16 = 10;
    pub const ECDSA_SHA512: u16 = 11;
    pub const HYBRID_INIT_RSA: u16 = 64221;
    pub const HYBRID_RESP_RSA: u16 = 64222;
    pub const HYBRID_INIT_DSS: u16 = 64223;
    pub const HYBRID_RESP_DSS: u16 = 64224;
    pub const XAUTH_INIT_PSK: u16 = 65001;
    pub const XAUTH_RESP_PSK: u16 = 65002;
    pub const XAUTH_INIT_DSS: u16 = 65003;
    pub const XAUTH_RESP_DSS: u16 = 65004;
    pub const XAUTH_INIT_RSA: u16 = 65005;
    pub const XAUTH_RESP_RSA: u16 = 65006;
    pub const XAUTH_INIT_RSA_ENC: u16 = 65007;
    pub const XAUTH_RESP_RSA_ENC: u16 = 65008;
    pub const XAUTH_INIT_RSA_REV_ENC: u16 = 65009;
    pub const XAUTH_RESP_RSA_REV_ENC: u16 = 65010;
}

/// Group Description values (RFC 2409 §6, RFC 3526 MODP, RFC 5903 ECP).
pub mod group {
    pub const MODP768: u16 = 1;
    pub const MODP1024: u16 = 2;
    pub const EC2N155: u16 = 3;
    pub const EC2N185: u16 = 4;
    pub const MODP1536: u16 = 5;
    pub const MODP2048: u16 = 14;
    pub const MODP3072: u16 = 15;
    pub const MODP4096: u16 = 16;
    pub const MODP6144: u16 = 17;
    pub const MODP8192: u16 = 18;
    pub const ECP256: u16 = 19;
    pub const ECP384: u16 = 20;
    pub const ECP521: u16 = 21;
}

/// Group Type values (RFC 2409 Appendix A).
pub mod group_type {
    pub const MODP: u16 = 1;
    pub const ECP: u16 = 2;
    pub const EC2N: u16 = 3;
}

/// Life Type values, phase 1 (RFC 2409 Appendix A) and phase 2 (RFC 2407 §4.5).
pub mod life_type {
    pub const SECONDS: u16 = 1;
    pub const KILOBYTES: u16 = 2;
}

/// Phase 2 (IPsec DOI) SA attribute classes (RFC 2407 §4.5, RFC 4304 ESN).
pub mod p2attr {
    pub const SA_LIFE_TYPE: u16 = 1;
    /// Variable length (often a 4-byte variable attribute).
    pub const SA_LIFE_DURATION: u16 = 2;
    pub const GROUP: u16 = 3;
    pub const ENCAPSULATION_MODE: u16 = 4;
    pub const AUTH_ALGORITHM: u16 = 5;
    pub const KEY_LENGTH: u16 = 6;
    pub const KEY_ROUNDS: u16 = 7;
    pub const COMP_DICT_SIZE: u16 = 8;
    pub const COMP_PRIVATE_ALG: u16 = 9;
    pub const ECN_TUNNEL: u16 = 10;
    pub const EXT_SEQ_NUM: u16 = 11;
}

/// Encapsulation Mode values (RFC 2407 §4.5, RFC 3947 §5.1, NAT-T drafts 00-03).
pub mod encap_mode {
    pub const TUNNEL: u16 = 1;
    pub const TRANSPORT: u16 = 2;
    pub const UDP_TUNNEL: u16 = 3;
    pub const UDP_TRANSPORT: u16 = 4;
    /// UDP-Encapsulated-Tunnel of draft-ietf-ipsec-nat-t-ike-00..03 (0xF003).
    pub const UDP_TUNNEL_DRAFT: u16 = 61443;
    /// UDP-Encapsulated-Transport of draft-ietf-ipsec-nat-t-ike-00..03 (0xF004).
    pub const UDP_TRANSPORT_DRAFT: u16 = 61444;
}

/// Phase 2 Authentication Algorithm values (RFC 2407 §4.5, RFC 4868 §4).
pub mod auth_alg {
    pub const HMAC_MD5: u16 = 1;
    pub const HMAC_SHA1: u16 = 2;
    pub const DES_MAC: u16 = 3;
    pub const KPDK: u16 = 4;
    pub const HMAC_SHA2_256: u16 = 5;
    pub const HMAC_SHA2_384: u16 = 6;
    pub const HMAC_SHA2_512: u16 = 7;
}

/// Identification types (RFC 2407 §4.6.2.1).
pub mod id_type {
    pub const IPV4_ADDR: u8 = 1;
    pub const FQDN: u8 = 2;
    pub const USER_FQDN: u8 = 3;
    pub const IPV4_ADDR_SUBNET: u8 = 4;
    pub const IPV6_ADDR: u8 = 5;
    pub const IPV6_ADDR_SUBNET: u8 = 6;
    pub const IPV4_ADDR_RANGE: u8 = 7;
    pub const IPV6_ADDR_RANGE: u8 = 8;
    pub const DER_ASN1_DN: u8 = 9;
    pub const DER_ASN1_GN: u8 = 10;
    pub const KEY_ID: u8 = 11;
}

/// Certificate encodings (RFC 2408 §3.9).
pub mod cert_encoding {
    pub const NONE: u8 = 0;
    pub const PKCS7: u8 = 1;
    pub const PGP: u8 = 2;
    pub const DNS_SIGNED_KEY: u8 = 3;
    /// X.509 certificate - signature (the usual one).
    pub const X509_SIG: u8 = 4;
    pub const X509_KE: u8 = 5;
    pub const KERBEROS: u8 = 6;
    pub const CRL: u8 = 7;
    pub const ARL: u8 = 8;
    pub const SPKI: u8 = 9;
    pub const X509_ATTR: u8 = 10;
}

/// Notify message types (RFC 2408 §3.14.1 errors and status, RFC 2407 §4.6.3 IPsec DOI status,
/// RFC 3706 DPD).
pub mod notify {
    pub const INVALID_PAYLOAD_TYPE: u16 = 1;
    pub const DOI_NOT_SUPPORTED: u16 = 2;
    pub const SITUATION_NOT_SUPPORTED: u16 = 3;
    pub const INVALID_COOKIE: u16 = 4;
    pub const INVALID_MAJOR_VERSION: u16 = 5;
    pub const INVALID_MINOR_VERSION: u16 = 6;
    pub const INVALID_EXCHANGE_TYPE: u16 = 7;
    pub const INVALID_FLAGS: u16 = 8;
    pub const INVALID_MESSAGE_ID: u16 = 9;
    pub const INVALID_PROTOCOL_ID: u16 = 10;
    pub const INVALID_SPI: u16 = 11;
    pub const INVALID_TRANSFORM_ID: u16 = 12;
    pub const ATTRIBUTES_NOT_SUPPORTED: u16 = 13;
    pub const NO_PROPOSAL_CHOSEN: u16 = 14;
    pub const BAD_PROPOSAL_SYNTAX: u16 = 15;
    pub const PAYLOAD_MALFORMED: u16 = 16;
    pub const INVALID_KEY_INFORMATION: u16 = 17;
    pub const INVALID_ID_INFORMATION: u16 = 18;
    pub const INVALID_CERT_ENCODING: u16 = 19;
    pub const INVALID_CERTIFICATE: u16 = 20;
    pub const CERT_TYPE_UNSUPPORTED: u16 = 21;
    pub const INVALID_CERT_AUTHORITY: u16 = 22;
    pub const INVALID_HASH_INFORMATION: u16 = 23;
    pub const AUTHENTICATION_FAILED: u16 = 24;
    pub const INVALID_SIGNATURE: u16 = 25;
    pub const ADDRESS_NOTIFICATION: u16 = 26;
    pub const NOTIFY_SA_LIFETIME: u16 = 27;
    pub const CERTIFICATE_UNAVAILABLE: u16 = 28;
    pub const UNSUPPORTED_EXCHANGE_TYPE: u16 = 29;
    pub const UNEQUAL_PAYLOAD_LENGTHS: u16 = 30;

    /// Status (RFC 2408 §3.14.1).
    pub const CONNECTED: u16 = 16384;
    /// IPsec DOI status (RFC 2407 §4.6.3).
    pub const RESPONDER_LIFETIME: u16 = 24576;
    pub const REPLAY_STATUS: u16 = 24577;
    pub const INITIAL_CONTACT: u16 = 24578;
    /// Dead Peer Detection (RFC 3706 §5.3).
    pub const R_U_THERE: u16 = 36136;
    pub const R_U_THERE_ACK: u16 = 36137;

    /// True for error types (1..=16383), false for status types.
    pub const fn is_error(message_type: u16) -> bool {
        message_type != 0 && message_type < CONNECTED
    }
}

/// Mode-config (draft-dukes-ike-mode-cfg §3.2, §3.3) and XAUTH (draft-beaulieu-ike-xauth)
/// attribute-payload types and attribute numbers.
pub mod modecfg {
    // Attribute payload "Type" field.
    pub const CFG_REQUEST: u8 = 1;
    pub const CFG_REPLY: u8 = 2;
    pub const CFG_SET: u8 = 3;
    pub const CFG_ACK: u8 = 4;

    // Attribute types.
    pub const INTERNAL_IP4_ADDRESS: u16 = 1;
    pub const INTERNAL_IP4_NETMASK: u16 = 2;
    pub const INTERNAL_IP4_DNS: u16 = 3;
    pub const INTERNAL_IP4_NBNS: u16 = 4;
    pub const INTERNAL_ADDRESS_EXPIRY: u16 = 5;
    pub const INTERNAL_IP4_DHCP: u16 = 6;
    pub const APPLICATION_VERSION: u16 = 7;
    pub const INTERNAL_IP6_ADDRESS: u16 = 8;
    pub const INTERNAL_IP6_NETMASK: u16 = 9;
    pub const INTERNAL_IP6_DNS: u16 = 10;
    pub const INTERNAL_IP6_NBNS: u16 = 11;
    pub const INTERNAL_IP6_DHCP: u16 = 12;
    pub const INTERNAL_IP4_SUBNET: u16 = 13;
    pub const SUPPORTED_ATTRIBUTES: u16 = 14;
    pub const INTERNAL_IP6_SUBNET: u16 = 15;

    pub const XAUTH_TYPE: u16 = 16520;
    pub const XAUTH_USER_NAME: u16 = 16521;
    pub const XAUTH_USER_PASSWORD: u16 = 16522;
    pub const XAUTH_PASSCODE: u16 = 16523;
    pub const XAUTH_MESSAGE: u16 = 16524;
    pub const XAUTH_CHALLENGE: u16 = 16525;
    pub const XAUTH_DOMAIN: u16 = 16526;
    pub const XAUTH_STATUS: u16 = 16527;
    pub const XAUTH_NEXT_PIN: u16 = 16528;
    pub const XAUTH_ANSWER: u16 = 16529;
}

/// Flags of the fragmentation payload (payload type 132).
pub mod fragment_flags {
    /// Set on the last fragment of a message.
    pub const LAST: u8 = 1;
}

/// Name of a payload type for logs ("SA", "NAT-D", ...); "unknown" for unassigned values.
pub fn payload_name(kind: u8) -> &'static str {
    use payload_type::*;
    match kind {
        NONE => "NONE",
        SA => "SA",
        PROPOSAL => "PROPOSAL",
        TRANSFORM => "TRANSFORM",
        KE => "KE",
        ID => "ID",
        CERT => "CERT",
        CERT_REQ => "CERTREQ",
        HASH => "HASH",
        SIG => "SIG",
        NONCE => "NONCE",
        NOTIFY => "NOTIFY",
        DELETE => "DELETE",
        VENDOR_ID => "VID",
        ATTRIBUTES => "ATTR",
        NAT_D_APPLE => "NAT-D(draft-04..08)",
        NAT_OA_APPLE => "NAT-OA(draft-04..08)",
        NAT_D => "NAT-D",
        NAT_OA => "NAT-OA",
        NAT_D_DRAFT => "NAT-D(draft)",
        NAT_OA_DRAFT => "NAT-OA(draft)",
        FRAGMENT => "FRAG",
        _ => "unknown",
    }
}

/// Name of an exchange type for logs; "unknown" for unassigned values.
pub fn exchange_name(exchange_type: u8) -> &'static str {
    use exchange::*;
    match exchange_type {
        NONE => "NONE",
        BASE => "BASE",
        MAIN => "MAIN_MODE",
        AUTH_ONLY => "AUTH_ONLY",
        AGGRESSIVE => "AGGRESSIVE",
        INFORMATIONAL => "INFORMATIONAL",
        TRANSACTION => "TRANSACTION",
        QUICK => "QUICK_MODE",
        NEW_GROUP => "NEW_GROUP",
        _ => "unknown",
    }
}

/// Name of a notify message type for logs ("NO-PROPOSAL-CHOSEN", "R-U-THERE", ...). Values
/// without a name give a description of their range.
pub fn notify_name(message_type: u16) -> &'static str {
    named_notify(message_type).unwrap_or(match message_type {
        0 => "reserved (0)",
        1..=8191 => "reserved error",
        8192..=16383 => "private-use error",
        16384..=24575 => "reserved status",
        24576..=32767 => "DOI-specific status",
        32768..=40959 => "private-use status",
        40960..=u16::MAX => "reserved status",
    })
}

fn named_notify(message_type: u16) -> Option<&'static str> {
    use notify::*;
    Some(match message_type {
        INVALID_PAYLOAD_TYPE => "INVALID-PAYLOAD-TYPE",
        DOI_NOT_SUPPORTED => "DOI-NOT-SUPPORTED",
        SITUATION_NOT_SUPPORTED => "SITUATION-NOT-SUPPORTED",
        INVALID_COOKIE => "INVALID-COOKIE",
        INVALID_MAJOR_VERSION => "INVALID-MAJOR-VERSION",
        INVALID_MINOR_VERSION => "INVALID-MINOR-VERSION",
        INVALID_EXCHANGE_TYPE => "INVALID-EXCHANGE-TYPE",
        INVALID_FLAGS => "INVALID-FLAGS",
        INVALID_MESSAGE_ID => "INVALID-MESSAGE-ID",
        INVALID_PROTOCOL_ID => "INVALID-PROTOCOL-ID",
        INVALID_SPI => "INVALID-SPI",
        INVALID_TRANSFORM_ID => "INVALID-TRANSFORM-ID",
        ATTRIBUTES_NOT_SUPPORTED => "ATTRIBUTES-NOT-SUPPORTED",
        NO_PROPOSAL_CHOSEN => "NO-PROPOSAL-CHOSEN",
        BAD_PROPOSAL_SYNTAX => "BAD-PROPOSAL-SYNTAX",
        PAYLOAD_MALFORMED => "PAYLOAD-MALFORMED",
        INVALID_KEY_INFORMATION => "INVALID-KEY-INFORMATION",
        INVALID_ID_INFORMATION => "INVALID-ID-INFORMATION",
        INVALID_CERT_ENCODING => "INVALID-CERT-ENCODING",
        INVALID_CERTIFICATE => "INVALID-CERTIFICATE",
        CERT_TYPE_UNSUPPORTED => "CERT-TYPE-UNSUPPORTED",
        INVALID_CERT_AUTHORITY => "INVALID-CERT-AUTHORITY",
        INVALID_HASH_INFORMATION => "INVALID-HASH-INFORMATION",
        AUTHENTICATION_FAILED => "AUTHENTICATION-FAILED",
        INVALID_SIGNATURE => "INVALID-SIGNATURE",
        ADDRESS_NOTIFICATION => "ADDRESS-NOTIFICATION",
        NOTIFY_SA_LIFETIME => "NOTIFY-SA-LIFETIME",
        CERTIFICATE_UNAVAILABLE => "CERTIFICATE-UNAVAILABLE",
        UNSUPPORTED_EXCHANGE_TYPE => "UNSUPPORTED-EXCHANGE-TYPE",
        UNEQUAL_PAYLOAD_LENGTHS => "UNEQUAL-PAYLOAD-LENGTHS",
        CONNECTED => "CONNECTED",
        RESPONDER_LIFETIME => "RESPONDER-LIFETIME",
        REPLAY_STATUS => "REPLAY-STATUS",
        INITIAL_CONTACT => "INITIAL-CONTACT",
        R_U_THERE => "R-U-THERE",
        R_U_THERE_ACK => "R-U-THERE-ACK",
        _ => return None,
    })
}

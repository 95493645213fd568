//! The RADIUS packet codec (RFC 2865 §3, §5) with the authenticators and the hidden values:
//! Request and Response Authenticators (RFC 2865 §3, RFC 2866 §3, RFC 5176 §2.3),
//! Message-Authenticator (RFC 3579 §3.2, RFC 5176 §3.4), User-Password hiding (RFC 2865 §5.2),
//! MS-MPPE key decryption (RFC 2548 §2.4.2, §2.4.3) and EAP-Message fragments (RFC 3579 §3.1).
//!
//! Decoding is total: any bytes give a [`Packet`] or a [`DecodeError`]. Secrets are only ever
//! passed in as arguments; `Debug` of a packet shows attribute types and lengths, never values.

use std::fmt;
use std::net::Ipv4Addr;

use hmac::{KeyInit, Mac};
use md5::{Digest, Md5};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// The fixed header: Code, Identifier, Length, Authenticator (RFC 2865 §3).
pub const HEADER_LEN: usize = 20;
/// The largest packet (RFC 2865 §3).
pub const MAX_LEN: usize = 4096;
/// The largest attribute value (an attribute is at most 255 octets with its type and length).
pub const MAX_VALUE_LEN: usize = 253;
/// The longest User-Password before hiding (RFC 2865 §5.2).
pub const MAX_PASSWORD_LEN: usize = 128;

/// Packet codes (RFC 2865 §3, RFC 2866 §3, RFC 5176 §2).
pub mod code {
    /// Access-Request.
    pub const ACCESS_REQUEST: u8 = 1;
    /// Access-Accept.
    pub const ACCESS_ACCEPT: u8 = 2;
    /// Access-Reject.
    pub const ACCESS_REJECT: u8 = 3;
    /// Accounting-Request.
    pub const ACCOUNTING_REQUEST: u8 = 4;
    /// Accounting-Response.
    pub const ACCOUNTING_RESPONSE: u8 = 5;
    /// Access-Challenge.
    pub const ACCESS_CHALLENGE: u8 = 11;
    /// Status-Server (RFC 5997 §3).
    pub const STATUS_SERVER: u8 = 12;
    /// Disconnect-Request (RFC 5176).
    pub const DISCONNECT_REQUEST: u8 = 40;
    /// Disconnect-ACK (RFC 5176).
    pub const DISCONNECT_ACK: u8 = 41;
    /// Disconnect-NAK (RFC 5176).
    pub const DISCONNECT_NAK: u8 = 42;
    /// CoA-Request (RFC 5176).
    pub const COA_REQUEST: u8 = 43;
    /// CoA-ACK (RFC 5176).
    pub const COA_ACK: u8 = 44;
    /// CoA-NAK (RFC 5176).
    pub const COA_NAK: u8 = 45;
}

/// Attribute types (RFC 2865 §5, RFC 2866 §5, RFC 2868, RFC 2869 §5, RFC 5176 §3).
pub mod attr {
    /// User-Name.
    pub const USER_NAME: u8 = 1;
    /// User-Password (hidden, RFC 2865 §5.2).
    pub const USER_PASSWORD: u8 = 2;
    /// CHAP-Password: CHAP ident and the 16-octet response (RFC 2865 §5.3).
    pub const CHAP_PASSWORD: u8 = 3;
    /// NAS-IP-Address.
    pub const NAS_IP_ADDRESS: u8 = 4;
    /// NAS-Port.
    pub const NAS_PORT: u8 = 5;
    /// Service-Type.
    pub const SERVICE_TYPE: u8 = 6;
    /// Framed-Protocol.
    pub const FRAMED_PROTOCOL: u8 = 7;
    /// Framed-IP-Address.
    pub const FRAMED_IP_ADDRESS: u8 = 8;
    /// Reply-Message.
    pub const REPLY_MESSAGE: u8 = 18;
    /// State.
    pub const STATE: u8 = 24;
    /// Class.
    pub const CLASS: u8 = 25;
    /// Vendor-Specific.
    pub const VENDOR_SPECIFIC: u8 = 26;
    /// Session-Timeout.
    pub const SESSION_TIMEOUT: u8 = 27;
    /// Idle-Timeout.
    pub const IDLE_TIMEOUT: u8 = 28;
    /// Called-Station-Id.
    pub const CALLED_STATION_ID: u8 = 30;
    /// Calling-Station-Id.
    pub const CALLING_STATION_ID: u8 = 31;
    /// NAS-Identifier.
    pub const NAS_IDENTIFIER: u8 = 32;
    /// Proxy-State.
    pub const PROXY_STATE: u8 = 33;
    /// Acct-Status-Type (RFC 2866 §5.1).
    pub const ACCT_STATUS_TYPE: u8 = 40;
    /// Acct-Delay-Time (RFC 2866 §5.2).
    pub const ACCT_DELAY_TIME: u8 = 41;
    /// Acct-Input-Octets.
    pub const ACCT_INPUT_OCTETS: u8 = 42;
    /// Acct-Output-Octets.
    pub const ACCT_OUTPUT_OCTETS: u8 = 43;
    /// Acct-Session-Id.
    pub const ACCT_SESSION_ID: u8 = 44;
    /// Acct-Authentic.
    pub const ACCT_AUTHENTIC: u8 = 45;
    /// Acct-Session-Time.
    pub const ACCT_SESSION_TIME: u8 = 46;
    /// Acct-Input-Packets.
    pub const ACCT_INPUT_PACKETS: u8 = 47;
    /// Acct-Output-Packets.
    pub const ACCT_OUTPUT_PACKETS: u8 = 48;
    /// Acct-Terminate-Cause.
    pub const ACCT_TERMINATE_CAUSE: u8 = 49;
    /// Acct-Input-Gigawords (RFC 2869 §5.1).
    pub const ACCT_INPUT_GIGAWORDS: u8 = 52;
    /// Acct-Output-Gigawords (RFC 2869 §5.2).
    pub const ACCT_OUTPUT_GIGAWORDS: u8 = 53;
    /// Event-Timestamp (RFC 2869 §5.3).
    pub const EVENT_TIMESTAMP: u8 = 55;
    /// CHAP-Challenge.
    pub const CHAP_CHALLENGE: u8 = 60;
    /// NAS-Port-Type.
    pub const NAS_PORT_TYPE: u8 = 61;
    /// Tunnel-Type (RFC 2868 §3.1, tagged).
    pub const TUNNEL_TYPE: u8 = 64;
    /// Tunnel-Medium-Type (RFC 2868 §3.2, tagged).
    pub const TUNNEL_MEDIUM_TYPE: u8 = 65;
    /// Tunnel-Client-Endpoint (RFC 2868 §3.3).
    pub const TUNNEL_CLIENT_ENDPOINT: u8 = 66;
    /// EAP-Message (RFC 3579 §3.1).
    pub const EAP_MESSAGE: u8 = 79;
    /// Message-Authenticator (RFC 3579 §3.2).
    pub const MESSAGE_AUTHENTICATOR: u8 = 80;
    /// Acct-Interim-Interval (RFC 2869 §5.16).
    pub const ACCT_INTERIM_INTERVAL: u8 = 85;
    /// Framed-Pool (RFC 2869 §5.18).
    pub const FRAMED_POOL: u8 = 88;
    /// Error-Cause (RFC 5176 §3.5).
    pub const ERROR_CAUSE: u8 = 101;
}

/// Microsoft vendor-specific attributes (RFC 2548 §2).
pub mod ms {
    /// Microsoft's SMI network management private enterprise code.
    pub const VENDOR_ID: u32 = 311;
    /// MS-CHAP-Error (§2.1.5): ident and the error text.
    pub const CHAP_ERROR: u8 = 2;
    /// MS-CHAP-Challenge (§2.3.3).
    pub const CHAP_CHALLENGE: u8 = 11;
    /// MS-MPPE-Send-Key (§2.4.2).
    pub const MPPE_SEND_KEY: u8 = 16;
    /// MS-MPPE-Recv-Key (§2.4.3).
    pub const MPPE_RECV_KEY: u8 = 17;
    /// MS-CHAP2-Response (§2.3.2).
    pub const CHAP2_RESPONSE: u8 = 25;
    /// MS-CHAP2-Success (§2.3.3).
    pub const CHAP2_SUCCESS: u8 = 26;
    /// MS-Primary-DNS-Server (§2.7.5).
    pub const PRIMARY_DNS_SERVER: u8 = 28;
    /// MS-Secondary-DNS-Server (§2.7.6).
    pub const SECONDARY_DNS_SERVER: u8 = 29;
    /// MS-Primary-NBNS-Server (§2.7.7).
    pub const PRIMARY_NBNS_SERVER: u8 = 30;
    /// MS-Secondary-NBNS-Server (§2.7.8).
    pub const SECONDARY_NBNS_SERVER: u8 = 31;
}

/// Why bytes are not a RADIUS packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer than 20 octets, or fewer than the Length field says.
    #[error("packet shorter than its header or its Length field")]
    Short,
    /// The Length field is below 20 or above 4096.
    #[error("Length field out of range")]
    BadLength,
    /// An attribute's length is below 2 or runs past the packet.
    #[error("malformed attribute")]
    BadAttribute,
}

/// Why a packet cannot be encoded or a value hidden.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// An attribute value is longer than 253 octets.
    #[error("attribute value longer than 253 octets")]
    ValueTooLong,
    /// The packet would be longer than 4096 octets.
    #[error("packet longer than 4096 octets")]
    TooLong,
    /// A password longer than 128 octets.
    #[error("password longer than 128 octets")]
    PasswordTooLong,
}

/// Why a received packet's authenticators do not check out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The bytes do not decode.
    #[error("malformed packet: {0}")]
    Malformed(DecodeError),
    /// The Response or Request Authenticator is wrong.
    #[error("bad authenticator")]
    Authenticator,
    /// The Message-Authenticator is wrong or not 16 octets.
    #[error("bad Message-Authenticator")]
    MessageAuthenticator,
    /// A Message-Authenticator is required and absent.
    #[error("Message-Authenticator missing")]
    MissingMessageAuthenticator,
}

/// A hidden value (User-Password, MS-MPPE key) that does not decrypt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed hidden value")]
pub struct HiddenError;

/// One attribute: its type and value (RFC 2865 §5).
#[derive(Clone, PartialEq, Eq)]
pub struct Attribute {
    /// The Type octet.
    pub typ: u8,
    /// The Value, at most 253 octets.
    pub value: Vec<u8>,
}

impl fmt::Debug for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({} octets)", self.typ, self.value.len())
    }
}

/// A RADIUS packet (RFC 2865 §3). `Debug` shows no attribute values.
#[derive(Clone, PartialEq, Eq)]
pub struct Packet {
    /// The Code.
    pub code: u8,
    /// The Identifier, matching requests and responses.
    pub identifier: u8,
    /// The Request or Response Authenticator.
    pub authenticator: [u8; 16],
    /// The attributes in order.
    pub attributes: Vec<Attribute>,
}

impl fmt::Debug for Packet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Packet")
            .field("code", &self.code)
            .field("identifier", &self.identifier)
            .field("attributes", &self.attributes)
            .finish_non_exhaustive()
    }
}

/// The attributes of an encoded packet as (type, value offset range), for in-place checks.
/// Stops at the first malformed attribute.
fn attribute_spans(bytes: &[u8]) -> impl Iterator<Item = (u8, std::ops::Range<usize>)> + '_ {
    let mut at = HEADER_LEN;
    std::iter::from_fn(move || {
        let typ = *bytes.get(at)?;
        let len = usize::from(*bytes.get(at + 1)?);
        if len < 2 || at + len > bytes.len() {
            return None;
        }
        let span = at + 2..at + len;
        at += len;
        Some((typ, span))
    })
}

/// MD5 over the concatenation of `parts`.
fn md5_parts(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// HMAC-MD5 keyed with `secret` over `data`.
fn hmac_md5(secret: &[u8], data: &[u8]) -> [u8; 16] {
    // HMAC takes keys of any length; the error branch cannot occur but is handled totally.
    let Ok(mut m) = <hmac::Hmac<Md5> as KeyInit>::new_from_slice(secret) else {
        return [0; 16];
    };
    m.update(data);
    m.finalize().into_bytes().into()
}

impl Packet {
    /// An empty packet with this code and identifier and a zero authenticator.
    pub fn new(code: u8, identifier: u8) -> Self {
        Packet {
            code,
            identifier,
            authenticator: [0; 16],
            attributes: Vec::new(),
        }
    }

    /// Decodes a packet (RFC 2865 §3). Octets past the Length field are padding and ignored;
    /// a Length above 4096 or below 20, or an attribute of length below 2 or past the end, is
    /// an error.
    pub fn decode(bytes: &[u8]) -> Result<Packet, DecodeError> {
        let (Some(&code), Some(&identifier), Some(len), Some(auth)) = (
            bytes.first(),
            bytes.get(1),
            bytes.get(2..4),
            bytes.get(4..HEADER_LEN),
        ) else {
            return Err(DecodeError::Short);
        };
        let len = usize::from(u16::from_be_bytes(
            <[u8; 2]>::try_from(len).map_err(|_| DecodeError::Short)?,
        ));
        if !(HEADER_LEN..=MAX_LEN).contains(&len) {
            return Err(DecodeError::BadLength);
        }
        let body = bytes.get(HEADER_LEN..len).ok_or(DecodeError::Short)?;
        let mut authenticator = [0u8; 16];
        authenticator.copy_from_slice(auth);
        let mut attributes = Vec::new();
        let mut rest = body;
        while !rest.is_empty() {
            let (Some(&typ), Some(&alen)) = (rest.first(), rest.get(1)) else {
                return Err(DecodeError::BadAttribute);
            };
            let alen = usize::from(alen);
            let value = rest.get(2..alen).ok_or(DecodeError::BadAttribute)?;
            attributes.push(Attribute {
                typ,
                value: value.to_vec(),
            });
            rest = rest.get(alen..).unwrap_or(&[]);
        }
        Ok(Packet {
            code,
            identifier,
            authenticator,
            attributes,
        })
    }

    /// Encodes the packet as it is, authenticator field included, without signing.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.attributes.len() * 8);
        out.push(self.code);
        out.push(self.identifier);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.authenticator);
        for a in &self.attributes {
            let len = u8::try_from(a.value.len() + 2).map_err(|_| EncodeError::ValueTooLong)?;
            out.push(a.typ);
            out.push(len);
            out.extend_from_slice(&a.value);
        }
        let len = u16::try_from(out.len()).map_err(|_| EncodeError::TooLong)?;
        if usize::from(len) > MAX_LEN {
            return Err(EncodeError::TooLong);
        }
        if let Some(l) = out.get_mut(2..4) {
            l.copy_from_slice(&len.to_be_bytes());
        }
        Ok(out)
    }

    /// Adds an attribute.
    pub fn add(&mut self, typ: u8, value: impl Into<Vec<u8>>) {
        self.attributes.push(Attribute {
            typ,
            value: value.into(),
        });
    }

    /// Adds a text attribute.
    pub fn add_str(&mut self, typ: u8, value: &str) {
        self.add(typ, value.as_bytes());
    }

    /// Adds a 32-bit integer attribute (RFC 2865 §5: "integer", network order).
    pub fn add_u32(&mut self, typ: u8, value: u32) {
        self.add(typ, value.to_be_bytes());
    }

    /// Adds an address attribute.
    pub fn add_ipv4(&mut self, typ: u8, value: Ipv4Addr) {
        self.add(typ, value.octets());
    }

    /// Adds a Vendor-Specific attribute holding one vendor attribute (RFC 2865 §5.26 with the
    /// vendor type and length octets RFC 2548 §2 uses).
    pub fn add_vsa(&mut self, vendor: u32, vendor_type: u8, value: &[u8]) {
        let mut v = Vec::with_capacity(6 + value.len());
        v.extend_from_slice(&vendor.to_be_bytes());
        v.push(vendor_type);
        v.push(u8::try_from(value.len() + 2).unwrap_or(u8::MAX));
        v.extend_from_slice(value);
        self.add(attr::VENDOR_SPECIFIC, v);
    }

    /// Adds a Message-Authenticator placeholder (16 zeros) that the signing functions fill.
    pub fn add_message_authenticator(&mut self) {
        self.add(attr::MESSAGE_AUTHENTICATOR, [0u8; 16]);
    }

    /// The first value of type `typ`.
    pub fn get(&self, typ: u8) -> Option<&[u8]> {
        self.get_all(typ).next()
    }

    /// Every value of type `typ`, in order.
    pub fn get_all(&self, typ: u8) -> impl Iterator<Item = &[u8]> {
        self.attributes
            .iter()
            .filter(move |a| a.typ == typ)
            .map(|a| a.value.as_slice())
    }

    /// The first value of type `typ` as UTF-8 text (lossy).
    pub fn get_str(&self, typ: u8) -> Option<String> {
        self.get(typ)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// The first value of type `typ` as a 32-bit integer, if it is 4 octets.
    pub fn get_u32(&self, typ: u8) -> Option<u32> {
        self.get(typ).and_then(be_u32)
    }

    /// The first value of type `typ` as an IPv4 address, if it is 4 octets.
    pub fn get_ipv4(&self, typ: u8) -> Option<Ipv4Addr> {
        self.get(typ).and_then(ipv4)
    }

    /// The vendor attributes of `vendor` as (vendor type, value), across all Vendor-Specific
    /// attributes (several may share one; malformed ones are skipped).
    pub fn vsas(&self, vendor: u32) -> impl Iterator<Item = (u8, &[u8])> {
        self.get_all(attr::VENDOR_SPECIFIC)
            .filter(move |v| v.get(..4).and_then(be_u32) == Some(vendor))
            .flat_map(|v| {
                let mut rest = v.get(4..).unwrap_or(&[]);
                std::iter::from_fn(move || {
                    let (&t, &l) = (rest.first()?, rest.get(1)?);
                    let value = rest.get(2..usize::from(l))?;
                    rest = rest.get(usize::from(l)..).unwrap_or(&[]);
                    Some((t, value))
                })
            })
    }

    /// The first vendor attribute of `vendor` and `vendor_type`.
    pub fn get_vsa(&self, vendor: u32, vendor_type: u8) -> Option<&[u8]> {
        self.vsas(vendor)
            .find(|(t, _)| *t == vendor_type)
            .map(|(_, v)| v)
    }

    /// Adds `eap` as EAP-Message attributes of at most 253 octets each (RFC 3579 §3.1).
    pub fn add_eap_message(&mut self, eap: &[u8]) {
        for chunk in eap.chunks(MAX_VALUE_LEN) {
            self.add(attr::EAP_MESSAGE, chunk);
        }
    }

    /// The EAP packet from all EAP-Message attributes joined in order, if there is one.
    pub fn eap_message(&self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let mut any = false;
        for v in self.get_all(attr::EAP_MESSAGE) {
            out.extend_from_slice(v);
            any = true;
        }
        any.then_some(out)
    }

    /// Encodes a request and signs it with `secret`. An Access-Request keeps its (random)
    /// Request Authenticator (RFC 2865 §3). Other requests (Accounting-Request RFC 2866 §3,
    /// CoA/Disconnect-Request RFC 5176 §2.3) get MD5(Code+Identifier+Length+16 zeros+
    /// Attributes+secret). A Message-Authenticator placeholder, if present, is filled first
    /// (RFC 3579 §3.2; RFC 5176 §3.4: over a zero authenticator for non-Access requests).
    pub fn encode_request(&self, secret: &[u8]) -> Result<Vec<u8>, EncodeError> {
        let mut p = self.clone();
        // Status-Server carries a random Request Authenticator like Access-Request
        // (RFC 5997 §3).
        let random = matches!(p.code, code::ACCESS_REQUEST | code::STATUS_SERVER);
        if !random {
            p.authenticator = [0; 16];
        }
        let mut out = p.encode()?;
        fill_message_authenticator(&mut out, secret);
        if !random {
            let digest = md5_parts(&[&out, secret]);
            set_authenticator(&mut out, &digest);
        }
        Ok(out)
    }

    /// Encodes a response to a request whose authenticator was `request_authenticator`:
    /// Message-Authenticator (if a placeholder is present) over the packet with the request's
    /// authenticator (RFC 3579 §3.2), then the Response Authenticator
    /// MD5(Code+Identifier+Length+RequestAuth+Attributes+secret) (RFC 2865 §3).
    pub fn encode_response(
        &self,
        request_authenticator: &[u8; 16],
        secret: &[u8],
    ) -> Result<Vec<u8>, EncodeError> {
        let mut p = self.clone();
        p.authenticator = *request_authenticator;
        let mut out = p.encode()?;
        fill_message_authenticator(&mut out, secret);
        let digest = md5_parts(&[&out, secret]);
        set_authenticator(&mut out, &digest);
        Ok(out)
    }
}

fn be_u32(v: &[u8]) -> Option<u32> {
    let b: [u8; 4] = v.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

fn ipv4(v: &[u8]) -> Option<Ipv4Addr> {
    let b: [u8; 4] = v.try_into().ok()?;
    Some(Ipv4Addr::from(b))
}

fn set_authenticator(bytes: &mut [u8], auth: &[u8; 16]) {
    if let Some(a) = bytes.get_mut(4..HEADER_LEN) {
        a.copy_from_slice(auth);
    }
}

/// The span of the first Message-Authenticator value, if any.
fn message_authenticator_span(bytes: &[u8]) -> Option<std::ops::Range<usize>> {
    attribute_spans(bytes)
        .find(|(t, _)| *t == attr::MESSAGE_AUTHENTICATOR)
        .map(|(_, s)| s)
}

/// Computes HMAC-MD5 over `bytes` as they are (authenticator field already set as the packet
/// kind wants) with the Message-Authenticator value zeroed, and writes it in.
fn fill_message_authenticator(bytes: &mut [u8], secret: &[u8]) {
    let Some(span) = message_authenticator_span(bytes) else {
        return;
    };
    if let Some(v) = bytes.get_mut(span.clone()) {
        v.fill(0);
    }
    let mac = hmac_md5(secret, bytes);
    if let Some(v) = bytes.get_mut(span)
        && v.len() == 16
    {
        v.copy_from_slice(&mac);
    }
}

/// Checks a Message-Authenticator in `bytes` as if the authenticator field held `auth`:
/// `Ok(true)` if present and right, `Ok(false)` if absent, an error if wrong.
fn check_message_authenticator(
    bytes: &[u8],
    auth: &[u8; 16],
    secret: &[u8],
) -> Result<bool, AuthError> {
    let Some(span) = message_authenticator_span(bytes) else {
        return Ok(false);
    };
    let got = bytes
        .get(span.clone())
        .filter(|v| v.len() == 16)
        .ok_or(AuthError::MessageAuthenticator)?;
    let mut copy = bytes.to_vec();
    set_authenticator(&mut copy, auth);
    if let Some(v) = copy.get_mut(span) {
        v.fill(0);
    }
    let want = hmac_md5(secret, &copy);
    if bool::from(want.ct_eq(got)) {
        Ok(true)
    } else {
        Err(AuthError::MessageAuthenticator)
    }
}

/// The packet's length by its header, within `bytes` (padding beyond it is ignored).
fn framed(bytes: &[u8]) -> Result<&[u8], AuthError> {
    let len = bytes
        .get(2..4)
        .and_then(|l| <[u8; 2]>::try_from(l).ok())
        .map(|l| usize::from(u16::from_be_bytes(l)))
        .ok_or(AuthError::Malformed(DecodeError::Short))?;
    bytes
        .get(..len)
        .ok_or(AuthError::Malformed(DecodeError::Short))
}

/// Verifies a response (RFC 2865 §3 Response Authenticator, RFC 3579 §3.2
/// Message-Authenticator) to a request whose authenticator was `request_authenticator`, and
/// decodes it. With `require_message_authenticator`, a response without one is refused.
pub fn verify_response(
    bytes: &[u8],
    request_authenticator: &[u8; 16],
    secret: &[u8],
    require_message_authenticator: bool,
) -> Result<Packet, AuthError> {
    let (packet, signed) = verify_response_signed(bytes, request_authenticator, secret)?;
    if require_message_authenticator && !signed {
        return Err(AuthError::MissingMessageAuthenticator);
    }
    Ok(packet)
}

/// Verifies a response like [`verify_response`] but leaves the policy to the caller: the
/// Response Authenticator must check (RFC 2865 §3), a Message-Authenticator present must check
/// (RFC 3579 §3.2: "MUST be silently discarded" otherwise), and the answer says whether one was
/// there (`true`: the server signed this response).
pub fn verify_response_signed(
    bytes: &[u8],
    request_authenticator: &[u8; 16],
    secret: &[u8],
) -> Result<(Packet, bool), AuthError> {
    let packet = Packet::decode(bytes).map_err(AuthError::Malformed)?;
    let bytes = framed(bytes)?;
    let mut copy = bytes.to_vec();
    set_authenticator(&mut copy, request_authenticator);
    let want = md5_parts(&[&copy, secret]);
    if !bool::from(want.ct_eq(&packet.authenticator)) {
        return Err(AuthError::Authenticator);
    }
    let present = check_message_authenticator(bytes, request_authenticator, secret)?;
    Ok((packet, present))
}

/// Verifies a non-Access request (Accounting-Request RFC 2866 §3, CoA/Disconnect-Request
/// RFC 5176 §2.3: MD5 over the packet with a zero authenticator and the secret; a
/// Message-Authenticator, if present, over the packet with a zero authenticator, RFC 5176
/// §3.4), and decodes it.
pub fn verify_request(bytes: &[u8], secret: &[u8]) -> Result<Packet, AuthError> {
    let packet = Packet::decode(bytes).map_err(AuthError::Malformed)?;
    let bytes = framed(bytes)?;
    let mut copy = bytes.to_vec();
    set_authenticator(&mut copy, &[0; 16]);
    let want = md5_parts(&[&copy, secret]);
    if !bool::from(want.ct_eq(&packet.authenticator)) {
        return Err(AuthError::Authenticator);
    }
    check_message_authenticator(bytes, &[0; 16], secret)?;
    Ok(packet)
}

/// The RFC 2865 §5.2 stream: each 16-octet block XORed with MD5(secret + previous), the first
/// previous being `first`. `encrypt` says whether `data` is plain text (the chain then uses
/// the output) or cipher text (the chain uses the input).
fn md5_chain(data: &mut [u8], secret: &[u8], first: &[u8], encrypt: bool) {
    let mut prev: Vec<u8> = first.to_vec();
    for block in data.chunks_mut(16) {
        let b = md5_parts(&[secret, &prev]);
        let cipher_in: Vec<u8> = block.to_vec();
        for (x, k) in block.iter_mut().zip(b.iter()) {
            *x ^= k;
        }
        prev = if encrypt { block.to_vec() } else { cipher_in };
    }
}

/// Hides a User-Password (RFC 2865 §5.2): padded with zeros to a multiple of 16 (at least 16),
/// c(1) = p(1) xor MD5(S + RA), c(i) = p(i) xor MD5(S + c(i-1)).
pub fn hide_password(
    password: &[u8],
    secret: &[u8],
    request_authenticator: &[u8; 16],
) -> Result<Vec<u8>, EncodeError> {
    if password.len() > MAX_PASSWORD_LEN {
        return Err(EncodeError::PasswordTooLong);
    }
    let padded = password.len().div_ceil(16).max(1) * 16;
    let mut out = password.to_vec();
    out.resize(padded, 0);
    md5_chain(&mut out, secret, request_authenticator, true);
    Ok(out)
}

/// Recovers a User-Password hidden by [`hide_password`], trailing zero padding removed.
pub fn unhide_password(
    hidden: &[u8],
    secret: &[u8],
    request_authenticator: &[u8; 16],
) -> Result<Zeroizing<Vec<u8>>, HiddenError> {
    if hidden.is_empty() || !hidden.len().is_multiple_of(16) || hidden.len() > MAX_PASSWORD_LEN {
        return Err(HiddenError);
    }
    let mut out = Zeroizing::new(hidden.to_vec());
    md5_chain(&mut out, secret, request_authenticator, false);
    while out.last() == Some(&0) {
        out.pop();
    }
    Ok(out)
}

/// Encrypts an MS-MPPE key (RFC 2548 §2.4.2): the plain text is key length (1 octet), key,
/// zero padding to a multiple of 16; b(1) = MD5(S + R + A), with `salt` A (its high bit is
/// set here, as the RFC requires). Returns salt + cipher text, the vendor attribute's value.
pub fn encrypt_mppe_key(
    key: &[u8],
    secret: &[u8],
    request_authenticator: &[u8; 16],
    salt: [u8; 2],
) -> Vec<u8> {
    let salt = [salt[0] | 0x80, salt[1]];
    let key = key.get(..key.len().min(255)).unwrap_or(&[]);
    let mut plain = Vec::with_capacity(key.len() + 17);
    plain.push(u8::try_from(key.len()).unwrap_or(u8::MAX));
    plain.extend_from_slice(key);
    plain.resize(plain.len().div_ceil(16) * 16, 0);
    let first: Vec<u8> = [request_authenticator.as_slice(), &salt].concat();
    md5_chain(&mut plain, secret, &first, true);
    let mut out = salt.to_vec();
    out.extend_from_slice(&plain);
    out
}

/// Decrypts an MS-MPPE-Send-Key or MS-MPPE-Recv-Key value (RFC 2548 §2.4.2, §2.4.3): salt
/// (2 octets, high bit set) then the cipher text; returns the key (its length from the first
/// decrypted octet).
pub fn decrypt_mppe_key(
    value: &[u8],
    secret: &[u8],
    request_authenticator: &[u8; 16],
) -> Result<Zeroizing<Vec<u8>>, HiddenError> {
    let (Some(salt), Some(cipher)) = (value.get(..2), value.get(2..)) else {
        return Err(HiddenError);
    };
    if salt.first().is_none_or(|s| s & 0x80 == 0)
        || cipher.is_empty()
        || !cipher.len().is_multiple_of(16)
    {
        return Err(HiddenError);
    }
    let first: Vec<u8> = [request_authenticator.as_slice(), salt].concat();
    let mut plain = Zeroizing::new(cipher.to_vec());
    md5_chain(&mut plain, secret, &first, false);
    let len = usize::from(*plain.first().ok_or(HiddenError)?);
    let key = plain.get(1..1 + len).ok_or(HiddenError)?;
    Ok(Zeroizing::new(key.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex16(s: &str) -> [u8; 16] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    /// RFC 2865 §7.1: the Access-Request for "nemo" with password "arctangent", secret
    /// "xyzzy5461", and the Access-Accept answering it.
    const RFC_REQUEST: &str = "010000380f403f9473978057bd83d5cb98f4227a\
        01066e656d6f02120dbe708d93d413ce3196e43f782a0aee\
        0406c0a80110050600000003";
    const RFC_ACCEPT: &str = "0200002686fe220e7624ba2a1005f6bf9b55e0b2\
        0606000000010f06000000000e06c0a80103";
    const RFC_REQUEST_AUTH: &str = "0f403f9473978057bd83d5cb98f4227a";

    #[test]
    fn rfc2865_7_1_password_hiding() {
        // The RFC text's hex dump of the Access-Request, re-typed: RA and hidden password.
        let ra = hex16(RFC_REQUEST_AUTH);
        let hidden =
            hex::decode("0d be 70 8d 93 d4 13 ce 31 96 e4 3f 78 2a 0a ee".replace(' ', ""))
                .unwrap();
        let got = hide_password(b"arctangent", b"xyzzy5461", &ra).unwrap();
        assert_eq!(got, hidden);
        let back = unhide_password(&hidden, b"xyzzy5461", &ra).unwrap();
        assert_eq!(back.as_slice(), b"arctangent");
        let p = Packet::decode(&hex::decode(RFC_REQUEST).unwrap()).unwrap();
        assert_eq!(p.authenticator, ra);
        assert_eq!(p.get(attr::USER_PASSWORD), Some(hidden.as_slice()));
        assert_eq!(p.get_str(attr::USER_NAME).as_deref(), Some("nemo"));
        assert_eq!(p.get_u32(attr::NAS_PORT), Some(3));
        assert_eq!(p.encode().unwrap(), hex::decode(RFC_REQUEST).unwrap());
    }

    #[test]
    fn rfc2865_7_1_response_authenticator() {
        // RFC 2865 §7.1: the Access-Accept answering the request above, byte for byte.
        let ra = hex16(RFC_REQUEST_AUTH);
        let mut p = Packet::new(code::ACCESS_ACCEPT, 0);
        p.add_u32(attr::SERVICE_TYPE, 1);
        p.add_u32(15, 0);
        p.add_ipv4(14, Ipv4Addr::new(192, 168, 1, 3));
        let bytes = p.encode_response(&ra, b"xyzzy5461").unwrap();
        assert_eq!(bytes, hex::decode(RFC_ACCEPT).unwrap());
        // A self-consistent check irrespective of the RFC's numbers.
        let back = verify_response(&bytes, &ra, b"xyzzy5461", false).unwrap();
        assert_eq!(back.get_ipv4(14), Some(Ipv4Addr::new(192, 168, 1, 3)));
        assert_eq!(
            verify_response(&bytes, &ra, b"wrong", false),
            Err(AuthError::Authenticator)
        );
        assert_eq!(
            verify_response(&bytes, &ra, b"xyzzy5461", true),
            Err(AuthError::MissingMessageAuthenticator)
        );
    }

    #[test]
    fn message_authenticator_independent_hmac() {
        let mut p = Packet::new(code::ACCESS_REQUEST, 7);
        p.authenticator = [9; 16];
        p.add_str(attr::USER_NAME, "bob");
        p.add_message_authenticator();
        let bytes = p.encode_request(b"s3cret").unwrap();
        // Independent: HMAC-MD5 with the hmac crate over the packet with MA zeroed.
        let mut zeroed = bytes.clone();
        let ma_at = bytes.len() - 16;
        zeroed[ma_at..].fill(0);
        let mut m = <hmac::Hmac<Md5> as KeyInit>::new_from_slice(b"s3cret").unwrap();
        m.update(&zeroed);
        let want: [u8; 16] = m.finalize().into_bytes().into();
        assert_eq!(&bytes[ma_at..], &want);
        assert_eq!(&bytes[4..20], &[9; 16]);

        // A response with MA: computed over the request authenticator.
        let mut r = Packet::new(code::ACCESS_ACCEPT, 7);
        r.add_message_authenticator();
        let rb = r.encode_response(&[9; 16], b"s3cret").unwrap();
        let mut z = rb.clone();
        z[4..20].copy_from_slice(&[9; 16]);
        let n = z.len();
        z[n - 16..].fill(0);
        let mut m = <hmac::Hmac<Md5> as KeyInit>::new_from_slice(b"s3cret").unwrap();
        m.update(&z);
        let want: [u8; 16] = m.finalize().into_bytes().into();
        assert_eq!(&rb[n - 16..], &want);
        assert!(verify_response(&rb, &[9; 16], b"s3cret", true).is_ok());
        let mut bad = rb.clone();
        bad[n - 1] ^= 1;
        assert!(verify_response(&bad, &[9; 16], b"s3cret", true).is_err());
    }

    #[test]
    fn accounting_request_authenticator() {
        let mut p = Packet::new(code::ACCOUNTING_REQUEST, 3);
        p.add_u32(attr::ACCT_STATUS_TYPE, 1);
        p.add_str(attr::ACCT_SESSION_ID, "abc");
        let bytes = p.encode_request(b"k").unwrap();
        let mut z = bytes.clone();
        z[4..20].fill(0);
        let want = Md5::digest([z.as_slice(), b"k"].concat());
        assert_eq!(&bytes[4..20], want.as_slice());
        assert!(verify_request(&bytes, b"k").is_ok());
        assert_eq!(verify_request(&bytes, b"x"), Err(AuthError::Authenticator));
    }

    #[test]
    fn mppe_key_round_trip_independent() {
        let ra = [0x11; 16];
        let key = [0xab; 16];
        let v = encrypt_mppe_key(&key, b"secret", &ra, [0x01, 0x02]);
        assert_eq!(v.len(), 2 + 32);
        assert_eq!(&v[..2], &[0x81, 0x02]);
        // Independent: b1 = MD5(S + R + A), b2 = MD5(S + c1).
        let b1 = Md5::digest([b"secret".as_slice(), &ra, &[0x81, 0x02]].concat());
        let mut p1 = [0u8; 16];
        p1[0] = 16;
        p1[1..].copy_from_slice(&key[..15]);
        let c1: Vec<u8> = p1.iter().zip(b1.iter()).map(|(a, b)| a ^ b).collect();
        assert_eq!(&v[2..18], c1.as_slice());
        let b2 = Md5::digest([b"secret".as_slice(), &c1].concat());
        let mut p2 = [0u8; 16];
        p2[0] = key[15];
        let c2: Vec<u8> = p2.iter().zip(b2.iter()).map(|(a, b)| a ^ b).collect();
        assert_eq!(&v[18..], c2.as_slice());
        let back = decrypt_mppe_key(&v, b"secret", &ra).unwrap();
        assert_eq!(back.as_slice(), &key);
        assert!(decrypt_mppe_key(&v[..10], b"secret", &ra).is_err());
        assert!(decrypt_mppe_key(&[0x01, 0x02], b"secret", &ra).is_err());
    }

    #[test]
    fn eap_fragments() {
        let eap: Vec<u8> = (0..600u32).map(|i| i as u8).collect();
        let mut p = Packet::new(code::ACCESS_REQUEST, 1);
        p.add_eap_message(&eap);
        let lens: Vec<usize> = p.get_all(attr::EAP_MESSAGE).map(<[u8]>::len).collect();
        assert_eq!(lens, vec![253, 253, 94]);
        let back = Packet::decode(&p.encode().unwrap()).unwrap();
        assert_eq!(back.eap_message().unwrap(), eap);
        assert_eq!(Packet::new(2, 1).eap_message(), None);
    }

    #[test]
    fn vsa_and_typed_values() {
        let mut p = Packet::new(code::ACCESS_ACCEPT, 1);
        p.add_vsa(ms::VENDOR_ID, ms::PRIMARY_DNS_SERVER, &[10, 0, 0, 1]);
        p.add_vsa(9, 1, b"cisco");
        p.add_u32(attr::SESSION_TIMEOUT, 3600);
        let back = Packet::decode(&p.encode().unwrap()).unwrap();
        assert_eq!(
            back.get_vsa(ms::VENDOR_ID, ms::PRIMARY_DNS_SERVER),
            Some(&[10u8, 0, 0, 1][..])
        );
        assert_eq!(back.get_vsa(ms::VENDOR_ID, 1), None);
        assert_eq!(back.get_u32(attr::SESSION_TIMEOUT), Some(3600));
        assert!(!format!("{back:?}").contains("cisco"));
    }

    #[test]
    fn decode_errors() {
        assert_eq!(Packet::decode(&[1, 2, 0]), Err(DecodeError::Short));
        let mut b = vec![1, 1, 0, 19];
        b.resize(20, 0);
        assert_eq!(Packet::decode(&b), Err(DecodeError::BadLength));
        let mut b = vec![1, 1, 0, 22];
        b.resize(20, 0);
        b.extend_from_slice(&[1, 1]);
        assert_eq!(Packet::decode(&b), Err(DecodeError::BadAttribute));
        let mut b = vec![1, 1, 0, 30];
        b.resize(20, 0);
        assert_eq!(Packet::decode(&b), Err(DecodeError::Short));
        let mut p = Packet::new(1, 1);
        p.add(1, vec![0; 254]);
        assert_eq!(p.encode(), Err(EncodeError::ValueTooLong));
        assert_eq!(
            hide_password(&[1; 129], b"s", &[0; 16]),
            Err(EncodeError::PasswordTooLong)
        );
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(p) = Packet::decode(&bytes) {
                let _ = p.eap_message();
                let _ = p.vsas(ms::VENDOR_ID).count();
                let _ = p.encode();
            }
            let _ = verify_response(&bytes, &[0; 16], b"s", true);
            let _ = verify_request(&bytes, b"s");
            let _ = decrypt_mppe_key(&bytes, b"s", &[0; 16]);
            let _ = unhide_password(&bytes, b"s", &[0; 16]);
        }

        #[test]
        fn decode_header_fuzz(code in any::<u8>(), len in 0u16..5000, tail in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut b = vec![code, 1];
            b.extend_from_slice(&len.to_be_bytes());
            b.extend_from_slice(&[0; 16]);
            b.extend_from_slice(&tail);
            let _ = Packet::decode(&b);
            let _ = verify_response(&b, &[0; 16], b"s", false);
        }

        #[test]
        fn password_round_trip(pw in proptest::collection::vec(1u8..=255, 0..=128), ra in any::<[u8; 16]>()) {
            let h = hide_password(&pw, b"sec", &ra).unwrap();
            prop_assert!(h.len().is_multiple_of(16));
            let back = unhide_password(&h, b"sec", &ra).unwrap();
            prop_assert_eq!(back.as_slice(), pw.as_slice());
        }
    }
}

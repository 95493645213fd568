//! ISAKMP wire format (RFC 2408, 2407, 2409, 3947): zero-copy views for decoding and owned
//! builders for encoding.
//!
//! Decoding is total: any byte string gives either a value or a [`DecodeError`], never a panic.
//! Decoders borrow from the datagram (`&'a [u8]`); nothing is copied except the small vectors
//! that hold the parsed proposals, transforms, attributes and SPIs.
//!
//! Layout of the module:
//! * [`consts`]: numbers from the RFCs (exchange and payload types, DOI, attributes, notifies),
//!   all re-exported here (`isakmp::payload_type::SA`, ...).
//! * `header`: the 28-byte ISAKMP header ([`Header`]).
//! * `payload`: the generic payload chain ([`payloads`]), the typed payload views ([`Payload`])
//!   and whole messages ([`Message`]).
//! * `sa`: SA / proposal / transform / data attribute views.
//! * `builder`: [`PayloadChain`], [`encode_message`] and the `encode_*` body encoders.
//! * [`vendor_id`]: well-known vendor IDs and [`vendor_id::classify`].

pub mod consts;
mod header;
mod id;
mod payload;
mod reader;
mod sa;
pub mod vendor_id;

mod builder;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use builder::{
    AttrValueSpec, AttributeSpec, MAX_PAYLOAD_BODY, PayloadChain, ProposalSpec, SaSpec,
    TransformSpec, encode_attribute_list, encode_attributes, encode_cert, encode_delete,
    encode_fragment, encode_id, encode_message, encode_nat_oa, encode_notify, encode_sa,
};
pub use consts::{
    auth_alg, auth_method, cert_encoding, doi, encap_mode, exchange, exchange_name, flags,
    fragment_flags, group, group_type, id_type, life_type, modecfg, notify, notify_name, p1attr,
    p1enc, p1hash, p2attr, payload_name, payload_type, protocol, situation, transform,
};
pub use header::{HEADER_LEN, Header};
pub use id::{IdPayload, Identity};
pub use payload::{
    AttributesPayload, CertPayload, DeletePayload, FragmentPayload, Item, Message, NotifyPayload,
    Payload, Payloads, RawPayload, payloads,
};
pub use sa::{AttrValue, Attribute, Attributes, Proposal, SaPayload, Transform, attributes};

/// Why a byte string is not a valid ISAKMP message or payload.
///
/// `what` fields name the structure being decoded in plain words ("proposal payload",
/// "delete SPIs", ...) so that the `Display` output can go straight into a log line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the structure needs.
    #[error("{what} is truncated: it needs {need} bytes but only {have} are there")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    /// A length field holds a value that cannot be right (e.g. a generic payload length below 4).
    #[error("{what} has an impossible length of {len} bytes")]
    BadLength { what: &'static str, len: usize },
    /// The header's major version is not 1 (IKEv1). Holds the whole version byte.
    #[error(
        "ISAKMP version {}.{} is not supported (only IKEv1, version 1.x)",
        .0 >> 4,
        .0 & 0x0f
    )]
    BadVersion(u8),
    /// Well-formed, but uses a feature this implementation does not decode.
    #[error("not supported: {0}")]
    Unsupported(&'static str),
    /// A nested chain (proposals inside an SA, transforms inside a proposal) names a payload
    /// type that does not belong there.
    #[error("{what} chains to payload type {kind}, but only {expected} (or 0) may follow")]
    UnexpectedPayload {
        what: &'static str,
        kind: u8,
        expected: u8,
    },
    /// A count field disagrees with what is actually there (#transforms, number of SPIs).
    #[error("{what} declares {declared} but holds {found}")]
    CountMismatch {
        what: &'static str,
        declared: usize,
        found: usize,
    },
    /// Bytes are left inside a container after its last element.
    #[error("{what} has {extra} unexplained bytes after its last element")]
    TrailingBytes { what: &'static str, extra: usize },
    /// A field holds a value that makes the rest undecodable (e.g. an unknown ID type).
    #[error("{what} has the invalid value {value}")]
    BadValue { what: &'static str, value: u32 },
    /// [`Message::decode`] was given a message with the encryption flag set: decrypt the body
    /// and use [`Message::parse`].
    #[error("the message is encrypted: decrypt it first, then parse the plaintext")]
    Encrypted,
}

impl DecodeError {
    /// The RFC 2408 §3.14.1 notify message type that best answers this error, for peers that
    /// want one (the caller decides whether to send it at all).
    pub fn notify_type(&self) -> u16 {
        match self {
            DecodeError::BadVersion(_) => notify::INVALID_MAJOR_VERSION,
            DecodeError::Unsupported(what) if *what == sa::SITUATION_UNSUPPORTED => {
                notify::SITUATION_NOT_SUPPORTED
            }
            DecodeError::Unsupported(what) if *what == sa::DOI_UNSUPPORTED => {
                notify::DOI_NOT_SUPPORTED
            }
            DecodeError::UnexpectedPayload { .. } | DecodeError::CountMismatch { .. } => {
                notify::BAD_PROPOSAL_SYNTAX
            }
            DecodeError::BadValue { what, .. } if *what == id::ID_TYPE => {
                notify::INVALID_ID_INFORMATION
            }
            _ => notify::PAYLOAD_MALFORMED,
        }
    }
}

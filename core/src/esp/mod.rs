//! ESP, sans-IO: RFC 4303 packet processing with the transforms of RFC 3602 (AES-CBC),
//! RFC 4106 (AES-GCM), RFC 2404 / RFC 4868 (HMAC-SHA1-96 / HMAC-SHA-2) and 3DES, and the UDP
//! encapsulation of RFC 3948.
//!
//! Bytes in, bytes out: an [`OutboundSa`] turns a plaintext already sitting in the caller's
//! buffer into an ESP packet around it, and an [`InboundSa`] turns an ESP packet back into
//! plaintext, both in place and without allocating. The sockets (raw protocol 50 or UDP 4500)
//! and the clock belong to the caller; [`classify_udp4500`] splits port 4500 traffic and
//! [`peek_spi`] gives the SPI to look an inbound SA up by.
//!
//! Transport and tunnel mode are the same at this layer: the payload is whatever the caller
//! puts there, and `next_header` says what it is (17 for UDP/L2TP in transport mode, 4 or 41
//! for an inner IPv4/IPv6 packet in tunnel mode).
//!
//! Sequence numbers are 32 bits (no ESN, which IKEv1 does not negotiate). Outbound they start
//! at 1 and never cycle; inbound an anti-replay window of [`REPLAY_WINDOW`] packets applies.
//! IVs: CBC suites draw each IV from a per-SA ChaCha20 CSPRNG seeded once from the OS; GCM
//! uses a 64-bit counter as explicit IV (RFC 4106 §3.1), the nonce being salt || IV and the
//! AAD SPI || sequence number (RFC 4106 §5).

mod encap;
mod sa;
mod transform;

#[cfg(test)]
mod tests;

pub use encap::{NAT_KEEPALIVE, NON_ESP_MARKER, Udp4500, classify_udp4500};
pub use sa::{InboundSa, OutboundSa, REPLAY_WINDOW, SEQ_SOFT_LIMIT};
pub use transform::{
    Encryption, GCM_ICV_LEN, GCM_SALT_LEN, Integrity, MAX_IV_LEN, Suite, compute_icv,
};

/// Why ESP processing refused a packet or a key. Messages name the failure only, never key or
/// packet bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EspError {
    /// The packet is shorter than the smallest valid packet of the suite.
    #[error("ESP packet truncated")]
    Truncated,
    /// The packet's SPI is not this SA's.
    #[error("ESP packet for another SPI")]
    BadSpi,
    /// Sequence number already seen, zero, or older than the replay window.
    #[error("ESP packet replayed or too old")]
    Replay,
    /// The ICV (or GCM tag) does not match: forged, corrupted or under another key.
    #[error("ESP integrity check failed")]
    AuthFailed,
    /// Authentic packet whose pad length or padding bytes are wrong.
    #[error("ESP padding invalid")]
    BadPadding,
    /// Ciphertext length is not a whole number of cipher blocks.
    #[error("ESP ciphertext length not a multiple of the cipher block")]
    BadLength,
    /// 2^32 - 1 packets were sent: the SA must be replaced, never cycled (RFC 4303 §3.3.3).
    #[error("ESP sequence number exhausted; SA needs rekeying")]
    SequenceExhausted,
    /// Not enough headroom or tailroom around the payload, or a range outside the buffer.
    #[error("buffer too small for ESP header and trailer")]
    BufferTooSmall,
    /// KEYMAT of the wrong length or a key the cipher refuses.
    #[error("ESP key material invalid")]
    BadKey,
    /// An unsupported cipher/integrity combination or key length.
    #[error("ESP transform combination not supported")]
    BadSuite,
    /// The operating system's random number generator failed.
    #[error("system random number generator failed")]
    Rng,
    /// The cryptographic library reported an unexpected error.
    #[error("cryptographic library error")]
    Crypto,
}

/// A decrypted packet: where the plaintext is within the packet buffer, and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decrypted {
    /// The packet's sequence number.
    pub seq: u32,
    /// Next header (IP protocol number) of the payload.
    pub next_header: u8,
    /// Range of the plaintext payload within the buffer given to `decrypt`.
    pub payload: core::ops::Range<usize>,
}

/// The SPI of an ESP packet (starting at the SPI), to find its inbound SA. `None` when the
/// packet is too short to hold SPI and sequence number, or the SPI is 0 (reserved, never sent,
/// RFC 4303 §2.1).
pub fn peek_spi(packet: &[u8]) -> Option<u32> {
    if packet.len() < 8 {
        return None;
    }
    let (spi, _) = packet.split_first_chunk::<4>()?;
    match u32::from_be_bytes(*spi) {
        0 => None,
        spi => Some(spi),
    }
}

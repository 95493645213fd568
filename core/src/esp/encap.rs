//! UDP encapsulation of ESP, RFC 3948: what arrives on UDP port 4500.
//!
//! The same port carries three things, told apart by their first bytes (RFC 3948 §2):
//! a one-byte NAT-keepalive `0xFF` (§2.3), an IKE message behind a four-byte zero Non-ESP
//! Marker (§2.2), and an ESP packet starting at its (never zero) SPI (§2.1). ESP packets are
//! then processed exactly as from IP protocol 50; sending one means writing the ESP packet as
//! the UDP payload. (In transport mode the inner UDP/L2TP checksum fix-up of §3.1.2 belongs to
//! the layer that knows the original addresses, not here.)

/// The four zero bytes before an IKE message on port 4500 (RFC 3948 §2.2).
pub const NON_ESP_MARKER: [u8; 4] = [0; 4];

/// The NAT-keepalive payload (RFC 3948 §2.3).
pub const NAT_KEEPALIVE: [u8; 1] = [0xff];

/// What a UDP/4500 datagram holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Udp4500<'a> {
    /// A NAT-keepalive: ignore it.
    Keepalive,
    /// An IKE message, Non-ESP Marker stripped.
    Ike(&'a [u8]),
    /// An ESP packet, starting at the SPI.
    Esp(&'a [u8]),
    /// Anything else: drop it.
    Malformed,
}

/// Classifies a UDP/4500 payload: exactly `[0xFF]` is a keepalive; four leading zero bytes are
/// the Non-ESP Marker before IKE; at least 8 bytes (SPI + sequence number) with a non-zero SPI
/// are ESP; anything else is malformed. Total: any bytes give an answer, never a panic.
pub fn classify_udp4500(datagram: &[u8]) -> Udp4500<'_> {
    if datagram == NAT_KEEPALIVE {
        return Udp4500::Keepalive;
    }
    match datagram.split_first_chunk::<4>() {
        Some((marker, ike)) if *marker == NON_ESP_MARKER => Udp4500::Ike(ike),
        Some(_) if datagram.len() >= 8 => Udp4500::Esp(datagram),
        _ => Udp4500::Malformed,
    }
}

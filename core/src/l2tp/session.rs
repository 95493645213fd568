//! One call (session) inside a tunnel (RFC 2661 §5.6; LNS states: §7.4.2 incoming calls,
//! §7.5.2 outgoing calls).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering::Relaxed};

/// Who started the call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum CallDirection {
    /// The LAC asked for it (ICRQ, ICRP, ICCN): every remote-access client.
    #[default]
    Incoming,
    /// We asked the LAC to place it ([`super::Lns::place_call`]: OCRQ, OCRP, OCCN).
    Outgoing,
}

/// What we know about the call: for an incoming call what the LAC told us (ICRQ and ICCN); for
/// an outgoing call what we asked for (OCRQ) and what the LAC obtained (OCCN).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallInfo {
    pub direction: CallDirection,
    pub call_serial: u32,
    pub calling_number: Option<String>,
    pub called_number: Option<String>,
    pub bearer_type: Option<u32>,
    /// Outgoing calls: the Sub-Address we sent.
    pub sub_address: Option<String>,
    pub tx_connect_speed: u32,
    pub rx_connect_speed: Option<u32>,
    pub framing_type: u32,
    /// The LAC asked for sequence numbers on data messages (Sequencing Required in ICCN/OCCN).
    pub sequencing_required: bool,
}

/// A call for the LAC to place (OCRQ, RFC 2661 §6.9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingCall {
    /// The number the LAC is to dial (Called Number AVP).
    pub called_number: String,
    /// Lowest and highest acceptable line speed, bits per second.
    pub minimum_bps: u32,
    pub maximum_bps: u32,
    /// Bearer Type bits (2 analog, 1 digital); reduced to the LAC's Bearer Capabilities.
    pub bearer_type: u32,
    /// Framing Type bits (2 asynchronous, 1 synchronous); reduced to the LAC's Framing
    /// Capabilities.
    pub framing_type: u32,
    pub sub_address: Option<String>,
}

impl Default for OutgoingCall {
    /// No number, any speed, analog or digital, synchronous or asynchronous framing.
    fn default() -> Self {
        Self {
            called_number: String::new(),
            minimum_bps: 0,
            maximum_bps: u32::MAX,
            bearer_type: 3,
            framing_type: 3,
            sub_address: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionState {
    /// Outgoing: OCRQ sent, waiting for OCRP (the peer's session ID is not known yet).
    WaitReply,
    /// Incoming: ICRP sent, waiting for ICCN. Outgoing: OCRP received, waiting for OCCN.
    WaitConnect,
    Established,
}

#[derive(Debug)]
pub(crate) struct Session {
    pub local_id: u16,
    pub peer_id: u16,
    pub state: SessionState,
    pub call: CallInfo,
    /// When the call was asked for (ICRQ received, OCRQ sent): setup must end in time.
    pub created: std::time::Instant,
    /// The data channel's sequence numbers, shared with the data-plane workers.
    pub data: Arc<DataSeq>,
}

/// The sequence numbers of one session's data messages (RFC 2661 §5.4). The control plane and
/// the data-plane workers share it: each message takes its Ns with one atomic add.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct DataSeq {
    /// Data messages carry Ns/Nr (the peer asked for it or sends them itself).
    sequencing: AtomicBool,
    /// Ns of our next data message.
    ns: AtomicU16,
    /// Ns the peer's next data message should carry (our data Nr).
    nr: AtomicU16,
}

impl DataSeq {
    /// Turns sequence numbers on (the peer sent Sequencing Required).
    pub fn require(&self) {
        self.sequencing.store(true, Relaxed);
    }

    /// A data message from the peer: with Ns/Nr the session switches to sequencing (§5.4:
    /// the S bit on data means the peer wants them). Returns false for a data message older
    /// than the last one (the caller drops it). Two workers racing here can at worst accept
    /// one late frame: PPP above copes with loss and reordering.
    pub fn on_data(&self, seq: Option<(u16, u16)>) -> bool {
        let Some((ns, _nr)) = seq else {
            return true;
        };
        self.sequencing.store(true, Relaxed);
        if super::reliable::seq_lt(ns, self.nr.load(Relaxed)) {
            return false;
        }
        self.nr.store(ns.wrapping_add(1), Relaxed);
        true
    }

    /// Sequence numbers for our next data message, if the session uses them.
    pub fn next(&self) -> Option<(u16, u16)> {
        if !self.sequencing.load(Relaxed) {
            return None;
        }
        Some((self.ns.fetch_add(1, Relaxed), self.nr.load(Relaxed)))
    }
}

impl Session {
    /// An incoming call (ICRP sent: wait-connect) or an outgoing one (OCRQ sent, `peer_id` 0:
    /// wait-reply).
    pub fn new(local_id: u16, peer_id: u16, call: CallInfo, now: std::time::Instant) -> Self {
        let state = match call.direction {
            CallDirection::Incoming => SessionState::WaitConnect,
            CallDirection::Outgoing => SessionState::WaitReply,
        };
        Self {
            local_id,
            peer_id,
            state,
            call,
            created: now,
            data: Arc::default(),
        }
    }

    pub fn direction(&self) -> CallDirection {
        self.call.direction
    }

    /// Whether the shell knows this session, so its end is reported (SessionDown): an
    /// established call, or an outgoing call at any stage (place_call returned its reference).
    pub fn announced(&self) -> bool {
        self.state == SessionState::Established || self.direction() == CallDirection::Outgoing
    }
}

pub(crate) fn text(v: &Option<Vec<u8>>) -> Option<String> {
    v.as_ref()
        .map(|b| String::from_utf8_lossy(b).trim_end_matches('\0').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequencing_follows_peer() {
        let s = Session::new(1, 2, CallInfo::default(), std::time::Instant::now()).data;
        assert!(s.on_data(None));
        assert_eq!(s.next(), None);
        assert!(s.on_data(Some((0, 0))));
        assert!(s.on_data(Some((1, 0))));
        assert!(!s.on_data(Some((0, 0))), "stale frame dropped");
        assert_eq!(s.next(), Some((0, 2)));
        assert_eq!(s.next(), Some((1, 2)));
        assert!(s.on_data(Some((5, 0))), "a gap (lost frames) is accepted");
        assert_eq!(s.next(), Some((2, 6)));
    }
}

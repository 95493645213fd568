//! One call (session) inside a tunnel (RFC 2661 §5.6 incoming calls, §7.4.2 LNS states).

/// What the LAC told us about the call (ICRQ and ICCN).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallInfo {
    pub call_serial: u32,
    pub calling_number: Option<String>,
    pub called_number: Option<String>,
    pub bearer_type: Option<u32>,
    pub tx_connect_speed: u32,
    pub rx_connect_speed: Option<u32>,
    pub framing_type: u32,
    /// The LAC asked for sequence numbers on data messages (Sequencing Required in ICCN).
    pub sequencing_required: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionState {
    /// ICRP sent, waiting for ICCN.
    WaitConnect,
    Established,
}

#[derive(Debug)]
pub(crate) struct Session {
    pub local_id: u16,
    pub peer_id: u16,
    pub state: SessionState,
    pub call: CallInfo,
    /// Data messages carry Ns/Nr (the peer asked for it or sends them itself).
    pub sequencing: bool,
    /// Ns of our next data message.
    pub data_ns: u16,
    /// Ns the peer's next data message should carry (our data Nr).
    pub data_nr: u16,
}

impl Session {
    pub fn new(local_id: u16, peer_id: u16, call: CallInfo) -> Self {
        Self {
            local_id,
            peer_id,
            state: SessionState::WaitConnect,
            call,
            sequencing: false,
            data_ns: 0,
            data_nr: 0,
        }
    }

    /// A data message from the peer: with Ns/Nr the session switches to sequencing (§5.4:
    /// the S bit on data means the peer wants them) and out-of-order frames are reported.
    /// Returns false for a data message older than the last one (the caller drops it).
    pub fn on_data(&mut self, seq: Option<(u16, u16)>) -> bool {
        let Some((ns, _nr)) = seq else {
            return true;
        };
        self.sequencing = true;
        if super::reliable::seq_lt(ns, self.data_nr) {
            return false;
        }
        self.data_nr = ns.wrapping_add(1);
        true
    }

    /// Sequence numbers for our next data message, if the session uses them.
    pub fn next_data_seq(&mut self) -> Option<(u16, u16)> {
        if !self.sequencing {
            return None;
        }
        let ns = self.data_ns;
        self.data_ns = ns.wrapping_add(1);
        Some((ns, self.data_nr))
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
        let mut s = Session::new(1, 2, CallInfo::default());
        assert!(s.on_data(None));
        assert_eq!(s.next_data_seq(), None);
        assert!(s.on_data(Some((0, 0))));
        assert!(s.on_data(Some((1, 0))));
        assert!(!s.on_data(Some((0, 0))), "stale frame dropped");
        assert_eq!(s.next_data_seq(), Some((0, 2)));
        assert_eq!(s.next_data_seq(), Some((1, 2)));
        assert!(s.on_data(Some((5, 0))), "a gap (lost frames) is accepted");
        assert_eq!(s.next_data_seq(), Some((2, 6)));
    }
}

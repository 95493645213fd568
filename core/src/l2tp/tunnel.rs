//! One control connection (tunnel) with its peer: state (RFC 2661 §7.2.1, LNS side), the
//! reliable channel, its sessions, and the control messages we build for it.

use std::collections::HashMap;
use std::time::Instant;

use zeroize::Zeroizing;

use super::PeerId;
use super::avp::{Message, ResultCode, attr, msg};
use super::reliable::Channel;
use super::session::{Session, SessionState};
use super::wire;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TunnelState {
    /// SCCRP sent, waiting for SCCCN (half-open).
    WaitConnect,
    Established,
    /// StopCCN sent or received: kept until `until` to acknowledge retransmissions.
    Closing {
        until: Instant,
    },
}

#[derive(Debug)]
pub(crate) struct Tunnel {
    pub peer: PeerId,
    /// The UDP port the peer last sent from: replies go there.
    pub port: u16,
    pub local_id: u16,
    pub peer_id: u16,
    pub state: TunnelState,
    pub host_name: String,
    pub vendor: Option<String>,
    /// From SCCRQ: what the LAC can do (§4.4.3). An outgoing call needs Bearer Capabilities
    /// (§6.9); the OCRQ's Bearer and Framing Type bits are limited to these.
    pub bearer_capabilities: Option<u32>,
    pub framing_capabilities: Option<u32>,
    /// The challenge we sent in SCCRP; SCCCN must answer it.
    pub our_challenge: Option<Zeroizing<Vec<u8>>>,
    /// Held out-of-order messages keep their header's session ID.
    pub channel: Channel<(u16, Message)>,
    pub sessions: HashMap<u16, Session>,
    /// Peer's session ID → ours, to recognise a repeated ICRQ or OCRP (outgoing calls enter it
    /// at OCRP).
    pub by_peer_session: HashMap<u16, u16>,
    pub created: Instant,
    /// Last control or data message from the peer (for HELLO).
    pub last_heard: Instant,
}

impl Tunnel {
    pub fn is_closing(&self) -> bool {
        matches!(self.state, TunnelState::Closing { .. })
    }

    /// Starts a control message to the peer with its Message Type AVP.
    pub fn message(&self, session: u16, msg_type: u16) -> Vec<u8> {
        let mut m = wire::begin_control(self.peer_id, session);
        wire::put_avp(&mut m, true, attr::MESSAGE_TYPE, &msg_type.to_be_bytes());
        m
    }

    /// Queues a finished message on the reliable channel.
    pub fn send(&mut self, mut m: Vec<u8>) {
        wire::finish_control(&mut m);
        self.channel.push(m);
    }

    pub fn stopccn(&mut self, result: u16, error: Option<u16>, message: &str) {
        let mut m = self.message(0, msg::STOPCCN);
        wire::put_avp(
            &mut m,
            true,
            attr::ASSIGNED_TUNNEL_ID,
            &self.local_id.to_be_bytes(),
        );
        wire::put_avp(
            &mut m,
            true,
            attr::RESULT_CODE,
            &ResultCode::encode(result, error, message),
        );
        self.send(m);
    }

    /// A CDN for the peer's session `peer_session`, naming ours `local_session`.
    pub fn cdn(
        &mut self,
        peer_session: u16,
        local_session: u16,
        result: u16,
        error: Option<u16>,
        message: &str,
    ) {
        let mut m = self.message(peer_session, msg::CDN);
        wire::put_avp(
            &mut m,
            true,
            attr::RESULT_CODE,
            &ResultCode::encode(result, error, message),
        );
        wire::put_avp(
            &mut m,
            true,
            attr::ASSIGNED_SESSION_ID,
            &local_session.to_be_bytes(),
        );
        self.send(m);
    }

    /// A random non-zero session ID not in use; None if all are (only with an absurd limit).
    pub fn alloc_session_id(&self, rng: &mut impl rand::Rng) -> Option<u16> {
        for _ in 0..64 {
            let id = (rng.next_u32() & 0xffff) as u16;
            if id != 0 && !self.sessions.contains_key(&id) {
                return Some(id);
            }
        }
        (1..=u16::MAX).find(|id| !self.sessions.contains_key(id))
    }

    /// The earliest instant this tunnel needs service.
    pub fn deadline(
        &self,
        hello_interval: std::time::Duration,
        half_open_timeout: std::time::Duration,
    ) -> Option<Instant> {
        let mut d = self.channel.retransmit_at();
        let mut consider = |t: Instant| d = Some(d.map_or(t, |x| x.min(t)));
        match self.state {
            TunnelState::Closing { until } => consider(until),
            TunnelState::WaitConnect => consider(self.created + half_open_timeout),
            TunnelState::Established => {
                if self.channel.idle() && !hello_interval.is_zero() {
                    consider(self.last_heard + hello_interval);
                }
                if let Some(first) = self
                    .sessions
                    .values()
                    .filter(|s| s.state != SessionState::Established)
                    .map(|s| s.created)
                    .min()
                {
                    consider(first + super::CALL_SETUP_TIMEOUT);
                }
            }
        }
        d
    }

    /// Whether a call of this tunnel has been setting up for `timeout` or longer.
    pub fn calls_stuck(&self, now: Instant, timeout: std::time::Duration) -> bool {
        self.sessions
            .values()
            .any(|s| s.state != SessionState::Established && now >= s.created + timeout)
    }
}

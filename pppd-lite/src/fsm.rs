//! The RFC 1661 §4 option negotiation automaton, shared by LCP, IPCP and IPV6CP.
//!
//! The automaton owns the state, the restart timer and counter and the identifiers; a
//! `Negotiate` implementation owns the protocol's options. Packets to send accumulate in
//! `out` and layer signals (tlu/tld/tls/tlf) in `signals`; the caller drains both after each
//! call.

use std::time::{Duration, Instant};

use crate::packet::{self, Packet, PacketError, Reply};

/// Control-packet codes (RFC 1661 §5).
pub mod code {
    /// Configure-Request.
    pub const CONFIGURE_REQUEST: u8 = 1;
    /// Configure-Ack.
    pub const CONFIGURE_ACK: u8 = 2;
    /// Configure-Nak.
    pub const CONFIGURE_NAK: u8 = 3;
    /// Configure-Reject.
    pub const CONFIGURE_REJECT: u8 = 4;
    /// Terminate-Request.
    pub const TERMINATE_REQUEST: u8 = 5;
    /// Terminate-Ack.
    pub const TERMINATE_ACK: u8 = 6;
    /// Code-Reject.
    pub const CODE_REJECT: u8 = 7;
    /// Protocol-Reject (LCP only).
    pub const PROTOCOL_REJECT: u8 = 8;
    /// Echo-Request (LCP only).
    pub const ECHO_REQUEST: u8 = 9;
    /// Echo-Reply (LCP only).
    pub const ECHO_REPLY: u8 = 10;
    /// Discard-Request (LCP only).
    pub const DISCARD_REQUEST: u8 = 11;
    /// Identification (LCP, RFC 1570).
    pub const IDENTIFICATION: u8 = 12;
    /// Time-Remaining (LCP, RFC 1570).
    pub const TIME_REMAINING: u8 = 13;
}

/// The automaton's states (RFC 1661 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Lower layer down, no open.
    Initial,
    /// Open, lower layer down.
    Starting,
    /// Lower layer up, no open.
    Closed,
    /// Negotiation given up or peer terminated; waiting.
    Stopped,
    /// Terminate-Request sent after Close.
    Closing,
    /// Terminate-Request sent, not administratively closed.
    Stopping,
    /// Configure-Request sent.
    ReqSent,
    /// Configure-Request sent and acked.
    AckRcvd,
    /// Configure-Request sent, peer's acked.
    AckSent,
    /// Both acked.
    Opened,
}

/// Layer signals for the owner (RFC 1661 §4.4 actions), plus a fatal negotiation failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// This-Layer-Up.
    Up,
    /// This-Layer-Down.
    Down,
    /// This-Layer-Finished.
    Finished,
    /// The options cannot converge (for example, the peer refuses authentication).
    Failed(&'static str),
}

/// Why a received packet was discarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Discard {
    Malformed(PacketError),
    /// Out of state or an identifier/content mismatch (RFC 1661 says: silently discard).
    Unexpected,
    /// A code this automaton does not know: the caller sends Code-Reject.
    UnknownCode,
}

/// A protocol's options.
pub(crate) trait Negotiate {
    /// The options of our next Configure-Request.
    fn request(&mut self) -> Vec<u8>;
    /// Judges the peer's Configure-Request; records the peer's values when the reply is Ack.
    fn on_request(&mut self, options: &[u8]) -> Result<Reply, PacketError>;
    /// Our last Configure-Request was acked.
    fn on_ack(&mut self);
    /// The peer Nak'ed (already validated) options of our request.
    fn on_nak(&mut self, options: &[u8]) -> Result<(), &'static str>;
    /// The peer rejected (already validated) options of our request.
    fn on_reject(&mut self, options: &[u8]) -> Result<(), &'static str>;
}

/// Restart timer and counters (RFC 1661 §4.6).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timers {
    pub restart: Duration,
    pub max_configure: u32,
    pub max_terminate: u32,
    pub max_failure: u32,
}

#[derive(Debug)]
pub(crate) struct Fsm<N> {
    pub(crate) opts: N,
    state: State,
    timers: Timers,
    counter: u32,
    deadline: Option<Instant>,
    next_id: u8,
    request_id: Option<u8>,
    last_request: Vec<u8>,
    terminate_data: Vec<u8>,
    naks_sent: u32,
    last_acked: Option<(u8, Vec<u8>)>,
    /// The data of the last Terminate-Request the peer sent.
    pub(crate) peer_terminate: Option<Vec<u8>>,
    pub(crate) out: Vec<Vec<u8>>,
    pub(crate) signals: Vec<Signal>,
}

impl<N: Negotiate> Fsm<N> {
    pub(crate) fn new(opts: N, timers: Timers, first_id: u8) -> Self {
        Self {
            opts,
            state: State::Initial,
            timers,
            counter: 0,
            deadline: None,
            next_id: first_id,
            request_id: None,
            last_request: Vec::new(),
            terminate_data: Vec::new(),
            naks_sent: 0,
            last_acked: None,
            peer_terminate: None,
            out: Vec::new(),
            signals: Vec::new(),
        }
    }

    pub(crate) fn state(&self) -> State {
        self.state
    }

    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// A fresh identifier for packets we originate.
    pub(crate) fn fresh_id(&mut self) -> u8 {
        self.next_id = self.next_id.wrapping_add(1);
        self.next_id
    }

    fn set(&mut self, state: State) {
        self.state = state;
        if matches!(
            state,
            State::Initial | State::Starting | State::Closed | State::Stopped | State::Opened
        ) {
            self.deadline = None;
        }
    }

    fn irc_configure(&mut self) {
        self.counter = self.timers.max_configure;
    }

    fn irc_terminate(&mut self) {
        self.counter = self.timers.max_terminate;
    }

    fn zrc(&mut self, now: Instant) {
        self.counter = 0;
        self.deadline = Some(now + self.timers.restart);
    }

    fn scr(&mut self, now: Instant) {
        self.send_request(now, false);
    }

    /// Sends a Configure-Request. A retransmission (`TO+`) of unchanged options keeps the
    /// identifier (RFC 1661 §5.1 allows it), so that a peer already Opened recognises it as a
    /// repeat of the request it acked rather than a renegotiation.
    fn send_request(&mut self, now: Instant, retransmission: bool) {
        let options = self.opts.request();
        let id = match self.request_id {
            Some(id) if retransmission && options == self.last_request => id,
            _ => self.fresh_id(),
        };
        self.last_request = options;
        self.request_id = Some(id);
        self.out.push(packet::encode(
            code::CONFIGURE_REQUEST,
            id,
            &self.last_request,
        ));
        self.counter = self.counter.saturating_sub(1);
        self.deadline = Some(now + self.timers.restart);
    }

    fn str(&mut self, now: Instant) {
        let id = self.fresh_id();
        self.out.push(packet::encode(
            code::TERMINATE_REQUEST,
            id,
            &self.terminate_data,
        ));
        self.counter = self.counter.saturating_sub(1);
        self.deadline = Some(now + self.timers.restart);
    }

    fn sta(&mut self, id: u8) {
        self.out.push(packet::encode(code::TERMINATE_ACK, id, &[]));
    }

    /// Lower layer is up (`Up` event).
    pub(crate) fn up(&mut self, now: Instant) {
        match self.state {
            State::Initial => self.set(State::Closed),
            State::Starting => {
                self.irc_configure();
                self.scr(now);
                self.set(State::ReqSent);
            }
            _ => {}
        }
    }

    /// Lower layer is down (`Down` event).
    pub(crate) fn down(&mut self) {
        match self.state {
            State::Closed | State::Closing => self.set(State::Initial),
            State::Stopped | State::Stopping | State::ReqSent | State::AckRcvd | State::AckSent => {
                self.set(State::Starting)
            }
            State::Opened => {
                self.signals.push(Signal::Down);
                self.set(State::Starting);
            }
            State::Initial | State::Starting => {}
        }
    }

    /// Administrative open (`Open` event).
    pub(crate) fn open(&mut self, now: Instant) {
        match self.state {
            State::Initial => self.set(State::Starting),
            State::Closed => {
                self.irc_configure();
                self.scr(now);
                self.set(State::ReqSent);
            }
            State::Closing => self.set(State::Stopping),
            _ => {}
        }
    }

    /// Administrative close (`Close` event); `reason` goes into the Terminate-Request.
    pub(crate) fn close(&mut self, now: Instant, reason: &[u8]) {
        self.terminate_data = reason.to_vec();
        match self.state {
            State::Starting => {
                self.signals.push(Signal::Finished);
                self.set(State::Initial);
            }
            State::Stopped => self.set(State::Closed),
            State::Stopping => self.set(State::Closing),
            State::ReqSent | State::AckRcvd | State::AckSent => {
                self.irc_terminate();
                self.str(now);
                self.set(State::Closing);
            }
            State::Opened => {
                self.signals.push(Signal::Down);
                self.irc_terminate();
                self.str(now);
                self.set(State::Closing);
            }
            State::Initial | State::Closed | State::Closing => {}
        }
    }

    /// Restart timer expiry (`TO+` / `TO-`); does nothing before the deadline.
    pub(crate) fn timeout(&mut self, now: Instant) {
        if self.deadline.is_none_or(|d| d > now) {
            return;
        }
        self.deadline = None;
        if self.counter > 0 {
            match self.state {
                State::Closing | State::Stopping => self.str(now),
                State::ReqSent | State::AckRcvd => {
                    self.send_request(now, true);
                    self.set(State::ReqSent);
                }
                State::AckSent => self.send_request(now, true),
                _ => {}
            }
        } else {
            match self.state {
                State::Closing => {
                    self.signals.push(Signal::Finished);
                    self.set(State::Closed);
                }
                State::Stopping | State::ReqSent | State::AckRcvd | State::AckSent => {
                    self.signals.push(Signal::Finished);
                    self.set(State::Stopped);
                }
                _ => {}
            }
        }
    }

    /// Handles a received packet with codes 1 to 7.
    pub(crate) fn receive(&mut self, now: Instant, pkt: Packet<'_>) -> Result<(), Discard> {
        if matches!(self.state, State::Initial | State::Starting) {
            return Err(Discard::Unexpected);
        }
        match pkt.code {
            code::CONFIGURE_REQUEST => self.rcr(now, pkt),
            code::CONFIGURE_ACK => self.rca(now, pkt),
            code::CONFIGURE_NAK | code::CONFIGURE_REJECT => self.rcn(now, pkt),
            code::TERMINATE_REQUEST => {
                self.rtr(now, pkt);
                Ok(())
            }
            code::TERMINATE_ACK => {
                self.rta(now);
                Ok(())
            }
            code::CODE_REJECT => {
                // Rejecting one of the codes 1..=7 makes the protocol unusable (RXJ-).
                let rejected = pkt.data.first().copied().unwrap_or(0);
                self.rxj(now, (1..=7).contains(&rejected));
                Ok(())
            }
            _ => Err(Discard::UnknownCode),
        }
    }

    /// Sends Code-Reject (the `RUC` event), quoting `raw` cut to `max_len` octets of packet.
    pub(crate) fn code_reject(&mut self, raw: &[u8], max_len: usize) {
        if matches!(self.state, State::Initial | State::Starting) {
            return;
        }
        let id = self.fresh_id();
        let quoted = raw.get(..max_len.saturating_sub(4)).unwrap_or(raw);
        self.out.push(packet::encode(code::CODE_REJECT, id, quoted));
    }

    fn send_reply(&mut self, id: u8, reply: Reply, request: &[u8]) {
        let (code, data) = match reply {
            Reply::Ack => {
                self.naks_sent = 0;
                self.last_acked = Some((id, request.to_vec()));
                (code::CONFIGURE_ACK, request.to_vec())
            }
            Reply::Nak { nak, .. } => {
                self.naks_sent += 1;
                (code::CONFIGURE_NAK, nak)
            }
            Reply::Reject(rej) => (code::CONFIGURE_REJECT, rej),
        };
        self.out.push(packet::encode(code, id, &data));
    }

    fn rcr(&mut self, now: Instant, pkt: Packet<'_>) -> Result<(), Discard> {
        match self.state {
            State::Closed => {
                self.sta(pkt.id);
                return Ok(());
            }
            State::Closing | State::Stopping => return Ok(()),
            _ => {}
        }
        // A retransmission of the request we already acked (our Ack was lost): ack it again
        // instead of renegotiating, which would take the link down.
        if self.state == State::Opened
            && self
                .last_acked
                .as_ref()
                .is_some_and(|(id, data)| *id == pkt.id && data == pkt.data)
        {
            self.out
                .push(packet::encode(code::CONFIGURE_ACK, pkt.id, pkt.data));
            return Ok(());
        }
        let reply = self.opts.on_request(pkt.data).map_err(Discard::Malformed)?;
        // Max-Failure (RFC 1661 §4.6): stop Nak'ing, reject instead.
        let reply = match reply {
            Reply::Nak { original, .. } if self.naks_sent >= self.timers.max_failure => {
                Reply::Reject(original)
            }
            other => other,
        };
        let good = reply == Reply::Ack;
        match self.state {
            State::Stopped => {
                self.irc_configure();
                self.scr(now);
                self.send_reply(pkt.id, reply, pkt.data);
                self.set(if good { State::AckSent } else { State::ReqSent });
            }
            State::ReqSent | State::AckSent => {
                self.send_reply(pkt.id, reply, pkt.data);
                self.set(if good { State::AckSent } else { State::ReqSent });
            }
            State::AckRcvd => {
                self.send_reply(pkt.id, reply, pkt.data);
                if good {
                    self.set(State::Opened);
                    self.signals.push(Signal::Up);
                }
            }
            State::Opened => {
                self.signals.push(Signal::Down);
                self.scr(now);
                self.send_reply(pkt.id, reply, pkt.data);
                self.set(if good { State::AckSent } else { State::ReqSent });
            }
            _ => {}
        }
        Ok(())
    }

    /// Configure-Ack/Nak/Reject where no request of ours is outstanding: Closed and Stopped
    /// answer with Terminate-Ack, Closing and Stopping ignore them. True when the caller
    /// should process the reply.
    fn reply_wanted(&mut self, id: u8) -> bool {
        match self.state {
            State::Closed | State::Stopped => {
                self.sta(id);
                false
            }
            State::Closing | State::Stopping => false,
            _ => true,
        }
    }

    /// `tld, scr` and back to Req-Sent: the peer restarted negotiation while we were Opened.
    fn renegotiate(&mut self, now: Instant) {
        self.signals.push(Signal::Down);
        self.scr(now);
        self.set(State::ReqSent);
    }

    fn rca(&mut self, now: Instant, pkt: Packet<'_>) -> Result<(), Discard> {
        if !self.reply_wanted(pkt.id) {
            return Ok(());
        }
        // RFC 1661 §5.2: the Ack must match the last request exactly.
        if self.request_id != Some(pkt.id) || pkt.data != self.last_request.as_slice() {
            return Err(Discard::Unexpected);
        }
        match self.state {
            State::ReqSent => {
                self.irc_configure();
                self.opts.on_ack();
                self.set(State::AckRcvd);
            }
            State::AckRcvd => {
                self.scr(now);
                self.set(State::ReqSent);
            }
            State::AckSent => {
                self.irc_configure();
                self.opts.on_ack();
                self.set(State::Opened);
                self.signals.push(Signal::Up);
            }
            State::Opened => self.renegotiate(now),
            _ => {}
        }
        Ok(())
    }

    fn rcn(&mut self, now: Instant, pkt: Packet<'_>) -> Result<(), Discard> {
        if !self.reply_wanted(pkt.id) {
            return Ok(());
        }
        if self.request_id != Some(pkt.id) {
            return Err(Discard::Unexpected);
        }
        packet::validate_options(pkt.data).map_err(Discard::Malformed)?;
        let verdict = if pkt.code == code::CONFIGURE_NAK {
            self.opts.on_nak(pkt.data)
        } else {
            self.opts.on_reject(pkt.data)
        };
        if let Err(reason) = verdict {
            self.request_id = None;
            self.signals.push(Signal::Failed(reason));
            return Ok(());
        }
        match self.state {
            State::ReqSent | State::AckSent => {
                self.irc_configure();
                self.scr(now);
            }
            State::AckRcvd => {
                self.scr(now);
                self.set(State::ReqSent);
            }
            State::Opened => self.renegotiate(now),
            _ => {}
        }
        Ok(())
    }

    fn rtr(&mut self, now: Instant, pkt: Packet<'_>) {
        self.peer_terminate = Some(pkt.data.to_vec());
        match self.state {
            State::ReqSent | State::AckRcvd | State::AckSent => {
                self.sta(pkt.id);
                self.set(State::ReqSent);
            }
            State::Opened => {
                self.signals.push(Signal::Down);
                self.zrc(now);
                self.sta(pkt.id);
                self.set(State::Stopping);
            }
            _ => self.sta(pkt.id),
        }
    }

    fn rta(&mut self, now: Instant) {
        match self.state {
            State::Closing => {
                self.signals.push(Signal::Finished);
                self.set(State::Closed);
            }
            State::Stopping => {
                self.signals.push(Signal::Finished);
                self.set(State::Stopped);
            }
            State::AckRcvd => self.set(State::ReqSent),
            State::Opened => self.renegotiate(now),
            _ => {}
        }
    }

    /// `RXJ+` (`catastrophic == false`) or `RXJ-`: a Code-Reject or Protocol-Reject arrived.
    pub(crate) fn rxj(&mut self, now: Instant, catastrophic: bool) {
        if !catastrophic {
            if self.state == State::AckRcvd {
                self.set(State::ReqSent);
            }
            return;
        }
        match self.state {
            State::Closed | State::Closing => {
                self.signals.push(Signal::Finished);
                self.set(State::Closed);
            }
            State::Stopped | State::Stopping | State::ReqSent | State::AckRcvd | State::AckSent => {
                self.signals.push(Signal::Finished);
                self.set(State::Stopped);
            }
            State::Opened => {
                self.signals.push(Signal::Down);
                self.irc_terminate();
                self.str(now);
                self.set(State::Stopping);
            }
            State::Initial | State::Starting => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A negotiator with one option (type 1, one octet) that wants the value 5.
    #[derive(Debug, Default)]
    struct One {
        acked: bool,
    }

    impl Negotiate for One {
        fn request(&mut self) -> Vec<u8> {
            packet::option(1, &[5])
        }
        fn on_request(&mut self, options: &[u8]) -> Result<Reply, PacketError> {
            packet::judge_request(options, |o| match o.data {
                [5] => packet::Judgement::Ack,
                _ => packet::Judgement::Nak(packet::option(1, &[5])),
            })
        }
        fn on_ack(&mut self) {
            self.acked = true;
        }
        fn on_nak(&mut self, _: &[u8]) -> Result<(), &'static str> {
            Ok(())
        }
        fn on_reject(&mut self, _: &[u8]) -> Result<(), &'static str> {
            Err("rejected")
        }
    }

    fn timers() -> Timers {
        Timers {
            restart: Duration::from_secs(3),
            max_configure: 3,
            max_terminate: 2,
            max_failure: 2,
        }
    }

    fn started(now: Instant) -> Fsm<One> {
        let mut f = Fsm::new(One::default(), timers(), 0);
        f.open(now);
        f.up(now);
        f
    }

    #[test]
    fn open_then_up_sends_request() {
        let now = Instant::now();
        let f = started(now);
        assert_eq!(f.state(), State::ReqSent);
        assert_eq!(f.out, vec![vec![1, 1, 0, 7, 1, 3, 5]]);
        assert_eq!(f.deadline(), Some(now + Duration::from_secs(3)));
    }

    #[test]
    fn ack_then_request_opens() {
        let now = Instant::now();
        let mut f = started(now);
        f.out.clear();
        let ack = [2, 1, 0, 7, 1, 3, 5];
        f.receive(now, Packet::parse(&ack).unwrap()).unwrap();
        assert_eq!(f.state(), State::AckRcvd);
        assert!(f.opts.acked);
        // A stale duplicate with another identifier is discarded.
        let stale = [2, 9, 0, 7, 1, 3, 5];
        assert_eq!(
            f.receive(now, Packet::parse(&stale).unwrap()),
            Err(Discard::Unexpected)
        );
        let req = [1, 40, 0, 7, 1, 3, 5];
        f.receive(now, Packet::parse(&req).unwrap()).unwrap();
        assert_eq!(f.state(), State::Opened);
        assert_eq!(f.signals, vec![Signal::Up]);
        assert_eq!(f.out, vec![vec![2, 40, 0, 7, 1, 3, 5]]);
        assert_eq!(f.deadline(), None);
    }

    #[test]
    fn naks_become_rejects_after_max_failure() {
        let now = Instant::now();
        let mut f = started(now);
        f.out.clear();
        let bad = [1, 7, 0, 7, 1, 3, 6];
        for _ in 0..2 {
            f.receive(now, Packet::parse(&bad).unwrap()).unwrap();
        }
        f.receive(now, Packet::parse(&bad).unwrap()).unwrap();
        let codes: Vec<u8> = f.out.iter().map(|p| p[0]).collect();
        assert_eq!(codes, [3, 3, 4]);
        assert_eq!(f.out[2], vec![4, 7, 0, 7, 1, 3, 6]);
    }

    #[test]
    fn max_configure_then_finished() {
        let now = Instant::now();
        let mut f = started(now);
        let mut t = now;
        for _ in 0..3 {
            t += Duration::from_secs(3);
            f.timeout(t);
        }
        assert_eq!(f.out.len(), 3);
        assert_eq!(f.state(), State::Stopped);
        assert_eq!(f.signals, vec![Signal::Finished]);
        assert_eq!(f.deadline(), None);
    }

    #[test]
    fn close_from_opened_terminates() {
        let now = Instant::now();
        let mut f = started(now);
        f.receive(now, Packet::parse(&[2, 1, 0, 7, 1, 3, 5]).unwrap())
            .unwrap();
        f.receive(now, Packet::parse(&[1, 3, 0, 7, 1, 3, 5]).unwrap())
            .unwrap();
        f.out.clear();
        f.signals.clear();
        f.close(now, b"bye");
        assert_eq!(f.state(), State::Closing);
        assert_eq!(f.out, vec![vec![5, 2, 0, 7, b'b', b'y', b'e']]);
        f.receive(now, Packet::parse(&[6, 2, 0, 4]).unwrap())
            .unwrap();
        assert_eq!(f.state(), State::Closed);
        assert_eq!(f.signals, vec![Signal::Down, Signal::Finished]);
    }

    #[test]
    fn fatal_reject_signals_failure() {
        let now = Instant::now();
        let mut f = started(now);
        f.receive(now, Packet::parse(&[4, 1, 0, 7, 1, 3, 5]).unwrap())
            .unwrap();
        assert_eq!(f.signals, vec![Signal::Failed("rejected")]);
    }
}

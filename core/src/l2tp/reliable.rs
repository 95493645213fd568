//! Reliable delivery of control messages (RFC 2661 §5.8, Appendix B): Ns/Nr, the peer's
//! receive window, retransmission with exponential back-off, explicit ZLB acknowledgements, and
//! a hold queue for out-of-order messages within our advertised window.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::wire;

/// Where a received Ns falls relative to the next one we expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Ns == Nr: deliver now.
    InOrder,
    /// Ns < Nr (mod 2^16): already delivered; acknowledge again and drop.
    Duplicate,
    /// Ahead of Nr but within our receive window: hold until the gap fills.
    Ahead,
    /// Beyond our receive window: drop.
    Beyond,
}

/// `a < b` in 16-bit sequence space (§5.8: the 32767 values below b are "less").
pub fn seq_lt(a: u16, b: u16) -> bool {
    a != b && b.wrapping_sub(a) < 0x8000
}

/// Retransmission parameters.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub initial: Duration,
    pub cap: Duration,
    pub max_retransmits: u32,
}

/// The retransmission timer fired too often: the peer is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GaveUp;

/// One tunnel's control channel. `T` is what the hold queue keeps (a decoded message).
#[derive(Debug)]
pub struct Channel<T> {
    /// Ns of the next new message we send.
    next_ns: u16,
    /// Ns of the next message we expect from the peer (our Nr).
    nr: u16,
    /// How many unacknowledged messages the peer lets us have in flight (its Receive Window).
    peer_window: u16,
    /// Our advertised Receive Window.
    our_window: u16,
    /// Built but not yet sent: the window was full. Ns/Nr are set when sent.
    queue: VecDeque<Vec<u8>>,
    /// Sent, not yet acknowledged, oldest first, with their Ns.
    in_flight: VecDeque<(u16, Vec<u8>)>,
    held: HashMap<u16, T>,
    timing: Timing,
    rto: Duration,
    retries: u32,
    retransmit_at: Option<Instant>,
    /// We owe the peer an acknowledgement.
    ack_due: bool,
}

impl<T> Channel<T> {
    pub fn new(our_window: u16, peer_window: u16, timing: Timing) -> Self {
        Self {
            next_ns: 0,
            nr: 0,
            peer_window: peer_window.max(1),
            our_window: our_window.max(1),
            queue: VecDeque::new(),
            in_flight: VecDeque::new(),
            held: HashMap::new(),
            timing,
            rto: timing.initial,
            retries: 0,
            retransmit_at: None,
            ack_due: false,
        }
    }

    /// The first message of the channel (SCCRQ) had this Ns: it is accepted.
    pub fn start_at(&mut self, ns: u16) {
        self.nr = ns;
        self.accept();
    }

    /// The peer closed the connection: stop (re)sending our messages.
    pub fn drop_outgoing(&mut self) {
        self.queue.clear();
        self.in_flight.clear();
        self.retransmit_at = None;
    }

    pub fn set_peer_window(&mut self, w: u16) {
        self.peer_window = w.max(1);
    }

    pub fn peer_window(&self) -> u16 {
        self.peer_window
    }

    pub fn nr(&self) -> u16 {
        self.nr
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Nothing of ours waits for an acknowledgement or for window space.
    pub fn idle(&self) -> bool {
        self.in_flight.is_empty() && self.queue.is_empty()
    }

    pub fn retransmit_at(&self) -> Option<Instant> {
        self.retransmit_at
    }

    pub fn ack_due(&self) -> bool {
        self.ack_due
    }

    /// Processes the peer's Nr: everything below it is acknowledged. An Nr that acknowledges
    /// messages we never sent is ignored. Returns true if anything was acknowledged.
    pub fn on_nr(&mut self, now: Instant, nr: u16) -> bool {
        if seq_lt(self.next_ns, nr) {
            return false;
        }
        let mut progress = false;
        while let Some((ns, _)) = self.in_flight.front() {
            if !seq_lt(*ns, nr) {
                break;
            }
            self.in_flight.pop_front();
            progress = true;
        }
        if progress {
            self.retries = 0;
            self.rto = self.timing.initial;
            self.retransmit_at = (!self.in_flight.is_empty()).then(|| now + self.rto);
        }
        progress
    }

    /// Classifies a received message by its Ns. Duplicates make an acknowledgement due.
    pub fn arrival(&mut self, ns: u16) -> Arrival {
        let ahead = ns.wrapping_sub(self.nr);
        if ahead == 0 {
            Arrival::InOrder
        } else if ahead >= 0x8000 {
            self.ack_due = true;
            Arrival::Duplicate
        } else if ahead < self.our_window {
            Arrival::Ahead
        } else {
            Arrival::Beyond
        }
    }

    /// The in-order message was accepted: advance Nr; an acknowledgement is due.
    pub fn accept(&mut self) {
        self.nr = self.nr.wrapping_add(1);
        self.ack_due = true;
    }

    /// Keeps an out-of-order message (already classified [`Arrival::Ahead`]).
    pub fn hold(&mut self, ns: u16, item: T) -> bool {
        if self.held.contains_key(&ns) {
            self.ack_due = true;
            return false;
        }
        self.held.insert(ns, item);
        true
    }

    /// The held message that is now in order, if any (accepting it advances Nr).
    pub fn next_held(&mut self) -> Option<T> {
        let item = self.held.remove(&self.nr)?;
        self.accept();
        Some(item)
    }

    /// Queues a control message built with [`wire::begin_control`].
    pub fn push(&mut self, msg: Vec<u8>) {
        self.queue.push_back(msg);
    }

    /// Sends what the peer's window allows, each message carrying our current Nr. Returns the
    /// datagrams; if none carries our acknowledgement and one is due, a ZLB to `peer_tunnel`.
    pub fn flush(&mut self, now: Instant, peer_tunnel: u16) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while self.in_flight.len() < usize::from(self.peer_window) {
            let Some(mut m) = self.queue.pop_front() else {
                break;
            };
            wire::set_sequence(&mut m, self.next_ns, self.nr);
            out.push(m.clone());
            self.in_flight.push_back((self.next_ns, m));
            self.next_ns = self.next_ns.wrapping_add(1);
        }
        if !out.is_empty() {
            self.ack_due = false;
            if self.retransmit_at.is_none() {
                self.retransmit_at = Some(now + self.rto);
            }
        } else if self.ack_due {
            self.ack_due = false;
            out.push(wire::zlb(peer_tunnel, self.next_ns, self.nr));
        }
        out
    }

    /// The retransmission timer: resend everything in flight with the current Nr, doubling the
    /// timeout up to the cap, or give up after `max_retransmits`.
    pub fn on_timeout(&mut self, now: Instant) -> Result<Vec<Vec<u8>>, GaveUp> {
        match self.retransmit_at {
            Some(at) if at <= now => {}
            _ => return Ok(Vec::new()),
        }
        if self.retries >= self.timing.max_retransmits {
            self.retransmit_at = None;
            return Err(GaveUp);
        }
        self.retries += 1;
        self.rto = (self.rto * 2).min(self.timing.cap);
        self.retransmit_at = Some(now + self.rto);
        let nr = self.nr;
        self.ack_due = false;
        Ok(self
            .in_flight
            .iter_mut()
            .map(|(ns, m)| {
                wire::set_sequence(m, *ns, nr);
                m.clone()
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing {
        initial: Duration::from_secs(1),
        cap: Duration::from_secs(8),
        max_retransmits: 5,
    };

    fn msg() -> Vec<u8> {
        let mut m = wire::begin_control(9, 0);
        wire::put_avp(&mut m, true, 0, &[0, 6]);
        wire::finish_control(&mut m);
        m
    }

    fn ns_of(m: &[u8]) -> u16 {
        wire::Header::decode(m).unwrap().seq.unwrap().0
    }

    #[test]
    fn sequence_comparison_wraps() {
        assert!(seq_lt(0, 1));
        assert!(seq_lt(65535, 0));
        assert!(!seq_lt(1, 0));
        assert!(!seq_lt(5, 5));
        assert!(seq_lt(0, 32767));
        assert!(!seq_lt(0, 32768));
    }

    #[test]
    fn window_of_one_never_pipelines() {
        let t0 = Instant::now();
        let mut c: Channel<()> = Channel::new(16, 1, T);
        for _ in 0..3 {
            c.push(msg());
        }
        let out = c.flush(t0, 9);
        assert_eq!(out.len(), 1);
        assert_eq!(ns_of(&out[0]), 0);
        assert!(c.flush(t0, 9).is_empty(), "nothing more until acked");
        assert!(c.on_nr(t0, 1));
        let out = c.flush(t0, 9);
        assert_eq!((out.len(), ns_of(&out[0])), (1, 1));
    }

    #[test]
    fn window_limits_in_flight() {
        let t0 = Instant::now();
        let mut c: Channel<()> = Channel::new(16, 4, T);
        for _ in 0..10 {
            c.push(msg());
        }
        assert_eq!(c.flush(t0, 9).len(), 4);
        assert_eq!(c.in_flight(), 4);
        c.on_nr(t0, 2);
        assert_eq!(c.flush(t0, 9).len(), 2);
        // an Nr beyond what we sent is ignored
        assert!(!c.on_nr(t0, 100));
        assert_eq!(c.in_flight(), 4);
    }

    #[test]
    fn backoff_then_give_up() {
        let t0 = Instant::now();
        let mut c: Channel<()> = Channel::new(16, 4, T);
        c.push(msg());
        c.flush(t0, 9);
        let mut now = t0;
        let mut gaps = Vec::new();
        loop {
            let at = c.retransmit_at().unwrap();
            gaps.push((at - now).as_secs());
            now = at;
            match c.on_timeout(now) {
                Ok(v) => assert_eq!(v.len(), 1),
                Err(GaveUp) => break,
            }
        }
        assert_eq!(gaps, vec![1, 2, 4, 8, 8, 8]);
        assert_eq!(gaps.iter().sum::<u64>(), 31);
    }

    #[test]
    fn ack_resets_backoff() {
        let t0 = Instant::now();
        let mut c: Channel<()> = Channel::new(16, 4, T);
        c.push(msg());
        c.push(msg());
        c.flush(t0, 9);
        let t1 = t0 + Duration::from_secs(1);
        c.on_timeout(t1).unwrap();
        assert_eq!(c.retransmit_at(), Some(t1 + Duration::from_secs(2)));
        c.on_nr(t1, 1);
        assert_eq!(c.retransmit_at(), Some(t1 + Duration::from_secs(1)));
        c.on_nr(t1, 2);
        assert_eq!(c.retransmit_at(), None);
    }

    #[test]
    fn arrivals_duplicates_and_hold() {
        let mut c: Channel<u16> = Channel::new(4, 4, T);
        assert_eq!(c.arrival(0), Arrival::InOrder);
        c.accept();
        assert_eq!(c.arrival(0), Arrival::Duplicate);
        assert_eq!(c.arrival(65535), Arrival::Duplicate);
        assert_eq!(c.arrival(2), Arrival::Ahead);
        assert_eq!(c.arrival(4), Arrival::Ahead);
        assert_eq!(c.arrival(5), Arrival::Beyond);
        assert!(c.hold(3, 3));
        assert!(c.hold(2, 2));
        assert!(!c.hold(2, 2));
        assert_eq!(c.next_held(), None, "1 is missing");
        assert_eq!(c.arrival(1), Arrival::InOrder);
        c.accept();
        assert_eq!(c.next_held(), Some(2));
        assert_eq!(c.next_held(), Some(3));
        assert_eq!(c.next_held(), None);
        assert_eq!(c.nr(), 4);
    }

    #[test]
    fn zlb_only_when_nothing_to_piggyback() {
        let t0 = Instant::now();
        let mut c: Channel<()> = Channel::new(4, 1, T);
        c.accept();
        let out = c.flush(t0, 77);
        assert_eq!(out.len(), 1);
        let h = wire::Header::decode(&out[0]).unwrap();
        assert!(h.payload.is_empty());
        assert_eq!((h.tunnel, h.seq), (77, Some((0, 1))));
        assert!(c.flush(t0, 77).is_empty(), "ack sent once");
        c.accept();
        c.push(msg());
        let out = c.flush(t0, 77);
        assert_eq!(out.len(), 1, "the message carries the ack; no ZLB");
        assert_eq!(wire::Header::decode(&out[0]).unwrap().seq, Some((0, 2)));
        // window full, ack due: ZLB even though a message is queued
        c.push(msg());
        c.accept();
        let out = c.flush(t0, 77);
        assert_eq!(out.len(), 1);
        assert!(wire::Header::decode(&out[0]).unwrap().payload.is_empty());
    }
}

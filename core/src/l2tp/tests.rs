//! Lns-level tests that need no client: totality on arbitrary input.

use std::time::{Duration, Instant};

use super::avp::{attr, msg};
use super::wire::{self, put_avp};
use super::{Lns, LnsConfig};

fn sccrq(tunnel_id: u16) -> Vec<u8> {
    let mut m = wire::begin_control(0, 0);
    put_avp(&mut m, true, attr::MESSAGE_TYPE, &msg::SCCRQ.to_be_bytes());
    put_avp(&mut m, true, attr::PROTOCOL_VERSION, &[1, 0]);
    put_avp(&mut m, true, attr::HOST_NAME, b"h");
    put_avp(
        &mut m,
        true,
        attr::ASSIGNED_TUNNEL_ID,
        &tunnel_id.to_be_bytes(),
    );
    wire::finish_control(&mut m);
    m
}

#[test]
fn sccrq_gets_sccrp_and_repeat_is_acked_only() {
    let now = Instant::now();
    let mut lns = Lns::new(LnsConfig::default(), [1; 32]);
    lns.handle_datagram(now, 1, 1701, &sccrq(5));
    let t = lns.poll_transmit().unwrap();
    let h = wire::Header::decode(&t.payload).unwrap();
    assert_eq!((h.tunnel, h.seq), (5, Some((0, 1))));
    let m = super::avp::Message::decode(&t.payload[h.payload], None).unwrap();
    assert_eq!(m.msg_type, msg::SCCRP);
    assert!(m.assigned_tunnel.is_some_and(|t| t != 0));
    assert_eq!(lns.half_open_count(), 1);
    lns.handle_datagram(now, 1, 1701, &sccrq(5));
    let z = lns.poll_transmit().unwrap();
    assert_eq!(
        z.payload.len(),
        wire::CONTROL_HEADER_LEN,
        "ZLB ack for the repeat"
    );
    assert!(lns.poll_transmit().is_none());
    assert_eq!(lns.half_open_count(), 1);
    // SCCRP retransmitted with back-off, then the half-open tunnel is dropped
    lns.handle_timeout(now + Duration::from_secs(1));
    assert!(lns.poll_transmit().is_some());
    lns.handle_timeout(now + Duration::from_secs(60));
    lns.handle_timeout(now + Duration::from_secs(120));
    assert_eq!(lns.half_open_count(), 0);
}

/// A tunnel up with peer 1 whose SCCRQ carried no Bearer Capabilities; returns our tunnel ID.
fn tunnel_without_bearer_capabilities(lns: &mut Lns, now: Instant) -> u16 {
    lns.handle_datagram(now, 1, 1701, &sccrq(5));
    let reply = lns.poll_transmit().unwrap().payload;
    let h = wire::Header::decode(&reply).unwrap();
    let ours = super::avp::Message::decode(&reply[h.payload], None)
        .unwrap()
        .assigned_tunnel
        .unwrap();
    let mut m = wire::begin_control(ours, 0);
    put_avp(&mut m, true, attr::MESSAGE_TYPE, &msg::SCCCN.to_be_bytes());
    wire::finish_control(&mut m);
    wire::set_sequence(&mut m, 1, 1);
    lns.handle_datagram(now, 1, 1701, &m);
    assert!(matches!(
        lns.poll_event(),
        Some(super::Event::TunnelUp { .. })
    ));
    ours
}

#[test]
fn no_outgoing_call_without_bearer_capabilities() {
    let now = Instant::now();
    let mut lns = Lns::new(LnsConfig::default(), [3; 32]);
    let t = tunnel_without_bearer_capabilities(&mut lns, now);
    while lns.poll_transmit().is_some() {}
    let call = super::OutgoingCall::default();
    assert_eq!(lns.place_call(now, 1, t, call.clone()), None, "§6.9");
    assert_eq!(lns.place_call(now, 2, t, call), None, "not this peer's");
    assert!(lns.poll_transmit().is_none());
    assert_eq!(lns.stats().outgoing_calls_placed, 0);
}

proptest::proptest! {
    #[test]
    fn handle_datagram_is_total(
        datagrams in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..64), 1..8),
        tunnel_flip in proptest::num::u16::ANY,
    ) {
        let now = Instant::now();
        let mut lns = Lns::new(LnsConfig { secret: Some(b"s".to_vec().into()), ..LnsConfig::default() }, [2; 32]);
        lns.handle_datagram(now, 1, 1701, &sccrq(9));
        let reply = lns.poll_transmit().unwrap().payload;
        let h = wire::Header::decode(&reply).unwrap();
        let m = super::avp::Message::decode(&reply[h.payload], None).unwrap();
        let ours = m.assigned_tunnel.unwrap();
        for mut d in datagrams {
            // aim some datagrams at the real tunnel
            if d.len() >= 6 && tunnel_flip & 1 == 1 {
                let at = if d[0] & 0x40 != 0 { 4 } else { 2 };
                if let Some(b) = d.get_mut(at..at + 2) {
                    b.copy_from_slice(&ours.to_be_bytes());
                }
            }
            if let Some((_, r)) = lns.handle_datagram(now, 1, 1701, &d) {
                proptest::prop_assert!(r.end <= d.len());
            }
        }
        lns.handle_timeout(now + Duration::from_secs(100));
    }
}

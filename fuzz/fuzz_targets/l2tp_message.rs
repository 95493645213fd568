//! Fuzzes the L2TP decoders and the LNS: arbitrary bytes into the header and AVP decoders and
//! into `Lns::handle_datagram`, both on a fresh server and on one with a tunnel half-open
//! towards the fuzzer's peer (the first byte picks which, and whether to aim at that tunnel).

#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use roadgate_core::l2tp::avp::{Message, attr, msg};
use roadgate_core::l2tp::{Lns, LnsConfig, wire};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if let Ok(h) = wire::Header::decode(rest) {
        assert!(h.payload.start <= h.payload.end && h.payload.end <= rest.len());
        let body = &rest[h.payload];
        let _ = Message::decode(body, Some(b"secret"));
        let _ = Message::decode(body, None);
    }
    for a in wire::avps(rest) {
        let _ = a;
    }
    let now = Instant::now();
    let config = LnsConfig {
        secret: (mode & 2 != 0).then(|| b"secret".to_vec().into()),
        ..LnsConfig::default()
    };
    let mut lns = Lns::new(config, [mode; 32]);
    let mut d = rest.to_vec();
    if mode & 1 != 0 {
        let mut q = wire::begin_control(0, 0);
        wire::put_avp(&mut q, true, attr::MESSAGE_TYPE, &msg::SCCRQ.to_be_bytes());
        wire::put_avp(&mut q, true, attr::HOST_NAME, b"fuzz");
        wire::put_avp(&mut q, true, attr::ASSIGNED_TUNNEL_ID, &7u16.to_be_bytes());
        wire::finish_control(&mut q);
        lns.handle_datagram(now, 1, 1701, &q);
        let reply = lns.poll_transmit().expect("SCCRP").payload;
        let h = wire::Header::decode(&reply).expect("own header");
        let ours = Message::decode(&reply[h.payload], None)
            .expect("own SCCRP")
            .assigned_tunnel;
        if let (Some(ours), true) = (ours, mode & 4 != 0) {
            let at = if d.first().is_some_and(|f| f & 0x40 != 0) {
                4
            } else {
                2
            };
            if let Some(b) = d.get_mut(at..at + 2) {
                b.copy_from_slice(&ours.to_be_bytes());
            }
        }
    }
    if let Some((_, r)) = lns.handle_datagram(now, 1, 1701, &d) {
        assert!(r.end <= d.len());
    }
    while lns.poll_transmit().is_some() {}
    lns.handle_timeout(now + Duration::from_secs(40));
});

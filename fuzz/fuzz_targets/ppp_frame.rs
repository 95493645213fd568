//! Arbitrary bytes into `pppd_lite::frame::parse` and into server `Ppp` links that have been
//! opened: one fresh, one already in the network phase (no authentication, LCP opened by a
//! scripted peer). Nothing may panic.

#![no_main]

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use pppd_lite::frame::{self, protocol};
use pppd_lite::packet::{self, Packet};
use pppd_lite::{AuthProtocol, Config, Ppp, ServerConfig, Verdict};

fn server(auth: Vec<AuthProtocol>, now: Instant) -> Ppp {
    let mut config = Config::server(ServerConfig {
        auth,
        ..ServerConfig::default()
    });
    config.ipv6 = true;
    let mut ppp = Ppp::new(config, now, [7; 32]);
    ppp.open(now);
    ppp
}

/// A server whose LCP a scripted peer has opened: in the network phase.
fn network_phase(now: Instant) -> Ppp {
    let mut ppp = server(Vec::new(), now);
    while let Some(f) = ppp.poll_transmit() {
        let Ok((protocol::LCP, info)) = frame::parse(&f) else { continue };
        let Ok(p) = Packet::parse(info) else { continue };
        if p.code == 1 {
            let ack = frame::encode(protocol::LCP, &packet::encode(2, p.id, p.data));
            ppp.handle_frame(now, &ack);
        }
    }
    let req = frame::encode(protocol::LCP, &packet::encode(1, 1, &[5, 6, 1, 2, 3, 4]));
    ppp.handle_frame(now, &req);
    ppp.assign_address(now, Ipv4Addr::new(10, 0, 0, 9));
    ppp
}

fuzz_target!(|data: &[u8]| {
    let _ = frame::parse(data);
    let now = Instant::now();
    let mut links = [
        server(vec![AuthProtocol::MsChapV2, AuthProtocol::Pap], now),
        server(vec![AuthProtocol::Eap], now),
        network_phase(now),
    ];
    for ppp in &mut links {
        // The input as one frame, then as a sequence of length-prefixed frames.
        let _ = ppp.handle_frame(now, data);
        let mut rest = data;
        while let Some((&len, tail)) = rest.split_first() {
            let (f, tail) = tail.split_at(usize::from(len).min(tail.len()));
            let _ = ppp.handle_frame(now, f);
            rest = tail;
        }
        while ppp.poll_transmit().is_some() {}
        while let Some(e) = ppp.poll_event() {
            if let pppd_lite::Event::Authenticate(req) = e {
                ppp.auth_decision(now, req.id, Verdict::reject("fuzz"));
            }
        }
        ppp.handle_timeout(now + Duration::from_secs(31));
        while ppp.poll_transmit().is_some() {}
    }
});

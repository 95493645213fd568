//! Fuzzes the RADIUS decoders: arbitrary bytes into the packet decoder, the authenticator
//! checks, the hidden-value decryption, the client core (as a response to a request in
//! flight, aimed at its Identifier when the first byte says so) and the dynamic authorization
//! core.

#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use pppd_lite::{AuthRequest, Credentials};
use roadgate_core::radius::client::{AuthRequestData, Client, ClientConfig, Role, ServerConfig};
use roadgate_core::radius::dynauth::{DynAuth, DynAuthConfig};
use roadgate_core::radius::packet::{self, Packet, ms};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if let Ok(p) = Packet::decode(rest) {
        let _ = p.eap_message();
        let _ = p.vsas(ms::VENDOR_ID).count();
        let _ = p.encode();
    }
    let _ = packet::verify_response(rest, &[0; 16], b"secret", mode & 1 != 0);
    let _ = packet::verify_request(rest, b"secret");
    let _ = packet::decrypt_mppe_key(rest, b"secret", &[0; 16]);
    let _ = packet::unhide_password(rest, b"secret", &[0; 16]);

    let server = "127.0.0.1:1812".parse().expect("address");
    let now = Instant::now();
    let mut client = Client::new(ClientConfig {
        servers: vec![ServerConfig {
            address: server,
            secret: b"secret".to_vec().into(),
            role: Role::Auth,
        }],
        ..ClientConfig::default()
    });
    client.send_auth(
        now,
        AuthRequestData {
            ctx: Default::default(),
            request: AuthRequest {
                id: 1,
                user: "fuzz".into(),
                credentials: Credentials::Eap { packet: vec![2, 1, 0, 4] },
            },
            state: None,
        },
    );
    let mut d = rest.to_vec();
    if let (Some((_, req)), true) = (client.poll_transmit(), mode & 2 != 0)
        && let (Some(i), Some(&id)) = (d.get_mut(1), req.get(1))
    {
        *i = id;
    }
    client.handle_datagram(now, server, &d);
    while client.poll_event().is_some() {}

    let mut dynauth = DynAuth::new(DynAuthConfig {
        clients: vec![(server.ip(), b"secret".to_vec().into())],
        ..DynAuthConfig::default()
    });
    if let Ok(r) = dynauth.handle(now, server, rest) {
        let _ = dynauth.answer(&r, roadgate_core::radius::dynauth::Outcome::Ack);
    }
});

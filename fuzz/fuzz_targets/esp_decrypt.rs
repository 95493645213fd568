//! Fuzzes ESP decryption and the UDP/4500 demultiplexer.
//!
//! The first input byte picks the suite (low 6 bits) and a mode (high 2 bits); the rest is the
//! packet. Modes: 0 as is; 1 with the SA's SPI written over the first 4 bytes, so packets get
//! past the SPI check; 2 as 1 and, for HMAC suites, with a valid ICV appended, so the fuzzer
//! reaches decryption and the trailer checks (with NULL encryption it controls the plaintext
//! trailer byte for byte); 3 a round trip of the rest as payload through an OutboundSa.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roadgate_core::esp::{
    Encryption, InboundSa, Integrity, OutboundSa, Suite, Udp4500, classify_udp4500, compute_icv,
    peek_spi,
};

const SPI: u32 = 0x0c0f_fee0;

const INTEGRITIES: [Integrity; 5] = [
    Integrity::HmacSha1_96,
    Integrity::HmacSha256_128,
    Integrity::HmacSha256_96,
    Integrity::HmacSha384_192,
    Integrity::HmacSha512_256,
];

fn suite(index: usize) -> Suite {
    const CIPHERS: [Encryption; 5] = [
        Encryption::AesCbc { key_len: 16 },
        Encryption::AesCbc { key_len: 24 },
        Encryption::AesCbc { key_len: 32 },
        Encryption::TripleDesCbc,
        Encryption::Null,
    ];
    let index = index % (CIPHERS.len() * INTEGRITIES.len() + 3);
    match CIPHERS.get(index / INTEGRITIES.len()) {
        Some(&encryption) => {
            Suite { encryption, integrity: INTEGRITIES[index % INTEGRITIES.len()] }
        }
        None => Suite {
            encryption: Encryption::AesGcm16 { key_len: [16, 24, 32][index % 3] },
            integrity: Integrity::None,
        },
    }
}

fn keymat(s: Suite) -> Vec<u8> {
    (0..s.keymat_len()).map(|i| (i as u8).wrapping_mul(13) ^ 0x3c).collect()
}

fuzz_target!(|data: &[u8]| {
    let _ = peek_spi(data);
    let _ = classify_udp4500(data);
    let Some((&selector, rest)) = data.split_first() else { return };
    let s = suite(usize::from(selector & 0x3f));
    let km = keymat(s);
    let mut inb = InboundSa::new(SPI, s, &km).expect("valid suite and key");
    let mut packet = rest.to_vec();

    match selector >> 6 {
        0 => {}
        1 | 2 => {
            if let Some(spi) = packet.get_mut(..4) {
                spi.copy_from_slice(&SPI.to_be_bytes());
            }
            if selector >> 6 == 2 && s.integrity != Integrity::None {
                let mut icv = [0u8; 64];
                let auth_key = &km[s.encryption.keymat_len()..];
                let n = compute_icv(s.integrity, auth_key, &packet, &mut icv).expect("icv");
                packet.extend_from_slice(&icv[..n]);
            }
        }
        _ => {
            let mut out = OutboundSa::new(SPI, s, &km).expect("valid suite and key");
            let head = s.header_len();
            let mut buf = vec![0u8; head + rest.len() + s.max_trailer_len()];
            buf[head..head + rest.len()].copy_from_slice(rest);
            let r = out.encrypt(&mut buf, head..head + rest.len(), 17).expect("room was left");
            let d = inb.decrypt(&mut buf[r.clone()]).expect("own packet decrypts");
            assert_eq!(&buf[r.start + d.payload.start..r.start + d.payload.end], rest);
            return;
        }
    }

    if let Ok(d) = inb.decrypt(&mut packet) {
        assert!(d.payload.start <= d.payload.end && d.payload.end <= packet.len());
        assert_eq!(peek_spi(&packet), Some(SPI));
    }
    if let Udp4500::Esp(esp) = classify_udp4500(rest) {
        let _ = inb.decrypt(&mut esp.to_vec());
    }
});

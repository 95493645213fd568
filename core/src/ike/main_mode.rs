//! Main Mode (identity protection, RFC 2409 §5) as responder, with pre-shared keys or RSA
//! signatures (§5.1, see [`super::cert`]).
//!
//! ```text
//!  HDR, SA, VID*              -->
//!                             <--  HDR, SA, VID*                     (message 2)
//!  HDR, KE, Ni, NAT-D*        -->
//!                             <--  HDR, KE, Nr, NAT-D*               (message 4)
//!  HDR*, IDii, HASH_I [, N]   -->                                    (on 4500 after NAT-D)
//!                             <--  HDR*, IDir, HASH_R                (message 6)
//! ```
//! RSA-signature authentication is negotiated only when [`super::Config::cert`] is set.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use subtle::ConstantTimeEq;
use tracing::{debug, info, warn};

use super::cert::{CertAuthority, MAX_PEER_CERT, MAX_PEER_CERTS, PeerCert};
use super::crypto;
use super::jobs::{Mm3Pending, Mm5Pending, Mm5Work};
use super::nat_t::PeerVendors;
use super::proposals::{self, AuthMethod};
use super::responder::{Responder, TimerKey};
use super::sa::{Cookies, Dpd, LastReply, P1State, PeerKey, Phase1};
use super::{DownReason, Event, NatState};
use crate::isakmp::{
    self, Header, Item, Message, Payload, PayloadChain, exchange, id_type, notify, payload_type,
    vendor_id,
};

/// Nonces are 8 to 256 bytes (RFC 2409 §5).
const NONCE_MIN: usize = 8;
const NONCE_MAX: usize = 256;
const OUR_NONCE_LEN: usize = 32;

fn payload_of<'m, 'a>(msg: &'m Message<'a>, kind: u8) -> Option<&'m Item<'a>> {
    msg.first(kind)
}

impl Responder {
    pub(crate) fn main_mode_1(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        header: &Header,
        data: &[u8],
    ) {
        if let Some(rcky) = self
            .mm1_index
            .get(&(header.initiator_cookie, remote))
            .copied()
        {
            // A repeated message 1 (our message 2 was lost): resend it if the bytes match.
            let mut c = [0u8; 16];
            c[..8].copy_from_slice(&header.initiator_cookie);
            c[8..].copy_from_slice(&rcky);
            if let Some(last) = self.p1.get(&c).and_then(|p| p.last.as_ref())
                && last.request == data
            {
                let reply = last.reply.clone();
                self.stats.duplicates_resent += 1;
                self.send(local, remote, reply);
            }
            return;
        }
        if header.message_id != 0 || header.is_encrypted() {
            dropped!(self.stats.malformed, %remote, "Main Mode message 1 with a message ID or encryption flag; dropped");
            return;
        }
        // Bound the work a stranger can make us do.
        if !self.admit_half_open(remote) {
            return;
        }
        let msg = match Message::decode(data) {
            Ok(m) => m,
            Err(e) => {
                dropped!(self.stats.malformed, %remote, error = %e, "malformed Main Mode message 1");
                self.notify_unprotected(local, remote, header, notify::PAYLOAD_MALFORMED);
                return;
            }
        };
        let Some(Item {
            raw: sa_raw,
            payload: Payload::Sa(sa),
        }) = payload_of(&msg, payload_type::SA)
        else {
            dropped!(self.stats.malformed, %remote, "Main Mode message 1 without an SA payload");
            self.notify_unprotected(local, remote, header, notify::PAYLOAD_MALFORMED);
            return;
        };
        let vendors = PeerVendors::from_vids(msg.items.iter().filter_map(|i| match &i.payload {
            Payload::VendorId(v) => Some(*v),
            _ => None,
        }));
        // Only the authentication methods we can serve for this peer take part.
        let mut policy = self.cfg.phase1.clone();
        let have_psk = self.cfg.psk.lookup(remote.ip()).is_some();
        let have_cert = self.cfg.cert.is_some();
        policy.auth.retain(|a| match a {
            AuthMethod::PreSharedKey => have_psk,
            AuthMethod::RsaSignature => have_cert,
        });
        let choice = match proposals::choose_phase1(sa, &policy) {
            Ok(c) => c,
            Err(refusal) => {
                let why = match (have_psk, have_cert) {
                    (true, true) => String::new(),
                    (true, false) => " (certificate authentication is not configured)".into(),
                    (false, true) => " (no pre-shared key is configured for this peer)".into(),
                    (false, false) => {
                        " (no pre-shared key for this peer and no server certificate)".into()
                    }
                };
                dropped!(self.stats.no_proposal_chosen, %remote, vendor_ids = ?vendors.names, "no acceptable phase-1 proposal{why}: {refusal}");
                self.notify_unprotected(local, remote, header, notify::NO_PROPOSAL_CHOSEN);
                return;
            }
        };
        let nat_t = if self.cfg.nat_t { vendors.nat_t } else { None };
        if nat_t.is_none() && vendors.other_nat_t {
            info!(%remote, "peer announced only NAT-T drafts 04-08; continuing without NAT-T");
        }
        let mut rcky = [0u8; 8];
        while rcky == [0; 8] {
            let r = self.random_bytes(8);
            rcky.copy_from_slice(&r);
        }
        let icky = header.initiator_cookie;
        let mut ck = [0u8; 16];
        ck[..8].copy_from_slice(&icky);
        ck[8..].copy_from_slice(&rcky);

        let mut chain = PayloadChain::new();
        chain.push(
            payload_type::SA,
            &isakmp::encode_sa(&choice.reply_sa(sa.doi, sa.situation)),
        );
        if let Some(v) = nat_t
            && let Some(vid) = super::nat_t::vendor_id_of(v)
        {
            chain.push(payload_type::VENDOR_ID, vid);
        }
        chain.push(payload_type::VENDOR_ID, &vendor_id::DPD);
        if vendors.fragmentation {
            // IKE fragmentation (the Cisco/racoon scheme strongSwan and Windows speak), announced
            // with racoon's capability word "fragments of base ISAKMP messages".
            let mut vid = vendor_id::FRAGMENTATION.to_vec();
            vid.extend_from_slice(&0x8000_0000u32.to_be_bytes());
            chain.push(payload_type::VENDOR_ID, &vid);
        }
        let reply_header = Header {
            initiator_cookie: icky,
            responder_cookie: rcky,
            next_payload: 0,
            version: 0x10,
            exchange: exchange::MAIN,
            flags: 0,
            message_id: 0,
            length: 0,
        };
        let reply = isakmp::encode_message(&reply_header, chain.first(), chain.bytes());
        let framed = super::sa::frame(local, remote, self.cfg.natt_port, reply);
        debug!(
            %remote,
            proposal = %choice.describe(),
            nat_t = ?nat_t.map(|v| v.name()),
            vendor_ids = ?vendors.names,
            "Main Mode message 1 accepted"
        );
        let id = self.next_id();
        let expires = now + self.cfg.half_open_timeout;
        let timer = Some((self.cfg.retransmit_initial, self.cfg.retransmit_tries));
        let p1 = Phase1 {
            id,
            icky,
            rcky,
            local,
            remote,
            mm1_from: remote,
            state: P1State::SentMm2,
            created: now,
            expires,
            sa_body: sa_raw.body.to_vec(),
            choice,
            vendors,
            nat: NatState {
                nat_t,
                ..NatState::default()
            },
            dh: None,
            gxi: Vec::new(),
            gxr: Vec::new(),
            ni: Vec::new(),
            nr: Vec::new(),
            keys: None,
            iv: Vec::new(),
            peer_id: String::new(),
            peer_cert: None,
            peer_certreq: false,
            frags: Default::default(),
            peer: Default::default(),
            last: Some(LastReply::new(data, framed.clone(), now, timer)),
            quick: Default::default(),
            done_mids: Default::default(),
            connected: Default::default(),
            dpd: Dpd {
                last_activity: now,
                next_seq: 0,
                pending: None,
                next_probe: None,
            },
            pending: None,
        };
        self.p1.insert(ck, p1);
        self.mm1_index.insert((icky, remote), rcky);
        self.charge_half_open(remote.ip());
        self.note_mm2(ck);
        self.arm(now + self.cfg.retransmit_initial, TimerKey::Phase1(ck));
        self.arm(expires, TimerKey::Phase1(ck));
        self.send(local, remote, framed);
    }

    pub(crate) fn main_mode_3(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        c: Cookies,
        header: &Header,
        data: &[u8],
    ) {
        let Some(p1) = self.p1.get(&c) else { return };
        if remote.ip() != p1.remote.ip() || header.is_encrypted() || header.message_id != 0 {
            dropped!(self.stats.malformed, %remote, "unexpected Main Mode message 3; dropped");
            return;
        }
        let msg = match Message::decode(data) {
            Ok(m) => m,
            Err(e) => {
                dropped!(self.stats.malformed, %remote, error = %e, "malformed Main Mode message 3");
                return;
            }
        };
        let (Some(Payload::Ke(gxi)), Some(Payload::Nonce(ni))) = (
            msg.first(payload_type::KE).map(|i| &i.payload),
            msg.first(payload_type::NONCE).map(|i| &i.payload),
        ) else {
            dropped!(self.stats.malformed, %remote, "Main Mode message 3 without KE or nonce");
            self.notify_unprotected(local, remote, header, notify::PAYLOAD_MALFORMED);
            self.fail_half_open(now, c);
            return;
        };
        if !(NONCE_MIN..=NONCE_MAX).contains(&ni.len()) {
            dropped!(self.stats.malformed, %remote, len = ni.len(), "nonce length outside 8..256");
            self.notify_unprotected(local, remote, header, notify::PAYLOAD_MALFORMED);
            self.fail_half_open(now, c);
            return;
        }
        // The peer's public value is checked before we make a key of our own: a bad one costs
        // us a comparison, not an exponentiation.
        let group = p1.choice.group;
        if let Err(e) = crypto::validate_public(group, gxi) {
            dropped!(self.stats.invalid_ke, %remote, group = group.name(), error = %e, "invalid Diffie-Hellman public value");
            self.notify_unprotected(local, remote, header, notify::INVALID_KEY_INFORMATION);
            self.fail_half_open(now, c);
            return;
        }
        let rsa = p1.choice.auth == AuthMethod::RsaSignature;
        let psk = if rsa {
            None
        } else if let Some(psk) = self.cfg.psk.lookup(remote.ip()).map(<[u8]>::to_vec) {
            Some(zeroize::Zeroizing::new(psk))
        } else {
            // The key was there at message 1; a reload removed it since.
            warn!(%remote, "no pre-shared key for this peer any more");
            self.fail_half_open(now, c);
            return;
        };
        let ca_subjects = match (&self.cfg.cert, rsa) {
            (Some(ca), true) => ca.trusted_ca_subjects(),
            (None, true) => {
                warn!(%remote, "certificate authentication is no longer configured");
                self.fail_half_open(now, c);
                return;
            }
            _ => Vec::new(),
        };
        let certreq = msg.first(payload_type::CERT_REQ).is_some();
        let nr = self.random_bytes(OUR_NONCE_LEN);
        let random = self.random_bytes(64);
        let windows_workaround = self.cfg.windows_nat_workaround;
        let Some(p1) = self.p1.get_mut(&c) else {
            return;
        };
        let hash = p1.choice.hash;

        // NAT-D (RFC 3947 §3.2): the first payload hashes the address the peer sent to (ours),
        // the others the addresses it sends from.
        let mut nat = p1.nat;
        let mut natd_out = Vec::new();
        if let Some(variant) = nat.nat_t {
            let natds: Vec<&[u8]> = msg
                .items
                .iter()
                .filter_map(|i| match (&i.payload, i.raw.kind) {
                    (Payload::NatD(h), k)
                        if k == variant.nat_d_payload()
                            || k == isakmp::payload_type::NAT_D
                            || k == isakmp::payload_type::NAT_D_DRAFT =>
                    {
                        Some(*h)
                    }
                    _ => None,
                })
                .collect();
            if let Some((first, rest)) = natds.split_first() {
                let ours = crypto::nat_d(hash, &p1.icky, &p1.rcky, local.ip(), local.port());
                let theirs = crypto::nat_d(hash, &p1.icky, &p1.rcky, remote.ip(), remote.port());
                nat.local_behind_nat = !bool::from(first.ct_eq(&ours));
                nat.peer_behind_nat = !rest.iter().any(|h| bool::from(h.ct_eq(&theirs)));
                if nat.local_behind_nat && p1.vendors.is_windows() && windows_workaround {
                    // CLIENTS.md §1.3: echo the client's own hash of our address (so it sees no
                    // NAT on our side) and give a hash that cannot match for its address (so it
                    // encapsulates in UDP as a client behind NAT does).
                    info!(
                        %remote,
                        "Windows client and a server behind NAT: NAT-D adjusted so that Windows \
                         uses UDP encapsulation without its registry change (error 809)"
                    );
                    let mut decoy = theirs.clone();
                    for (b, r) in decoy.iter_mut().zip(random.iter()) {
                        *b ^= r | 1;
                    }
                    nat.peer_behind_nat = true;
                    natd_out.push((variant.nat_d_payload(), decoy));
                    natd_out.push((variant.nat_d_payload(), first.to_vec()));
                } else {
                    natd_out.push((variant.nat_d_payload(), theirs));
                    natd_out.push((variant.nat_d_payload(), ours));
                }
            } else {
                info!(%remote, "peer agreed to NAT-T but sent no NAT-D payloads");
            }
        }
        if nat.local_behind_nat && !self.behind_nat {
            warn!(
                %remote,
                local = %local,
                "NAT-D: this server is behind a NAT (its address is translated on the way to its \
                 clients); Windows clients then need the registry value \
                 AssumeUDPEncapsulationContextOnSendRule=2 or fail with error 809"
            );
        }
        if nat.peer_behind_nat {
            debug!(%remote, "NAT-D: the client is behind a NAT");
        }
        p1.nat = nat;
        p1.peer_certreq |= certreq;
        self.behind_nat |= nat.local_behind_nat;
        let pending = Mm3Pending {
            request: data.to_vec(),
            local,
            remote,
            natd_out,
            ca_subjects,
        };
        self.park_main_mode_3(now, c, pending, gxi, ni, nr, psk);
    }

    /// Message 4, once the job of message 3 has made our key and the key schedule.
    pub(crate) fn finish_main_mode_3(
        &mut self,
        now: Instant,
        c: Cookies,
        pending: Mm3Pending,
        gxr: Vec<u8>,
        keys: crypto::Phase1Keys,
    ) {
        let natt_port = self.cfg.natt_port;
        let timer = Some((self.cfg.retransmit_initial, self.cfg.retransmit_tries));
        let Some(p1) = self.p1.get_mut(&c) else {
            return;
        };
        let Mm3Pending {
            request,
            local,
            remote,
            natd_out,
            ca_subjects,
        } = pending;
        let mut chain = PayloadChain::new();
        chain.push(payload_type::KE, &gxr);
        chain.push(payload_type::NONCE, &p1.nr);
        for (kind, h) in &natd_out {
            chain.push(*kind, h);
        }
        // CERTREQ: one per CA whose clients we accept (RFC 2408 §3.10), so that the client
        // sends its certificate (Windows picks its machine certificate by these names).
        for dn in &ca_subjects {
            let mut body = Vec::with_capacity(1 + dn.len());
            body.push(isakmp::cert_encoding::X509_SIG);
            body.extend_from_slice(dn);
            chain.push(payload_type::CERT_REQ, &body);
        }
        let reply = isakmp::encode_message(
            &p1.header(exchange::MAIN, 0, false),
            chain.first(),
            chain.bytes(),
        );
        let framed = super::sa::frame(local, remote, natt_port, reply);
        p1.iv = keys.iv.clone();
        p1.keys = Some(keys);
        p1.gxr = gxr;
        p1.dh = None;
        p1.state = P1State::SentMm4;
        p1.last = Some(LastReply::new(&request, framed.clone(), now, timer));
        self.arm(now + self.cfg.retransmit_initial, TimerKey::Phase1(c));
        self.send(local, remote, framed);
    }

    pub(crate) fn main_mode_5(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        c: Cookies,
        header: &Header,
        data: &[u8],
    ) {
        let Some(p1) = self.p1.get(&c) else { return };
        if remote.ip() != p1.remote.ip() || !header.is_encrypted() || header.message_id != 0 {
            dropped!(self.stats.malformed, %remote, "unexpected Main Mode message 5; dropped");
            return;
        }
        let Some((plain, last_block)) = p1.open(data, &p1.iv) else {
            dropped!(self.stats.malformed, %remote, "Main Mode message 5 length is not a multiple of the cipher block");
            return;
        };
        let parsed = Message::parse(*header, &plain);
        let peer_certreq = p1.peer_certreq
            || parsed
                .as_ref()
                .is_ok_and(|m| m.first(payload_type::CERT_REQ).is_some());
        let rsa = p1.choice.auth == AuthMethod::RsaSignature;
        let unix_now = self.unix_time(now);
        // Everything cheap is checked here; the certificate chain and the signatures are the
        // job's.
        let verdict = match (&parsed, rsa, &self.cfg.cert) {
            (Err(_), _, _) => Err((
                "it did not decrypt to valid payloads".to_string(),
                notify::AUTHENTICATION_FAILED,
            )),
            (Ok(msg), false, _) => check_psk_auth(p1, msg).map(|()| None),
            (Ok(msg), true, Some(ca)) => signature_inputs(p1, msg, ca, unix_now).map(Some),
            (Ok(_), true, None) => Err((
                "certificate authentication is no longer configured".to_string(),
                notify::AUTHENTICATION_FAILED,
            )),
        };
        let sig_work = match verdict {
            Ok(w) => w,
            Err((why, code)) => {
                if rsa {
                    dropped!(self.stats.auth_failed, %remote, "certificate authentication failed in Main Mode message 5: {why}");
                } else {
                    dropped!(
                        self.stats.auth_failed,
                        %remote,
                        "authentication failed in Main Mode message 5 ({why}): the client's \
                         pre-shared key most likely differs from the server's"
                    );
                }
                self.notify_unprotected(local, remote, header, code);
                self.fail_half_open(now, c);
                return;
            }
        };
        let Ok(msg) = parsed else { return };
        let Some(id_item) = msg.first(payload_type::ID) else {
            return;
        };
        let Payload::Id(idp) = &id_item.payload else {
            return;
        };
        let peer_id = match idp.identity() {
            Ok(i) => i.to_string(),
            Err(_) => format!("ID type {}", idp.id_type),
        };
        let peer_id_raw = id_item.raw.body.to_vec();
        let dpd_seq = self.random_u32_nonzero() >> 1;
        let initial_contact = msg.items.iter().any(|i| {
            matches!(&i.payload, Payload::Notify(n) if n.message_type == notify::INITIAL_CONTACT)
        });
        let (idp_protocol, idp_port) = (idp.protocol, idp.port);

        // Our identity: with certificates our subject (ID_DER_ASN1_DN), otherwise the address
        // the peer reached us on; protocol and port mirrored (RFC 2407 §4.6.2: zero, or UDP/500).
        let (our_type, our_addr) = match (&sig_work, local.ip()) {
            (Some(w), _) => (id_type::DER_ASN1_DN, w.ca.our_subject().to_vec()),
            (None, IpAddr::V4(a)) => (id_type::IPV4_ADDR, a.octets().to_vec()),
            (None, IpAddr::V6(a)) => (id_type::IPV6_ADDR, a.octets().to_vec()),
        };
        let (proto, port) = if idp_protocol == 0 && idp_port == 0 {
            (0, 0)
        } else {
            (17, 500)
        };
        let idir_b = isakmp::encode_id(our_type, proto, port, &our_addr);
        let Some(p1) = self.p1.get(&c) else {
            return;
        };
        let Some(keys) = p1.keys.as_ref() else { return };
        let hash_r = crypto::hash_r(
            p1.choice.prf,
            &keys.skeyid,
            &p1.gxi,
            &p1.gxr,
            &p1.icky,
            &p1.rcky,
            &p1.sa_body,
            &idir_b,
        );
        let pending = Mm5Pending {
            request: data.to_vec(),
            local,
            remote,
            last_block,
            peer_id,
            peer_id_raw,
            initial_contact,
            idir_b,
            hash_r: hash_r.clone(),
            peer_certreq,
            dpd_seq,
        };
        match sig_work {
            None => self.finish_main_mode_5(now, c, pending, None),
            Some(mut work) => {
                work.hash_r = hash_r;
                self.park_main_mode_5(now, c, pending, work);
            }
        }
    }

    /// Message 6: at once with pre-shared keys, after the job with certificates (`signed`: the
    /// peer's checked certificate and our signature over HASH_R).
    pub(crate) fn finish_main_mode_5(
        &mut self,
        now: Instant,
        c: Cookies,
        pending: Mm5Pending,
        signed: Option<(PeerCert, Vec<u8>)>,
    ) {
        let natt_port = self.cfg.natt_port;
        let Mm5Pending {
            request,
            local,
            remote,
            last_block,
            peer_id,
            peer_id_raw,
            initial_contact,
            idir_b,
            hash_r,
            peer_certreq,
            dpd_seq,
        } = pending;
        let mut chain = PayloadChain::new();
        chain.push(payload_type::ID, &idir_b);
        let (peer_cert, signer) = match signed {
            None => {
                chain.push(payload_type::HASH, &hash_r);
                (None, false)
            }
            Some((cert, sig)) => {
                let Some(ca) = self.cfg.cert.clone() else {
                    warn!(%remote, "certificate authentication is no longer configured");
                    self.fail_half_open(now, c);
                    return;
                };
                // Our certificate goes out whether or not it was asked for: clients that sent no
                // CERTREQ (they hold our certificate) ignore it, and Windows needs it.
                for cert in ca.our_chain() {
                    let mut body = Vec::with_capacity(1 + cert.len());
                    body.push(isakmp::cert_encoding::X509_SIG);
                    body.extend_from_slice(cert);
                    chain.push(payload_type::CERT, &body);
                }
                chain.push(payload_type::SIG, &sig);
                (Some(cert), true)
            }
        };
        let Some(p1) = self.p1.get_mut(&c) else {
            return;
        };
        let h = p1.header(exchange::MAIN, 0, true);
        let Some((reply, last_out)) = p1.seal(&h, &chain, &last_block) else {
            return;
        };
        // A message with certificates can exceed the path MTU: cut it into IKE fragments when
        // the peer announced them (strongSwan fragments only such messages for Windows, whose
        // support depends on expecting certificates).
        let mut datagrams = if p1.vendors.fragmentation && signer {
            super::fragment::split(&h, &reply, local, remote, natt_port)
        } else {
            Vec::new()
        };
        if datagrams.len() > 1 {
            debug!(%remote, bytes = reply.len(), fragments = datagrams.len(), peer_asked_cert = peer_certreq, "Main Mode message 6 sent in IKE fragments");
        }
        let framed = if datagrams.is_empty() {
            super::sa::frame(local, remote, natt_port, reply)
        } else {
            datagrams.remove(0)
        };
        // The peer may have floated to the NAT-T port for this message (RFC 3947 §4).
        p1.local = local;
        p1.remote = remote;
        p1.iv = last_out;
        p1.state = P1State::Established;
        // Message 1's SA payload (up to 64 KiB) was needed only for HASH_I and HASH_R; a repeated
        // message 5 gets the stored message 6.
        p1.sa_body = Vec::new();
        p1.peer_id = peer_id.clone();
        p1.peer = PeerKey::new(remote, p1.nat.peer_behind_nat, peer_id_raw);
        p1.dpd.next_seq = dpd_seq;
        let peer_key = p1.peer.clone();
        p1.expires = now + p1.choice.lifetime;
        p1.dpd.last_activity = now;
        let mut last = LastReply::new(&request, framed.clone(), now, None);
        last.more = datagrams.clone();
        p1.last = Some(last);
        let auth = match &peer_cert {
            Some(pc) => format!("certificate {}", pc.subject),
            None => "psk".to_string(),
        };
        let cert_user = peer_cert.as_ref().and_then(|pc| pc.user.clone());
        p1.peer_cert = peer_cert.map(Box::new);
        let (id, nat, algorithms, icky) = (p1.id, p1.nat, p1.choice.describe(), p1.icky);
        let ms_ic = p1.vendors.ms_initial_contact;
        let expires = p1.expires;
        let mm1_from = p1.mm1_from;
        self.mm1_index.remove(&(icky, mm1_from));
        self.release_half_open(mm1_from.ip());
        self.stats.phase1_established += 1;
        info!(
            %remote,
            peer = %peer_id,
            algorithms = %algorithms,
            nat_t = ?nat.nat_t.map(|v| v.name()),
            client_behind_nat = nat.peer_behind_nat,
            server_behind_nat = nat.local_behind_nat,
            auth = %auth,
            "ISAKMP SA established"
        );
        self.send(local, remote, framed);
        for d in datagrams {
            self.send(local, remote, d);
        }
        self.events.push_back(Event::Phase1Up {
            id,
            remote,
            peer_id,
            algorithms,
            nat,
            auth,
            cert_user,
        });
        self.arm(expires, TimerKey::Phase1(c));
        if let Some(interval) = self.cfg.dpd_interval {
            self.arm(now + interval, TimerKey::Phase1(c));
        }
        if initial_contact || ms_ic {
            self.initial_contact(c, &peer_key);
        }
    }

    /// INITIAL-CONTACT (RFC 2407 §4.6.3.3): the peer has no other SA with us, so every older SA of
    /// the same peer (address and identity) is stale.
    pub(crate) fn initial_contact(&mut self, keep: Cookies, peer: &PeerKey) {
        let stale: Vec<Cookies> = self
            .p1
            .iter()
            .filter(|(k, p)| **k != keep && p.state == P1State::Established && p.peer == *peer)
            .map(|(k, _)| *k)
            .collect();
        let children: Vec<u32> = self
            .child_sas_of(peer)
            .into_iter()
            .filter(|s| self.children.get(s).is_some_and(|c| c.phase1 != keep))
            .collect();
        if !stale.is_empty() || !children.is_empty() {
            info!(peer = ?peer.addr, isakmp_sas = stale.len(), ipsec_sas = children.len(), "INITIAL-CONTACT: dropping the peer's older SAs");
        }
        for spi in children {
            self.delete_child(spi, DownReason::InitialContact, false);
        }
        for k in stale {
            self.delete_phase1(k, DownReason::InitialContact, false);
        }
    }

    /// An unprotected Informational with one notify, answering a message we could not accept.
    pub(crate) fn notify_unprotected(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        request: &Header,
        code: u16,
    ) {
        let mut chain = PayloadChain::new();
        let spi: Vec<u8> = [request.initiator_cookie, request.responder_cookie].concat();
        chain.push(
            payload_type::NOTIFY,
            &isakmp::encode_notify(
                isakmp::doi::IPSEC,
                isakmp::protocol::ISAKMP,
                &spi,
                code,
                &[],
            ),
        );
        let h = Header {
            initiator_cookie: request.initiator_cookie,
            responder_cookie: request.responder_cookie,
            next_payload: 0,
            version: 0x10,
            exchange: exchange::INFORMATIONAL,
            flags: 0,
            message_id: 0,
            length: 0,
        };
        let msg = isakmp::encode_message(&h, chain.first(), chain.bytes());
        let framed = super::sa::frame(local, remote, self.cfg.natt_port, msg);
        debug!(%remote, notify = isakmp::notify_name(code), "sent unprotected notify");
        self.send(local, remote, framed);
    }
}

/// Error text and the notify that answers it.
type AuthError = (String, u16);

/// HASH_I (RFC 2409 §5) over the initiator's ID payload body `idii_b`; None before the keys.
fn expected_hash_i(p1: &Phase1, idii_b: &[u8]) -> Option<zeroize::Zeroizing<Vec<u8>>> {
    let keys = p1.keys()?;
    Some(crypto::hash_i(
        p1.choice.prf,
        &keys.skeyid,
        &p1.gxi,
        &p1.gxr,
        &p1.icky,
        &p1.rcky,
        &p1.sa_body,
        idii_b,
    ))
}

/// Pre-shared-key authentication of message 5: HASH_I (RFC 2409 §5).
fn check_psk_auth(p1: &Phase1, msg: &Message<'_>) -> Result<(), AuthError> {
    let fail = |why: &str| Err((why.to_string(), notify::AUTHENTICATION_FAILED));
    match (
        msg.first(payload_type::ID),
        msg.first(payload_type::HASH).map(|i| &i.payload),
    ) {
        (Some(id), Some(Payload::Hash(h))) => {
            let Some(expect) = expected_hash_i(p1, id.raw.body) else {
                return fail("no keys");
            };
            if bool::from(expect.as_slice().ct_eq(h)) {
                Ok(())
            } else {
                fail("HASH_I does not match")
            }
        }
        _ if msg.first(payload_type::SIG).is_some() => {
            fail("it carries a signature, but pre-shared-key authentication was agreed")
        }
        _ => fail("it lacks the ID or HASH payload"),
    }
}

/// Signature authentication of message 5 (RFC 2409 §5.1), the cheap part: the payloads are
/// there and of the right kinds, and HASH_I is computed. The job then checks the certificate
/// chain against the trust anchors and CRLs, the claimed identity against the certificate, and
/// SIG_I over HASH_I by the certificate's key (see [`super::jobs`]).
fn signature_inputs(
    p1: &Phase1,
    msg: &Message<'_>,
    ca: &Arc<dyn CertAuthority>,
    unix_now: u64,
) -> Result<Mm5Work, AuthError> {
    let Some(id) = msg.first(payload_type::ID) else {
        return Err(("it lacks the ID payload".into(), notify::PAYLOAD_MALFORMED));
    };
    let Payload::Id(idp) = &id.payload else {
        return Err((
            "its ID payload is malformed".into(),
            notify::PAYLOAD_MALFORMED,
        ));
    };
    let Some(Payload::Sig(sig)) = msg.first(payload_type::SIG).map(|i| &i.payload) else {
        if msg.first(payload_type::HASH).is_some() {
            return Err((
                "it carries a HASH, but RSA-signature authentication was agreed".into(),
                notify::AUTHENTICATION_FAILED,
            ));
        }
        return Err(("it lacks the SIG payload".into(), notify::PAYLOAD_MALFORMED));
    };
    let mut chain: Vec<&[u8]> = Vec::new();
    let mut total = 0usize;
    for item in &msg.items {
        if let Payload::Cert(cp) = &item.payload {
            if cp.encoding != isakmp::cert_encoding::X509_SIG {
                return Err((
                    format!(
                        "it sent a certificate of encoding {} (only X.509 signature, 4, is read)",
                        cp.encoding
                    ),
                    notify::CERT_TYPE_UNSUPPORTED,
                ));
            }
            total += cp.data.len();
            if chain.len() >= MAX_PEER_CERTS || total > MAX_PEER_CERT {
                return Err((
                    format!(
                        "its certificates exceed {MAX_PEER_CERTS} payloads or {MAX_PEER_CERT} bytes"
                    ),
                    notify::INVALID_CERTIFICATE,
                ));
            }
            chain.push(cp.data);
        }
    }
    if chain.is_empty() {
        return Err((
            "it sent no certificate (the server keeps no client certificates; the client must \
             send its own)"
                .into(),
            notify::CERTIFICATE_UNAVAILABLE,
        ));
    }
    let Some(hash_i) = expected_hash_i(p1, id.raw.body) else {
        return Err(("no keys".into(), notify::AUTHENTICATION_FAILED));
    };
    Ok(Mm5Work {
        ca: Arc::clone(ca),
        certs: chain.iter().map(|c| c.to_vec()).collect(),
        id_type: idp.id_type,
        id_data: idp.data.to_vec(),
        sig: sig.to_vec(),
        hash_i,
        hash_r: zeroize::Zeroizing::new(Vec::new()),
        unix_now,
    })
}

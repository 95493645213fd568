//! Dynamic authorization (RFC 5176): the sans-IO server side of Disconnect-Request (code 40)
//! and CoA-Request (code 43).
//!
//! [`DynAuth::handle`] takes a datagram: a source not on the allow-list, bytes that are not a
//! request, or a wrong Request Authenticator (RFC 5176 §2.3) or Message-Authenticator
//! (§3.4) are dropped and counted, never answered. A repeated request (same source,
//! Identifier and authenticator within the duplicate window, RFC 5176 §2.3 and RFC 2865 §3)
//! gets the cached answer again. A valid request comes out as a [`Request`]: the session
//! selector (Acct-Session-Id, User-Name, Framed-IP-Address, §3) and for CoA the changes
//! (Session-Timeout, Idle-Timeout). The caller looks the session up and calls
//! [`DynAuth::answer`] with the outcome; that gives the ACK (41/44) or NAK (42/45) with an
//! Error-Cause (§3.5) and the Response Authenticator (RFC 2865 §3 formula, RFC 5176 §2.3).

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::packet::{Packet, attr, code, verify_request};

/// The allow-listed clients and their secrets (never printed), the replay window and this
/// NAS's identity.
#[derive(Clone)]
pub struct DynAuthConfig {
    /// Source addresses allowed to send requests, with their shared secrets.
    pub clients: Vec<(IpAddr, Zeroizing<Vec<u8>>)>,
    /// How long an answer is kept to answer a retransmission of its request, and how far an
    /// Event-Timestamp may be from now: RFC 5176 §6.3 wants one window for both (default
    /// 300 s, as it suggests).
    pub duplicate_window: Duration,
    /// Drop requests without Event-Timestamp (RFC 5176 §6.3: "SHOULD be configurable").
    pub require_event_timestamp: bool,
    /// This NAS's NAS-Identifier and NAS-IP-Address (`[radius]`): a request naming another
    /// NAS is refused with Error-Cause 403 (RFC 5176 §3.5).
    pub nas_identifier: Option<String>,
    pub nas_ip: Option<Ipv4Addr>,
}

impl Default for DynAuthConfig {
    fn default() -> Self {
        DynAuthConfig {
            clients: Vec::new(),
            duplicate_window: Duration::from_secs(300),
            require_event_timestamp: false,
            nas_identifier: None,
            nas_ip: None,
        }
    }
}

impl fmt::Debug for DynAuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addrs: Vec<&IpAddr> = self.clients.iter().map(|(a, _)| a).collect();
        f.debug_struct("DynAuthConfig")
            .field("clients", &addrs)
            .field("duplicate_window", &self.duplicate_window)
            .finish_non_exhaustive()
    }
}

/// Which request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// Disconnect-Request: end the session.
    Disconnect,
    /// CoA-Request: change the session.
    Coa,
}

/// Which session(s) a request is about (RFC 5176 §3, session identification).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionSelector {
    /// Acct-Session-Id.
    pub acct_session_id: Option<String>,
    /// User-Name.
    pub user_name: Option<String>,
    /// Framed-IP-Address.
    pub framed_ip: Option<Ipv4Addr>,
}

/// What a CoA-Request changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoaChanges {
    /// New Session-Timeout, seconds.
    pub session_timeout: Option<u32>,
    /// New Idle-Timeout, seconds.
    pub idle_timeout: Option<u32>,
}

/// Error-Cause values (RFC 5176 §3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCause {
    /// 401 Unsupported Attribute.
    UnsupportedAttribute,
    /// 402 Missing Attribute.
    MissingAttribute,
    /// 403 NAS Identification Mismatch.
    NasIdentificationMismatch,
    /// 404 Invalid Request.
    InvalidRequest,
    /// 405 Unsupported Service.
    UnsupportedService,
    /// 407 Invalid Attribute Value.
    InvalidAttributeValue,
    /// 501 Administratively Prohibited.
    AdministrativelyProhibited,
    /// 503 Session Context Not Found.
    SessionContextNotFound,
    /// 504 Session Context Not Removable.
    SessionContextNotRemovable,
    /// 506 Resources Unavailable.
    ResourcesUnavailable,
    /// 508 Multiple Session Selection Unsupported.
    MultipleSessionSelectionUnsupported,
}

impl ErrorCause {
    /// The attribute's value.
    pub fn code(self) -> u32 {
        match self {
            ErrorCause::UnsupportedAttribute => 401,
            ErrorCause::MissingAttribute => 402,
            ErrorCause::NasIdentificationMismatch => 403,
            ErrorCause::InvalidRequest => 404,
            ErrorCause::UnsupportedService => 405,
            ErrorCause::InvalidAttributeValue => 407,
            ErrorCause::AdministrativelyProhibited => 501,
            ErrorCause::SessionContextNotFound => 503,
            ErrorCause::SessionContextNotRemovable => 504,
            ErrorCause::ResourcesUnavailable => 506,
            ErrorCause::MultipleSessionSelectionUnsupported => 508,
        }
    }
}

/// What the caller did with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done: ACK.
    Ack,
    /// Not done: NAK with this cause.
    Nak(ErrorCause),
}

/// A validated Disconnect-Request or CoA-Request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Disconnect or CoA.
    pub kind: RequestKind,
    /// Where it came from (the answer goes back there).
    pub from: SocketAddr,
    /// The session(s) it selects.
    pub selector: SessionSelector,
    /// For CoA, the changes.
    pub changes: CoaChanges,
    /// When set, the request cannot be carried out as it stands: answer `Outcome::Nak` with
    /// this cause without looking anything up (an unsupported attribute, no selector).
    pub problem: Option<ErrorCause>,
    identifier: u8,
    authenticator: [u8; 16],
    had_message_authenticator: bool,
    received: Instant,
}

/// Why a datagram was not turned into a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// A retransmission of a request already answered: send these bytes back to `from`.
    Resend(Vec<u8>),
    /// Dropped without an answer.
    Dropped(DropReason),
}

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The source is not an allowed client.
    UnknownSource,
    /// Not a RADIUS packet.
    Malformed,
    /// Not a Disconnect-Request or CoA-Request.
    NotARequest,
    /// The Request Authenticator or Message-Authenticator is wrong.
    BadAuthenticator,
    /// A retransmission of a request still being worked on.
    InProgress,
    /// Event-Timestamp outside the window, or missing where it is required (RFC 5176 §6.3).
    Stale,
}

/// Counters of dropped datagrams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DynAuthStats {
    /// From sources not on the list.
    pub unknown_source: u64,
    /// Undecodable.
    pub malformed: u64,
    /// Other codes.
    pub not_a_request: u64,
    /// Failing authenticator checks.
    pub bad_authenticator: u64,
    /// Retransmissions answered from the cache or dropped while in progress.
    pub duplicates: u64,
    /// Event-Timestamp outside the window, or missing where required (replays).
    pub stale: u64,
}

type DupKey = (SocketAddr, u8, [u8; 16]);

/// The RFC 5176 server core.
pub struct DynAuth {
    config: DynAuthConfig,
    /// Answers sent, and `None` for requests handed out and not answered yet.
    recent: HashMap<DupKey, (Instant, Option<Vec<u8>>)>,
    stats: DynAuthStats,
    /// Wall-clock time (Unix seconds) for Event-Timestamp, from the shell; 0 until told.
    unix_now: u64,
}

impl fmt::Debug for DynAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynAuth")
            .field("config", &self.config)
            .field("recent", &self.recent.len())
            .field("stats", &self.stats)
            .finish()
    }
}

/// Attributes a request may carry and we understand or may ignore (RFC 5176 §3.6 table).
fn allowed(kind: RequestKind, typ: u8) -> bool {
    matches!(
        typ,
        attr::USER_NAME
            | attr::NAS_IP_ADDRESS
            | attr::NAS_PORT
            | attr::FRAMED_IP_ADDRESS
            | attr::CALLED_STATION_ID
            | attr::CALLING_STATION_ID
            | attr::NAS_IDENTIFIER
            | attr::PROXY_STATE
            | attr::ACCT_SESSION_ID
            | attr::EVENT_TIMESTAMP
            | attr::MESSAGE_AUTHENTICATOR
            | attr::CLASS
            | attr::STATE
            | attr::REPLY_MESSAGE
            | attr::ACCT_TERMINATE_CAUSE
            | attr::VENDOR_SPECIFIC
    ) || (kind == RequestKind::Coa && matches!(typ, attr::SESSION_TIMEOUT | attr::IDLE_TIMEOUT))
}

impl DynAuth {
    /// A core for these clients.
    pub fn new(config: DynAuthConfig) -> Self {
        DynAuth {
            config,
            recent: HashMap::new(),
            stats: DynAuthStats::default(),
            unix_now: 0,
        }
    }

    /// The wall-clock time (Unix seconds), for Event-Timestamp checks: the shell sets it before
    /// each datagram (the core reads no clock).
    pub fn set_unix_time(&mut self, unix_now: u64) {
        self.unix_now = unix_now;
    }

    /// What was dropped so far.
    pub fn stats(&self) -> DynAuthStats {
        self.stats
    }

    fn secret(&self, from: IpAddr) -> Option<&[u8]> {
        let from = match from {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        self.config
            .clients
            .iter()
            .find(|(a, _)| *a == from)
            .map(|(_, s)| s.as_slice())
    }

    /// Validates one datagram (see the module documentation).
    pub fn handle(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Result<Request, Handled> {
        let window = self.config.duplicate_window;
        self.recent
            .retain(|_, (t, _)| now.saturating_duration_since(*t) < window);
        let Some(secret) = self.secret(from.ip()) else {
            dropped!(self.stats.unknown_source, %from, "dynauth: request from an unknown source dropped");
            return Err(Handled::Dropped(DropReason::UnknownSource));
        };
        let kind = match bytes.first() {
            Some(&code::DISCONNECT_REQUEST) => RequestKind::Disconnect,
            Some(&code::COA_REQUEST) => RequestKind::Coa,
            Some(_) => {
                dropped!(self.stats.not_a_request, %from, "dynauth: not a Disconnect/CoA-Request, dropped");
                return Err(Handled::Dropped(DropReason::NotARequest));
            }
            None => {
                dropped!(self.stats.malformed, %from, "dynauth: empty datagram dropped");
                return Err(Handled::Dropped(DropReason::Malformed));
            }
        };
        let packet = match verify_request(bytes, secret) {
            Ok(p) => p,
            Err(super::packet::AuthError::Malformed(_)) => {
                dropped!(self.stats.malformed, %from, "dynauth: malformed request dropped");
                return Err(Handled::Dropped(DropReason::Malformed));
            }
            Err(e) => {
                dropped!(self.stats.bad_authenticator, %from, error = %e, "dynauth: request failing the authenticator checks dropped");
                return Err(Handled::Dropped(DropReason::BadAuthenticator));
            }
        };
        // RFC 5176 §6.3: a request whose Event-Timestamp is not current is silently
        // discarded; without one, when the setting asks for it.
        match packet.get_u32(attr::EVENT_TIMESTAMP) {
            Some(ts) if self.unix_now != 0 => {
                let off = i64::from(ts) - i64::try_from(self.unix_now).unwrap_or(i64::MAX);
                if off.unsigned_abs() > window.as_secs() {
                    dropped!(self.stats.stale, %from, offset_s = off, window_s = window.as_secs(), "dynauth: Event-Timestamp outside the window (a replay, or clocks apart); dropped");
                    return Err(Handled::Dropped(DropReason::Stale));
                }
            }
            None if self.config.require_event_timestamp => {
                dropped!(self.stats.stale, %from, "dynauth: request without Event-Timestamp, which dynauth.require_event_timestamp asks for; dropped");
                return Err(Handled::Dropped(DropReason::Stale));
            }
            _ => {}
        }
        let key = (from, packet.identifier, packet.authenticator);
        if let Some((_, cached)) = self.recent.get(&key) {
            self.stats.duplicates += 1;
            return Err(match cached {
                Some(reply) => Handled::Resend(reply.clone()),
                None => Handled::Dropped(DropReason::InProgress),
            });
        }
        self.recent.insert(key, (now, None));

        let selector = SessionSelector {
            acct_session_id: packet.get_str(attr::ACCT_SESSION_ID),
            user_name: packet.get_str(attr::USER_NAME),
            framed_ip: packet.get_ipv4(attr::FRAMED_IP_ADDRESS),
        };
        let changes = CoaChanges {
            session_timeout: packet.get_u32(attr::SESSION_TIMEOUT),
            idle_timeout: packet.get_u32(attr::IDLE_TIMEOUT),
        };
        let other_nas = matches!(
            (&self.config.nas_identifier, packet.get_str(attr::NAS_IDENTIFIER)),
            (Some(ours), Some(theirs)) if *ours != theirs
        ) || matches!(
            (self.config.nas_ip, packet.get_ipv4(attr::NAS_IP_ADDRESS)),
            (Some(ours), Some(theirs)) if ours != theirs
        );
        let problem = if packet.attributes.iter().any(|a| !allowed(kind, a.typ)) {
            Some(ErrorCause::UnsupportedAttribute)
        } else if other_nas {
            Some(ErrorCause::NasIdentificationMismatch)
        } else if selector == SessionSelector::default() {
            Some(ErrorCause::MissingAttribute)
        } else if packet.get(attr::FRAMED_IP_ADDRESS).is_some() && selector.framed_ip.is_none()
            || packet.get(attr::SESSION_TIMEOUT).is_some() && changes.session_timeout.is_none()
            || packet.get(attr::IDLE_TIMEOUT).is_some() && changes.idle_timeout.is_none()
        {
            Some(ErrorCause::InvalidAttributeValue)
        } else if kind == RequestKind::Coa && changes == CoaChanges::default() {
            Some(ErrorCause::InvalidRequest)
        } else {
            None
        };
        Ok(Request {
            kind,
            from,
            selector,
            changes,
            problem,
            identifier: packet.identifier,
            authenticator: packet.authenticator,
            had_message_authenticator: packet.get(attr::MESSAGE_AUTHENTICATOR).is_some(),
            received: now,
        })
    }

    /// The answer to `request` (ACK, or NAK with Error-Cause), signed, and remembered for
    /// retransmissions. Empty only if the client was removed or encoding failed.
    pub fn answer(&mut self, request: &Request, outcome: Outcome) -> Vec<u8> {
        let code = match (request.kind, outcome) {
            (RequestKind::Disconnect, Outcome::Ack) => code::DISCONNECT_ACK,
            (RequestKind::Disconnect, Outcome::Nak(_)) => code::DISCONNECT_NAK,
            (RequestKind::Coa, Outcome::Ack) => code::COA_ACK,
            (RequestKind::Coa, Outcome::Nak(_)) => code::COA_NAK,
        };
        let mut p = Packet::new(code, request.identifier);
        if let Outcome::Nak(cause) = outcome {
            p.add_u32(attr::ERROR_CAUSE, cause.code());
        }
        if request.had_message_authenticator {
            p.add_message_authenticator();
        }
        let Some(secret) = self.secret(request.from.ip()) else {
            return Vec::new();
        };
        let bytes = p
            .encode_response(&request.authenticator, secret)
            .unwrap_or_default();
        self.recent.insert(
            (request.from, request.identifier, request.authenticator),
            (request.received, Some(bytes.clone())),
        );
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::radius::packet::verify_response;
    use proptest::prelude::*;

    fn config() -> DynAuthConfig {
        DynAuthConfig {
            clients: vec![(
                "10.0.0.1".parse().unwrap(),
                Zeroizing::new(b"dasecret".to_vec()),
            )],
            ..DynAuthConfig::default()
        }
    }

    fn core() -> DynAuth {
        DynAuth::new(config())
    }

    #[test]
    fn event_timestamp_outside_the_window_is_dropped_as_a_replay() {
        const NOW: u32 = 1_800_000_000;
        let t0 = Instant::now();
        let mut d = core();
        d.set_unix_time(u64::from(NOW));
        let with_ts = |id: u8, ts: u32| {
            request(
                code::DISCONNECT_REQUEST,
                id,
                &[
                    (attr::USER_NAME, b"alice"),
                    (attr::EVENT_TIMESTAMP, &ts.to_be_bytes()),
                ],
                true,
                b"dasecret",
            )
        };
        // RFC 5176 §6.3: 300 s either way (the duplicate window).
        for (id, ts) in [(1, NOW - 301), (2, NOW + 301)] {
            assert_eq!(
                d.handle(t0, from(), &with_ts(id, ts)),
                Err(Handled::Dropped(DropReason::Stale))
            );
        }
        assert_eq!(d.stats().stale, 2);
        assert!(d.handle(t0, from(), &with_ts(3, NOW - 299)).is_ok());
        assert!(d.handle(t0, from(), &with_ts(4, NOW + 5)).is_ok());
        // Without Event-Timestamp: taken, unless the setting requires one.
        let bare = request(
            code::DISCONNECT_REQUEST,
            5,
            &[(attr::USER_NAME, b"alice")],
            true,
            b"dasecret",
        );
        assert!(d.handle(t0, from(), &bare).is_ok());
        let mut strict = DynAuth::new(DynAuthConfig {
            require_event_timestamp: true,
            ..config()
        });
        strict.set_unix_time(u64::from(NOW));
        assert_eq!(
            strict.handle(t0, from(), &bare),
            Err(Handled::Dropped(DropReason::Stale))
        );
        assert!(strict.handle(t0, from(), &with_ts(6, NOW)).is_ok());
    }

    #[test]
    fn a_request_for_another_nas_gets_403() {
        let t0 = Instant::now();
        let mut d = DynAuth::new(DynAuthConfig {
            nas_identifier: Some("roadgate-a".into()),
            nas_ip: Some(Ipv4Addr::new(192, 0, 2, 1)),
            ..config()
        });
        let ask = |id: u8, attrs: &[(u8, &[u8])]| {
            request(code::DISCONNECT_REQUEST, id, attrs, true, b"dasecret")
        };
        let user: (u8, &[u8]) = (attr::USER_NAME, b"alice");
        let other_id = ask(1, &[user, (attr::NAS_IDENTIFIER, b"roadgate-b")]);
        let other_ip = ask(2, &[user, (attr::NAS_IP_ADDRESS, &[192, 0, 2, 2])]);
        for b in [other_id, other_ip] {
            let r = d.handle(t0, from(), &b).unwrap();
            assert_eq!(r.problem, Some(ErrorCause::NasIdentificationMismatch));
            let answer = d.answer(&r, Outcome::Nak(ErrorCause::NasIdentificationMismatch));
            let p = verify_response(&answer, &r.authenticator, b"dasecret", true).unwrap();
            assert_eq!(p.get_u32(attr::ERROR_CAUSE), Some(403));
        }
        let ours = ask(
            3,
            &[
                user,
                (attr::NAS_IDENTIFIER, b"roadgate-a"),
                (attr::NAS_IP_ADDRESS, &[192, 0, 2, 1]),
            ],
        );
        assert_eq!(d.handle(t0, from(), &ours).unwrap().problem, None);
    }

    fn from() -> SocketAddr {
        "10.0.0.1:40000".parse().unwrap()
    }

    fn request(code: u8, id: u8, attrs: &[(u8, &[u8])], ma: bool, secret: &[u8]) -> Vec<u8> {
        let mut p = Packet::new(code, id);
        for (t, v) in attrs {
            p.add(*t, v.to_vec());
        }
        if ma {
            p.add_message_authenticator();
        }
        p.encode_request(secret).unwrap()
    }

    #[test]
    fn disconnect_ack_and_duplicate() {
        let mut d = core();
        let now = Instant::now();
        let bytes = request(40, 5, &[(attr::ACCT_SESSION_ID, b"s1")], true, b"dasecret");
        let r = d.handle(now, from(), &bytes).unwrap();
        assert_eq!(r.kind, RequestKind::Disconnect);
        assert_eq!(r.selector.acct_session_id.as_deref(), Some("s1"));
        assert_eq!(r.problem, None);
        assert_eq!(
            d.handle(now, from(), &bytes),
            Err(Handled::Dropped(DropReason::InProgress))
        );
        let ans = d.answer(&r, Outcome::Ack);
        let req_auth: [u8; 16] = bytes[4..20].try_into().unwrap();
        let p = verify_response(&ans, &req_auth, b"dasecret", true).unwrap();
        assert_eq!(p.code, code::DISCONNECT_ACK);
        assert_eq!(p.identifier, 5);
        assert_eq!(
            d.handle(now, from(), &bytes),
            Err(Handled::Resend(ans.clone()))
        );
        // Within the window (300 s, RFC 5176 §6.3) it stays a duplicate; after it, it is new.
        assert_eq!(
            d.handle(now + Duration::from_secs(299), from(), &bytes),
            Err(Handled::Resend(ans))
        );
        assert!(
            d.handle(now + Duration::from_secs(301), from(), &bytes)
                .is_ok()
        );
    }

    #[test]
    fn coa_nak_with_error_cause() {
        let mut d = core();
        let now = Instant::now();
        let bytes = request(
            43,
            9,
            &[
                (attr::USER_NAME, b"bob"),
                (attr::SESSION_TIMEOUT, &60u32.to_be_bytes()),
            ],
            false,
            b"dasecret",
        );
        let r = d.handle(now, from(), &bytes).unwrap();
        assert_eq!(r.changes.session_timeout, Some(60));
        let ans = d.answer(&r, Outcome::Nak(ErrorCause::SessionContextNotFound));
        let req_auth: [u8; 16] = bytes[4..20].try_into().unwrap();
        let p = verify_response(&ans, &req_auth, b"dasecret", false).unwrap();
        assert_eq!(p.code, code::COA_NAK);
        assert_eq!(p.get_u32(attr::ERROR_CAUSE), Some(503));
    }

    #[test]
    fn problems() {
        let mut d = core();
        let now = Instant::now();
        let r = d
            .handle(now, from(), &request(40, 1, &[], false, b"dasecret"))
            .unwrap();
        assert_eq!(r.problem, Some(ErrorCause::MissingAttribute));
        let r = d
            .handle(
                now,
                from(),
                &request(
                    40,
                    2,
                    &[(attr::USER_NAME, b"x"), (99, b"zz")],
                    false,
                    b"dasecret",
                ),
            )
            .unwrap();
        assert_eq!(r.problem, Some(ErrorCause::UnsupportedAttribute));
        let r = d
            .handle(
                now,
                from(),
                &request(43, 3, &[(attr::USER_NAME, b"x")], false, b"dasecret"),
            )
            .unwrap();
        assert_eq!(r.problem, Some(ErrorCause::InvalidRequest));
    }

    #[test]
    fn drops_unknown_and_bad() {
        let mut d = core();
        let now = Instant::now();
        let good = request(40, 1, &[(attr::USER_NAME, b"x")], false, b"dasecret");
        let other: SocketAddr = "10.0.0.2:1".parse().unwrap();
        assert_eq!(
            d.handle(now, other, &good),
            Err(Handled::Dropped(DropReason::UnknownSource))
        );
        let bad = request(40, 1, &[(attr::USER_NAME, b"x")], false, b"wrong");
        assert_eq!(
            d.handle(now, from(), &bad),
            Err(Handled::Dropped(DropReason::BadAuthenticator))
        );
        let mut bad_ma = request(40, 1, &[(attr::USER_NAME, b"x")], true, b"dasecret");
        // Corrupt the Message-Authenticator and re-sign the Request Authenticator.
        let n = bad_ma.len();
        bad_ma[n - 1] ^= 1;
        bad_ma[4..20].fill(0);
        let digest = <md5::Md5 as md5::Digest>::digest([bad_ma.as_slice(), b"dasecret"].concat());
        bad_ma[4..20].copy_from_slice(&digest);
        assert_eq!(
            d.handle(now, from(), &bad_ma),
            Err(Handled::Dropped(DropReason::BadAuthenticator))
        );
        assert_eq!(
            d.handle(now, from(), &[2, 1, 0, 20]),
            Err(Handled::Dropped(DropReason::NotARequest))
        );
        assert_eq!(
            d.handle(now, from(), &[40, 1, 0]),
            Err(Handled::Dropped(DropReason::Malformed))
        );
        assert_eq!(d.stats().bad_authenticator, 2);
    }

    proptest! {
        #[test]
        fn handle_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut d = core();
            let _ = d.handle(Instant::now(), from(), &bytes);
            let mut b = bytes.clone();
            if let Some(c) = b.first_mut() { *c = 40; }
            let _ = d.handle(Instant::now(), from(), &b);
        }
    }
}

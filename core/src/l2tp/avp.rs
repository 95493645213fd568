//! AVP and message types, result and error codes (RFC 2661 §4.4, §6), and the decoding of a
//! control message body into a [`Message`].

use super::session::OutgoingCall;
use super::wire::{self, AvpError, RawAvp};

/// Attribute types (§4.4).
pub mod attr {
    pub const MESSAGE_TYPE: u16 = 0;
    pub const RESULT_CODE: u16 = 1;
    pub const PROTOCOL_VERSION: u16 = 2;
    pub const FRAMING_CAPABILITIES: u16 = 3;
    pub const BEARER_CAPABILITIES: u16 = 4;
    pub const TIE_BREAKER: u16 = 5;
    pub const FIRMWARE_REVISION: u16 = 6;
    pub const HOST_NAME: u16 = 7;
    pub const VENDOR_NAME: u16 = 8;
    pub const ASSIGNED_TUNNEL_ID: u16 = 9;
    pub const RECEIVE_WINDOW_SIZE: u16 = 10;
    pub const CHALLENGE: u16 = 11;
    pub const Q931_CAUSE: u16 = 12;
    pub const CHALLENGE_RESPONSE: u16 = 13;
    pub const ASSIGNED_SESSION_ID: u16 = 14;
    pub const CALL_SERIAL_NUMBER: u16 = 15;
    pub const MINIMUM_BPS: u16 = 16;
    pub const MAXIMUM_BPS: u16 = 17;
    pub const BEARER_TYPE: u16 = 18;
    pub const FRAMING_TYPE: u16 = 19;
    pub const CALLED_NUMBER: u16 = 21;
    pub const CALLING_NUMBER: u16 = 22;
    pub const SUB_ADDRESS: u16 = 23;
    pub const TX_CONNECT_SPEED: u16 = 24;
    pub const PHYSICAL_CHANNEL_ID: u16 = 25;
    pub const INITIAL_RECEIVED_LCP_CONFREQ: u16 = 26;
    pub const LAST_SENT_LCP_CONFREQ: u16 = 27;
    pub const LAST_RECEIVED_LCP_CONFREQ: u16 = 28;
    pub const PROXY_AUTHEN_TYPE: u16 = 29;
    pub const PROXY_AUTHEN_NAME: u16 = 30;
    pub const PROXY_AUTHEN_CHALLENGE: u16 = 31;
    pub const PROXY_AUTHEN_ID: u16 = 32;
    pub const PROXY_AUTHEN_RESPONSE: u16 = 33;
    pub const CALL_ERRORS: u16 = 34;
    pub const ACCM: u16 = 35;
    pub const RANDOM_VECTOR: u16 = 36;
    pub const PRIVATE_GROUP_ID: u16 = 37;
    pub const RX_CONNECT_SPEED: u16 = 38;
    pub const SEQUENCING_REQUIRED: u16 = 39;
}

/// Message types (§3.2).
pub mod msg {
    pub const SCCRQ: u16 = 1;
    pub const SCCRP: u16 = 2;
    pub const SCCCN: u16 = 3;
    pub const STOPCCN: u16 = 4;
    pub const HELLO: u16 = 6;
    pub const OCRQ: u16 = 7;
    pub const OCRP: u16 = 8;
    pub const OCCN: u16 = 9;
    pub const ICRQ: u16 = 10;
    pub const ICRP: u16 = 11;
    pub const ICCN: u16 = 12;
    pub const CDN: u16 = 14;
    pub const WEN: u16 = 15;
    pub const SLI: u16 = 16;

    pub fn name(t: u16) -> &'static str {
        match t {
            SCCRQ => "SCCRQ",
            SCCRP => "SCCRP",
            SCCCN => "SCCCN",
            STOPCCN => "StopCCN",
            HELLO => "HELLO",
            OCRQ => "OCRQ",
            OCRP => "OCRP",
            OCCN => "OCCN",
            ICRQ => "ICRQ",
            ICRP => "ICRP",
            ICCN => "ICCN",
            CDN => "CDN",
            WEN => "WEN",
            SLI => "SLI",
            _ => "unknown",
        }
    }

    /// Messages about one call: errors in them clear the session, not the tunnel (§4.1).
    pub fn is_session_level(t: u16) -> bool {
        matches!(t, OCRQ | OCRP | OCCN | ICRQ | ICRP | ICCN | CDN | WEN | SLI)
    }
}

/// StopCCN result codes (§4.4.2).
pub mod stopccn {
    pub const GENERAL_REQUEST: u16 = 1;
    pub const GENERAL_ERROR: u16 = 2;
    pub const ALREADY_EXISTS: u16 = 3;
    pub const NOT_AUTHORIZED: u16 = 4;
    pub const PROTOCOL_VERSION: u16 = 5;
    pub const SHUTTING_DOWN: u16 = 6;
    pub const FSM_ERROR: u16 = 7;
}

/// CDN result codes (§4.4.2).
pub mod cdn {
    pub const LOST_CARRIER: u16 = 1;
    pub const GENERAL_ERROR: u16 = 2;
    pub const ADMINISTRATIVE: u16 = 3;
    pub const NO_FACILITIES_TEMPORARY: u16 = 4;
    pub const NO_FACILITIES_PERMANENT: u16 = 5;
}

/// General error codes (§4.4.2), carried with result code 2.
pub mod error {
    pub const NONE: u16 = 0;
    pub const NO_CONTROL_CONNECTION: u16 = 1;
    pub const LENGTH: u16 = 2;
    pub const OUT_OF_RANGE: u16 = 3;
    pub const INSUFFICIENT_RESOURCES: u16 = 4;
    pub const INVALID_SESSION_ID: u16 = 5;
    pub const VENDOR_SPECIFIC: u16 = 6;
    pub const TRY_ANOTHER: u16 = 7;
    pub const UNKNOWN_MANDATORY_AVP: u16 = 8;
}

/// Vendor IDs seen in AVPs: 0 is the IETF; 311 is Microsoft (correlation ID, §1.4 of CLIENTS.md).
pub const VENDOR_IETF: u16 = 0;
pub const VENDOR_MICROSOFT: u16 = 311;

/// The Result Code AVP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultCode {
    pub result: u16,
    pub error: Option<u16>,
    pub message: String,
}

impl ResultCode {
    pub fn encode(result: u16, error: Option<u16>, message: &str) -> Vec<u8> {
        let mut v = result.to_be_bytes().to_vec();
        if error.is_some() || !message.is_empty() {
            v.extend_from_slice(&error.unwrap_or(0).to_be_bytes());
            v.extend_from_slice(message.as_bytes());
        }
        v
    }
}

impl std::fmt::Display for ResultCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "result {}", self.result)?;
        if let Some(e) = self.error {
            write!(f, " error {e}")?;
        }
        if !self.message.is_empty() {
            write!(f, " ({})", self.message)?;
        }
        Ok(())
    }
}

/// Why a well-framed message cannot be accepted as it is: answered as §4.1 says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// An unrecognised AVP with the M bit set (or reserved bits set and M set).
    UnknownMandatory { vendor: u16, attr: u16 },
    /// A known AVP whose value has the wrong length.
    BadLength { attr: u16 },
    /// A hidden AVP we cannot recover: no secret configured, no Random Vector before it, or a
    /// bad hidden length.
    Hidden { attr: u16 },
}

/// Hard errors: the message cannot even be identified; it is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("AVP framing: {0}")]
    Avp(#[from] AvpError),
    #[error("the first AVP is not a 2-byte Message Type")]
    NoMessageType,
}

/// A decoded control message: the AVPs we understand. Strings are kept as bytes (names may be
/// NUL-terminated or not UTF-8).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub msg_type: u16,
    /// The M bit of the Message Type AVP: an unknown type with M set clears the tunnel.
    pub type_mandatory: bool,
    pub result: Option<ResultCode>,
    pub protocol_version: Option<(u8, u8)>,
    pub framing_capabilities: Option<u32>,
    pub bearer_capabilities: Option<u32>,
    pub firmware_revision: Option<u16>,
    pub host_name: Option<Vec<u8>>,
    pub vendor_name: Option<Vec<u8>>,
    pub assigned_tunnel: Option<u16>,
    pub receive_window: Option<u16>,
    pub challenge: Option<Vec<u8>>,
    pub challenge_response: Option<[u8; 16]>,
    pub assigned_session: Option<u16>,
    pub call_serial: Option<u32>,
    pub minimum_bps: Option<u32>,
    pub maximum_bps: Option<u32>,
    pub bearer_type: Option<u32>,
    pub framing_type: Option<u32>,
    pub called_number: Option<Vec<u8>>,
    pub calling_number: Option<Vec<u8>>,
    pub sub_address: Option<Vec<u8>>,
    pub physical_channel_id: Option<u32>,
    pub tx_connect_speed: Option<u32>,
    pub rx_connect_speed: Option<u32>,
    pub sequencing_required: bool,
    /// The first fault found; the fields decoded so far are still filled in.
    pub fault: Option<Fault>,
    /// Unrecognised AVPs without the M bit, skipped (e.g. Microsoft's correlation ID).
    pub ignored: u32,
}

fn u16_of(v: &[u8]) -> Option<u16> {
    <[u8; 2]>::try_from(v).ok().map(u16::from_be_bytes)
}

fn u32_of(v: &[u8]) -> Option<u32> {
    <[u8; 4]>::try_from(v).ok().map(u32::from_be_bytes)
}

impl Message {
    /// Decodes a control message body. `secret` recovers hidden AVPs.
    pub fn decode(body: &[u8], secret: Option<&[u8]>) -> Result<Message, MessageError> {
        let mut it = wire::avps(body);
        let first = it.next().ok_or(MessageError::NoMessageType)??;
        if first.vendor != VENDOR_IETF || first.attr != attr::MESSAGE_TYPE || first.hidden {
            return Err(MessageError::NoMessageType);
        }
        let mut m = Message {
            msg_type: u16_of(first.value).ok_or(MessageError::NoMessageType)?,
            type_mandatory: first.mandatory,
            ..Message::default()
        };
        let mut random_vector: Option<&[u8]> = None;
        for avp in it {
            let avp = avp?;
            if m.fault.is_some() {
                continue; // keep checking the framing; the first fault is what we answer
            }
            let unhidden;
            let value = if avp.hidden {
                match (secret, random_vector) {
                    (Some(s), Some(rv)) => match wire::unhide(avp.attr, s, rv, avp.value) {
                        Ok(v) => {
                            unhidden = v;
                            unhidden.as_slice()
                        }
                        Err(_) => {
                            m.fault_or_ignore(&avp, Fault::Hidden { attr: avp.attr });
                            continue;
                        }
                    },
                    _ => {
                        m.fault_or_ignore(&avp, Fault::Hidden { attr: avp.attr });
                        continue;
                    }
                }
            } else {
                avp.value
            };
            if avp.vendor == VENDOR_IETF && avp.attr == attr::RANDOM_VECTOR && !avp.hidden {
                random_vector = Some(avp.value);
                continue;
            }
            if avp.vendor != VENDOR_IETF || avp.reserved {
                m.fault_or_ignore(
                    &avp,
                    Fault::UnknownMandatory {
                        vendor: avp.vendor,
                        attr: avp.attr,
                    },
                );
                continue;
            }
            match m.set(avp.attr, value) {
                Some(true) => {}
                Some(false) => m.fault_or_ignore(
                    &avp,
                    Fault::UnknownMandatory {
                        vendor: 0,
                        attr: avp.attr,
                    },
                ),
                None => m.fault_or_ignore(&avp, Fault::BadLength { attr: avp.attr }),
            }
        }
        Ok(m)
    }

    /// Records `fault` if the AVP is mandatory; otherwise the AVP is skipped.
    fn fault_or_ignore(&mut self, avp: &RawAvp<'_>, fault: Fault) {
        if avp.mandatory {
            self.fault = Some(fault);
        } else {
            self.ignored += 1;
        }
    }

    /// Stores one IETF AVP: `Some(true)` when known, `Some(false)` when the attribute is not
    /// one we know (the caller's M bit check decides), `None` when its value has the wrong length.
    fn set(&mut self, a: u16, v: &[u8]) -> Option<bool> {
        match a {
            attr::MESSAGE_TYPE => return None, // only once, first
            attr::RESULT_CODE => {
                let result = u16_of(v.get(..2)?)?;
                let rest = v.get(2..).unwrap_or_default();
                let (error, message) = match rest.len() {
                    0 => (None, String::new()),
                    1 => return None,
                    _ => (
                        u16_of(rest.get(..2)?),
                        String::from_utf8_lossy(rest.get(2..).unwrap_or_default()).into_owned(),
                    ),
                };
                self.result = Some(ResultCode {
                    result,
                    error,
                    message,
                });
            }
            attr::PROTOCOL_VERSION => {
                let [ver, rev] = <[u8; 2]>::try_from(v).ok()?;
                self.protocol_version = Some((ver, rev));
            }
            attr::FRAMING_CAPABILITIES => self.framing_capabilities = Some(u32_of(v)?),
            attr::BEARER_CAPABILITIES => {
                // Windows sends it "present, empty" by some accounts; accept 0 or 4 bytes.
                self.bearer_capabilities = Some(if v.is_empty() { 0 } else { u32_of(v)? });
            }
            attr::TIE_BREAKER => {
                <[u8; 8]>::try_from(v).ok()?;
            }
            attr::FIRMWARE_REVISION => self.firmware_revision = Some(u16_of(v)?),
            attr::HOST_NAME => {
                if v.is_empty() {
                    return None;
                }
                self.host_name = Some(v.to_vec());
            }
            attr::VENDOR_NAME => self.vendor_name = Some(v.to_vec()),
            attr::ASSIGNED_TUNNEL_ID => self.assigned_tunnel = Some(u16_of(v)?),
            attr::RECEIVE_WINDOW_SIZE => self.receive_window = Some(u16_of(v)?),
            attr::CHALLENGE => {
                if v.is_empty() {
                    return None;
                }
                self.challenge = Some(v.to_vec());
            }
            attr::CHALLENGE_RESPONSE => {
                self.challenge_response = Some(<[u8; 16]>::try_from(v).ok()?)
            }
            attr::ASSIGNED_SESSION_ID => self.assigned_session = Some(u16_of(v)?),
            attr::CALL_SERIAL_NUMBER => self.call_serial = Some(u32_of(v)?),
            attr::BEARER_TYPE => self.bearer_type = Some(u32_of(v)?),
            attr::FRAMING_TYPE => self.framing_type = Some(u32_of(v)?),
            attr::CALLED_NUMBER => self.called_number = Some(v.to_vec()),
            attr::CALLING_NUMBER => self.calling_number = Some(v.to_vec()),
            attr::SUB_ADDRESS => self.sub_address = Some(v.to_vec()),
            attr::MINIMUM_BPS => self.minimum_bps = Some(u32_of(v)?),
            attr::MAXIMUM_BPS => self.maximum_bps = Some(u32_of(v)?),
            attr::PHYSICAL_CHANNEL_ID => self.physical_channel_id = Some(u32_of(v)?),
            attr::TX_CONNECT_SPEED => self.tx_connect_speed = Some(u32_of(v)?),
            attr::RX_CONNECT_SPEED => self.rx_connect_speed = Some(u32_of(v)?),
            attr::SEQUENCING_REQUIRED => {
                if !v.is_empty() {
                    return None;
                }
                self.sequencing_required = true;
            }
            attr::Q931_CAUSE => {
                v.get(..3)?;
            }
            attr::CALL_ERRORS => {
                v.get(..26)?;
            }
            attr::ACCM => {
                v.get(..10)?;
            }
            attr::INITIAL_RECEIVED_LCP_CONFREQ
            | attr::LAST_SENT_LCP_CONFREQ
            | attr::LAST_RECEIVED_LCP_CONFREQ
            | attr::PROXY_AUTHEN_TYPE
            | attr::PROXY_AUTHEN_NAME
            | attr::PROXY_AUTHEN_CHALLENGE
            | attr::PROXY_AUTHEN_ID
            | attr::PROXY_AUTHEN_RESPONSE
            | attr::PRIVATE_GROUP_ID => {}
            _ => return Some(false),
        }
        Some(true)
    }
}

/// The AVPs of an OCRQ after its Message Type (§6.9): our session `session`, Call Serial
/// Number `serial`, and the call as given (the caller has reduced the bearer and framing bits
/// to the LAC's capabilities).
pub fn put_ocrq(m: &mut Vec<u8>, session: u16, serial: u32, call: &OutgoingCall) {
    wire::put_avp(m, true, attr::ASSIGNED_SESSION_ID, &session.to_be_bytes());
    wire::put_avp(m, true, attr::CALL_SERIAL_NUMBER, &serial.to_be_bytes());
    for (a, v) in [
        (attr::MINIMUM_BPS, call.minimum_bps),
        (attr::MAXIMUM_BPS, call.maximum_bps),
        (attr::BEARER_TYPE, call.bearer_type),
        (attr::FRAMING_TYPE, call.framing_type),
    ] {
        wire::put_avp(m, true, a, &v.to_be_bytes());
    }
    wire::put_avp(m, true, attr::CALLED_NUMBER, call.called_number.as_bytes());
    if let Some(sub) = &call.sub_address {
        wire::put_avp(m, true, attr::SUB_ADDRESS, sub.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::l2tp::wire::{AVP_H, AVP_M, hide, put_avp, put_avp_raw};

    fn body(build: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut b = Vec::new();
        build(&mut b);
        b
    }

    #[test]
    fn sccrq_like_windows() {
        let b = body(|b| {
            put_avp(b, true, attr::MESSAGE_TYPE, &msg::SCCRQ.to_be_bytes());
            put_avp(b, true, attr::PROTOCOL_VERSION, &[1, 0]);
            put_avp(b, true, attr::FRAMING_CAPABILITIES, &1u32.to_be_bytes());
            put_avp(b, false, attr::BEARER_CAPABILITIES, &[]);
            put_avp(b, false, attr::FIRMWARE_REVISION, &0x0a00u16.to_be_bytes());
            put_avp(b, true, attr::HOST_NAME, b"DESKTOP-1");
            put_avp(b, false, attr::VENDOR_NAME, b"Microsoft");
            put_avp(b, true, attr::ASSIGNED_TUNNEL_ID, &1u16.to_be_bytes());
            put_avp(b, false, attr::RECEIVE_WINDOW_SIZE, &8u16.to_be_bytes());
            // Microsoft correlation ID: vendor 311, attribute 1 collides with Result Code.
            put_avp_raw(b, 0, VENDOR_MICROSOFT, 1, &[0xaa; 16]);
        });
        let m = Message::decode(&b, None).unwrap();
        assert_eq!(m.msg_type, msg::SCCRQ);
        assert_eq!(m.protocol_version, Some((1, 0)));
        assert_eq!(m.framing_capabilities, Some(1));
        assert_eq!(m.bearer_capabilities, Some(0));
        assert_eq!(m.host_name.as_deref(), Some(&b"DESKTOP-1"[..]));
        assert_eq!(m.assigned_tunnel, Some(1));
        assert_eq!(m.receive_window, Some(8));
        assert_eq!(
            m.result, None,
            "vendor 311 attribute 1 is not a Result Code"
        );
        assert_eq!(m.ignored, 1);
        assert_eq!(m.fault, None);
    }

    #[test]
    fn unknown_mandatory_avps_fault() {
        for (flags, vendor, a) in [
            (AVP_M, 0u16, 200u16),
            (AVP_M, 311, 1),
            (AVP_M | 0x0400, 0, attr::HOST_NAME),
        ] {
            let b = body(|b| {
                put_avp(b, true, attr::MESSAGE_TYPE, &msg::HELLO.to_be_bytes());
                put_avp_raw(b, flags, vendor, a, b"x");
            });
            // put_avp_raw masks reserved bits; set them by hand for the third case
            let mut b = b;
            if flags & 0x0400 != 0 {
                b[8] |= 0x04;
            }
            let m = Message::decode(&b, None).unwrap();
            assert_eq!(
                m.fault,
                Some(Fault::UnknownMandatory { vendor, attr: a }),
                "{flags:x} {vendor} {a}"
            );
        }
        // the same without M: ignored
        let b = body(|b| {
            put_avp(b, true, attr::MESSAGE_TYPE, &msg::HELLO.to_be_bytes());
            put_avp_raw(b, 0, 0, 200, b"x");
        });
        let m = Message::decode(&b, None).unwrap();
        assert_eq!((m.fault, m.ignored), (None, 1));
    }

    #[test]
    fn short_call_serial_number_is_a_length_fault() {
        let b = body(|b| {
            put_avp(b, true, attr::MESSAGE_TYPE, &msg::ICRQ.to_be_bytes());
            put_avp(b, true, attr::ASSIGNED_SESSION_ID, &7u16.to_be_bytes());
            put_avp(b, true, attr::CALL_SERIAL_NUMBER, &[0, 1]);
        });
        let m = Message::decode(&b, None).unwrap();
        assert_eq!(m.assigned_session, Some(7));
        assert_eq!(m.call_serial, None);
        assert_eq!(
            m.fault,
            Some(Fault::BadLength {
                attr: attr::CALL_SERIAL_NUMBER
            })
        );
    }

    #[test]
    fn hard_errors() {
        assert_eq!(Message::decode(&[], None), Err(MessageError::NoMessageType));
        let b = body(|b| put_avp(b, true, attr::HOST_NAME, b"x"));
        assert_eq!(Message::decode(&b, None), Err(MessageError::NoMessageType));
        let b = body(|b| put_avp(b, true, attr::MESSAGE_TYPE, &[1]));
        assert_eq!(Message::decode(&b, None), Err(MessageError::NoMessageType));
        let mut b = body(|b| put_avp(b, true, attr::MESSAGE_TYPE, &[0, 1]));
        b.extend_from_slice(&[0x80, 0x20, 0, 0]);
        assert_eq!(
            Message::decode(&b, None),
            Err(MessageError::Avp(AvpError::Truncated))
        );
    }

    #[test]
    fn result_code_forms() {
        for (v, want) in [
            (
                vec![0, 1],
                Some(ResultCode {
                    result: 1,
                    error: None,
                    message: String::new(),
                }),
            ),
            (
                vec![0, 2, 0, 8, b'h', b'i'],
                Some(ResultCode {
                    result: 2,
                    error: Some(8),
                    message: "hi".into(),
                }),
            ),
            (vec![0, 2, 0], None),
            (vec![0], None),
        ] {
            let b = body(|b| {
                put_avp(b, true, attr::MESSAGE_TYPE, &msg::STOPCCN.to_be_bytes());
                put_avp(b, true, attr::RESULT_CODE, &v);
            });
            let m = Message::decode(&b, None).unwrap();
            assert_eq!(m.result, want);
            assert_eq!(m.fault.is_some(), want.is_none());
        }
        assert_eq!(ResultCode::encode(2, Some(8), "x"), vec![0, 2, 0, 8, b'x']);
        assert_eq!(ResultCode::encode(1, None, ""), vec![0, 1]);
    }

    #[test]
    fn hidden_avps() {
        let secret = b"sekrit";
        let rv = [7u8; 16];
        let hidden_session = hide(
            attr::ASSIGNED_SESSION_ID,
            secret,
            &rv,
            &0x4242u16.to_be_bytes(),
        );
        let with_rv = body(|b| {
            put_avp(b, true, attr::MESSAGE_TYPE, &msg::ICRQ.to_be_bytes());
            put_avp(b, true, attr::RANDOM_VECTOR, &rv);
            put_avp_raw(
                b,
                AVP_M | AVP_H,
                0,
                attr::ASSIGNED_SESSION_ID,
                &hidden_session,
            );
        });
        let m = Message::decode(&with_rv, Some(secret)).unwrap();
        assert_eq!((m.assigned_session, m.fault), (Some(0x4242), None));
        // no secret: hidden mandatory AVP is a fault
        let m = Message::decode(&with_rv, None).unwrap();
        assert_eq!(
            m.fault,
            Some(Fault::Hidden {
                attr: attr::ASSIGNED_SESSION_ID
            })
        );
        // no random vector before it: fault
        let without_rv = body(|b| {
            put_avp(b, true, attr::MESSAGE_TYPE, &msg::ICRQ.to_be_bytes());
            put_avp_raw(
                b,
                AVP_M | AVP_H,
                0,
                attr::ASSIGNED_SESSION_ID,
                &hidden_session,
            );
            put_avp(b, true, attr::RANDOM_VECTOR, &rv);
        });
        let m = Message::decode(&without_rv, Some(secret)).unwrap();
        assert_eq!(
            m.fault,
            Some(Fault::Hidden {
                attr: attr::ASSIGNED_SESSION_ID
            })
        );
        // the most recent random vector is the one used
        let rv2 = [9u8; 16];
        let h2 = hide(attr::CALL_SERIAL_NUMBER, secret, &rv2, &5u32.to_be_bytes());
        let two = body(|b| {
            put_avp(b, true, attr::MESSAGE_TYPE, &msg::ICRQ.to_be_bytes());
            put_avp(b, true, attr::RANDOM_VECTOR, &rv);
            put_avp_raw(
                b,
                AVP_M | AVP_H,
                0,
                attr::ASSIGNED_SESSION_ID,
                &hidden_session,
            );
            put_avp(b, true, attr::RANDOM_VECTOR, &rv2);
            put_avp_raw(b, AVP_M | AVP_H, 0, attr::CALL_SERIAL_NUMBER, &h2);
        });
        let m = Message::decode(&two, Some(secret)).unwrap();
        assert_eq!(
            (m.assigned_session, m.call_serial, m.fault),
            (Some(0x4242), Some(5), None)
        );
        // hidden but not mandatory, no secret: ignored
        let opt = body(|b| {
            put_avp(b, true, attr::MESSAGE_TYPE, &msg::ICRQ.to_be_bytes());
            put_avp(b, true, attr::RANDOM_VECTOR, &rv);
            put_avp_raw(b, AVP_H, 0, attr::CALLING_NUMBER, &hidden_session);
        });
        let m = Message::decode(&opt, None).unwrap();
        assert_eq!((m.fault, m.ignored), (None, 1));
    }

    #[test]
    fn ocrq_round_trip() {
        let call = OutgoingCall {
            called_number: "5551234".into(),
            minimum_bps: 9600,
            maximum_bps: 100_000_000,
            bearer_type: 2,
            framing_type: 1,
            sub_address: Some("77".into()),
        };
        let b = body(|b| {
            put_avp(b, true, attr::MESSAGE_TYPE, &msg::OCRQ.to_be_bytes());
            put_ocrq(b, 0x1234, 42, &call);
        });
        let m = Message::decode(&b, None).unwrap();
        assert_eq!(m.msg_type, msg::OCRQ);
        assert_eq!(m.fault, None);
        assert_eq!(m.assigned_session, Some(0x1234));
        assert_eq!(m.call_serial, Some(42));
        assert_eq!(
            (m.minimum_bps, m.maximum_bps),
            (Some(9600), Some(100_000_000))
        );
        assert_eq!((m.bearer_type, m.framing_type), (Some(2), Some(1)));
        assert_eq!(m.called_number.as_deref(), Some(&b"5551234"[..]));
        assert_eq!(m.sub_address.as_deref(), Some(&b"77"[..]));
        // every AVP mandatory (§4.4.5)
        let all_m = wire::avps(&b).all(|a| a.is_ok_and(|a| a.mandatory));
        assert!(all_m);
        // without a Sub-Address, none is sent
        let b = body(|b| put_ocrq(b, 1, 1, &OutgoingCall::default()));
        let n = wire::avps(&b)
            .filter(|a| a.as_ref().is_ok_and(|a| a.attr == attr::SUB_ADDRESS))
            .count();
        assert_eq!(n, 0);
    }

    #[test]
    fn ocrp_and_occn_decode() {
        let b = body(|b| {
            put_avp(b, true, attr::MESSAGE_TYPE, &msg::OCRP.to_be_bytes());
            put_avp(b, true, attr::ASSIGNED_SESSION_ID, &9u16.to_be_bytes());
            put_avp(b, false, attr::PHYSICAL_CHANNEL_ID, &77u32.to_be_bytes());
        });
        let m = Message::decode(&b, None).unwrap();
        assert_eq!(
            (
                m.msg_type,
                m.assigned_session,
                m.physical_channel_id,
                m.fault
            ),
            (msg::OCRP, Some(9), Some(77), None)
        );
        let b = body(|b| {
            put_avp(b, true, attr::MESSAGE_TYPE, &msg::OCCN.to_be_bytes());
            put_avp(b, true, attr::TX_CONNECT_SPEED, &56_000u32.to_be_bytes());
            put_avp(b, true, attr::FRAMING_TYPE, &2u32.to_be_bytes());
            put_avp(b, false, attr::RX_CONNECT_SPEED, &33_600u32.to_be_bytes());
            put_avp(b, true, attr::SEQUENCING_REQUIRED, &[]);
        });
        let m = Message::decode(&b, None).unwrap();
        assert_eq!(m.tx_connect_speed, Some(56_000));
        assert_eq!(m.rx_connect_speed, Some(33_600));
        assert_eq!(m.framing_type, Some(2));
        assert!(m.sequencing_required);
        assert_eq!(m.fault, None);
    }

    #[test]
    fn bps_and_channel_lengths_are_checked() {
        for a in [
            attr::MINIMUM_BPS,
            attr::MAXIMUM_BPS,
            attr::PHYSICAL_CHANNEL_ID,
        ] {
            for v in [&[][..], &[1, 2, 3], &[1, 2, 3, 4, 5]] {
                let b = body(|b| {
                    put_avp(b, true, attr::MESSAGE_TYPE, &msg::OCRQ.to_be_bytes());
                    put_avp(b, true, a, v);
                });
                let m = Message::decode(&b, None).unwrap();
                assert_eq!(m.fault, Some(Fault::BadLength { attr: a }), "{a} {v:?}");
                assert_eq!((m.minimum_bps, m.maximum_bps), (None, None));
            }
        }
        // an empty Sub-Address is a valid (empty) string
        let b = body(|b| {
            put_avp(b, true, attr::MESSAGE_TYPE, &msg::OCRQ.to_be_bytes());
            put_avp(b, true, attr::SUB_ADDRESS, &[]);
        });
        let m = Message::decode(&b, None).unwrap();
        assert_eq!((m.sub_address, m.fault), (Some(Vec::new()), None));
    }
}

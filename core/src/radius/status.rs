//! Status-Server (RFC 5997), sans-IO: build one query and check the answer. The shell sends
//! the bytes and hands back whatever datagram comes (`roadgate::radius::probe`).
//!
//! The query is a Status-Server (code 12) with a random Request Authenticator, a
//! Message-Authenticator (RFC 5997 §3: "all Status-Server packets MUST include a
//! Message-Authenticator attribute") and NAS-Identifier (RFC 5997 §3 allows it). The answer is
//! an Access-Accept from an authentication port or an Accounting-Response from an accounting
//! port (RFC 5997 §3), whose Response Authenticator is computed as for an answer to an
//! Access-Request or Accounting-Request with the query's Request Authenticator (RFC 5997 §3,
//! RFC 2865 §3). Whether the answer carries a valid Message-Authenticator (RFC 3579 §3.2) is
//! reported: a server that does is one `require_message_authenticator = true` works with.

use super::packet::{AuthError, EncodeError, Packet, attr, code, verify_response_signed};

/// One Status-Server query: its bytes and what an answer must match.
#[derive(Debug, Clone)]
pub struct StatusQuery {
    identifier: u8,
    authenticator: [u8; 16],
    bytes: Vec<u8>,
}

/// A valid answer to a [`StatusQuery`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusAnswer {
    /// Access-Accept (authentication port) or Accounting-Response (accounting port).
    pub code: u8,
    /// The answer carried a valid Message-Authenticator (RFC 3579 §3.2).
    pub signed: bool,
}

/// Why a datagram is not a valid answer to a [`StatusQuery`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    /// Too short, or another Identifier: not an answer to this query (keep waiting).
    #[error("not an answer to this Status-Server")]
    NotOurs,
    /// An answer whose code is neither Access-Accept nor Accounting-Response.
    #[error("answered with code {0}, not Access-Accept or Accounting-Response")]
    Code(u8),
    /// The Response Authenticator or the Message-Authenticator does not check: the shared
    /// secret differs (or the answer is forged).
    #[error("the answer fails the authenticator checks ({0})")]
    Authenticator(AuthError),
}

impl StatusQuery {
    /// A query with `identifier` and the random `authenticator` (RFC 5997 §3: unpredictable,
    /// unique over the secret's lifetime), signed with `secret`.
    pub fn new(
        identifier: u8,
        authenticator: [u8; 16],
        secret: &[u8],
        nas_identifier: Option<&str>,
    ) -> Result<Self, EncodeError> {
        let mut p = Packet::new(code::STATUS_SERVER, identifier);
        p.authenticator = authenticator;
        if let Some(n) = nas_identifier.filter(|n| !n.is_empty()) {
            p.add_str(attr::NAS_IDENTIFIER, n);
        }
        p.add_message_authenticator();
        let bytes = p.encode_request(secret)?;
        Ok(StatusQuery {
            identifier,
            authenticator,
            bytes,
        })
    }

    /// The datagram to send.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Checks a datagram that came from the server (the caller checks the source address).
    pub fn check(&self, bytes: &[u8], secret: &[u8]) -> Result<StatusAnswer, StatusError> {
        if bytes.get(1) != Some(&self.identifier) {
            return Err(StatusError::NotOurs);
        }
        let response_code = bytes.first().copied().unwrap_or(0);
        let (_, signed) = verify_response_signed(bytes, &self.authenticator, secret)
            .map_err(StatusError::Authenticator)?;
        if !matches!(
            response_code,
            code::ACCESS_ACCEPT | code::ACCOUNTING_RESPONSE
        ) {
            return Err(StatusError::Code(response_code));
        }
        Ok(StatusAnswer {
            code: response_code,
            signed,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 5997 §6.1: the minimal query to an authentication port and its answer, secret
    /// "xyzzy5461".
    #[test]
    fn rfc5997_example_6_1() {
        let request = unhex(
            "0c da 00 26 8a 54 f4 68 6f b3 94 c5 28 66 e3 02
             18 5d 06 23 50 12 5a 66 5e 2e 1e 84 11 f3 e2 43
             82 20 97 c8 4f a3",
        );
        let auth: [u8; 16] = request[4..20].try_into().unwrap();
        let q = StatusQuery::new(218, auth, b"xyzzy5461", None).unwrap();
        assert_eq!(q.bytes(), &request[..]);
        let answer = unhex("02 da 00 14 ef 0d 55 2a 4b f2 d6 93 ec 2b 6f e8 b5 41 1d 66");
        assert_eq!(
            q.check(&answer, b"xyzzy5461"),
            Ok(StatusAnswer {
                code: code::ACCESS_ACCEPT,
                signed: false
            })
        );
        assert_eq!(
            q.check(&answer, b"wrong"),
            Err(StatusError::Authenticator(AuthError::Authenticator))
        );
        let mut other = answer.clone();
        other[1] = 1;
        assert_eq!(q.check(&other, b"xyzzy5461"), Err(StatusError::NotOurs));
        assert_eq!(q.check(&[], b"xyzzy5461"), Err(StatusError::NotOurs));
    }

    #[test]
    fn signed_and_unexpected_answers() {
        let q = StatusQuery::new(7, [3; 16], b"s3cret", Some("rg")).unwrap();
        let sent = Packet::decode(q.bytes()).unwrap();
        assert_eq!(sent.code, code::STATUS_SERVER);
        assert_eq!(sent.authenticator, [3; 16]);
        assert_eq!(sent.get_str(attr::NAS_IDENTIFIER).as_deref(), Some("rg"));
        assert!(sent.get(attr::MESSAGE_AUTHENTICATOR).is_some());

        let mut ok = Packet::new(code::ACCOUNTING_RESPONSE, 7);
        ok.add_message_authenticator();
        let bytes = ok.encode_response(&[3; 16], b"s3cret").unwrap();
        assert_eq!(
            q.check(&bytes, b"s3cret"),
            Ok(StatusAnswer {
                code: code::ACCOUNTING_RESPONSE,
                signed: true
            })
        );
        // A Message-Authenticator made with another secret while the Response Authenticator
        // checks: refused.
        let mut tampered = bytes.clone();
        let n = tampered.len();
        tampered[n - 1] ^= 1;
        assert!(q.check(&tampered, b"s3cret").is_err());

        let reject = Packet::new(code::ACCESS_REJECT, 7)
            .encode_response(&[3; 16], b"s3cret")
            .unwrap();
        assert_eq!(
            q.check(&reject, b"s3cret"),
            Err(StatusError::Code(code::ACCESS_REJECT))
        );
    }
}

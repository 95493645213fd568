//! Authentication requests the link hands to its owner, the owner's verdicts, and local
//! verification helpers any backend can use (stored NT hash or clear-text password).

use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::chap::verify_chap_md5;
pub use crate::mppe::MsChapV2Keys as MppeKeys;
use crate::mschapv2;
pub use crate::mschapv2::nt_password_hash as nt_hash;

/// An authentication protocol the link can negotiate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthProtocol {
    /// PAP (RFC 1334).
    Pap,
    /// CHAP with MD5 (RFC 1994).
    ChapMd5,
    /// MS-CHAPv2 (RFC 2759).
    MsChapV2,
    /// EAP (RFC 3748), relayed to the owner.
    Eap,
}

impl AuthProtocol {
    /// The data of the LCP Authentication-Protocol option (RFC 1661 §6.2, RFC 1994 §3,
    /// RFC 2759 §2, RFC 3748 §3).
    pub fn lcp_option_data(self) -> &'static [u8] {
        match self {
            AuthProtocol::Pap => &[0xC0, 0x23],
            AuthProtocol::ChapMd5 => &[0xC2, 0x23, 0x05],
            AuthProtocol::MsChapV2 => &[0xC2, 0x23, 0x81],
            AuthProtocol::Eap => &[0xC2, 0x27],
        }
    }

    /// Parses the data of an Authentication-Protocol option.
    pub fn from_lcp_option(data: &[u8]) -> Option<Self> {
        match data {
            [0xC0, 0x23] => Some(AuthProtocol::Pap),
            [0xC2, 0x23, 0x05] => Some(AuthProtocol::ChapMd5),
            [0xC2, 0x23, 0x81] => Some(AuthProtocol::MsChapV2),
            [0xC2, 0x27] => Some(AuthProtocol::Eap),
            _ => None,
        }
    }
}

/// One authentication attempt for the owner to decide (answer with
/// [`Ppp::auth_decision`](crate::Ppp::auth_decision) and the same `id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRequest {
    /// Identifies this request; decisions for other ids are ignored.
    pub id: u64,
    /// The user name as sent (for MS-CHAPv2 including any `DOMAIN\`; for EAP the identity).
    pub user: String,
    /// What the peer proved.
    pub credentials: Credentials,
}

/// The peer's proof of identity. `Debug` never prints secrets or responses.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// PAP clear-text password.
    Pap {
        /// The password.
        password: Zeroizing<Vec<u8>>,
    },
    /// CHAP-MD5 response to our challenge.
    ChapMd5 {
        /// CHAP Identifier (part of the hash).
        ident: u8,
        /// Our challenge.
        challenge: Vec<u8>,
        /// The peer's 16-octet response.
        response: [u8; 16],
    },
    /// MS-CHAPv2 response to our challenge.
    MsChapV2 {
        /// Our 16-octet challenge.
        authenticator_challenge: [u8; 16],
        /// The peer's 16-octet challenge.
        peer_challenge: [u8; 16],
        /// The peer's 24-octet NT-Response.
        nt_response: [u8; 24],
    },
    /// An EAP Response packet (whole, from Code to the end) to relay to an EAP server.
    Eap {
        /// The packet.
        packet: Vec<u8>,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Pap { .. } => f.write_str("Pap { .. }"),
            Credentials::ChapMd5 { ident, .. } => write!(f, "ChapMd5 {{ ident: {ident}, .. }}"),
            Credentials::MsChapV2 { .. } => f.write_str("MsChapV2 { .. }"),
            Credentials::Eap { packet } => write!(f, "Eap {{ {} octets }}", packet.len()),
        }
    }
}

impl Credentials {
    /// The protocol these credentials came from.
    pub fn protocol(&self) -> AuthProtocol {
        match self {
            Credentials::Pap { .. } => AuthProtocol::Pap,
            Credentials::ChapMd5 { .. } => AuthProtocol::ChapMd5,
            Credentials::MsChapV2 { .. } => AuthProtocol::MsChapV2,
            Credentials::Eap { .. } => AuthProtocol::Eap,
        }
    }
}

/// The owner's answer to an [`AuthRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Let the peer in.
    Accept(Accept),
    /// Refuse; `message` goes to the peer (PAP/CHAP message, MS-CHAPv2 `M=`).
    Reject {
        /// Human-readable reason.
        message: String,
    },
    /// EAP relay: send this EAP packet (a Request) to the peer and wait for its response.
    EapContinue {
        /// The whole EAP packet.
        packet: Vec<u8>,
    },
}

impl Verdict {
    /// A rejection with `message`.
    pub fn reject(message: &str) -> Self {
        Verdict::Reject {
            message: message.to_owned(),
        }
    }
}

/// What comes with an acceptance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accept {
    /// MS-CHAPv2: the 20-octet authenticator response the Success packet carries as `S=`.
    /// Required for MS-CHAPv2 (an acceptance without it is turned into a failure).
    pub mschapv2_authenticator_response: Option<[u8; 20]>,
    /// MPPE start keys, when the backend produced them.
    pub mppe: Option<MppeKeys>,
}

const BAD_CREDENTIALS: &str = "authentication failed";

/// Verifies MS-CHAPv2 (with any `DOMAIN\` prefix stripped for the challenge hash, as RFC 2759
/// §8.2 wants) and PAP (NT hash of the given password, constant-time compare) against the
/// user's stored NT hash. CHAP-MD5 and EAP cannot be checked against an NT hash and are
/// rejected.
pub fn verify_with_nt_hash(req: &AuthRequest, nt_hash: &[u8; 16]) -> Verdict {
    match &req.credentials {
        Credentials::MsChapV2 {
            authenticator_challenge,
            peer_challenge,
            nt_response,
        } => mschapv2_verdict(
            req,
            nt_hash,
            authenticator_challenge,
            peer_challenge,
            nt_response,
        ),
        Credentials::Pap { password } => {
            let Ok(text) = std::str::from_utf8(password) else {
                return Verdict::reject(BAD_CREDENTIALS);
            };
            let candidate = Zeroizing::new(mschapv2::nt_password_hash(text));
            if bool::from(candidate.ct_eq(nt_hash)) {
                Verdict::Accept(Accept::default())
            } else {
                Verdict::reject(BAD_CREDENTIALS)
            }
        }
        Credentials::ChapMd5 { .. } => Verdict::reject("CHAP-MD5 needs the clear-text password"),
        Credentials::Eap { .. } => Verdict::reject("EAP needs an EAP server"),
    }
}

/// Verifies PAP, CHAP-MD5 and MS-CHAPv2 against a clear-text password (constant-time
/// comparisons). EAP is rejected.
pub fn verify_with_password(req: &AuthRequest, password: &[u8]) -> Verdict {
    match &req.credentials {
        Credentials::Pap { password: given } => {
            if bool::from(given.as_slice().ct_eq(password)) {
                Verdict::Accept(Accept::default())
            } else {
                Verdict::reject(BAD_CREDENTIALS)
            }
        }
        Credentials::ChapMd5 {
            ident,
            challenge,
            response,
        } => {
            if verify_chap_md5(*ident, password, challenge, response) {
                Verdict::Accept(Accept::default())
            } else {
                Verdict::reject(BAD_CREDENTIALS)
            }
        }
        Credentials::MsChapV2 { .. } => match std::str::from_utf8(password) {
            Ok(text) => {
                let hash = Zeroizing::new(mschapv2::nt_password_hash(text));
                verify_with_nt_hash(req, &hash)
            }
            Err(_) => Verdict::reject(BAD_CREDENTIALS),
        },
        Credentials::Eap { .. } => Verdict::reject("EAP needs an EAP server"),
    }
}

fn mschapv2_verdict(
    req: &AuthRequest,
    nt_hash: &[u8; 16],
    authenticator_challenge: &[u8; 16],
    peer_challenge: &[u8; 16],
    nt_response: &[u8; 24],
) -> Verdict {
    if !mschapv2::verify_nt_response(
        authenticator_challenge,
        peer_challenge,
        &req.user,
        nt_hash,
        nt_response,
    ) {
        return Verdict::reject(BAD_CREDENTIALS);
    }
    Verdict::Accept(Accept {
        mschapv2_authenticator_response: Some(mschapv2::authenticator_response_bytes(
            nt_hash,
            nt_response,
            peer_challenge,
            authenticator_challenge,
            &req.user,
        )),
        mppe: Some(MppeKeys::server(nt_hash, nt_response)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mschapv2::tests::{AUTH_CHALLENGE, NT_RESPONSE, PASSWORD_HASH, PEER_CHALLENGE, a};

    fn rfc2759(user: &str) -> AuthRequest {
        AuthRequest {
            id: 1,
            user: user.into(),
            credentials: Credentials::MsChapV2 {
                authenticator_challenge: a(AUTH_CHALLENGE),
                peer_challenge: a(PEER_CHALLENGE),
                nt_response: a(NT_RESPONSE),
            },
        }
    }

    #[test]
    fn rfc2759_vector_through_auth_request() {
        for user in ["User", "DOMAIN\\User"] {
            let req = rfc2759(user);
            let Verdict::Accept(acc) = verify_with_nt_hash(&req, &a(PASSWORD_HASH)) else {
                panic!("rejected")
            };
            let s = acc.mschapv2_authenticator_response.unwrap();
            assert_eq!(
                mschapv2::authenticator_response_text(&s),
                "S=407A5589115FD0D6209F510FE9C04566932CDA56"
            );
            assert!(acc.mppe.is_some());
            assert!(matches!(
                verify_with_password(&req, b"clientPass"),
                Verdict::Accept(_)
            ));
            assert!(matches!(
                verify_with_password(&req, b"clientPasS"),
                Verdict::Reject { .. }
            ));
        }
        assert!(matches!(
            verify_with_nt_hash(&rfc2759("user"), &a(PASSWORD_HASH)),
            Verdict::Reject { .. }
        ));
    }

    #[test]
    fn rfc1994_chap_md5_through_auth_request() {
        // The CHAP-MD5 vector also used by chap.rs: ident 0x2a, "secret", challenge 0..16.
        let req = AuthRequest {
            id: 2,
            user: "bob".into(),
            credentials: Credentials::ChapMd5 {
                ident: 0x2a,
                challenge: (0..16).collect(),
                response: a("03dc98c5a832692b49df73cf48fcb4e9"),
            },
        };
        assert_eq!(
            verify_with_password(&req, b"secret"),
            Verdict::Accept(Accept::default())
        );
        assert!(matches!(
            verify_with_password(&req, b"secreT"),
            Verdict::Reject { .. }
        ));
        assert_eq!(
            verify_with_nt_hash(&req, &nt_hash("secret")),
            Verdict::reject("CHAP-MD5 needs the clear-text password")
        );
    }

    #[test]
    fn pap_both_ways_and_debug_hides_secrets() {
        let req = AuthRequest {
            id: 3,
            user: "alice".into(),
            credentials: Credentials::Pap {
                password: Zeroizing::new(b"hunter2".to_vec()),
            },
        };
        assert!(matches!(
            verify_with_password(&req, b"hunter2"),
            Verdict::Accept(_)
        ));
        assert!(matches!(
            verify_with_password(&req, b"hunter"),
            Verdict::Reject { .. }
        ));
        assert!(matches!(
            verify_with_nt_hash(&req, &nt_hash("hunter2")),
            Verdict::Accept(_)
        ));
        assert!(matches!(
            verify_with_nt_hash(&req, &nt_hash("hunter3")),
            Verdict::Reject { .. }
        ));
        let shown = format!("{req:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("104, 117"),
            "{shown}"
        );
        let shown = format!("{:?}", rfc2759("User"));
        assert!(!shown.contains("130"), "{shown}");
    }

    #[test]
    fn auth_option_round_trip() {
        for p in [
            AuthProtocol::Pap,
            AuthProtocol::ChapMd5,
            AuthProtocol::MsChapV2,
            AuthProtocol::Eap,
        ] {
            assert_eq!(AuthProtocol::from_lcp_option(p.lcp_option_data()), Some(p));
        }
        assert_eq!(AuthProtocol::from_lcp_option(&[0xC2, 0x23, 0x80]), None);
        assert_eq!(AuthProtocol::from_lcp_option(&[]), None);
    }
}

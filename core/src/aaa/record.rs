//! The data that crosses between the session layer, the authentication backends and
//! accounting: what a backend may say about a user beyond accept/reject ([`Authorization`]),
//! what a backend is told about the connection ([`AuthContext`]), and one accounting record
//! ([`AcctRecord`]). Plain data; the RADIUS codec maps it to attributes.

use std::net::Ipv4Addr;

/// What is known of the connection when a user authenticates (RADIUS sends it as
/// NAS-Port, Calling-Station-Id and friends, RFC 2865 §5 and RFC 2868).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthContext {
    /// The session's number on this server (NAS-Port).
    pub nas_port: u32,
    /// The client's public address, as `a.b.c.d` or an IPv6 text (Calling-Station-Id and
    /// Tunnel-Client-Endpoint).
    pub calling_station: String,
    /// The server address the client connected to (Called-Station-Id).
    pub called_station: String,
    /// The accounting session id the session will have (Acct-Session-Id).
    pub acct_session_id: String,
}

/// What a backend (RADIUS Access-Accept) says about an accepted user beyond the verdict. Every
/// field is optional; the server's configuration fills the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Authorization {
    /// Framed-IP-Address: the address to give.
    pub framed_ip: Option<Ipv4Addr>,
    /// Framed-Pool: the name of the pool to take the address from.
    pub framed_pool: Option<String>,
    /// Session-Timeout, seconds.
    pub session_timeout: Option<u32>,
    /// Idle-Timeout, seconds.
    pub idle_timeout: Option<u32>,
    /// Class attributes, echoed in every accounting record of the session (RFC 2865 §5.25).
    pub class: Vec<Vec<u8>>,
    /// Acct-Interim-Interval, seconds.
    pub interim_interval: Option<u32>,
    /// MS-Primary-DNS-Server and MS-Secondary-DNS-Server (RFC 2548).
    pub dns: Vec<Ipv4Addr>,
    /// MS-Primary-NBNS-Server and MS-Secondary-NBNS-Server (RFC 2548).
    pub nbns: Vec<Ipv4Addr>,
    /// Reply-Message texts (logged).
    pub reply_message: Vec<String>,
}

/// Acct-Status-Type (RFC 2866 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AcctStatus {
    Start,
    Stop,
    InterimUpdate,
    AccountingOn,
    AccountingOff,
}

impl AcctStatus {
    /// The attribute's value.
    pub fn code(self) -> u32 {
        match self {
            AcctStatus::Start => 1,
            AcctStatus::Stop => 2,
            AcctStatus::InterimUpdate => 3,
            AcctStatus::AccountingOn => 7,
            AcctStatus::AccountingOff => 8,
        }
    }

    /// The status of a code, if it is one of these.
    pub fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            1 => AcctStatus::Start,
            2 => AcctStatus::Stop,
            3 => AcctStatus::InterimUpdate,
            7 => AcctStatus::AccountingOn,
            8 => AcctStatus::AccountingOff,
            _ => return None,
        })
    }

    /// The name FreeRADIUS's dictionary uses.
    pub fn name(self) -> &'static str {
        match self {
            AcctStatus::Start => "Start",
            AcctStatus::Stop => "Stop",
            AcctStatus::InterimUpdate => "Interim-Update",
            AcctStatus::AccountingOn => "Accounting-On",
            AcctStatus::AccountingOff => "Accounting-Off",
        }
    }
}

/// Acct-Terminate-Cause (RFC 2866 §5.10): why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TerminateCause {
    /// The user ended it (LCP Terminate, CDN or StopCCN from the client, IPsec Delete).
    UserRequest,
    /// The client vanished (DPD, L2TP HELLO or LCP echo unanswered).
    LostCarrier,
    /// The service went away: a session found open after a crash.
    LostService,
    IdleTimeout,
    SessionTimeout,
    /// `roadgate disconnect`, the web UI, or a RADIUS Disconnect-Request.
    AdminReset,
    /// The server is shutting down.
    AdminReboot,
    /// Failed inside the server.
    NasError,
    /// The server ended it for another reason (e.g. a reload).
    NasRequest,
    /// The server restarted without a clean shutdown.
    NasReboot,
}

impl TerminateCause {
    /// The attribute's value.
    pub fn code(self) -> u32 {
        match self {
            TerminateCause::UserRequest => 1,
            TerminateCause::LostCarrier => 2,
            TerminateCause::LostService => 3,
            TerminateCause::IdleTimeout => 4,
            TerminateCause::SessionTimeout => 5,
            TerminateCause::AdminReset => 6,
            TerminateCause::AdminReboot => 7,
            TerminateCause::NasError => 9,
            TerminateCause::NasRequest => 10,
            TerminateCause::NasReboot => 11,
        }
    }

    /// The cause of a code, if it is one of these.
    pub fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            1 => TerminateCause::UserRequest,
            2 => TerminateCause::LostCarrier,
            3 => TerminateCause::LostService,
            4 => TerminateCause::IdleTimeout,
            5 => TerminateCause::SessionTimeout,
            6 => TerminateCause::AdminReset,
            7 => TerminateCause::AdminReboot,
            9 => TerminateCause::NasError,
            10 => TerminateCause::NasRequest,
            11 => TerminateCause::NasReboot,
            _ => return None,
        })
    }

    /// The name FreeRADIUS's dictionary uses.
    pub fn name(self) -> &'static str {
        match self {
            TerminateCause::UserRequest => "User-Request",
            TerminateCause::LostCarrier => "Lost-Carrier",
            TerminateCause::LostService => "Lost-Service",
            TerminateCause::IdleTimeout => "Idle-Timeout",
            TerminateCause::SessionTimeout => "Session-Timeout",
            TerminateCause::AdminReset => "Admin-Reset",
            TerminateCause::AdminReboot => "Admin-Reboot",
            TerminateCause::NasError => "NAS-Error",
            TerminateCause::NasRequest => "NAS-Request",
            TerminateCause::NasReboot => "NAS-Reboot",
        }
    }
}

/// One accounting record: a session's Start, Interim-Update or Stop, or the server's
/// Accounting-On/Off (then only `status`, `event_time` and `session_id` mean anything).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AcctRecord {
    pub status: Option<AcctStatus>,
    /// Acct-Session-Id: unique per session on this server, across restarts.
    pub session_id: String,
    /// User-Name as authenticated.
    pub user: String,
    /// NAS-Port.
    pub nas_port: u32,
    /// Framed-IP-Address.
    pub framed_ip: Option<Ipv4Addr>,
    /// Calling-Station-Id (the client's public address).
    pub calling_station: String,
    /// Called-Station-Id (the server address it connected to).
    pub called_station: String,
    /// Class attributes from the Access-Accept, echoed.
    pub class: Vec<Vec<u8>>,
    /// Acct-Session-Time, seconds.
    pub session_time_s: u32,
    /// Octets and packets from the client (Acct-Input-*; the Gigawords come from the high bits).
    pub input_octets: u64,
    pub input_packets: u64,
    /// Octets and packets to the client (Acct-Output-*).
    pub output_octets: u64,
    pub output_packets: u64,
    /// Stop only.
    pub terminate_cause: Option<TerminateCause>,
    /// When the event happened, seconds since the Unix epoch (Event-Timestamp; the sender
    /// derives Acct-Delay-Time from it).
    pub event_time: u64,
}

//! Identification payload (RFC 2408 §3.8, IPsec DOI layout RFC 2407 §4.6.2), also the layout
//! of NAT-OA (RFC 3947 §5.2, where protocol and port are reserved bytes).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::reader::Reader;
use super::{DecodeError, id_type};

pub(crate) const ID_TYPE: &str = "identification type";

/// An ID payload (or NAT-OA payload) body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdPayload<'a> {
    pub id_type: u8,
    /// IP protocol (0 = any); a reserved byte in NAT-OA.
    pub protocol: u8,
    /// Port (0 = any); reserved bytes in NAT-OA.
    pub port: u16,
    /// Identification data (after the 4-byte type/protocol/port).
    pub data: &'a [u8],
    /// The whole payload body after the generic header (RFC 2409's `IDii_b` / `IDir_b`).
    pub body: &'a [u8],
}

/// A typed identity (RFC 2407 §4.6.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity<'a> {
    Ipv4(Ipv4Addr),
    Ipv6(Ipv6Addr),
    Fqdn(&'a [u8]),
    UserFqdn(&'a [u8]),
    DerAsn1Dn(&'a [u8]),
    DerAsn1Gn(&'a [u8]),
    KeyId(&'a [u8]),
    /// Address and mask.
    Ipv4Subnet(Ipv4Addr, Ipv4Addr),
    /// First and last address.
    Ipv4Range(Ipv4Addr, Ipv4Addr),
    /// Address and mask.
    Ipv6Subnet(Ipv6Addr, Ipv6Addr),
    /// First and last address.
    Ipv6Range(Ipv6Addr, Ipv6Addr),
}

impl<'a> IdPayload<'a> {
    /// Decodes an ID (or NAT-OA) payload body. Needs at least the 4 fixed bytes; the data is
    /// not interpreted here (see [`IdPayload::identity`]).
    pub fn parse(body: &'a [u8]) -> Result<IdPayload<'a>, DecodeError> {
        let mut r = Reader::new(body);
        let id_type = r.u8("identification payload")?;
        let protocol = r.u8("identification payload")?;
        let port = r.u16("identification payload")?;
        Ok(IdPayload {
            id_type,
            protocol,
            port,
            data: r.rest(),
            body,
        })
    }

    /// Interprets the data according to the ID type. Addresses must have exactly their size;
    /// an unknown type gives [`DecodeError::BadValue`].
    pub fn identity(&self) -> Result<Identity<'a>, DecodeError> {
        let d = self.data;
        Ok(match self.id_type {
            id_type::IPV4_ADDR => Identity::Ipv4(v4(d, "ID_IPV4_ADDR")?),
            id_type::IPV6_ADDR => Identity::Ipv6(v6(d, "ID_IPV6_ADDR")?),
            id_type::FQDN => Identity::Fqdn(d),
            id_type::USER_FQDN => Identity::UserFqdn(d),
            id_type::DER_ASN1_DN => Identity::DerAsn1Dn(d),
            id_type::DER_ASN1_GN => Identity::DerAsn1Gn(d),
            id_type::KEY_ID => Identity::KeyId(d),
            id_type::IPV4_ADDR_SUBNET => {
                let (a, b) = v4_pair(d, "ID_IPV4_ADDR_SUBNET")?;
                Identity::Ipv4Subnet(a, b)
            }
            id_type::IPV4_ADDR_RANGE => {
                let (a, b) = v4_pair(d, "ID_IPV4_ADDR_RANGE")?;
                Identity::Ipv4Range(a, b)
            }
            id_type::IPV6_ADDR_SUBNET => {
                let (a, b) = v6_pair(d, "ID_IPV6_ADDR_SUBNET")?;
                Identity::Ipv6Subnet(a, b)
            }
            id_type::IPV6_ADDR_RANGE => {
                let (a, b) = v6_pair(d, "ID_IPV6_ADDR_RANGE")?;
                Identity::Ipv6Range(a, b)
            }
            other => {
                return Err(DecodeError::BadValue {
                    what: ID_TYPE,
                    value: u32::from(other),
                });
            }
        })
    }
}

fn exact<const N: usize>(d: &[u8], what: &'static str) -> Result<[u8; N], DecodeError> {
    <[u8; N]>::try_from(d).map_err(|_| DecodeError::BadLength { what, len: d.len() })
}

fn v4(d: &[u8], what: &'static str) -> Result<Ipv4Addr, DecodeError> {
    Ok(Ipv4Addr::from(exact::<4>(d, what)?))
}

fn v6(d: &[u8], what: &'static str) -> Result<Ipv6Addr, DecodeError> {
    Ok(Ipv6Addr::from(exact::<16>(d, what)?))
}

fn v4_pair(d: &[u8], what: &'static str) -> Result<(Ipv4Addr, Ipv4Addr), DecodeError> {
    let b = exact::<8>(d, what)?;
    let (x, y) = b.split_at(4);
    Ok((v4(x, what)?, v4(y, what)?))
}

fn v6_pair(d: &[u8], what: &'static str) -> Result<(Ipv6Addr, Ipv6Addr), DecodeError> {
    let b = exact::<32>(d, what)?;
    let (x, y) = b.split_at(16);
    Ok((v6(x, what)?, v6(y, what)?))
}

/// Up to this many bytes of a binary identity are shown in hex; longer ones by their length.
const HEX_SHOWN: usize = 32;

fn text(f: &mut fmt::Formatter<'_>, b: &[u8]) -> fmt::Result {
    // Lossy UTF-8, with control characters escaped so that a peer cannot forge log lines.
    for c in String::from_utf8_lossy(b).chars() {
        if c.is_control() {
            write!(f, "{}", c.escape_default())?;
        } else {
            write!(f, "{c}")?;
        }
    }
    Ok(())
}

fn binary(f: &mut fmt::Formatter<'_>, label: &str, b: &[u8]) -> fmt::Result {
    if b.len() <= HEX_SHOWN {
        write!(f, "{label}:{}", hex::encode(b))
    } else {
        write!(f, "{label}({} bytes)", b.len())
    }
}

fn v4_prefix(mask: Ipv4Addr) -> Option<u32> {
    let m = u32::from(mask);
    (m.leading_ones() + m.trailing_zeros() == 32).then(|| m.leading_ones())
}

fn v6_prefix(mask: Ipv6Addr) -> Option<u32> {
    let m = u128::from(mask);
    (m.leading_ones() + m.trailing_zeros() == 128).then(|| m.leading_ones())
}

impl fmt::Display for Identity<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Identity::Ipv4(a) => write!(f, "{a}"),
            Identity::Ipv6(a) => write!(f, "{a}"),
            Identity::Fqdn(b) => text(f, b),
            Identity::UserFqdn(b) => text(f, b),
            Identity::DerAsn1Dn(b) => binary(f, "DN", b),
            Identity::DerAsn1Gn(b) => binary(f, "GN", b),
            Identity::KeyId(b) => binary(f, "KEYID", b),
            Identity::Ipv4Subnet(a, m) => match v4_prefix(m) {
                Some(p) => write!(f, "{a}/{p}"),
                None => write!(f, "{a}/{m}"),
            },
            Identity::Ipv6Subnet(a, m) => match v6_prefix(m) {
                Some(p) => write!(f, "{a}/{p}"),
                None => write!(f, "{a}/{m}"),
            },
            Identity::Ipv4Range(a, b) => write!(f, "{a}-{b}"),
            Identity::Ipv6Range(a, b) => write!(f, "{a}-{b}"),
        }
    }
}

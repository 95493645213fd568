//! The TUN device: the server's PPP address on it, the pool routed to it.

use std::io;
use std::net::Ipv4Addr;
use std::process::Command;

use tokio_tun::Tun;
use tracing::{info, warn};

use crate::dataplane;

/// Opens (creates) the TUN device with `queues` queues (IFF_MULTI_QUEUE when more than one:
/// one per data-plane worker), brings it up with the server's address and MTU, and routes the
/// pool's prefixes to it. Needs CAP_NET_ADMIN.
pub fn open(cfg: &dataplane::Config, queues: usize) -> io::Result<Vec<Tun>> {
    let tuns = Tun::builder()
        .name(&cfg.tun_name)
        .queues(queues.max(1))
        .mtu(i32::from(cfg.mtu))
        .address(cfg.local_address)
        .netmask(Ipv4Addr::BROADCAST)
        .up()
        .build()
        .map_err(|e| {
            io::Error::other(format!(
                "cannot create the TUN device {:?} (needs CAP_NET_ADMIN and /dev/net/tun): {e}",
                cfg.tun_name
            ))
        })?;
    let name = tuns
        .first()
        .ok_or_else(|| io::Error::other("no TUN queue was created"))?
        .name()
        .to_string();
    for (addr, len) in &cfg.routes {
        route(&name, *addr, *len)?;
    }
    info!(
        device = %name,
        address = %cfg.local_address,
        mtu = cfg.mtu,
        routes = cfg.routes.len(),
        queues = tuns.len(),
        "TUN device up, address pool routed to it"
    );
    Ok(tuns)
}

/// `ip route replace PREFIX dev NAME` (iproute2 is on every Linux server; the kernel's netlink
/// API would need a crate for one call at start).
fn route(dev: &str, addr: Ipv4Addr, len: u8) -> io::Result<()> {
    ip_route("replace", dev, addr, len)
}

/// `ip route ACTION PREFIX dev NAME`.
pub fn ip_route(action: &str, dev: &str, addr: Ipv4Addr, len: u8) -> io::Result<()> {
    let prefix = format!("{addr}/{len}");
    let out = Command::new("ip")
        .args(["route", action, &prefix, "dev", dev])
        .output()
        .map_err(|e| io::Error::other(format!("cannot run `ip route` (iproute2): {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    warn!(%prefix, device = dev, action, error = %err.trim(), "cannot change a route of the TUN device");
    Err(io::Error::other(format!(
        "ip route {action} {prefix} dev {dev}: {}",
        err.trim()
    )))
}

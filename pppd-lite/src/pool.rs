//! IPv4 address pool for IPCP.
//!
//! A pool is built from inclusive ranges, minus excluded addresses (the server's own PPP
//! address, gateways), plus per-user static addresses. A static address is reserved: it is never
//! handed to anyone but its user, and that user always gets it (a static address may lie inside
//! or outside the ranges). Dynamic allocation takes a free address from a free list in O(1);
//! a requested address (IPCP IP-Address option) is honoured in O(log ranges) when it is free and
//! allowed for that user. A released dynamic address goes back on top of the free list and is
//! the next one handed out.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

/// Most dynamic addresses one pool may hold (a /12); keeps the bookkeeping bounded.
pub const MAX_ADDRESSES: u32 = 1 << 20;

/// Errors from building a pool or allocating from it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// No free address is left for a dynamic user.
    #[error("address pool exhausted")]
    Exhausted,
    /// The user's static address is already held (for example by another session).
    #[error("static address {0} is already in use")]
    StaticInUse(Ipv4Addr),
    /// A range whose start is above its end.
    #[error("invalid range {0}-{1}")]
    InvalidRange(Ipv4Addr, Ipv4Addr),
    /// Two ranges share an address.
    #[error("ranges overlap at {0}")]
    Overlap(Ipv4Addr),
    /// The ranges hold more than [`MAX_ADDRESSES`] addresses.
    #[error("pool larger than {MAX_ADDRESSES} addresses")]
    TooLarge,
    /// The same address is given to two users, or is both static and excluded.
    #[error("static address {0} conflicts with another static or excluded address")]
    StaticConflict(Ipv4Addr),
}

/// Builder for [`AddressPool`].
#[derive(Debug, Default, Clone)]
pub struct PoolBuilder {
    ranges: Vec<(Ipv4Addr, Ipv4Addr)>,
    excluded: Vec<Ipv4Addr>,
    statics: Vec<(String, Ipv4Addr)>,
}

impl PoolBuilder {
    /// Adds the inclusive range `start..=end` of dynamic addresses.
    pub fn range(mut self, start: Ipv4Addr, end: Ipv4Addr) -> Self {
        self.ranges.push((start, end));
        self
    }

    /// Never hands out `addr` (e.g. the server's own PPP address).
    pub fn exclude(mut self, addr: Ipv4Addr) -> Self {
        self.excluded.push(addr);
        self
    }

    /// Reserves `addr` for `user` alone. A later entry for the same user replaces an earlier one.
    pub fn static_address(mut self, user: impl Into<String>, addr: Ipv4Addr) -> Self {
        self.statics.push((user.into(), addr));
        self
    }

    /// Validates the configuration and builds the pool.
    pub fn build(self) -> Result<AddressPool, PoolError> {
        let mut spans: Vec<(u32, u32)> = Vec::with_capacity(self.ranges.len());
        for &(s, e) in &self.ranges {
            let (s32, e32) = (u32::from(s), u32::from(e));
            if s32 > e32 {
                return Err(PoolError::InvalidRange(s, e));
            }
            spans.push((s32, e32));
        }
        spans.sort_unstable();
        let mut ranges = Vec::with_capacity(spans.len());
        let mut total: u64 = 0;
        let mut prev_end: Option<u32> = None;
        for (s, e) in spans {
            if prev_end.is_some_and(|p| s <= p) {
                return Err(PoolError::Overlap(Ipv4Addr::from(s)));
            }
            prev_end = Some(e);
            let len = u64::from(e - s) + 1;
            let offset = u32::try_from(total).map_err(|_| PoolError::TooLarge)?;
            total += len;
            if total > u64::from(MAX_ADDRESSES) {
                return Err(PoolError::TooLarge);
            }
            ranges.push(Span {
                start: s,
                offset,
                len: u32::try_from(len).map_err(|_| PoolError::TooLarge)?,
            });
        }
        let total = u32::try_from(total).map_err(|_| PoolError::TooLarge)?;

        let mut pool = AddressPool {
            ranges,
            state: vec![0; total as usize],
            free: Vec::new(),
            dynamic_in_use: 0,
            reserved: 0,
            statics: HashMap::new(),
            static_owner: HashMap::new(),
            static_in_use: HashSet::new(),
        };

        let excluded: HashSet<Ipv4Addr> = self.excluded.iter().copied().collect();
        for (user, addr) in self.statics {
            if excluded.contains(&addr) {
                return Err(PoolError::StaticConflict(addr));
            }
            if let Some(old) = pool.statics.insert(user.clone(), addr) {
                pool.static_owner.remove(&old);
            }
            if let Some(other) = pool.static_owner.insert(addr, user.clone())
                && other != user
            {
                return Err(PoolError::StaticConflict(addr));
            }
        }
        for addr in excluded.iter().chain(pool.static_owner.keys()) {
            if let Some(idx) = pool.index_of(*addr) {
                pool.state[idx as usize] = RESERVED;
            }
        }
        // Descending, so that `pop` hands out the lowest address first.
        for idx in (0..total).rev() {
            if pool.state[idx as usize] == RESERVED {
                pool.reserved += 1;
            } else {
                pool.state[idx as usize] = pool.free.len() as u32;
                pool.free.push(idx);
            }
        }
        Ok(pool)
    }
}

#[derive(Debug, Clone, Copy)]
struct Span {
    start: u32,
    /// Index of `start` among all dynamic addresses.
    offset: u32,
    len: u32,
}

/// `state` marker: the address is handed out.
const IN_USE: u32 = u32::MAX;
/// `state` marker: the address is excluded or a static address.
const RESERVED: u32 = u32::MAX - 1;

/// An IPv4 address pool; see the [module documentation](self).
#[derive(Debug, Clone)]
pub struct AddressPool {
    ranges: Vec<Span>,
    /// Per dynamic index: its position in `free`, or [`IN_USE`], or [`RESERVED`].
    state: Vec<u32>,
    /// Free dynamic indices; allocation pops from the end.
    free: Vec<u32>,
    dynamic_in_use: usize,
    reserved: usize,
    statics: HashMap<String, Ipv4Addr>,
    static_owner: HashMap<Ipv4Addr, String>,
    static_in_use: HashSet<Ipv4Addr>,
}

impl AddressPool {
    /// Starts a pool configuration.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// Allocates an address for `user`: its static address if it has one, otherwise a free
    /// dynamic address.
    pub fn allocate(&mut self, user: &str) -> Result<Ipv4Addr, PoolError> {
        if let Some(&addr) = self.statics.get(user) {
            return if self.static_in_use.insert(addr) {
                Ok(addr)
            } else {
                Err(PoolError::StaticInUse(addr))
            };
        }
        let idx = self.free.pop().ok_or(PoolError::Exhausted)?;
        if let Some(s) = self.state.get_mut(idx as usize) {
            *s = IN_USE;
        }
        self.dynamic_in_use += 1;
        Ok(self.addr_of(idx))
    }

    /// Allocates `requested` for `user` when it is free and allowed for that user, otherwise
    /// whatever [`allocate`](Self::allocate) gives (the address to Nak with in IPCP). A user
    /// with a static address always gets that address.
    pub fn allocate_requested(
        &mut self,
        user: &str,
        requested: Ipv4Addr,
    ) -> Result<Ipv4Addr, PoolError> {
        if !self.statics.contains_key(user)
            && let Some(idx) = self.index_of(requested)
            && self.take(idx)
        {
            return Ok(requested);
        }
        self.allocate(user)
    }

    /// Allocates exactly `addr` for `user`, a static address learnt after the pool was built
    /// (a user record changed while the server runs). An address inside the dynamic ranges is
    /// taken when free; one outside them becomes a static reservation of `user`. An address
    /// reserved for another user, or excluded, is refused.
    pub fn allocate_static(&mut self, user: &str, addr: Ipv4Addr) -> Result<Ipv4Addr, PoolError> {
        if self.statics.get(user) == Some(&addr) {
            return self.allocate(user);
        }
        if self
            .static_owner
            .get(&addr)
            .is_some_and(|owner| owner != user)
        {
            return Err(PoolError::StaticConflict(addr));
        }
        match self.index_of(addr) {
            Some(idx) => {
                if self.state.get(idx as usize) == Some(&RESERVED) {
                    Err(PoolError::StaticConflict(addr))
                } else if self.take(idx) {
                    Ok(addr)
                } else {
                    Err(PoolError::StaticInUse(addr))
                }
            }
            None => {
                if let Some(old) = self.statics.insert(user.to_string(), addr) {
                    self.static_owner.remove(&old);
                }
                self.static_owner.insert(addr, user.to_string());
                if self.static_in_use.insert(addr) {
                    Ok(addr)
                } else {
                    Err(PoolError::StaticInUse(addr))
                }
            }
        }
    }

    /// Returns `addr` to the pool. Returns whether it was allocated.
    pub fn release(&mut self, addr: Ipv4Addr) -> bool {
        if self.static_owner.contains_key(&addr) {
            return self.static_in_use.remove(&addr);
        }
        let Some(idx) = self.index_of(addr) else {
            return false;
        };
        let pos = self.free.len() as u32;
        match self.state.get_mut(idx as usize) {
            Some(s) if *s == IN_USE => {
                *s = pos;
                self.free.push(idx);
                self.dynamic_in_use -= 1;
                true
            }
            _ => false,
        }
    }

    /// Whether `addr` is currently handed out.
    pub fn is_allocated(&self, addr: Ipv4Addr) -> bool {
        if self.static_owner.contains_key(&addr) {
            return self.static_in_use.contains(&addr);
        }
        self.index_of(addr)
            .and_then(|idx| self.state.get(idx as usize))
            .is_some_and(|&s| s == IN_USE)
    }

    /// Addresses currently handed out (dynamic and static).
    pub fn in_use(&self) -> usize {
        self.dynamic_in_use + self.static_in_use.len()
    }

    /// Addresses this pool can hand out: dynamic addresses minus excluded and static ones,
    /// plus the static addresses.
    pub fn capacity(&self) -> usize {
        self.state.len() - self.reserved + self.static_owner.len()
    }

    /// Takes the free dynamic index `idx` out of the free list; false if it is not free.
    fn take(&mut self, idx: u32) -> bool {
        let Some(&pos) = self.state.get(idx as usize) else {
            return false;
        };
        if pos == IN_USE || pos == RESERVED {
            return false;
        }
        self.free.swap_remove(pos as usize);
        if let Some(&moved) = self.free.get(pos as usize)
            && let Some(s) = self.state.get_mut(moved as usize)
        {
            *s = pos;
        }
        if let Some(s) = self.state.get_mut(idx as usize) {
            *s = IN_USE;
        }
        self.dynamic_in_use += 1;
        true
    }

    fn index_of(&self, addr: Ipv4Addr) -> Option<u32> {
        let a = u32::from(addr);
        let i = self
            .ranges
            .partition_point(|r| r.start <= a)
            .checked_sub(1)?;
        let r = self.ranges.get(i)?;
        let delta = a - r.start;
        (delta < r.len).then_some(r.offset + delta)
    }

    fn addr_of(&self, idx: u32) -> Ipv4Addr {
        let i = self
            .ranges
            .partition_point(|r| r.offset <= idx)
            .saturating_sub(1);
        // `idx` comes from `free`, so it lies in `ranges[i]`; wrapping keeps this total anyway.
        let a = self
            .ranges
            .get(i)
            .map_or(idx, |r| r.start.wrapping_add(idx.wrapping_sub(r.offset)));
        Ipv4Addr::from(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, last)
    }

    #[test]
    fn static_addresses_learnt_at_run_time() {
        let mut pool = AddressPool::builder()
            .range(ip(10), ip(11))
            .exclude(ip(11))
            .static_address("s", ip(50))
            .build()
            .unwrap();
        // Inside the range: taken when free, refused while held, back on release.
        assert_eq!(pool.allocate_static("a", ip(10)), Ok(ip(10)));
        assert_eq!(
            pool.allocate_static("b", ip(10)),
            Err(PoolError::StaticInUse(ip(10)))
        );
        assert_eq!(pool.allocate("c"), Err(PoolError::Exhausted));
        assert!(pool.release(ip(10)));
        // Excluded, and another user's static address: refused.
        assert_eq!(
            pool.allocate_static("a", ip(11)),
            Err(PoolError::StaticConflict(ip(11)))
        );
        assert_eq!(
            pool.allocate_static("a", ip(50)),
            Err(PoolError::StaticConflict(ip(50)))
        );
        // Outside the ranges: a new reservation, once at a time, released like any static.
        assert_eq!(pool.allocate_static("a", ip(60)), Ok(ip(60)));
        assert_eq!(
            pool.allocate_static("a", ip(60)),
            Err(PoolError::StaticInUse(ip(60)))
        );
        assert!(pool.release(ip(60)));
        assert_eq!(pool.allocate_static("a", ip(60)), Ok(ip(60)));
        // The user's own build-time static address goes through the normal path.
        assert_eq!(pool.allocate_static("s", ip(50)), Ok(ip(50)));
    }

    #[test]
    fn exhaustion_and_capacity() {
        let mut pool = AddressPool::builder()
            .range(ip(10), ip(12))
            .build()
            .unwrap();
        assert_eq!(pool.capacity(), 3);
        assert_eq!(pool.allocate("a"), Ok(ip(10)));
        assert_eq!(pool.allocate("b"), Ok(ip(11)));
        assert_eq!(pool.allocate("c"), Ok(ip(12)));
        assert_eq!(pool.in_use(), 3);
        assert_eq!(pool.allocate("d"), Err(PoolError::Exhausted));
        assert_eq!(
            pool.allocate_requested("d", ip(10)),
            Err(PoolError::Exhausted)
        );
    }

    #[test]
    fn excluded_server_address_never_handed_out() {
        let mut pool = AddressPool::builder()
            .range(ip(1), ip(4))
            .exclude(ip(1))
            .build()
            .unwrap();
        assert_eq!(pool.capacity(), 3);
        assert_ne!(pool.allocate_requested("a", ip(1)), Ok(ip(1)));
        let got = [pool.allocate("b").unwrap(), pool.allocate("c").unwrap()];
        assert!(!got.contains(&ip(1)));
        assert_eq!(pool.allocate("d"), Err(PoolError::Exhausted));
        assert!(!pool.release(ip(1)));
    }

    #[test]
    fn static_reservation() {
        let mut pool = AddressPool::builder()
            .range(ip(10), ip(11))
            .static_address("alice", ip(10))
            .static_address("bob", Ipv4Addr::new(10, 9, 9, 9))
            .build()
            .unwrap();
        assert_eq!(pool.capacity(), 3);
        // Nobody else gets alice's address, not even by asking for it.
        assert_eq!(pool.allocate_requested("carol", ip(10)), Ok(ip(11)));
        assert_eq!(pool.allocate("dave"), Err(PoolError::Exhausted));
        assert_eq!(
            pool.allocate_requested("dave", Ipv4Addr::new(10, 9, 9, 9)),
            Err(PoolError::Exhausted)
        );
        // Static users get their address even when the dynamic part is full, whatever they ask.
        assert_eq!(pool.allocate_requested("alice", ip(11)), Ok(ip(10)));
        assert_eq!(pool.allocate("bob"), Ok(Ipv4Addr::new(10, 9, 9, 9)));
        assert_eq!(pool.allocate("alice"), Err(PoolError::StaticInUse(ip(10))));
        assert_eq!(pool.in_use(), 3);
        assert!(pool.release(ip(10)));
        assert!(!pool.release(ip(10)));
        assert_eq!(pool.allocate("dave"), Err(PoolError::Exhausted));
        assert_eq!(pool.allocate("alice"), Ok(ip(10)));
    }

    #[test]
    fn requested_address_rules() {
        let mut pool = AddressPool::builder()
            .range(ip(10), ip(19))
            .range(Ipv4Addr::new(10, 0, 1, 0), Ipv4Addr::new(10, 0, 1, 3))
            .exclude(ip(15))
            .build()
            .unwrap();
        // Free and in range: honoured, in either range.
        assert_eq!(pool.allocate_requested("a", ip(17)), Ok(ip(17)));
        let second = Ipv4Addr::new(10, 0, 1, 2);
        assert_eq!(pool.allocate_requested("b", second), Ok(second));
        // Taken, excluded, outside the ranges, or 0.0.0.0: another free address is allocated.
        let mut all = vec![ip(17), second];
        for (user, req) in [
            ("c", ip(17)),
            ("d", ip(15)),
            ("e", ip(200)),
            ("f", Ipv4Addr::UNSPECIFIED),
        ] {
            let got = pool.allocate_requested(user, req).unwrap();
            assert_ne!(got, req);
            assert!(!all.contains(&got));
            all.push(got);
        }
        assert_eq!(pool.in_use(), 6);
        // Allocation goes on around the taken addresses, without duplicates.
        while let Ok(a) = pool.allocate("g") {
            all.push(a);
        }
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n);
        assert_eq!(n, pool.capacity());
        assert!(!all.contains(&ip(15)));
    }

    #[test]
    fn release_and_reuse() {
        let mut pool = AddressPool::builder()
            .range(ip(10), ip(11))
            .build()
            .unwrap();
        let a = pool.allocate("a").unwrap();
        let b = pool.allocate("b").unwrap();
        assert!(pool.is_allocated(a));
        assert!(pool.release(a));
        assert!(!pool.is_allocated(a));
        assert!(!pool.release(a), "double release");
        assert!(!pool.release(ip(99)), "not in the pool");
        assert_eq!(pool.in_use(), 1);
        assert_eq!(pool.allocate("c"), Ok(a));
        assert_eq!(pool.allocate("d"), Err(PoolError::Exhausted));
        assert!(pool.release(b));
        assert_eq!(pool.allocate_requested("e", b), Ok(b));
    }

    #[test]
    fn low_and_high_ranges() {
        let top = Ipv4Addr::new(255, 255, 255, 255);
        let mut pool = AddressPool::builder()
            .range(Ipv4Addr::new(255, 255, 255, 254), top)
            .range(Ipv4Addr::new(0, 0, 0, 1), Ipv4Addr::new(0, 0, 0, 2))
            .build()
            .unwrap();
        let mut got: Vec<_> = (0..4).map(|_| pool.allocate("x").unwrap()).collect();
        got.sort();
        assert_eq!(
            got,
            [
                Ipv4Addr::new(0, 0, 0, 1),
                Ipv4Addr::new(0, 0, 0, 2),
                Ipv4Addr::new(255, 255, 255, 254),
                top
            ]
        );
        assert_eq!(pool.allocate("x"), Err(PoolError::Exhausted));
        assert!(pool.release(top));
        assert_eq!(pool.allocate_requested("y", top), Ok(top));
    }

    #[test]
    fn config_errors() {
        assert_eq!(
            AddressPool::builder().range(ip(5), ip(4)).build().err(),
            Some(PoolError::InvalidRange(ip(5), ip(4)))
        );
        assert_eq!(
            AddressPool::builder()
                .range(ip(1), ip(5))
                .range(ip(5), ip(9))
                .build()
                .err(),
            Some(PoolError::Overlap(ip(5)))
        );
        assert_eq!(
            AddressPool::builder()
                .range(Ipv4Addr::new(10, 0, 0, 0), Ipv4Addr::new(10, 255, 255, 255))
                .build()
                .err(),
            Some(PoolError::TooLarge)
        );
        assert_eq!(
            AddressPool::builder()
                .range(ip(1), ip(5))
                .static_address("a", ip(3))
                .static_address("b", ip(3))
                .build()
                .err(),
            Some(PoolError::StaticConflict(ip(3)))
        );
        assert_eq!(
            AddressPool::builder()
                .range(ip(1), ip(5))
                .exclude(ip(1))
                .static_address("a", ip(1))
                .build()
                .err(),
            Some(PoolError::StaticConflict(ip(1)))
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Allocate(usize),
        Request(usize, u8),
        ReleaseHeld(usize),
        ReleaseAny(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..USERS.len()).prop_map(Op::Allocate),
            (0..USERS.len(), 0..=30u8).prop_map(|(u, a)| Op::Request(u, a)),
            any::<usize>().prop_map(Op::ReleaseHeld),
            (0..=30u8).prop_map(Op::ReleaseAny),
        ]
    }

    const USERS: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];

    proptest! {
        #[test]
        fn never_double_allocates(ops in proptest::collection::vec(op(), 0..200)) {
            // 10.0.0.1 is the server (excluded), alice owns 10.0.0.5 (inside the range),
            // bob owns 10.0.0.30 (outside it).
            let mut pool = AddressPool::builder()
                .range(ip(1), ip(12))
                .range(ip(20), ip(22))
                .exclude(ip(1))
                .exclude(ip(21))
                .static_address("alice", ip(5))
                .static_address("bob", ip(30))
                .build()
                .unwrap();
            let statics: HashMap<Ipv4Addr, &str> = [(ip(5), "alice"), (ip(30), "bob")].into();
            let mut held: HashMap<Ipv4Addr, &str> = HashMap::new();
            prop_assert_eq!(pool.capacity(), 12 + 2);
            for op in ops {
                let (user, result) = match op {
                    Op::Allocate(u) => (USERS[u], pool.allocate(USERS[u])),
                    Op::Request(u, a) => (USERS[u], pool.allocate_requested(USERS[u], ip(a))),
                    Op::ReleaseHeld(i) => {
                        let mut addrs: Vec<_> = held.keys().copied().collect();
                        addrs.sort();
                        if let Some(&a) = addrs.get(i % addrs.len().max(1)) {
                            prop_assert!(pool.release(a));
                            held.remove(&a);
                        }
                        continue;
                    }
                    Op::ReleaseAny(a) => {
                        prop_assert_eq!(pool.release(ip(a)), held.remove(&ip(a)).is_some());
                        continue;
                    }
                };
                match result {
                    Ok(a) => {
                        prop_assert!(!held.contains_key(&a), "{} handed out twice", a);
                        prop_assert!(a != ip(1) && a != ip(21), "excluded {} handed out", a);
                        if let Some(owner) = statics.get(&a) {
                            prop_assert_eq!(*owner, user);
                        }
                        if user == "alice" { prop_assert_eq!(a, ip(5)); }
                        if user == "bob" { prop_assert_eq!(a, ip(30)); }
                        held.insert(a, user);
                    }
                    Err(PoolError::Exhausted) => {
                        prop_assert!(user != "alice" && user != "bob");
                        let dynamic_held = held.keys().filter(|a| !statics.contains_key(a)).count();
                        prop_assert_eq!(dynamic_held, 12);
                    }
                    Err(PoolError::StaticInUse(a)) => {
                        prop_assert_eq!(held.get(&a).copied(), Some(user));
                    }
                    Err(e) => prop_assert!(false, "unexpected {:?}", e),
                }
                prop_assert_eq!(pool.in_use(), held.len());
                for a in held.keys() {
                    prop_assert!(pool.is_allocated(*a));
                }
            }
        }
    }
}

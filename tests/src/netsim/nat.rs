//! NAT behaviour in RFC 4787 terms: how mappings are chosen (section 4.1)
//! and how inbound datagrams are filtered (section 5), with a mapping
//! timer refreshed by outbound traffic (section 4.3).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;

use scream_ice_core::time::{Duration, Instant};

use super::rng::SimRng;
use super::trace::DropReason;

/// When a NAT reuses a mapping (RFC 4787 section 4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MappingBehavior {
    /// One mapping per inside ip:port, whatever the destination.
    EndpointIndependent,
    /// One mapping per inside ip:port and destination IP.
    AddressDependent,
    /// One mapping per inside ip:port and destination ip:port.
    AddressAndPortDependent,
}

/// Which outside senders may use a mapping (RFC 4787 section 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FilteringBehavior {
    /// Anyone may send to the mapped address.
    EndpointIndependent,
    /// Only IPs the inside host has sent to through this mapping.
    AddressDependent,
    /// Only ip:ports the inside host has sent to through this mapping.
    AddressAndPortDependent,
}

/// The four classic NAT types (RFC 3489 names), as RFC 4787 behaviours.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum NatKind {
    /// Endpoint-independent mapping and filtering.
    FullCone,
    /// Endpoint-independent mapping, address-dependent filtering.
    RestrictedCone,
    /// Endpoint-independent mapping, address-and-port-dependent filtering.
    PortRestrictedCone,
    /// Address-and-port-dependent mapping and filtering.
    Symmetric,
}

impl NatKind {
    /// All four, in order from most to least permissive.
    pub const ALL: [NatKind; 4] = [
        NatKind::FullCone,
        NatKind::RestrictedCone,
        NatKind::PortRestrictedCone,
        NatKind::Symmetric,
    ];
}

/// How a NAT behaves. Build one from a [`NatKind`] and adjust the fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatConfig {
    /// Mapping reuse.
    pub mapping: MappingBehavior,
    /// Inbound filtering.
    pub filtering: FilteringBehavior,
    /// A mapping (and the filter permissions it holds) dies this long after
    /// the last outbound datagram through it. Default 120 s (RFC 4787 REQ-5
    /// asks for at least 2 minutes). Inbound traffic does not refresh it.
    pub mapping_timeout: Duration,
    /// Whether inside hosts can reach each other through the outside
    /// address (RFC 4787 section 6). Default off, as in many home routers.
    pub hairpinning: bool,
    /// External ports are drawn uniformly from this range with the NAT's own
    /// seeded stream (no port preservation).
    pub port_range: RangeInclusive<u16>,
}

impl NatConfig {
    /// The behaviour of `kind` with the defaults above.
    pub fn new(kind: NatKind) -> Self {
        let (mapping, filtering) = match kind {
            NatKind::FullCone => (
                MappingBehavior::EndpointIndependent,
                FilteringBehavior::EndpointIndependent,
            ),
            NatKind::RestrictedCone => (
                MappingBehavior::EndpointIndependent,
                FilteringBehavior::AddressDependent,
            ),
            NatKind::PortRestrictedCone => (
                MappingBehavior::EndpointIndependent,
                FilteringBehavior::AddressAndPortDependent,
            ),
            NatKind::Symmetric => (
                MappingBehavior::AddressAndPortDependent,
                FilteringBehavior::AddressAndPortDependent,
            ),
        };
        NatConfig {
            mapping,
            filtering,
            mapping_timeout: Duration::from_secs(120),
            hairpinning: false,
            port_range: 1024..=65535,
        }
    }

    /// Set the mapping timeout.
    pub fn with_mapping_timeout(mut self, timeout: Duration) -> Self {
        self.mapping_timeout = timeout;
        self
    }

    /// Turn hairpinning on or off.
    pub fn with_hairpinning(mut self, on: bool) -> Self {
        self.hairpinning = on;
        self
    }
}

impl From<NatKind> for NatConfig {
    fn from(kind: NatKind) -> Self {
        NatConfig::new(kind)
    }
}

/// What identifies a mapping: the inside address, plus the parts of the
/// destination the mapping behaviour depends on, plus the external IP
/// (one per address family).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct MapKey {
    internal: SocketAddr,
    dst_ip: Option<IpAddr>,
    dst_port: Option<u16>,
    external_ip: IpAddr,
}

#[derive(Clone, Debug)]
struct Entry {
    key: MapKey,
    internal: SocketAddr,
    last_outbound: Instant,
    /// Destinations sent to through this mapping, with the time of the last
    /// datagram to each.
    permissions: BTreeMap<SocketAddr, Instant>,
}

/// A NAT's translation table. Everything is ordered (`BTreeMap`), so a run
/// never depends on hash order.
#[derive(Clone, Debug)]
pub(crate) struct NatTable {
    pub(crate) config: NatConfig,
    rng: SimRng,
    by_key: BTreeMap<MapKey, SocketAddr>,
    by_external: BTreeMap<SocketAddr, Entry>,
}

impl NatTable {
    pub(crate) fn new(config: NatConfig, rng: SimRng) -> Self {
        NatTable {
            config,
            rng,
            by_key: BTreeMap::new(),
            by_external: BTreeMap::new(),
        }
    }

    fn live(&self, e: &Entry, now: Instant) -> bool {
        now < e.last_outbound + self.config.mapping_timeout
    }

    fn remove(&mut self, external: SocketAddr) {
        if let Some(e) = self.by_external.remove(&external) {
            self.by_key.remove(&e.key);
        }
    }

    /// Translate an outbound datagram from `internal` to `dst`, leaving
    /// through `external_ip`. Returns the external address and whether the
    /// mapping is new, or `None` when the port range is exhausted.
    pub(crate) fn outbound(
        &mut self,
        now: Instant,
        internal: SocketAddr,
        dst: SocketAddr,
        external_ip: IpAddr,
    ) -> Option<(SocketAddr, bool)> {
        let key = MapKey {
            internal,
            dst_ip: match self.config.mapping {
                MappingBehavior::EndpointIndependent => None,
                _ => Some(dst.ip()),
            },
            dst_port: match self.config.mapping {
                MappingBehavior::AddressAndPortDependent => Some(dst.port()),
                _ => None,
            },
            external_ip,
        };
        if let Some(&ext) = self.by_key.get(&key) {
            let live = self
                .by_external
                .get(&ext)
                .is_some_and(|e| self.live(e, now));
            if live {
                let e = self.by_external.get_mut(&ext)?;
                e.last_outbound = now;
                e.permissions.insert(dst, now);
                return Some((ext, false));
            }
            self.remove(ext);
        }
        let ext = self.allocate(now, external_ip)?;
        let mut permissions = BTreeMap::new();
        permissions.insert(dst, now);
        self.by_key.insert(key, ext);
        self.by_external.insert(
            ext,
            Entry {
                key,
                internal,
                last_outbound: now,
                permissions,
            },
        );
        Some((ext, true))
    }

    fn allocate(&mut self, now: Instant, ip: IpAddr) -> Option<SocketAddr> {
        let lo = u64::from(*self.config.port_range.start());
        let hi = u64::from(*self.config.port_range.end());
        let span = hi.checked_sub(lo)? + 1;
        for _ in 0..span.saturating_mul(4).min(1 << 20) {
            let port = u16::try_from(self.rng.range_inclusive(lo, hi)).ok()?;
            let addr = SocketAddr::new(ip, port);
            match self.by_external.get(&addr) {
                None => return Some(addr),
                Some(e) if !self.live(e, now) => {
                    self.remove(addr);
                    return Some(addr);
                }
                Some(_) => {}
            }
        }
        None
    }

    /// Where an inbound datagram from `src` to `external` goes, or why it
    /// is dropped.
    pub(crate) fn inbound(
        &mut self,
        now: Instant,
        external: SocketAddr,
        src: SocketAddr,
    ) -> Result<SocketAddr, DropReason> {
        let Some(e) = self.by_external.get(&external) else {
            return Err(DropReason::NatNoMapping);
        };
        if !self.live(e, now) {
            self.remove(external);
            return Err(DropReason::NatNoMapping);
        }
        let timeout = self.config.mapping_timeout;
        let fresh = |t: &Instant| now < *t + timeout;
        let allowed = match self.config.filtering {
            FilteringBehavior::EndpointIndependent => true,
            FilteringBehavior::AddressDependent => e
                .permissions
                .iter()
                .any(|(a, t)| a.ip() == src.ip() && fresh(t)),
            FilteringBehavior::AddressAndPortDependent => {
                e.permissions.get(&src).is_some_and(fresh)
            }
        };
        if allowed {
            Ok(e.internal)
        } else {
            Err(DropReason::NatFiltered)
        }
    }

    /// Live mappings as (inside, outside) pairs, ordered by outside address.
    pub(crate) fn mappings(&self, now: Instant) -> Vec<(SocketAddr, SocketAddr)> {
        self.by_external
            .iter()
            .filter(|(_, e)| self.live(e, now))
            .map(|(ext, e)| (e.internal, *ext))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const EXT: &str = "198.51.100.1";

    fn table(kind: NatKind) -> NatTable {
        NatTable::new(NatConfig::new(kind), SimRng::new(1))
    }

    #[test]
    fn eim_reuses_and_symmetric_does_not() {
        let ext_ip: IpAddr = EXT.parse().unwrap();
        for kind in NatKind::ALL {
            let mut t = table(kind);
            let now = Instant::from_secs(1);
            let (a, new_a) = t
                .outbound(now, sa("10.0.0.2:5000"), sa("192.0.2.1:3478"), ext_ip)
                .unwrap();
            let (b, new_b) = t
                .outbound(now, sa("10.0.0.2:5000"), sa("192.0.2.2:3478"), ext_ip)
                .unwrap();
            let (c, new_c) = t
                .outbound(now, sa("10.0.0.2:5000"), sa("192.0.2.1:3478"), ext_ip)
                .unwrap();
            assert!(new_a && !new_c);
            assert_eq!(a, c, "{kind:?}: same destination, same mapping");
            assert_eq!(a.ip(), ext_ip);
            if kind == NatKind::Symmetric {
                assert!(new_b);
                assert_ne!(a, b);
            } else {
                assert!(!new_b);
                assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn mapping_expires_unless_refreshed() {
        let ext_ip: IpAddr = EXT.parse().unwrap();
        let mut t = table(NatKind::FullCone);
        let (m, _) = t
            .outbound(
                Instant::ZERO,
                sa("10.0.0.2:5000"),
                sa("192.0.2.1:1"),
                ext_ip,
            )
            .unwrap();
        assert!(
            t.inbound(Instant::from_secs(119), m, sa("192.0.2.9:9"))
                .is_ok()
        );
        t.outbound(
            Instant::from_secs(100),
            sa("10.0.0.2:5000"),
            sa("192.0.2.1:1"),
            ext_ip,
        )
        .unwrap();
        assert!(
            t.inbound(Instant::from_secs(219), m, sa("192.0.2.9:9"))
                .is_ok()
        );
        assert_eq!(
            t.inbound(Instant::from_secs(220), m, sa("192.0.2.9:9")),
            Err(DropReason::NatNoMapping)
        );
        assert!(t.mappings(Instant::from_secs(220)).is_empty());
    }

    #[test]
    fn exhausted_port_range_refuses() {
        let ext_ip: IpAddr = EXT.parse().unwrap();
        let mut cfg = NatConfig::new(NatKind::Symmetric);
        cfg.port_range = 4000..=4001;
        let mut t = NatTable::new(cfg, SimRng::new(3));
        let now = Instant::ZERO;
        assert!(
            t.outbound(now, sa("10.0.0.2:1"), sa("192.0.2.1:1"), ext_ip)
                .is_some()
        );
        assert!(
            t.outbound(now, sa("10.0.0.2:1"), sa("192.0.2.1:2"), ext_ip)
                .is_some()
        );
        assert!(
            t.outbound(now, sa("10.0.0.2:1"), sa("192.0.2.1:3"), ext_ip)
                .is_none()
        );
        // After expiry the ports are free again.
        let later = Instant::from_secs(121);
        assert!(
            t.outbound(later, sa("10.0.0.2:1"), sa("192.0.2.1:3"), ext_ip)
                .is_some()
        );
    }
}

//! The agent in the conformance tables: two agents on an ideal in-memory
//! LAN (1 ms one way) must select the same pair at the same virtual instant
//! on every platform. Small capacities keep it cheap on a microcontroller.

use core::net::{IpAddr, Ipv4Addr, SocketAddr};

use heapless::Deque;

use super::{Agent, AgentConfig, Role};
use crate::conformance::Report;
use crate::time::{Duration, Instant};

type Small = Agent<2, 2, 4>;

/// Room for one datagram on the in-memory wire: a connectivity check of
/// these agents is about 90 bytes. Far below `MAX_TRANSMIT_LEN`, so two
/// agents and the wire fit the 16K of RAM of the Cortex-M0 board the tables
/// run on; a longer datagram fails the connect case.
const WIRE_LEN: usize = 160;

struct InFlight {
    at: Instant,
    from: SocketAddr,
    to: SocketAddr,
    len: usize,
    bytes: [u8; WIRE_LEN],
}

fn lan_config() -> AgentConfig {
    AgentConfig {
        ta: Duration::from_millis(5),
        rto_min: Duration::from_millis(100),
        nominate_host_on_first_success: true,
        ..AgentConfig::default()
    }
}

pub(crate) fn conformance(report: &mut Report) {
    let a_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10)), 5000);
    let b_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 20)), 6000);
    // One agent at a time, each bound where it is created: a tuple of two
    // `Result<Agent>` would hold both agents twice on the stack (16K on a
    // 16K board).
    let Ok(mut a) = Small::new(
        lan_config(),
        Role::Controlling,
        "aaaa",
        "apasswordof22chars+abcd",
        [1; 32],
    ) else {
        report.check("agent: create", false);
        return;
    };
    let Ok(mut b) = Small::new(
        lan_config(),
        Role::Controlled,
        "bbbb",
        "bpasswordof22chars+abcd",
        [2; 32],
    ) else {
        report.check("agent: create", false);
        return;
    };
    let setup = a.add_host_candidate(a_addr, 65535).is_ok()
        && b.add_host_candidate(b_addr, 65535).is_ok()
        && a.set_remote_credentials("bbbb", "bpasswordof22chars+abcd")
            .is_ok()
        && b.set_remote_credentials("aaaa", "apasswordof22chars+abcd")
            .is_ok();
    let ca = a.local_candidates().next().copied();
    let cb = b.local_candidates().next().copied();
    let exchanged = match (ca, cb) {
        (Some(ca), Some(cb)) => {
            b.add_remote_candidate(ca).is_ok() && a.add_remote_candidate(cb).is_ok()
        }
        _ => false,
    };
    report.check("agent: setup", setup && exchanged);
    a.start_gathering(Instant::ZERO);
    b.start_gathering(Instant::ZERO);

    let delay = Duration::from_millis(1);
    let mut wire: Deque<InFlight, 4> = Deque::new();
    let mut now = Instant::ZERO;
    let mut connected_at = None;
    let mut wire_fits = true;
    for _ in 0..1_000 {
        for agent in [&mut a, &mut b] {
            while let Some(t) = agent.poll_transmit() {
                let len = t.bytes.len().min(WIRE_LEN);
                wire_fits &= len == t.bytes.len();
                let mut bytes = [0u8; WIRE_LEN];
                bytes[..len].copy_from_slice(&t.bytes[..len]);
                let _ = wire.push_back(InFlight {
                    at: now + delay,
                    from: t.from,
                    to: t.to,
                    len,
                    bytes,
                });
            }
            while agent.poll_event().is_some() {}
        }
        if a.selected_pair().is_some() && b.selected_pair().is_some() {
            connected_at = Some(now);
            break;
        }
        let next = [
            wire.front().map(|w| w.at),
            a.poll_timeout(),
            b.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else { break };
        now = now.max(next);
        if let Some(w) = wire.pop_front_if(|w| w.at <= now) {
            let target = if w.to == a_addr { &mut a } else { &mut b };
            target.handle_receive(now, w.to, w.from, &w.bytes[..w.len]);
        }
        for agent in [&mut a, &mut b] {
            if agent.poll_timeout().is_some_and(|t| t <= now) {
                agent.handle_timeout(now);
            }
        }
    }
    report.check(
        "agent: LAN peers connect in two round trips (4 ms)",
        connected_at == Some(Instant::from_millis(4)) && wire_fits,
    );
    report.check(
        "agent: both select the same path",
        a.selected_pair() == Some((a_addr, b_addr)) && b.selected_pair() == Some((b_addr, a_addr)),
    );
}

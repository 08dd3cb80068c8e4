//! Interop and scenario tests of scream-ice against independent
//! implementations (stun-rs now; coturn, aioice, libnice and network
//! namespaces as the adapters land). The library part holds shared helpers;
//! `netns` builds network-namespace labs and pairs ICE peer processes in them.

pub mod netns;
pub mod netsim;

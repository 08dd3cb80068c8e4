//! STUN (RFC 8489, compatible with RFC 5389).

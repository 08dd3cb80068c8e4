//! The only conversions between tokio's clock and the core's.
//!
//! The core measures time as microseconds since an epoch the adapter picks
//! ([`scream_ice_core::time::Instant`]); this module fixes that epoch at
//! session start ([`Clock::start`]) and converts in both directions. It uses
//! [`tokio::time::Instant`] (a wrapper of [`std::time::Instant`]) so that the
//! deadlines handed to [`tokio::time::sleep_until`] are on the same scale as
//! `now()`, also under tokio's paused test clock. Addresses need no
//! conversion: the core already speaks `core::net::SocketAddr`, which is
//! `std::net::SocketAddr`.

use scream_ice_core::time::{Duration as CoreDuration, Instant as CoreInstant};

/// About 30 years: what an "infinite" deadline becomes (tokio does the same).
const FAR_FUTURE: std::time::Duration = std::time::Duration::from_secs(86_400 * 365 * 30);

/// A session's clock: an epoch captured when the session starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    epoch: tokio::time::Instant,
}

impl Clock {
    /// A clock whose epoch ([`CoreInstant::ZERO`]) is now.
    pub fn start() -> Clock {
        Clock {
            epoch: tokio::time::Instant::now(),
        }
    }

    /// The epoch as a tokio instant.
    pub fn epoch(&self) -> tokio::time::Instant {
        self.epoch
    }

    /// Now, on the core's scale.
    pub fn now(&self) -> CoreInstant {
        self.to_core(tokio::time::Instant::now())
    }

    /// A tokio instant on the core's scale: microseconds since the epoch,
    /// truncated, saturating (an instant before the epoch is the epoch).
    pub fn to_core(&self, t: tokio::time::Instant) -> CoreInstant {
        CoreInstant::from_std(self.epoch.into_std(), t.into_std())
    }

    /// A core instant as a tokio instant. Instants too far away to represent
    /// (e.g. [`CoreInstant::MAX`]) become about 30 years from now.
    pub fn to_tokio(&self, t: CoreInstant) -> tokio::time::Instant {
        t.to_std(self.epoch.into_std())
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + FAR_FUTURE)
    }

    /// A core duration as a std duration.
    pub fn to_std_duration(d: CoreDuration) -> std::time::Duration {
        d.into()
    }

    /// A std duration as a core duration (truncated to microseconds,
    /// saturating).
    pub fn to_core_duration(d: std::time::Duration) -> CoreDuration {
        d.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_at_microsecond_resolution() {
        let c = Clock::start();
        let t = CoreInstant::from_micros(1_234_567);
        assert_eq!(c.to_core(c.to_tokio(t)), t);
        assert_eq!(
            c.to_tokio(t) - c.epoch(),
            std::time::Duration::from_micros(1_234_567)
        );
    }

    #[test]
    fn before_epoch_saturates_and_max_is_far_future() {
        let c = Clock::start();
        let earlier = c
            .epoch()
            .checked_sub(std::time::Duration::from_secs(1))
            .unwrap_or(c.epoch());
        assert_eq!(c.to_core(earlier), CoreInstant::ZERO);
        let far = c.to_tokio(CoreInstant::MAX);
        assert!(far > tokio::time::Instant::now() + std::time::Duration::from_secs(86_400));
    }

    #[test]
    fn durations_convert() {
        assert_eq!(
            Clock::to_core_duration(std::time::Duration::from_millis(5)),
            CoreDuration::from_millis(5)
        );
        assert_eq!(
            Clock::to_std_duration(CoreDuration::from_micros(7)),
            std::time::Duration::from_micros(7)
        );
    }
}

//! Where "now" comes from. Production uses the system clock; tests use [`ManualClock`] to step
//! past a retention period or a session timeout without sleeping.

use holdfast_domain::Timestamp;
use std::sync::atomic::{AtomicI64, Ordering};

pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Timestamp(micros)
    }
}

/// A clock that moves only when told to (and by one microsecond per reading, so that two
/// writes never share a timestamp and ordering by time stays deterministic).
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock(AtomicI64::new(start.micros()))
    }

    pub fn advance_days(&self, days: i64) {
        self.0
            .fetch_add(days * Timestamp::MICROS_PER_DAY, Ordering::SeqCst);
    }

    pub fn advance_seconds(&self, seconds: i64) {
        self.0
            .fetch_add(seconds * Timestamp::MICROS_PER_SECOND, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.fetch_add(1, Ordering::SeqCst))
    }
}

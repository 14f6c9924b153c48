//! Retry jitter, so that nodes that rebooted together do not ask together.

/// xorshift32: jitter only, not security. The seed must be nonzero.
#[derive(Clone, Copy, Debug)]
pub struct Jitter(pub u32);

impl Jitter {
    /// The next random number.
    pub fn next(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }

    /// `ms` scaled by a random factor in [0.75, 1.25).
    pub fn spread(&mut self, ms: u64) -> u64 {
        ms * (750 + (self.next() % 500) as u64) / 1000
    }
}

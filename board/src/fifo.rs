//! The bus port's software receive FIFO: bytes taken from the device while
//! the port waits to send, kept in arrival order for the decoder.

/// Bytes of received data the port buffers beyond the device's own.
pub const RX_FIFO: usize = 4096;

/// A byte ring of [`RX_FIFO`] bytes.
pub struct Fifo {
    buf: [u8; RX_FIFO],
    head: usize,
    len: usize,
}

impl Fifo {
    /// An empty FIFO.
    pub const fn new() -> Fifo {
        Fifo {
            buf: [0; RX_FIFO],
            head: 0,
            len: 0,
        }
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends what fits of `bytes`; returns how many did not fit (they are
    /// dropped, as a controller's receive FIFO overruns).
    pub fn put(&mut self, mut bytes: &[u8]) -> usize {
        let dropped = bytes.len().saturating_sub(RX_FIFO - self.len);
        bytes = &bytes[..bytes.len() - dropped];
        while !bytes.is_empty() {
            let tail = (self.head + self.len) % RX_FIFO;
            let n = bytes.len().min(RX_FIFO - tail);
            self.buf[tail..tail + n].copy_from_slice(&bytes[..n]);
            self.len += n;
            bytes = &bytes[n..];
        }
        dropped
    }

    /// The oldest bytes, as far as the end of the ring: all of them once
    /// [`consume`](Self::consume) has taken these.
    pub fn front(&self) -> &[u8] {
        &self.buf[self.head..(self.head + self.len).min(RX_FIFO)]
    }

    /// Drops the `n` oldest bytes.
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        self.head = (self.head + n) % RX_FIFO;
        self.len -= n;
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    #[test]
    fn keeps_order_across_the_wrap_and_drops_what_does_not_fit() {
        let mut f = Fifo::new();
        let mut model: std::collections::VecDeque<u8> = Default::default();
        let mut x: u32 = 0x1234_5678;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        for round in 0..2000 {
            let n = next() as usize % 1500;
            let bytes: Vec<u8> = (0..n).map(|i| (round + i) as u8).collect();
            let dropped = f.put(&bytes);
            let fits = n.min(RX_FIFO - model.len());
            assert_eq!(dropped, n - fits);
            model.extend(&bytes[..fits]);
            let mut take = next() as usize % 1800;
            while take > 0 && !f.is_empty() {
                let front = f.front();
                assert!(!front.is_empty());
                let k = take.min(front.len());
                let want: Vec<u8> = model.drain(..k).collect();
                assert_eq!(&front[..k], &want[..]);
                f.consume(k);
                take -= k;
            }
            assert_eq!(f.is_empty(), model.is_empty());
        }
    }
}

//! Statics lent out mutably once: the `take()` pattern. A guest keeps its
//! large buffers (DMA rings, the boot ROM's chunk bitmap) in statics, and
//! safe code must not be able to get two `&mut` to one of them.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

/// A value that [`take`](Self::take) lends as `&'static mut` once per run
/// of the program (a guest's `_start` zeroes `.bss`, flag included, at every
/// boot, when no reference from an earlier run survives).
pub struct TakeOnce<T> {
    taken: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the value is reached only through the one `&mut` that `take` hands
// out, once, under an atomic flag; sharing the wrapper shares no access to
// the value, and handing the `&mut` to another thread needs `T: Send`.
unsafe impl<T: Send> Sync for TakeOnce<T> {}

impl<T> TakeOnce<T> {
    /// Holds `value`, not yet taken.
    pub const fn new(value: T) -> TakeOnce<T> {
        TakeOnce {
            taken: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// The value, the first time; `None` every time after.
    #[expect(
        clippy::mut_from_ref,
        reason = "the flag, not the borrow, makes the `&mut` unique"
    )]
    pub fn take(&'static self) -> Option<&'static mut T> {
        if self.taken.swap(true, Ordering::AcqRel) {
            return None;
        }
        // SAFETY: the flag was clear and is now set for good, so no other
        // reference to the value exists or will be made.
        Some(unsafe { &mut *self.value.get() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lends_once() {
        static VALUE: TakeOnce<[u64; 4]> = TakeOnce::new([0; 4]);
        let first = VALUE.take().expect("the first take succeeds");
        first[1] = 7;
        assert!(VALUE.take().is_none());
        assert!(VALUE.take().is_none());
        assert_eq!(first[1], 7);
    }
}

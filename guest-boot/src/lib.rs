//! The boot ROM's logic, free of devices, so that it runs in host unit tests
//! as well as on the board: [`boot`], the state machine that decides when to
//! ask, `Nack`, give up and hand off; [`receive`], which places one session
//! part, tracks its chunks and checks the image; [`kat`], the known-answer
//! tests of the crypto that checks it; `jitter`, their randomness.
//! The riscv binary (`main.rs`) drives them with the bus port and the timer.
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

pub mod boot;
mod jitter;
pub mod kat;
pub mod receive;

#[cfg(test)]
mod tests;

//! An app that never says a word: no heartbeat, no answer to a challenge,
//! nothing on the bus. It only sleeps (`wfi`, every interrupt masked), as a
//! foreign firmware that knows nothing of bootcast's protocol might. Built
//! for no node type in particular: a fleet file names it for one
//! (`[images] op-panel = ".../silent.elf"`), and only the host's own check
//! of the node's RAM and CPU can verify it. The SDK's `_start` (stack,
//! `.data`, `.bss`) calls it; it calls nothing of the SDK's but `halt`.
#![no_std]
#![no_main]

#[unsafe(no_mangle)]
extern "C" fn app_main() -> ! {
    node_sdk::halt()
}

//! The app's start-up code and panic handler, for Rust and C apps alike.
//!
//! `_start` is the image's first byte (the linker script puts `.text.init`
//! first and asserts it). The boot ROM jumps there in machine mode with
//! `a0` = the handoff record's address and every interrupt masked.
//! `_start` keeps `a0`, masks interrupts again, sets `gp` and `sp`, points
//! `mtvec` at a halt (no trap is expected), copies `.data`'s initial values
//! from the image into app RAM, zeroes `.bss`, and calls
//! `app_main(handoff)`. Should `app_main` return, the hart halts.

core::arch::global_asm!(
    r#"
    .section .text.init, "ax"
    .globl _start
_start:
    csrw mie, zero
    csrci mstatus, 8
    .option push
    .option norelax
    la gp, __global_pointer$
    .option pop
    la sp, __stack_top
    la t0, _app_halt
    csrw mtvec, t0
    la t0, __data_load
    la t1, __data_start
    la t2, __data_end
1:  bgeu t1, t2, 2f
    ld t3, 0(t0)
    sd t3, 0(t1)
    addi t0, t0, 8
    addi t1, t1, 8
    j 1b
2:  la t0, __bss_start
    la t1, __bss_end
3:  bgeu t0, t1, 4f
    sd zero, 0(t0)
    addi t0, t0, 8
    j 3b
4:  call app_main

    .align 2
    .globl _app_halt
_app_halt:
    csrw mie, zero
5:  wfi
    j 5b
"#
);

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    board::dev::cpu::halt()
}

/*
 * c-bare's start-up: a RISC-V program that knows nothing of bootcast but
 * the memory map (through the generated linker script, bootcast.ld).
 * The boot ROM jumps here, the image's first byte, in machine mode.
 */
    .section .text.init, "ax"
    .globl _start
_start:
    csrw mie, zero
    .option push
    .option norelax
    la gp, __global_pointer$
    .option pop
    la sp, __stack_top
    la t0, __bss_start
    la t1, __bss_end
1:  bgeu t0, t1, 2f
    sd zero, 0(t0)
    addi t0, t0, 8
    j 1b
2:  call main
3:  wfi
    j 3b

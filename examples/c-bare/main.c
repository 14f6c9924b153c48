/*
 * c-bare: a bare-metal C app that calls no SDK function and never touches
 * the bus. It counts timer ticks, sleeping in wfi between them, forever.
 *
 * The host still verifies a node running it: it checks the node itself
 * (the loaded bytes, where the CPU runs), not what the app says.
 */
#include <stdint.h>

/* The virt board's CLINT (hart 0): mtime, and the compare register whose
 * interrupt, enabled in mie but never in mstatus, wakes wfi. */
#define CLINT_BASE 0x02000000u
#define MTIME (*(volatile uint64_t *)(CLINT_BASE + 0xBFF8u))
#define MTIMECMP (*(volatile uint64_t *)(CLINT_BASE + 0x4000u))
#define MTIME_HZ 10000000u
#define MIE_MTIE (1u << 7)

/* In .bss (app RAM): the loaded image stays as the boot ROM measured it. */
volatile uint64_t ticks;

int main(void)
{
    __asm__ volatile("csrw mie, %0" ::"r"(MIE_MTIE));
    for (;;) {
        MTIMECMP = MTIME + MTIME_HZ / 100; /* 10 ms */
        __asm__ volatile("wfi");
        ticks++;
    }
}

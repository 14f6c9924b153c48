/*
 * c-blinky: a small bare-metal C app on the bootcast node SDK.
 *
 * It blinks a "light" once a second and reports it in its heartbeats (the
 * status byte: bit 0 the light, the upper bits how many pings it answered),
 * answers the supervisor's challenges and obeys Reboot (both inside
 * bootcast_poll), and answers its own application traffic: a standard
 * frame with identifier 0x100 ("ping") gets a 0x101 back carrying the
 * node id and the ping's first data byte.
 *
 * libbootcast.a's _start calls app_main; nothing here touches a device.
 */
#include "bootcast.h"

#define PING 0x100u
#define PONG 0x101u

/* Initialised data (a global another unit could change, so it stays in
 * .data): bootcast.ld keeps its initial value in the image and
 * _start copies it to app RAM, so the loaded image is never written. */
uint64_t blink_ms = 1000;
/* Zero-initialised: .bss, in app RAM. */
static uint8_t light;
static uint8_t pings;

static void answer_ping(uint16_t node, const bootcast_frame *ping)
{
    bootcast_frame pong = {
        .id = PONG,
        .flags = 0,
        .len = 3,
        .data = { (uint8_t)node, (uint8_t)(node >> 8), ping->len ? ping->data[0] : 0 },
    };
    bootcast_send(&pong);
    pings++;
}

void app_main(const bootcast_handoff *handoff)
{
    /* The record is the boot ROM's; read it before the SDK takes it over
     * (later, bootcast_get_handoff copies it). */
    const uint16_t node = handoff->node;
    if (bootcast_init() != BOOTCAST_OK) {
        /* Not started by the boot ROM, or no bus port: nothing to report. */
        bootcast_halt();
    }
    bootcast_print("c-blinky: running\n");

    /* Besides what the SDK needs, let the pings through. */
    const bootcast_filter_entry mine = { .id = PING, .mask = 0x7FF, .extended = 0 };
    bootcast_set_filter(&mine, 1);

    uint64_t next_beat = bootcast_now();
    uint64_t next_blink = next_beat;
    for (;;) {
        bootcast_frame f;
        while (bootcast_poll(&f) > 0) {
            if (f.id == PING && !(f.flags & BOOTCAST_FRAME_EXTENDED)) {
                answer_ping(node, &f);
            }
        }
        uint64_t now = bootcast_now();
        if (now >= next_blink) {
            light ^= 1;
            next_blink += bootcast_ticks_from_ms(blink_ms);
        }
        if (now >= next_beat) {
            bootcast_heartbeat((uint8_t)(light | (pings << 1)));
            next_beat += bootcast_ticks_from_ms(BOOTCAST_HEARTBEAT_MS);
        }
        bootcast_sleep_until(next_beat < next_blink ? next_beat : next_blink);
    }
}

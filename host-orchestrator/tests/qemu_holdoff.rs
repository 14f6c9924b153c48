//! The hold-off policies on real fleets on the virtual clock. Drives are
//! powered on at set points of virtual time, and each policy's first
//! window must close exactly when the policy says, worked out here from
//! the times the nodes first asked (their REQUESTING entries), so no
//! host's load can move it.

mod common;

use common::{artifacts, available, boot, options, run};
use host_orchestrator::fleet::Fleet;
use host_orchestrator::qemu::VirtualTools;
use host_orchestrator::report::{Report, WindowReport};
use host_orchestrator::supervisor::HostState;

/// Nanosecond times in seconds: report times are f64 seconds, so "exactly"
/// is to within rounding.
const EXACT_S: f64 = 1e-6;

/// Whether the virtual clock can run here (under CI it must).
fn virtual_clock() -> bool {
    let found = VirtualTools::find(&artifacts().dir);
    available(
        "QEMU >= 9 and the clock plugin",
        found.is_ok(),
        "`cargo xtask install --virtual-clock` and `cargo xtask build`",
    )
}

/// Four drives powered on 0.3 s apart from 0.2 s, on the virtual clock,
/// with `master` as the `[master]` section.
fn fleet(master: &str) -> Fleet {
    Fleet::parse(&format!(
        "[bus]\nclock = \"virtual\"\n[master]\n{master}\n\
         [[nodes]]\ntype = \"drive\"\ncount = 4\nstart_after_ms = 200\nstagger_ms = 300\n"
    ))
    .unwrap()
}

/// Boots the staggered fleet under `master` on the virtual clock and hands
/// its report and the nodes' first request times to `check`; nothing where
/// the virtual clock cannot run (outside CI).
fn policy(master: &str, check: impl FnOnce(&Report, &[(u16, f64)])) {
    if !virtual_clock() {
        return;
    }
    run(async {
        let r = boot(options(fleet(master))).await;
        check(&r, &first_requests(&r));
    });
}

/// Each node's first REQUESTING time, in node order.
fn first_requests(r: &Report) -> Vec<(u16, f64)> {
    r.nodes
        .iter()
        .map(|n| {
            let t = n
                .states
                .iter()
                .find(|s| s.state == HostState::Requesting)
                .unwrap_or_else(|| panic!("node {} never asked", n.id))
                .t_s;
            (n.id, t)
        })
        .collect()
}

/// The first window, checked to have opened at the first request.
fn first_window(r: &Report) -> &WindowReport {
    let w = r.windows.first().expect("a window");
    let first = first_requests(r)[0].1;
    assert!(
        (w.opened_s - first).abs() < EXACT_S,
        "window opened at {} s, the first request came at {first} s",
        w.opened_s
    );
    w
}

/// Asserts the first window closed at `want_s` for `reason`, with the
/// nodes that asked before then as its requesters.
fn assert_closed(r: &Report, want_s: f64, reason: &str) {
    let w = first_window(r);
    let closed = w.closed_s.expect("the window closed");
    assert!(
        (closed - want_s).abs() < EXACT_S,
        "closed at {closed} s, the policy says {want_s} s ({:?}): {:?}",
        w.close_reason,
        first_requests(r)
    );
    assert_eq!(w.close_reason.as_deref(), Some(reason));
    let inside: Vec<u16> = first_requests(r)
        .into_iter()
        .filter(|(_, t)| *t <= closed + EXACT_S)
        .map(|(id, _)| id)
        .collect();
    let mut requesters = w.requesters.clone();
    requesters.sort_unstable();
    assert_eq!(requesters, inside, "requesters of the first window");
}

#[test]
fn fixed_closes_its_wait_after_the_first_request() {
    policy("policy = \"fixed\"\nhold_off_ms = 700", |r, t| {
        assert_closed(r, t[0].1 + 0.7, "timer");
        // The 0.3 s stagger: drives 1-3 ask inside 0.7 s, drive 4 after.
        assert_eq!(first_window(r).requesters.len(), 3);
    });
}

#[test]
fn renew_closes_its_wait_after_the_last_new_requester() {
    policy(
        "policy = \"renew\"\nhold_off_ms = 500\nmax_wait_ms = 10000",
        |r, t| assert_closed(r, t[3].1 + 0.5, "timer"),
    );
}

#[test]
fn renew_is_capped_by_max_wait_from_the_first_request() {
    policy(
        "policy = \"renew\"\nhold_off_ms = 500\nmax_wait_ms = 700",
        |r, t| assert_closed(r, t[0].1 + 0.7, "max_wait"),
    );
}

#[test]
fn shrink_waits_less_after_each_renewal() {
    // Renewals 1, 2, 3 wait 400, 350 (the floor), 350 ms: each is longer
    // than the 0.3 s stagger, so every drive renews it.
    policy(
        "policy = \"shrink\"\nhold_off_ms = 500\nshrink_step_ms = 100\nfloor_ms = 350\nmax_wait_ms = 10000",
        |r, t| assert_closed(r, t[3].1 + 0.35, "timer"),
    );
}

#[test]
fn quorum_closes_when_enough_nodes_have_asked() {
    policy(
        "policy = \"quorum\"\nhold_off_ms = 5000\nmin_requests = 3",
        |r, t| assert_closed(r, t[2].1, "quorum"),
    );
}

//! Every random choice a run makes, from one seed: a named, portable
//! generator (ChaCha8, whose output `rand_chacha` keeps stable across
//! versions), split into independent streams, so that one stream's use
//! never shifts another's.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The streams, by number.
const ACTIONS: u64 = 1;
const BUS_FAULTS: u64 = 2;
const NONCES: u64 = 3;
/// Node `id`'s stream is `NODES + id`.
const NODES: u64 = 1 << 32;

/// The seeds of one run, all derived from `run`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seeds {
    /// The one seed everything derives from.
    pub run: u64,
    /// The bus's fault decisions (every rule's, each told apart by its id).
    pub bus_faults: u64,
    /// Each node's boot ROM jitter, by node id.
    pub nodes: BTreeMap<u16, u32>,
}

/// Generator number `stream` of `seed`.
fn stream(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(stream);
    r
}

impl Seeds {
    /// The seeds of a run with seed `run` and these nodes.
    pub fn derive(run: u64, nodes: impl IntoIterator<Item = u16>) -> Seeds {
        Seeds {
            run,
            bus_faults: stream(run, BUS_FAULTS).next_u64(),
            // The boot ROM's jitter wants a nonzero seed.
            nodes: nodes
                .into_iter()
                .map(|id| (id, stream(run, NODES + u64::from(id)).next_u32() | 1))
                .collect(),
        }
    }

    /// The generator of the storm's actions (node picks, reboot kinds).
    pub fn actions(&self) -> ChaCha8Rng {
        stream(self.run, ACTIONS)
    }

    /// The supervisor's challenge nonces on the virtual clock (a nonce's
    /// bits set its frame's length on the wire, so a repeated run needs
    /// the same ones; nodes cannot predict them without the run's seed).
    pub fn nonces(&self) -> ChaCha8Rng {
        stream(self.run, NONCES)
    }
}

/// A uniform draw from `0..n` (`n > 0`), by rejection on the generator's
/// raw output, so that it does not depend on how `rand` maps ranges.
pub fn below(rng: &mut impl RngCore, n: u64) -> u64 {
    assert!(n > 0, "a draw from an empty range");
    // The largest multiple of n that fits, so every value is equally likely.
    let zone = u64::MAX - (u64::MAX - n + 1) % n;
    loop {
        let x = rng.next_u64();
        if x <= zone {
            return x % n;
        }
    }
}

/// `k` of `items` drawn without replacement (all of them if fewer), in the
/// order drawn: a partial Fisher-Yates shuffle over [`below`].
pub fn choose<T: Clone>(rng: &mut impl RngCore, items: &[T], k: usize) -> Vec<T> {
    let mut pool = items.to_vec();
    let k = k.min(pool.len());
    for i in 0..k {
        let j = i + below(rng, (pool.len() - i) as u64) as usize;
        pool.swap(i, j);
    }
    pool.truncate(k);
    pool
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn the_same_seed_gives_the_same_seeds_and_another_seed_others() {
        let a = Seeds::derive(42, 1..=40);
        assert_eq!(a, Seeds::derive(42, 1..=40));
        let b = Seeds::derive(43, 1..=40);
        assert_ne!(a.bus_faults, b.bus_faults);
        assert!(a.nodes.iter().zip(&b.nodes).all(|(x, y)| x.1 != y.1));
        assert!(a.nodes.values().all(|&s| s != 0));
        let draws = |s: &Seeds| -> Vec<u32> {
            let mut r = s.actions();
            (0..8).map(|_| r.gen_range(0..1000)).collect()
        };
        assert_eq!(draws(&a), draws(&Seeds::derive(42, 1..=40)));
        assert_ne!(draws(&a), draws(&b));
    }

    #[test]
    fn a_node_seed_does_not_depend_on_the_other_nodes() {
        let few = Seeds::derive(7, [3, 9]);
        let many = Seeds::derive(7, 1..=40);
        assert_eq!(few.nodes[&3], many.nodes[&3]);
        assert_eq!(few.nodes[&9], many.nodes[&9]);
    }

    #[test]
    fn the_generator_is_the_documented_chacha8() {
        // Pinned: a change of generator would silently change every
        // replay, so it must show here.
        let mut r = stream(1, ACTIONS);
        assert_eq!(r.next_u64(), FIRST_ACTION_DRAW);
    }

    #[test]
    fn draws_cover_their_range_evenly_and_choices_are_distinct() {
        let mut r = stream(3, ACTIONS);
        let mut counts = [0u32; 3];
        for _ in 0..3000 {
            counts[below(&mut r, 3) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (900..1100).contains(&c)),
            "{counts:?}"
        );
        let picked = choose(&mut r, &[1, 2, 3, 4, 5], 3);
        assert_eq!(picked.len(), 3);
        let mut sorted = picked.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 3, "{picked:?}");
        assert_eq!(choose(&mut r, &[1, 2], 5).len(), 2);
    }

    const FIRST_ACTION_DRAW: u64 = 15_715_005_604_373_573_095;
}

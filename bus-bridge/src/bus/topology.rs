//! Segments, the links joining them, and the arbitration domains they
//! form: a domain is a set of segments joined by links that are up, one
//! shared medium with one bus clock.

use crate::clock::{BusTime, WallTime};
use crate::ids::{IdVec, LinkId, PortId, SegmentId};

/// Connected components of `n` segments joined by `links`: each segment's
/// representative.
pub(crate) fn components(n: usize, links: impl Iterator<Item = (usize, usize)>) -> Vec<usize> {
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    for (a, b) in links {
        let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
        if ra != rb {
            parent[ra.max(rb)] = ra.min(rb);
        }
    }
    (0..n).map(|x| find(&mut parent, x)).collect()
}

struct Link {
    ends: (SegmentId, SegmentId),
    up: bool,
    /// Times it was cut.
    cuts: u64,
}

/// The links and which are up.
pub(crate) struct Links {
    segments: usize,
    links: IdVec<LinkId, Link>,
    /// Segment -> component when every link is up.
    full: Vec<usize>,
}

/// One domain's members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Group {
    /// In index order.
    pub segments: Vec<SegmentId>,
    /// Ports on those segments, in index order.
    pub ports: Vec<PortId>,
    /// Ports the domain would reach if every link were up.
    pub cut_off: Vec<PortId>,
}

impl Links {
    /// Links between `segments` segments; those in `cut` start cut (and
    /// count one cut each).
    pub fn new(segments: usize, ends: &[(SegmentId, SegmentId)], cut: &[LinkId]) -> Links {
        let links: IdVec<LinkId, Link> = ends
            .iter()
            .map(|&ends| Link {
                ends,
                up: true,
                cuts: 0,
            })
            .collect();
        let full = components(segments, ends.iter().map(|(a, b)| (a.0, b.0)));
        let mut l = Links {
            segments,
            links,
            full,
        };
        for &c in cut {
            l.links[c].up = false;
            l.links[c].cuts = 1;
        }
        l
    }

    pub fn ids(&self) -> impl Iterator<Item = LinkId> + use<> {
        self.links.ids()
    }

    pub fn is_up(&self, link: LinkId) -> bool {
        self.links[link].up
    }

    pub fn cuts(&self, link: LinkId) -> u64 {
        self.links[link].cuts
    }

    /// Cuts or restores `link`; whether that changed anything.
    pub fn set(&mut self, link: LinkId, up: bool) -> bool {
        let l = &mut self.links[link];
        if l.up == up {
            return false;
        }
        l.up = up;
        if !up {
            l.cuts += 1;
        }
        true
    }

    /// The domains the links that are up make, ordered by their first
    /// segment, for ports on `port_segment`.
    pub fn groups(&self, port_segment: &IdVec<PortId, SegmentId>) -> Vec<Group> {
        let up = self
            .links
            .iter()
            .filter(|l| l.up)
            .map(|l| (l.ends.0.0, l.ends.1.0));
        let comp = components(self.segments, up);
        let mut groups: Vec<Vec<SegmentId>> = Vec::new();
        let mut root_group = vec![usize::MAX; self.segments];
        for (s, &r) in comp.iter().enumerate() {
            if root_group[r] == usize::MAX {
                root_group[r] = groups.len();
                groups.push(Vec::new());
            }
            groups[root_group[r]].push(SegmentId(s));
        }
        groups
            .into_iter()
            .map(|segments| {
                let home = self.full[segments[0].0];
                let mut g = Group {
                    segments,
                    ports: Vec::new(),
                    cut_off: Vec::new(),
                };
                for (p, &s) in port_segment.enumerate() {
                    if g.segments.contains(&s) {
                        g.ports.push(p);
                    } else if self.full[s.0] == home {
                        g.cut_off.push(p);
                    }
                }
                g
            })
            .collect()
    }
}

/// One arbitration domain and its bus clock; `F` is a frame on its wire.
#[derive(Debug)]
pub(crate) struct Domain<F> {
    pub group: Group,
    /// Bus time the bus last became free.
    pub clock: BusTime,
    /// Unpaced: wall time the bus went idle, while it is idle.
    pub idle_since: Option<WallTime>,
    /// Paced: the frame on the wire.
    pub in_flight: Option<F>,
}

impl<F> Domain<F> {
    /// The domain's bus time at wall time `now`.
    pub fn bus_now(&self, paced: bool, now: WallTime) -> BusTime {
        if paced {
            return now.as_paced_bus();
        }
        match self.idle_since {
            Some(since) => self.clock + now.saturating_since(since),
            None => self.clock,
        }
    }

    /// The wall time at which the domain's bus reaches `bus`, if it stays
    /// idle (unpaced) or at all (paced).
    pub fn wall_at(&self, paced: bool, bus: BusTime, now: WallTime) -> WallTime {
        if paced {
            return bus.as_paced_wall();
        }
        let since = self.idle_since.unwrap_or(now);
        since + bus.saturating_since(self.clock)
    }

    /// Unpaced: the bus goes idle at `now`; whether that is news.
    pub fn go_idle(&mut self, paced: bool, now: WallTime) -> bool {
        if paced || self.idle_since.is_some() {
            return false;
        }
        self.idle_since = Some(now);
        true
    }

    /// The bus leaves idle at `now`; unpaced, the idle time joins the
    /// clock. Whether that is news.
    pub fn leave_idle(&mut self, paced: bool, now: WallTime) -> bool {
        let Some(since) = self.idle_since.take() else {
            return false;
        };
        if !paced {
            self.clock = self.clock + now.saturating_since(since);
        }
        true
    }
}

/// New domains for `groups` at wall time `now`, from the `old` ones.
/// Merged domains continue from the latest of their clocks; a frame in
/// flight survives only if its domain is unchanged, the others are
/// returned (aborted), in the old domains' order.
pub(crate) fn regroup<F>(
    mut old: Vec<Domain<F>>,
    groups: Vec<Group>,
    paced: bool,
    now: WallTime,
) -> (Vec<Domain<F>>, Vec<F>) {
    // Settle idle time into the clocks first.
    for d in &mut old {
        if !paced && let Some(since) = d.idle_since {
            d.clock = d.clock + now.saturating_since(since);
            d.idle_since = Some(now);
        }
    }
    let mut domains = Vec::with_capacity(groups.len());
    for group in groups {
        let clock = old
            .iter()
            .filter(|d| d.group.segments.iter().any(|s| group.segments.contains(s)))
            .map(|d| d.clock)
            .max()
            .unwrap_or(BusTime::ZERO);
        let in_flight = old
            .iter_mut()
            .find(|d| d.group.segments == group.segments)
            .and_then(|d| d.in_flight.take());
        domains.push(Domain {
            group,
            clock,
            idle_since: (!paced).then_some(now),
            in_flight,
        });
    }
    let aborted = old.into_iter().filter_map(|d| d.in_flight).collect();
    (domains, aborted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_follow_links() {
        assert_eq!(components(3, [].into_iter()), [0, 1, 2]);
        assert_eq!(components(3, [(0, 1), (1, 2)].into_iter()), [0, 0, 0]);
        assert_eq!(components(4, [(2, 3), (1, 3)].into_iter()), [0, 1, 1, 1]);
    }

    fn s(i: usize) -> SegmentId {
        SegmentId(i)
    }

    #[test]
    fn a_cut_splits_a_domain_and_its_ports_see_the_rest_as_cut_off() {
        // base - ext1 - ha, one port on each, two on base.
        let ports: IdVec<PortId, SegmentId> = [s(0), s(1), s(2), s(0)].into_iter().collect();
        let mut links = Links::new(3, &[(s(0), s(1)), (s(1), s(2))], &[]);
        let all = links.groups(&ports);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].ports.len(), 4);
        assert!(all[0].cut_off.is_empty());
        assert!(links.set(LinkId(1), false) && !links.set(LinkId(1), false));
        assert_eq!(links.cuts(LinkId(1)), 1);
        let split = links.groups(&ports);
        assert_eq!(split[0].segments, [s(0), s(1)]);
        assert_eq!(split[0].ports, [PortId(0), PortId(1), PortId(3)]);
        assert_eq!(split[0].cut_off, [PortId(2)]);
        assert_eq!(split[1].cut_off, [PortId(0), PortId(1), PortId(3)]);
        // A link cut from the start counts as cut once.
        let l = Links::new(2, &[(s(0), s(1))], &[LinkId(0)]);
        assert!(!l.is_up(LinkId(0)) && l.cuts(LinkId(0)) == 1);
    }

    #[test]
    fn merged_domains_take_the_later_clock_and_a_changed_domain_loses_its_frame() {
        let t = BusTime::from_ns;
        let dom = |segs: &[usize], clock, in_flight| Domain {
            group: Group {
                segments: segs.iter().map(|&i| s(i)).collect(),
                ports: vec![],
                cut_off: vec![],
            },
            clock: t(clock),
            idle_since: None,
            in_flight,
        };
        let group = |segs: &[usize]| dom(segs, 0, None::<u8>).group;
        let old = vec![
            dom(&[0], 500, Some(1u8)),
            dom(&[1], 900, Some(2)),
            dom(&[2], 100, Some(3)),
        ];
        let (new, aborted) = regroup(old, vec![group(&[0, 1]), group(&[2])], true, WallTime::ZERO);
        assert_eq!(new[0].clock, t(900), "the later clock");
        assert_eq!(new[0].in_flight, None);
        assert_eq!(new[1].in_flight, Some(3), "unchanged: its frame goes on");
        assert_eq!(aborted, [1, 2]);
        // Unpaced, idle time is settled into the clock first.
        let mut idle = dom(&[0], 100, None::<u8>);
        idle.idle_since = Some(WallTime::from_ns(10));
        let (new, _) = regroup(vec![idle], vec![group(&[0])], false, WallTime::from_ns(50));
        assert_eq!(new[0].clock, t(140));
        assert_eq!(new[0].idle_since, Some(WallTime::from_ns(50)));
        assert_eq!(new[0].bus_now(false, WallTime::from_ns(60)), t(150));
        assert_eq!(
            new[0].wall_at(false, t(200), WallTime::from_ns(60)),
            WallTime::from_ns(110)
        );
    }
}

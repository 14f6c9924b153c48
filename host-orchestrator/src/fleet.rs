//! Fleet files: which nodes to boot, the master's policy and the bus preset.

use crate::master::{MasterConfig, Mode};
use anyhow::{Context, Result, bail};
use proto::NodeType;
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;

use crate::holdoff::{HoldOff, HoldOffSettings, Policy};
use bus_bridge::{BitTiming, FaultConfig, LinkConfig, Topology};

/// Most nodes one testbed boots (node ids and ports are sized for it).
pub const MAX_NODES: usize = 250;

/// A parsed and checked fleet.
#[derive(Clone, Debug)]
pub struct Fleet {
    /// Nodes in id order; ids start at 1.
    pub nodes: Vec<NodeSpec>,
    /// The master's configuration.
    pub master: MasterConfig,
    /// The bus's bit rates.
    pub timing: BitTiming,
    /// Whether the bus runs in real time.
    pub paced: bool,
    /// The device nodes reach the bus through.
    pub transport: board::strap::Transport,
    /// Bus segments and the links (flex cables) that join them.
    pub topology: Topology,
    /// Bus faults in force from the start.
    pub faults: FaultConfig,
    /// Pad every image's payload to this many bytes (a realistic size for
    /// the same code); `None` sends the images as built.
    pub image_size: Option<u32>,
}

/// One node.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// Node id on the bus.
    pub id: u16,
    /// Node type.
    pub node_type: NodeType,
    /// Bus segment name.
    pub segment: String,
    /// Lowest image version the node accepts.
    pub min_version: u32,
    /// When its power comes on, after the testbed starts.
    pub power_on_after: Duration,
    /// Its redundancy group, if it has one.
    pub group: Option<String>,
    /// Its update set, if it has one.
    pub set: Option<String>,
}

/// A fleet file as written. Scenario files share its sections.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FleetFile {
    pub(crate) image_size: Option<String>,
    // Not spanned: toml cannot span a table made implicitly by `[bus.faults]`.
    pub(crate) bus: Option<BusSection>,
    pub(crate) master: Option<toml::Spanned<MasterSection>>,
    pub(crate) nodes: Vec<toml::Spanned<NodeGroup>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BusSection {
    #[serde(default = "default_preset")]
    preset: BitTiming,
    #[serde(default)]
    paced: bool,
    transport: Option<String>,
    segments: Option<Vec<String>>,
    links: Option<Vec<[String; 2]>>,
    faults: Option<FaultConfig>,
}

impl Default for BusSection {
    fn default() -> Self {
        BusSection {
            preset: default_preset(),
            paced: false,
            transport: None,
            segments: None,
            links: None,
            faults: None,
        }
    }
}

fn default_preset() -> BitTiming {
    BitTiming::Fd1m5m
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct MasterSection {
    policy: Option<Policy>,
    hold_off_ms: Option<i64>,
    max_wait_ms: Option<i64>,
    shrink_step_ms: Option<i64>,
    floor_ms: Option<i64>,
    min_requests: Option<i64>,
    #[serde(default)]
    mode: Mode,
    late_join: Option<bool>,
    repair_rounds: Option<i64>,
    repair_wait_ms: Option<i64>,
    backup: Option<bool>,
    takeover_ms: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NodeGroup {
    #[serde(rename = "type")]
    node_type: String,
    #[serde(default = "one")]
    count: i64,
    #[serde(default = "default_segment")]
    segment: String,
    #[serde(default)]
    min_version: Option<String>,
    /// The group's first node powers on this long after the start.
    start_after_ms: Option<i64>,
    /// Each further node of the group powers on this long after the previous.
    stagger_ms: Option<i64>,
    /// Redundancy group: at least one member must run at every moment.
    group: Option<String>,
    /// Update set (rolling updates reboot one set at a time).
    set: Option<String>,
    /// Update sets, given to the group's nodes in turn.
    sets: Option<Vec<String>>,
}

fn one() -> i64 {
    1
}
fn default_segment() -> String {
    "base".into()
}

/// The bus's segments and links: as listed, or the nodes' segments in
/// first-use order, chained like the seed's frames by flex cables.
fn topology(bus: &BusSection, nodes: &[NodeSpec]) -> Result<Topology> {
    let segments = match &bus.segments {
        Some(s) => {
            if s.is_empty() {
                bail!("bus.segments: lists no segment");
            }
            for (i, n) in nodes.iter().enumerate() {
                if !s.contains(&n.segment) {
                    bail!(
                        "nodes: node {} (#{i}) is on segment {:?}, which bus.segments {s:?} does not list",
                        n.id,
                        n.segment
                    );
                }
            }
            s.clone()
        }
        None => {
            let mut s: Vec<String> = Vec::new();
            for n in nodes {
                if !s.contains(&n.segment) {
                    s.push(n.segment.clone());
                }
            }
            s
        }
    };
    let links = match &bus.links {
        Some(pairs) => {
            let mut links = Vec::new();
            for (k, [a, b]) in pairs.iter().enumerate() {
                for end in [a, b] {
                    if !segments.contains(end) {
                        bail!("bus.links[{k}]: segment {end:?} is not one of {segments:?}");
                    }
                }
                links.push(LinkConfig::between(a.clone(), b.clone()));
            }
            links
        }
        None => segments
            .windows(2)
            .map(|w| LinkConfig::between(w[0].clone(), w[1].clone()))
            .collect(),
    };
    Ok(Topology { segments, links })
}

/// The 1-based line of byte `offset` in `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Adds the nodes of group `i` of a fleet file.
fn add_group(nodes: &mut Vec<NodeSpec>, i: usize, g: &NodeGroup) -> Result<()> {
    let node_type = NodeType::from_name(&g.node_type).with_context(|| {
        format!(
            "nodes[{i}].type: unknown node type {:?} (known: {})",
            g.node_type,
            type_names()
        )
    })?;
    if g.count < 1 {
        bail!("nodes[{i}].count: must be at least 1, got {}", g.count);
    }
    let name_ok =
        |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !name_ok(&g.segment) {
        bail!(
            "nodes[{i}].segment: {:?} is not a segment name (letters, digits, '-')",
            g.segment
        );
    }
    if let Some(group) = g.group.as_deref().filter(|s| !name_ok(s)) {
        bail!("nodes[{i}].group: {group:?} is not a group name (letters, digits, '-')");
    }
    let sets: Vec<String> = match (&g.set, &g.sets) {
        (Some(_), Some(_)) => bail!("nodes[{i}].sets: give `set` or `sets`, not both"),
        (Some(s), None) => vec![s.clone()],
        (None, Some(v)) if v.is_empty() => bail!("nodes[{i}].sets: lists no set"),
        (None, Some(v)) => v.clone(),
        (None, None) => Vec::new(),
    };
    if let Some(bad) = sets.iter().find(|s| !name_ok(s)) {
        bail!("nodes[{i}].sets: {bad:?} is not a set name (letters, digits, '-')");
    }
    let min_version = match &g.min_version {
        Some(v) => images::build::parse_version(v)
            .map_err(|e| anyhow::anyhow!("nodes[{i}].min_version: {e}"))?,
        None => 0,
    };
    let ms = |field: &str, v: Option<i64>| -> Result<Duration> {
        match v {
            Some(v) if !(0..=3_600_000).contains(&v) => {
                bail!("nodes[{i}].{field}: must be 0 to 3600000 milliseconds, got {v}")
            }
            v => Ok(Duration::from_millis(v.unwrap_or(0) as u64)),
        }
    };
    let start_after = ms("start_after_ms", g.start_after_ms)?;
    let stagger = ms("stagger_ms", g.stagger_ms)?;
    for k in 0..g.count as usize {
        if nodes.len() >= MAX_NODES {
            bail!("nodes: more than {MAX_NODES} nodes");
        }
        nodes.push(NodeSpec {
            id: nodes.len() as u16 + 1,
            node_type,
            segment: g.segment.clone(),
            min_version,
            power_on_after: start_after + stagger * k as u32,
            group: g.group.clone(),
            set: (!sets.is_empty()).then(|| sets[k % sets.len()].clone()),
        });
    }
    Ok(())
}

/// The master's settings from `[master]`, for a fleet of `fleet_size`.
fn master_config(m: &MasterSection, fleet_size: usize) -> Result<MasterConfig> {
    let settings = HoldOffSettings {
        policy: m.policy,
        hold_off_ms: m.hold_off_ms,
        max_wait_ms: m.max_wait_ms,
        shrink_step_ms: m.shrink_step_ms,
        floor_ms: m.floor_ms,
        min_requests: m.min_requests,
    };
    let mut master = MasterConfig::new(HoldOff::new(&settings, fleet_size)?);
    master.mode = m.mode;
    master.late_join = m.late_join.unwrap_or(true);
    master.backup = m.backup.unwrap_or(false);
    if let Some(r) = m.repair_rounds {
        if !(0..=10).contains(&r) {
            bail!("master.repair_rounds: must be 0 to 10, got {r}");
        }
        master.repair.rounds = r as u8;
    }
    if let Some(w) = m.repair_wait_ms {
        if w <= 0 {
            bail!("master.repair_wait_ms: must be a positive number of milliseconds, got {w}");
        }
        master.repair.wait = Duration::from_millis(w as u64);
    }
    if let Some(t) = m.takeover_ms {
        if t <= 0 {
            bail!("master.takeover_ms: must be a positive number of milliseconds, got {t}");
        }
        master.takeover_after = Duration::from_millis(t as u64);
    }
    Ok(master)
}

fn type_names() -> String {
    NodeType::ALL
        .iter()
        .map(|t| t.name())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Fleet {
    /// Reads a fleet file. Errors name the file, the field and the reason.
    pub fn load(path: &Path) -> Result<Fleet> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read fleet file {}", path.display()))?;
        Fleet::parse(&text).with_context(|| format!("fleet file {}", path.display()))
    }

    /// Parses fleet TOML.
    pub fn parse(text: &str) -> Result<Fleet> {
        let file: FleetFile = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        Fleet::from_file(file, text)
    }

    /// Builds a fleet from its parsed file; `text` is the file, for line
    /// numbers in errors.
    pub(crate) fn from_file(file: FleetFile, text: &str) -> Result<Fleet> {
        let bus = file.bus.unwrap_or_default();
        let bus_at = "[bus]".to_string();
        if !bus.preset.is_fd() {
            bail!(
                "{bus_at}: bus.preset: {} carries 8-byte classic frames, but bootcast's messages need CAN FD (fd-1m-2m or fd-1m-5m)",
                bus.preset.name()
            );
        }
        if file.nodes.is_empty() {
            bail!("nodes: the fleet has no nodes");
        }
        let mut nodes = Vec::new();
        for (i, g) in file.nodes.iter().enumerate() {
            let line = line_of(text, g.span().start);
            add_group(&mut nodes, i, g.get_ref()).with_context(|| format!("line {line}"))?;
        }
        let (m, master_at) = match file.master {
            Some(m) => {
                let at = format!("line {}", line_of(text, m.span().start));
                (m.into_inner(), at)
            }
            None => (MasterSection::default(), "master".to_string()),
        };
        let mut master = master_config(&m, nodes.len()).with_context(|| master_at)?;
        master.bus_timing = bus.preset;
        let topology = topology(&bus, &nodes).with_context(|| bus_at.clone())?;
        Ok(Fleet {
            nodes,
            master,
            topology,
            faults: bus.faults.clone().unwrap_or_default(),
            timing: bus.preset,
            paced: bus.paced,
            transport: match bus.transport.as_deref() {
                None | Some("uart") => board::strap::Transport::Uart,
                Some("virtio") => board::strap::Transport::Virtio,
                Some(other) => {
                    bail!("{bus_at}: bus.transport: unknown transport {other:?} (uart or virtio)")
                }
            },
            image_size: match &file.image_size {
                Some(s) => Some(
                    images::build::parse_size(s).map_err(|e| anyhow::anyhow!("image_size: {e}"))?,
                ),
                None => None,
            },
        })
    }

    /// The default fleet of `n` nodes in the seed's tape-library mix: a few
    /// of each module type and drives for the rest.
    pub fn default_mix(n: usize) -> Result<Fleet> {
        if n == 0 || n > MAX_NODES {
            bail!("--nodes: must be between 1 and {MAX_NODES}, got {n}");
        }
        let few = |per: usize| (n / per).max(1);
        let mut counts = vec![
            (NodeType::Accessor, few(20)),
            (NodeType::Xy, few(20)),
            (NodeType::Comm, few(13)),
            (NodeType::OpPanel, few(20)),
        ];
        let modules: usize = counts.iter().map(|c| c.1).sum();
        if n > modules {
            counts.insert(2, (NodeType::Drive, n - modules));
        }
        // The seed's library: the base frame holds the first of each module,
        // the high-availability frame the second, the extension frame more
        // communication processors; drives fill all three. Small fleets fit
        // the base frame alone.
        let library = n >= 6;
        let segment = |t: NodeType, k: usize| -> &'static str {
            match (library, t) {
                (false, _) => "base",
                (true, NodeType::Drive) => ["base", "ext1", "ha"][k % 3],
                (true, _) => ["base", "ha", "ext1"][k % 3],
            }
        };
        let mut left = n;
        let mut text = String::new();
        if library {
            text += "[bus]\nsegments = [\"base\", \"ext1\", \"ha\"]\n";
        }
        for (t, c) in counts {
            let c = c.min(left);
            left -= c;
            for k in 0..c {
                text += &format!(
                    "[[nodes]]\ntype = \"{}\"\nsegment = \"{}\"\n",
                    t.name(),
                    segment(t, k)
                );
            }
        }
        Fleet::parse(&text)
    }

    /// Node types present, in type order.
    pub fn types(&self) -> Vec<NodeType> {
        let mut t: Vec<NodeType> = self.nodes.iter().map(|n| n.node_type).collect();
        t.sort();
        t.dedup();
        t
    }

    /// Segment names.
    pub fn segments(&self) -> Vec<String> {
        self.topology.segments.clone()
    }

    /// The hold-off window's maximum length.
    pub fn max_window(&self) -> Duration {
        self.master.hold_off.max_wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(f: &Fleet, t: NodeType) -> usize {
        f.nodes.iter().filter(|n| n.node_type == t).count()
    }

    #[test]
    fn default_mix_follows_the_library() {
        let f = Fleet::default_mix(40).unwrap();
        assert_eq!(f.nodes.len(), 40);
        assert_eq!(
            [
                NodeType::Accessor,
                NodeType::Xy,
                NodeType::Comm,
                NodeType::OpPanel,
                NodeType::Drive
            ]
            .map(|t| count(&f, t)),
            [2, 2, 3, 2, 31]
        );
        let f = Fleet::default_mix(8).unwrap();
        assert_eq!(count(&f, NodeType::Drive), 4);
        assert_eq!(f.types().len(), 5);
        let f = Fleet::default_mix(3).unwrap();
        assert_eq!(f.nodes.len(), 3);
        assert_eq!(f.types().len(), 3);
        assert!(Fleet::default_mix(0).is_err());
        let ids: Vec<u16> = Fleet::default_mix(12)
            .unwrap()
            .nodes
            .iter()
            .map(|n| n.id)
            .collect();
        assert_eq!(ids, (1..=12).collect::<Vec<_>>());
    }

    #[test]
    fn fault_tables_need_no_bus_table() {
        let f = Fleet::parse(
            "[bus.faults]\nseed = 7\nrules = [{ kind = \"loss\", probability = 0.02 }]\n[[nodes]]\ntype = \"xy\"\n",
        )
        .unwrap();
        assert_eq!(f.faults.seed, 7);
        assert_eq!(f.faults.rules.len(), 1);
    }

    #[test]
    fn redundancy_groups_and_sets() {
        let f = Fleet::parse(
            "[[nodes]]\ntype = \"accessor\"\ncount = 2\ngroup = \"accessor\"\nsets = [\"A\", \"B\"]\n\
             [[nodes]]\ntype = \"drive\"\n",
        )
        .unwrap();
        let sets: Vec<_> = f
            .nodes
            .iter()
            .map(|n| (n.group.as_deref(), n.set.as_deref()))
            .collect();
        assert_eq!(
            sets,
            [
                (Some("accessor"), Some("A")),
                (Some("accessor"), Some("B")),
                (None, None)
            ]
        );
    }

    #[test]
    fn full_file_parses() {
        let f = Fleet::parse(
            r#"
            [bus]
            preset = "fd-1m-5m"
            paced = true
            [master]
            policy = "fixed"
            hold_off_ms = 800
            max_wait_ms = 900
            [[nodes]]
            type = "drive"
            count = 3
            segment = "ext1"
            min_version = "1.2.3"
            "#,
        )
        .unwrap();
        assert!(f.paced);
        assert_eq!(f.nodes.len(), 3);
        assert_eq!(f.nodes[2].segment, "ext1");
        assert_eq!(
            f.nodes[0].min_version,
            images::manifest::pack_version(1, 2, 3)
        );
        assert_eq!(f.master.hold_off.policy, Policy::Fixed);
    }

    #[test]
    fn bad_files_name_the_field() {
        let cases = [
            (
                "[[nodes]]\ntype = \"robot\"\n",
                "nodes[0].type: unknown node type \"robot\"",
            ),
            (
                "[[nodes]]\ntype = \"drive\"\ncount = 0\n",
                "nodes[0].count: must be at least 1",
            ),
            ("nodes = []\n", "nodes: the fleet has no nodes"),
            (
                "[master]\nhold_off_ms = 0\n[[nodes]]\ntype = \"xy\"\n",
                "hold_off_ms",
            ),
            (
                "[master]\nhold_off_ms = -5\n[[nodes]]\ntype = \"xy\"\n",
                "hold_off_ms",
            ),
            (
                "[master]\npolicy = \"sometimes\"\n[[nodes]]\ntype = \"xy\"\n",
                "unknown variant `sometimes`",
            ),
            (
                "[[nodes]]\ntype = \"xy\"\ncolour = 1\n",
                "unknown field `colour`",
            ),
            (
                "[[nodes]]\ntype = \"xy\"\nstagger_ms = -1\n",
                "nodes[0].stagger_ms: must be 0 to 3600000",
            ),
            (
                "image_size = \"big\"\n[[nodes]]\ntype = \"xy\"\n",
                "image_size: size \"big\" is not a number",
            ),
            (
                "[[nodes]]\ntype = \"xy\"\nmin_version = \"1.2\"\n",
                "nodes[0].min_version",
            ),
            (
                "[[nodes]]\ntype = \"xy\"\ncount = 300\n",
                "more than 250 nodes",
            ),
            (
                "[[nodes]]\ntype = \"xy\"\nsegment = \"a b\"\n",
                "nodes[0].segment",
            ),
            (
                "[bus]\npreset = \"fd-9m\"\n[[nodes]]\ntype = \"xy\"\n",
                "unknown variant `fd-9m`",
            ),
            (
                "[bus]\npreset = \"classic-500k\"\n[[nodes]]\ntype = \"xy\"\n",
                "bus.preset: classic-500k",
            ),
        ];
        for (text, want) in cases {
            let err = format!("{:#}", Fleet::parse(text).unwrap_err());
            assert!(
                err.contains(want),
                "for {text:?}: got {err:?}, want {want:?}"
            );
        }
        // Errors inside a section name its line.
        let err = format!(
            "{:#}",
            Fleet::parse("[[nodes]]\ntype = \"xy\"\n\n[[nodes]]\ntype = \"robot\"\n").unwrap_err()
        );
        assert!(err.starts_with("line 4: nodes[1].type"), "{err}");
        let err = format!(
            "{:#}",
            Fleet::parse("[master]\nhold_off_ms = 0\n[[nodes]]\ntype = \"xy\"\n").unwrap_err()
        );
        assert!(err.starts_with("line 1: master.hold_off_ms"), "{err}");
        let err = format!(
            "{:#}",
            Fleet::parse("[[nodes]]\ntype = \"xy\"\nset = \"A\"\nsets = [\"A\"]\n").unwrap_err()
        );
        assert!(err.contains("nodes[0].sets: give `set` or `sets`"), "{err}");
        // TOML syntax errors carry the line.
        let err = format!("{:#}", Fleet::parse("[[nodes]]\ntype = \n").unwrap_err());
        assert!(err.contains("line 2"), "{err}");
    }
}

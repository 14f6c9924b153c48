//! Fleet files: which nodes to boot, the master's policy and the bus preset.

use crate::master::{MasterConfig, Mode};
use anyhow::{Context, Result, bail};
use images::build::{BuildOptions, Image};
use proto::NodeType;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::holdoff::{HoldOff, HoldOffSettings, Policy};
use board::strap::{Clock, Transport};
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
    pub transport: Transport,
    /// Which clock the fleet runs on.
    pub clock: Clock,
    /// The fleet file (or `--clock`) named no clock: the testbed runs it
    /// on the virtual clock where a QEMU >= 9 is installed
    /// ([`Fleet::choose_clock`]), else on the wall clock.
    pub clock_unset: bool,
    /// On the virtual clock: each node runs 2^shift ns per instruction
    /// (QEMU's `-icount shift`), from `[bus] ips`.
    pub icount_shift: u32,
    /// Bus segments and the links (flex cables) that join them.
    pub topology: Topology,
    /// Bus faults in force from the start.
    pub faults: FaultConfig,
    /// Pad every image's payload to this many bytes (a realistic size for
    /// the same code); `None` sends the images as built.
    pub image_size: Option<u32>,
    /// Images the fleet names by their ELF files (`[images]`), built when
    /// the fleet was made; the other types run the build's images.
    pub images: BTreeMap<NodeType, ElfImage>,
}

/// An image a fleet names by its ELF file (`[images]`), before it is built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElfSource {
    /// The ELF file (a fleet file's relative path is resolved against the
    /// fleet file's folder).
    pub elf: PathBuf,
    /// The image's name (default: the node type's name).
    pub name: Option<String>,
    /// Its version, packed (default: [`DEFAULT_ELF_VERSION`]).
    pub version: Option<u32>,
}

/// The version of an image built from an ELF file when the fleet names none:
/// the build's own images' version.
pub const DEFAULT_ELF_VERSION: &str = "1.0.0";

/// An image built from an ELF file when its fleet was made: checked as
/// `images build` checks it, padded to the fleet's `image_size`, not yet
/// signed (the testbed signs it with the build's key, which nodes trust).
#[derive(Clone, PartialEq, Eq)]
pub struct ElfImage {
    /// The ELF file it was built from.
    pub elf: PathBuf,
    /// The image.
    pub image: Arc<Image>,
}

impl std::fmt::Debug for ElfImage {
    /// The file and the manifest, not the payload's bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = &self.image.manifest;
        f.debug_struct("ElfImage")
            .field("elf", &self.elf)
            .field("name", &m.name_str())
            .field("version", &images::build::format_version(m.version))
            .field("size", &m.size)
            .field("sha256", &images::build::hex(&m.sha256))
            .finish()
    }
}

impl ElfSource {
    /// Builds the image for type `t`, padded to `pad_to`. Errors name the
    /// file and the reason.
    pub fn build(&self, t: NodeType, pad_to: Option<u32>) -> Result<ElfImage> {
        let name = self.name.clone().unwrap_or_else(|| t.name().to_string());
        images::build::encode_name(&name).context("name")?;
        let version = match self.version {
            Some(v) => v,
            None => {
                images::build::parse_version(DEFAULT_ELF_VERSION).map_err(anyhow::Error::msg)?
            }
        };
        let opts = BuildOptions {
            node_type: t,
            name,
            version,
            pad_to,
        };
        let image = images::build::build_file(&self.elf, &opts)?;
        Ok(ElfImage {
            elf: self.elf.clone(),
            image: Arc::new(image),
        })
    }
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

/// A fleet in code: what a fleet file says, typed (names stay names), and
/// checked by [`FleetBuilder::build`] exactly as a file is. Numbers are in
/// the file's units, so that one check covers both.
#[derive(Clone, Debug, Default)]
pub struct FleetBuilder {
    /// `image_size`: pad every image to this many bytes.
    pub image_size: Option<u32>,
    /// `[bus]`.
    pub bus: BusSettings,
    /// `[master]`.
    pub master: MasterSettings,
    /// `[[nodes]]`, in order: ids are given in this order.
    pub nodes: Vec<NodeGroup>,
    /// `[images]`: types whose image is built from an ELF file.
    pub images: BTreeMap<NodeType, ElfSource>,
}

/// The bus settings of a fleet (`[bus]`).
#[derive(Clone, Debug)]
pub struct BusSettings {
    /// The bit rates (CAN FD only).
    pub preset: BitTiming,
    /// Whether frames take their real time.
    pub paced: bool,
    /// How nodes reach the bus.
    pub transport: Transport,
    /// Which clock the fleet runs on; `None`: the testbed's choice
    /// ([`Fleet::choose_clock`]).
    pub clock: Option<Clock>,
    /// Instructions per virtual second of every node, on the virtual
    /// clock; `None`: [`DEFAULT_IPS`].
    pub ips: Option<u64>,
    /// Segment names; default: the nodes' segments in first-use order.
    pub segments: Option<Vec<String>>,
    /// Links between segments; default: the segments chained.
    pub links: Option<Vec<[String; 2]>>,
    /// Faults from the start.
    pub faults: FaultConfig,
}

impl Default for BusSettings {
    fn default() -> Self {
        BusSettings {
            preset: default_preset(),
            paced: false,
            transport: Transport::Virtio,
            clock: None,
            ips: None,
            segments: None,
            links: None,
            faults: FaultConfig::default(),
        }
    }
}

/// The master's settings as a fleet file writes them (`[master]`), before
/// they are checked. Times are milliseconds.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MasterSettings {
    /// The hold-off policy.
    pub policy: Option<Policy>,
    /// T.
    pub hold_off_ms: Option<i64>,
    /// The cap from the first request.
    pub max_wait_ms: Option<i64>,
    /// `shrink`: how much shorter each renewal is.
    pub shrink_step_ms: Option<i64>,
    /// `shrink`: the shortest renewal.
    pub floor_ms: Option<i64>,
    /// `quorum`: requesters that close the window.
    pub min_requests: Option<i64>,
    /// The broadcast mode.
    #[serde(default)]
    pub mode: Mode,
    /// Whether late nodes join a running session (default true).
    pub late_join: Option<bool>,
    /// At most this many repair rounds, 0 to 255 (default: as many as make
    /// progress).
    pub repair_rounds: Option<i64>,
    /// How long to collect NACKs.
    pub repair_wait_ms: Option<i64>,
    /// Repair stops after this long without progress.
    pub repair_stall_ms: Option<i64>,
    /// Repair stops this long after the first pass, progress or not.
    pub repair_budget_ms: Option<i64>,
    /// Run a backup master.
    pub backup: Option<bool>,
    /// The backup takes over after the primary is silent this long.
    pub takeover_ms: Option<i64>,
}

/// One group of nodes (`[[nodes]]`).
#[derive(Clone, Debug)]
pub struct NodeGroup {
    /// Their type.
    pub node_type: NodeType,
    /// How many (at least 1).
    pub count: i64,
    /// Their segment.
    pub segment: String,
    /// Their anti-rollback fuse (a packed version).
    pub min_version: u32,
    /// The group's first node powers on this long after the start.
    pub start_after_ms: Option<i64>,
    /// Each further node of the group powers on this long after the previous.
    pub stagger_ms: Option<i64>,
    /// Redundancy group: at least one member must run at every moment.
    pub group: Option<String>,
    /// Update set (rolling updates reboot one set at a time).
    pub set: Option<String>,
    /// Update sets, given to the group's nodes in turn.
    pub sets: Option<Vec<String>>,
}

impl NodeGroup {
    /// One node of type `t` on the `base` segment, powered on at the start.
    pub fn new(t: NodeType) -> NodeGroup {
        NodeGroup {
            node_type: t,
            count: 1,
            segment: default_segment(),
            min_version: 0,
            start_after_ms: None,
            stagger_ms: None,
            group: None,
            set: None,
            sets: None,
        }
    }
}

/// Where the parts of a fleet description were written, to name in errors.
#[derive(Default)]
pub(crate) struct Places {
    /// Each `[[nodes]]` group's place.
    pub(crate) nodes: Vec<String>,
    /// The `[master]` section's place.
    pub(crate) master: Option<String>,
    /// Each `[images]` entry's place.
    pub(crate) images: BTreeMap<NodeType, String>,
}

impl FleetBuilder {
    /// Checks the description and makes the fleet. Errors name the field.
    pub fn build(&self) -> Result<Fleet> {
        self.build_at(&Places::default())
    }

    /// [`FleetBuilder::build`], naming in errors where each part was written.
    pub(crate) fn build_at(&self, places: &Places) -> Result<Fleet> {
        let bus = &self.bus;
        if !bus.preset.is_fd() {
            bail!(
                "[bus]: bus.preset: {} carries 8-byte classic frames, but bootcast's messages need CAN FD (fd-1m-2m or fd-1m-5m)",
                bus.preset.name()
            );
        }
        if self.nodes.is_empty() {
            bail!("nodes: the fleet has no nodes");
        }
        let mut nodes = Vec::new();
        for (i, g) in self.nodes.iter().enumerate() {
            // The messages name `nodes[i]`; a file adds its line.
            add_group(&mut nodes, i, g).map_err(|e| match places.nodes.get(i) {
                Some(at) => e.context(at.clone()),
                None => e,
            })?;
        }
        let mut master = master_config(&self.master, nodes.len())
            .with_context(|| places.master.clone().unwrap_or_else(|| "master".into()))?;
        master.bus_timing = bus.preset;
        let topology = topology(bus, &nodes).context("[bus]")?;
        let icount_shift = icount_shift(bus.ips.unwrap_or(DEFAULT_IPS)).context("[bus]")?;
        if let Some(c) = bus.clock {
            check_clock(c, bus.transport).context("[bus]")?;
        }
        let mut images = BTreeMap::new();
        for (t, source) in &self.images {
            let built = elf_image(*t, source, &nodes, self.image_size);
            let built = match places.images.get(t) {
                Some(at) => built.context(at.clone()),
                None => built,
            }?;
            images.insert(*t, built);
        }
        Ok(Fleet {
            images,
            clock: bus.clock.unwrap_or(Clock::Wall),
            clock_unset: bus.clock.is_none(),
            icount_shift,
            nodes,
            master,
            topology,
            faults: bus.faults.clone(),
            timing: bus.preset,
            paced: bus.paced,
            transport: bus.transport,
            image_size: self.image_size,
        })
    }
}

/// The image of `[images]` entry `t`, built. Errors name the entry, the
/// file and the reason.
fn elf_image(
    t: NodeType,
    source: &ElfSource,
    nodes: &[NodeSpec],
    pad_to: Option<u32>,
) -> Result<ElfImage> {
    let at = format!("images.{}", t.name());
    if !nodes.iter().any(|n| n.node_type == t) {
        bail!(
            "{at}: no node of the fleet is of type {} (its [[nodes]] name none)",
            t.name()
        );
    }
    source.build(t, pad_to).context(at)
}

/// A fleet file as written. Scenario files share its sections.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FleetFile {
    pub(crate) image_size: Option<String>,
    /// `[images]`: node type name = ELF path, or a table with `elf`,
    /// `name`, `version`.
    pub(crate) images: Option<BTreeMap<String, toml::Spanned<toml::Value>>>,
    // Not spanned: toml cannot span a table made implicitly by `[bus.faults]`.
    pub(crate) bus: Option<BusSection>,
    pub(crate) master: Option<toml::Spanned<MasterSettings>>,
    pub(crate) nodes: Vec<toml::Spanned<NodesSection>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BusSection {
    #[serde(default = "default_preset")]
    preset: BitTiming,
    #[serde(default)]
    paced: bool,
    transport: Option<String>,
    clock: Option<String>,
    ips: Option<u64>,
    segments: Option<Vec<String>>,
    links: Option<Vec<[String; 2]>>,
    faults: Option<FaultConfig>,
}

fn default_preset() -> BitTiming {
    BitTiming::Fd1m5m
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NodesSection {
    #[serde(rename = "type")]
    node_type: String,
    #[serde(default = "one")]
    count: i64,
    #[serde(default = "default_segment")]
    segment: String,
    #[serde(default)]
    min_version: Option<String>,
    start_after_ms: Option<i64>,
    stagger_ms: Option<i64>,
    group: Option<String>,
    set: Option<String>,
    sets: Option<Vec<String>>,
}

fn one() -> i64 {
    1
}
fn default_segment() -> String {
    "base".into()
}

impl NodesSection {
    /// The group, with its type and version names read.
    fn group(self, i: usize) -> Result<NodeGroup> {
        let node_type = NodeType::from_name(&self.node_type).with_context(|| {
            format!(
                "nodes[{i}].type: unknown node type {:?} (known: {})",
                self.node_type,
                type_names()
            )
        })?;
        let min_version = match &self.min_version {
            Some(v) => images::build::parse_version(v)
                .map_err(|e| anyhow::anyhow!("nodes[{i}].min_version: {e}"))?,
            None => 0,
        };
        Ok(NodeGroup {
            node_type,
            count: self.count,
            segment: self.segment,
            min_version,
            start_after_ms: self.start_after_ms,
            stagger_ms: self.stagger_ms,
            group: self.group,
            set: self.set,
            sets: self.sets,
        })
    }
}

/// The `[images]` entries of a fleet file, their paths resolved against
/// `dir`, and where each was written.
fn image_sources(
    entries: BTreeMap<String, toml::Spanned<toml::Value>>,
    text: &str,
    dir: &Path,
    places: &mut Places,
) -> Result<BTreeMap<NodeType, ElfSource>> {
    let mut out = BTreeMap::new();
    for (key, value) in entries {
        let at = format!("line {}", line_of(text, value.span().start));
        let source = image_source(&key, value.get_ref(), dir).context(at.clone())?;
        let t = source.0;
        places.images.insert(t, at);
        out.insert(t, source.1);
    }
    Ok(out)
}

/// One `[images]` entry: `type = "path"` or `type = { elf = "path",
/// name = "...", version = "M.m.p" }`.
fn image_source(key: &str, value: &toml::Value, dir: &Path) -> Result<(NodeType, ElfSource)> {
    let t = NodeType::from_name(key).with_context(|| {
        format!(
            "images.{key}: unknown node type {key:?} (known: {})",
            type_names()
        )
    })?;
    let shape = || {
        anyhow::anyhow!(
            "images.{key}: give the path of an ELF file, or a table {{ elf = \"path\", name = \"...\", version = \"M.m.p\" }}"
        )
    };
    let (elf, name, version) = match value {
        toml::Value::String(path) => (path.clone(), None, None),
        toml::Value::Table(table) => {
            let text = |field: &str| -> Result<Option<String>> {
                match table.get(field) {
                    None => Ok(None),
                    Some(toml::Value::String(s)) => Ok(Some(s.clone())),
                    Some(other) => bail!(
                        "images.{key}.{field}: must be a string, got {}",
                        other.type_str()
                    ),
                }
            };
            if let Some(unknown) = table
                .keys()
                .find(|k| !["elf", "name", "version"].contains(&k.as_str()))
            {
                bail!("images.{key}: unknown key `{unknown}` (elf, name, version)");
            }
            let elf = text("elf")?.ok_or_else(shape)?;
            let version = match text("version")? {
                Some(v) => Some(
                    images::build::parse_version(&v)
                        .map_err(|e| anyhow::anyhow!("images.{key}.version: {e}"))?,
                ),
                None => None,
            };
            (elf, text("name")?, version)
        }
        _ => return Err(shape()),
    };
    if elf.is_empty() {
        bail!("images.{key}: the ELF path is empty");
    }
    if let Some(name) = &name {
        images::build::encode_name(name).map_err(|e| anyhow::anyhow!("images.{key}.name: {e}"))?;
    }
    Ok((
        t,
        ElfSource {
            elf: dir.join(elf),
            name,
            version,
        },
    ))
}

impl BusSection {
    /// The settings, with the transport's name read.
    fn settings(self) -> Result<BusSettings> {
        Ok(BusSettings {
            transport: transport(self.transport.as_deref().unwrap_or("virtio"))?,
            clock: self.clock.as_deref().map(clock).transpose()?,
            ips: self.ips,
            preset: self.preset,
            paced: self.paced,
            segments: self.segments,
            links: self.links,
            faults: self.faults.unwrap_or_default(),
        })
    }
}

/// The transport called `name` in fleet files.
pub fn transport(name: &str) -> Result<Transport> {
    match name {
        "uart" => Ok(Transport::Uart),
        "virtio" => Ok(Transport::Virtio),
        other => bail!("bus.transport: unknown transport {other:?} (uart or virtio)"),
    }
}

/// The clock called `name` in fleet files and on the command line.
pub fn clock(name: &str) -> Result<Clock> {
    match name {
        "wall" => Ok(Clock::Wall),
        "virtual" => Ok(Clock::Virtual),
        other => bail!("bus.clock: unknown clock {other:?} (wall or virtual)"),
    }
}

/// The virtual clock hands frames to a held node and waits until QEMU has
/// taken them all; a 16550 takes 16 bytes at a time, so only a
/// virtio-console can.
fn check_clock(clock: Clock, transport: Transport) -> Result<()> {
    if clock == Clock::Virtual && transport != Transport::Virtio {
        bail!(
            "bus.clock: the virtual clock needs transport = \"virtio\" (a 16550 takes 16 bytes at a time, so a held node cannot take a frame whole)"
        );
    }
    Ok(())
}

impl Fleet {
    /// This fleet on `clock` (the command line's `--clock`), checked as a
    /// fleet file's `[bus] clock` is.
    pub fn with_clock(mut self, clock: Clock) -> Result<Fleet> {
        check_clock(clock, self.transport).context("--clock")?;
        self.clock = clock;
        self.clock_unset = false;
        Ok(self)
    }

    /// The clock for a fleet that named none: virtual where `virtual_ok`
    /// (a QEMU >= 9 and the clock plugin are there) and the nodes are on
    /// virtio, else wall. A fleet that named its clock keeps it.
    pub fn choose_clock(&mut self, virtual_ok: bool) {
        if self.clock_unset {
            self.clock = if virtual_ok && self.transport == Transport::Virtio {
                Clock::Virtual
            } else {
                Clock::Wall
            };
            self.clock_unset = false;
        }
    }

    /// This fleet on `transport` (the command line's `--transport`),
    /// checked as a fleet file's `[bus] transport` is.
    pub fn with_transport(mut self, transport: Transport) -> Result<Fleet> {
        check_clock(self.clock, transport).context("--transport")?;
        self.transport = transport;
        Ok(self)
    }
}

/// Instructions per virtual second when a fleet does not say: 8 ns each,
/// a 125 MHz microcontroller.
pub const DEFAULT_IPS: u64 = 125_000_000;

/// QEMU's `-icount shift` for `ips` instructions per virtual second: it
/// must be 10^9 / 2^shift, shift 0 to 10.
pub fn icount_shift(ips: u64) -> Result<u32> {
    // 10^9 = 2^9 * 1953125: shifts above 9 leave no whole rate.
    (0..=9u32)
        .find(|&s| 1_000_000_000u64 >> s == ips)
        .with_context(|| {
            let allowed: Vec<String> = (0..=9u32).map(|s| (1_000_000_000u64 >> s).to_string()).collect();
            format!(
                "bus.ips: {ips} instructions per second is not 10^9 / 2^k (QEMU's icount runs 2^k ns per instruction); use one of {}",
                allowed.join(", ")
            )
        })
}

/// The bus's segments and links: as listed, or the nodes' segments in
/// first-use order, chained like the seed's frames by flex cables.
fn topology(bus: &BusSettings, nodes: &[NodeSpec]) -> Result<Topology> {
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
            node_type: g.node_type,
            segment: g.segment.clone(),
            min_version: g.min_version,
            power_on_after: start_after + stagger * k as u32,
            group: g.group.clone(),
            set: (!sets.is_empty()).then(|| sets[k % sets.len()].clone()),
        });
    }
    Ok(())
}

/// The master's settings from `[master]`, for a fleet of `fleet_size`.
fn master_config(m: &MasterSettings, fleet_size: usize) -> Result<MasterConfig> {
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
        if !(0..=255).contains(&r) {
            bail!("master.repair_rounds: must be 0 to 255, got {r}");
        }
        master.repair.max_rounds = Some(r as u8);
    }
    let ms = |field: &str, v: Option<i64>| -> Result<Option<Duration>> {
        match v {
            Some(v) if v <= 0 => {
                bail!("master.{field}: must be a positive number of milliseconds, got {v}")
            }
            v => Ok(v.map(|v| Duration::from_millis(v as u64))),
        }
    };
    let r = &mut master.repair;
    r.wait = ms("repair_wait_ms", m.repair_wait_ms)?.unwrap_or(r.wait);
    r.stall = ms("repair_stall_ms", m.repair_stall_ms)?.unwrap_or(r.stall);
    r.budget = ms("repair_budget_ms", m.repair_budget_ms)?.unwrap_or(r.budget);
    if r.stall < r.wait {
        bail!(
            "master.repair_stall_ms: {} ms is shorter than repair_wait_ms ({} ms): no round could show progress",
            r.stall.as_millis(),
            r.wait.as_millis()
        );
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
    /// Reads a fleet file; `[images]` paths are relative to its folder.
    /// Errors name the file, the field and the reason.
    pub fn load(path: &Path) -> Result<Fleet> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read fleet file {}", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Fleet::parse_in(&text, dir).with_context(|| format!("fleet file {}", path.display()))
    }

    /// Parses fleet TOML; `[images]` paths are relative to the current
    /// folder.
    pub fn parse(text: &str) -> Result<Fleet> {
        Fleet::parse_in(text, Path::new("."))
    }

    /// Parses fleet TOML; `[images]` paths are relative to `dir`.
    pub fn parse_in(text: &str, dir: &Path) -> Result<Fleet> {
        let file: FleetFile = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        Fleet::from_file(file, text, dir)
    }

    /// Builds a fleet from its parsed file; `text` is the file, for line
    /// numbers in errors, and `dir` the folder its `[images]` paths are
    /// relative to. Reads the names a file writes (types, versions, sizes,
    /// the transport); [`FleetBuilder::build`] checks the rest.
    pub(crate) fn from_file(file: FleetFile, text: &str, dir: &Path) -> Result<Fleet> {
        let mut places = Places::default();
        let mut nodes = Vec::new();
        for (i, g) in file.nodes.into_iter().enumerate() {
            let at = format!("line {}", line_of(text, g.span().start));
            nodes.push(g.into_inner().group(i).context(at.clone())?);
            places.nodes.push(at);
        }
        let master = match file.master {
            Some(m) => {
                places.master = Some(format!("line {}", line_of(text, m.span().start)));
                m.into_inner()
            }
            None => MasterSettings::default(),
        };
        let bus = match file.bus {
            Some(b) => b.settings().context("[bus]")?,
            None => BusSettings::default(),
        };
        let image_size = match &file.image_size {
            Some(s) => {
                Some(images::build::parse_size(s).map_err(|e| anyhow::anyhow!("image_size: {e}"))?)
            }
            None => None,
        };
        let images = match file.images {
            Some(entries) => image_sources(entries, text, dir, &mut places)?,
            None => BTreeMap::new(),
        };
        FleetBuilder {
            image_size,
            bus,
            master,
            nodes,
            images,
        }
        .build_at(&places)
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
        let mut fleet = FleetBuilder::default();
        if library {
            fleet.bus.segments = Some(["base", "ext1", "ha"].map(String::from).to_vec());
        }
        let mut left = n;
        for (t, c) in counts {
            let c = c.min(left);
            left -= c;
            for k in 0..c {
                fleet.nodes.push(NodeGroup {
                    segment: segment(t, k).into(),
                    ..NodeGroup::new(t)
                });
            }
        }
        fleet.build()
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

    /// The bus time to carry every type's image once, each padded to
    /// `image_size`, in full data frames (zero without `image_size`: the
    /// built images are small). A run's default timeout allows for it.
    pub fn image_bus_time(&self) -> Duration {
        use proto::frame::{FLAG_BRS, FLAG_EXTENDED, FLAG_FD, MAX_DATA};
        let Some(size) = self.image_size else {
            return Duration::ZERO;
        };
        let (flags, len) = match self.timing.is_fd() {
            true => (FLAG_EXTENDED | FLAG_FD | FLAG_BRS, MAX_DATA),
            false => (FLAG_EXTENDED, 8),
        };
        let chunk = (len - proto::msg::DATA_HEADER) as u64;
        let frame_ns = proto::Frame::new(0x1FFF_FFFF, flags, &[0xFF; MAX_DATA][..len])
            .ok()
            .and_then(|f| self.timing.frame_time_ns(&f))
            .unwrap_or(0);
        let frames = u64::from(size).div_ceil(chunk) * self.types().len() as u64;
        Duration::from_nanos(frames.saturating_mul(frame_ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_padded_image_s_bus_time_is_counted_per_type() {
        let text = "image_size = \"1M\"\n[bus]\npreset = \"fd-1m-5m\"\n\
                    [[nodes]]\ntype = \"drive\"\ncount = 3\n[[nodes]]\ntype = \"comm\"\n";
        let fleet = Fleet::parse(text).expect(text);
        let t = fleet.image_bus_time().as_secs_f64();
        // 2 MiB in 60-byte chunks at about 150 µs a frame: about 5 s.
        assert!((4.0..7.0).contains(&t), "{t}");
        let unpadded = Fleet::parse("[[nodes]]\ntype = \"drive\"\n");
        assert_eq!(unpadded.unwrap().image_bus_time(), Duration::ZERO);
    }

    fn count(f: &Fleet, t: NodeType) -> usize {
        f.nodes.iter().filter(|n| n.node_type == t).count()
    }

    #[test]
    fn the_clock_and_its_rate_are_read_and_checked() {
        let node = "[[nodes]]\ntype = \"drive\"\n";
        let f = Fleet::parse(node).unwrap();
        assert_eq!((f.clock, f.icount_shift), (Clock::Wall, 3));
        let f = Fleet::parse(&format!(
            "[bus]\nclock = \"virtual\"\ntransport = \"virtio\"\nips = 1000000000\n{node}"
        ))
        .unwrap();
        assert_eq!((f.clock, f.icount_shift), (Clock::Virtual, 0));
        let e = Fleet::parse(&format!("[bus]\nclock = \"sundial\"\n{node}")).unwrap_err();
        assert!(
            format!("{e:#}").contains("bus.clock: unknown clock \"sundial\""),
            "{e:#}"
        );
        let e = Fleet::parse(&format!("[bus]\nips = 100000000\n{node}")).unwrap_err();
        assert!(format!("{e:#}").contains("bus.ips: 100000000"), "{e:#}");
        assert_eq!(icount_shift(1_953_125).unwrap(), 9);
        // virtio, the default transport, runs on either clock; uart only
        // on the wall clock, from a file or from the command line.
        let f = Fleet::parse(&format!("[bus]\nclock = \"virtual\"\n{node}")).unwrap();
        assert_eq!((f.clock, f.transport), (Clock::Virtual, Transport::Virtio));
        let e = Fleet::parse(&format!(
            "[bus]\nclock = \"virtual\"\ntransport = \"uart\"\n{node}"
        ))
        .unwrap_err();
        assert!(
            format!("{e:#}").contains("needs transport = \"virtio\""),
            "{e:#}"
        );
        let uart = Fleet::parse(node)
            .unwrap()
            .with_transport(Transport::Uart)
            .unwrap();
        assert_eq!(uart.transport, Transport::Uart);
        let e = uart.clone().with_clock(Clock::Virtual).unwrap_err();
        assert!(format!("{e:#}").starts_with("--clock: "), "{e:#}");
        let e = f.with_transport(Transport::Uart).unwrap_err();
        assert!(format!("{e:#}").starts_with("--transport: "), "{e:#}");
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
    fn default_mix_is_the_fleet_its_file_text_made() {
        // How the mix was written before the builder: one [[nodes]] per node.
        fn as_text(f: &Fleet) -> String {
            let mut text = String::new();
            if f.topology.segments.len() > 1 {
                text += "[bus]\nsegments = [\"base\", \"ext1\", \"ha\"]\n";
            }
            for n in &f.nodes {
                text += &format!(
                    "[[nodes]]\ntype = \"{}\"\nsegment = \"{}\"\n",
                    n.node_type.name(),
                    n.segment
                );
            }
            text
        }
        for n in 1..=MAX_NODES {
            let mix = Fleet::default_mix(n).unwrap();
            let parsed = Fleet::parse(&as_text(&mix)).unwrap();
            assert_eq!(format!("{mix:?}"), format!("{parsed:?}"), "n = {n}");
        }
        let segments: Vec<_> = Fleet::default_mix(40).unwrap().nodes[4..7]
            .iter()
            .map(|n| n.segment.clone())
            .collect();
        assert_eq!(segments, ["base", "ext1", "ha"], "drives fill every frame");
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

    /// A builder with every section set, and the file that says the same.
    fn described() -> (FleetBuilder, &'static str) {
        let mut b = FleetBuilder {
            image_size: Some(64 * 1024),
            ..FleetBuilder::default()
        };
        b.bus.paced = true;
        b.bus.transport = Transport::Virtio;
        b.bus.segments = Some(vec!["base".into(), "ha".into()]);
        b.master.policy = Some(Policy::Quorum);
        b.master.hold_off_ms = Some(700);
        b.master.mode = Mode::Combined;
        b.master.repair_rounds = Some(2);
        b.nodes.push(NodeGroup {
            count: 2,
            group: Some("acc".into()),
            sets: Some(vec!["A".into(), "B".into()]),
            ..NodeGroup::new(NodeType::Accessor)
        });
        b.nodes.push(NodeGroup {
            count: 3,
            segment: "ha".into(),
            min_version: images::manifest::pack_version(1, 2, 3),
            start_after_ms: Some(100),
            stagger_ms: Some(10),
            ..NodeGroup::new(NodeType::Drive)
        });
        let text = "image_size = \"64K\"\n\
                    [bus]\npaced = true\ntransport = \"virtio\"\nsegments = [\"base\", \"ha\"]\n\
                    [master]\npolicy = \"quorum\"\nhold_off_ms = 700\nmode = \"combined\"\nrepair_rounds = 2\n\
                    [[nodes]]\ntype = \"accessor\"\ncount = 2\ngroup = \"acc\"\nsets = [\"A\", \"B\"]\n\
                    [[nodes]]\ntype = \"drive\"\ncount = 3\nsegment = \"ha\"\nmin_version = \"1.2.3\"\n\
                    start_after_ms = 100\nstagger_ms = 10\n";
        (b, text)
    }

    #[test]
    fn a_builder_and_the_file_that_says_the_same_make_the_same_fleet() {
        let (b, text) = described();
        let built = format!("{:?}", b.build().unwrap());
        assert_eq!(built, format!("{:?}", Fleet::parse(text).unwrap()));
        // And the fleet is what was asked for, not merely the same twice.
        let f = b.build().unwrap();
        assert_eq!(f.nodes.len(), 5);
        assert_eq!(f.nodes[4].power_on_after, Duration::from_millis(120));
        assert_eq!(f.master.hold_off.min_requests, 5);
        assert_eq!(f.topology.links.len(), 1);
    }

    #[test]
    fn a_builder_is_checked_as_a_file_is() {
        // Each change to a one-drive fleet, in code and in a file.
        type Change = fn(&mut FleetBuilder);
        let cases: [(Change, &str, &str); 7] = [
            (
                |b| b.nodes[0].count = 0,
                "[[nodes]]\ntype = \"drive\"\ncount = 0\n",
                "nodes[0].count: must be at least 1, got 0",
            ),
            (
                |b| b.nodes[0].segment = "a b".into(),
                "[[nodes]]\ntype = \"drive\"\nsegment = \"a b\"\n",
                "nodes[0].segment: \"a b\" is not a segment name",
            ),
            (
                |b| b.nodes[0].stagger_ms = Some(-1),
                "[[nodes]]\ntype = \"drive\"\nstagger_ms = -1\n",
                "nodes[0].stagger_ms: must be 0 to 3600000 milliseconds, got -1",
            ),
            (
                |b| b.nodes[0].count = 300,
                "[[nodes]]\ntype = \"drive\"\ncount = 300\n",
                "nodes: more than 250 nodes",
            ),
            (
                |b| b.master.hold_off_ms = Some(0),
                "[master]\nhold_off_ms = 0\n[[nodes]]\ntype = \"drive\"\n",
                "master.hold_off_ms",
            ),
            (
                |b| b.bus.preset = BitTiming::Classic500k,
                "[bus]\npreset = \"classic-500k\"\n[[nodes]]\ntype = \"drive\"\n",
                "[bus]: bus.preset: classic-500k",
            ),
            (
                |b| b.bus.links = Some(vec![["base".into(), "moon".into()]]),
                "[bus]\nlinks = [[\"base\", \"moon\"]]\n[[nodes]]\ntype = \"drive\"\n",
                "[bus]: bus.links[0]: segment \"moon\" is not one of",
            ),
        ];
        for (change, text, want) in cases {
            let mut b = FleetBuilder::default();
            b.nodes.push(NodeGroup::new(NodeType::Drive));
            assert!(b.build().is_ok());
            change(&mut b);
            let got = format!("{:#}", b.build().unwrap_err());
            assert!(got.contains(want), "builder: got {got:?}, want {want:?}");
            let got = format!("{:#}", Fleet::parse(text).unwrap_err());
            assert!(
                got.contains(want),
                "file {text:?}: got {got:?}, want {want:?}"
            );
        }
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

    /// A minimal ELF executable: one PT_LOAD of `code` at `addr`.
    fn elf(class: u8, machine: u16, addr: u64, code: &[u8], entry: u64) -> Vec<u8> {
        let mut b = b"\x7fELF".to_vec();
        b.extend([class, 1, 1]);
        b.extend([0; 9]);
        b.extend(2u16.to_le_bytes()); // ET_EXEC
        b.extend(machine.to_le_bytes());
        b.extend(1u32.to_le_bytes());
        b.extend(entry.to_le_bytes());
        b.extend(64u64.to_le_bytes()); // e_phoff
        b.extend(0u64.to_le_bytes()); // e_shoff: no sections
        b.extend(0u32.to_le_bytes());
        for half in [64u16, 56, 1, 64, 0, 0] {
            b.extend(half.to_le_bytes()); // sizes, one program header
        }
        b.extend(1u32.to_le_bytes()); // PT_LOAD
        b.extend(5u32.to_le_bytes()); // R X
        b.extend(120u64.to_le_bytes()); // p_offset: right after
        b.extend(addr.to_le_bytes());
        b.extend(addr.to_le_bytes());
        b.extend((code.len() as u64).to_le_bytes());
        b.extend((code.len() as u64).to_le_bytes());
        b.extend(8u64.to_le_bytes());
        b.extend_from_slice(code);
        b
    }

    const RISCV: u16 = 243;
    const BASE: u64 = board::memory::IMAGE_BASE;

    /// A good RISC-V app of 600 bytes.
    fn good_elf() -> Vec<u8> {
        elf(2, RISCV, BASE, &[0x13; 600], BASE)
    }

    #[test]
    fn images_named_by_elf_files_are_built_as_images_build_builds_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("apps")).unwrap();
        std::fs::write(dir.path().join("apps/panel.elf"), good_elf()).unwrap();
        std::fs::write(dir.path().join("drive.elf"), good_elf()).unwrap();
        let file = dir.path().join("fleet.toml");
        std::fs::write(
            &file,
            "image_size = \"4K\"\n\
             [images]\n\
             op-panel = \"apps/panel.elf\"\n\
             drive = { elf = \"drive.elf\", version = \"2.1.0\", name = \"drive-fw\" }\n\
             [[nodes]]\ntype = \"drive\"\n[[nodes]]\ntype = \"op-panel\"\n[[nodes]]\ntype = \"xy\"\n",
        )
        .unwrap();
        // Paths are relative to the fleet file, wherever bootcast runs.
        let f = Fleet::load(&file).unwrap();
        assert_eq!(
            f.images.keys().copied().collect::<Vec<_>>(),
            [NodeType::Drive, NodeType::OpPanel]
        );
        let panel = &f.images[&NodeType::OpPanel];
        assert_eq!(panel.elf, dir.path().join("apps/panel.elf"));
        let m = &panel.image.manifest;
        assert_eq!(m.node_type, NodeType::OpPanel);
        assert_eq!(m.name_str(), Some("op-panel"), "the type's name by default");
        assert_eq!(
            images::build::format_version(m.version),
            DEFAULT_ELF_VERSION
        );
        assert_eq!((m.load_addr, m.entry, m.size), (BASE, BASE, 4096), "padded");
        assert!(!m.is_signed(), "the testbed signs it with the build's key");
        // The same image `images build` makes from the same file.
        let opts = BuildOptions {
            node_type: NodeType::OpPanel,
            name: "op-panel".into(),
            version: images::build::parse_version("1.0.0").unwrap(),
            pad_to: Some(4096),
        };
        let by_cli = images::build::build_from_elf(&good_elf(), &opts).unwrap();
        assert_eq!(*panel.image, by_cli);
        let drive = &f.images[&NodeType::Drive].image.manifest;
        assert_eq!(drive.name_str(), Some("drive-fw"));
        assert_eq!(images::build::format_version(drive.version), "2.1.0");
        // Its Debug names the file, not the payload's bytes.
        let debug = format!("{f:?}");
        assert!(
            debug.contains("panel.elf") && debug.len() < 20_000,
            "{debug}"
        );
        // A builder says the same in code, with paths as given.
        let mut b = FleetBuilder::default();
        b.nodes.push(NodeGroup::new(NodeType::OpPanel));
        b.images.insert(
            NodeType::OpPanel,
            ElfSource {
                elf: dir.path().join("apps/panel.elf"),
                name: None,
                version: None,
            },
        );
        let built = b.build().unwrap();
        assert_eq!(built.images[&NodeType::OpPanel].image.manifest.size, 600);
    }

    #[test]
    fn a_bad_image_entry_names_the_file_and_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let put = |name: &str, bytes: Vec<u8>| {
            std::fs::write(dir.path().join(name), bytes).unwrap();
            dir.path().join(name).display().to_string()
        };
        let good = put("good.elf", good_elf());
        let text = put("notes.elf", b"#!/bin/sh\necho not an ELF\n".to_vec());
        let x86 = put("x86.elf", elf(2, 62, BASE, &[0x90; 16], BASE));
        let elf32 = put("elf32.elf", elf(1, RISCV, BASE, &[0x13; 16], BASE));
        let low = put(
            "low.elf",
            elf(
                2,
                RISCV,
                board::memory::RAM_BASE,
                &[0x13; 16],
                board::memory::RAM_BASE,
            ),
        );
        let entry = put("entry.elf", elf(2, RISCV, BASE, &[0x13; 16], BASE + 0x100));
        let missing = dir.path().join("missing.elf").display().to_string();
        let drive = "[[nodes]]\ntype = \"drive\"\n";
        let cases: Vec<(String, String)> = vec![
            (
                format!("[images]\ndrive = \"missing.elf\"\n{drive}"),
                format!("line 2: images.drive: {missing}: cannot read: No such file"),
            ),
            (
                format!("[images]\ndrive = \"notes.elf\"\n{drive}"),
                format!("images.drive: {text}: not an ELF file"),
            ),
            (
                format!("[images]\ndrive = \"x86.elf\"\n{drive}"),
                format!("images.drive: {x86}: not a RISC-V ELF (e_machine 62)"),
            ),
            (
                format!("[images]\ndrive = \"elf32.elf\"\n{drive}"),
                format!("images.drive: {elf32}: not a 64-bit ELF (EI_CLASS 1)"),
            ),
            (
                format!("[images]\ndrive = \"low.elf\"\n{drive}"),
                format!(
                    "images.drive: {low}: segment 0 [0x80000000, 0x80000010) lies outside the image region [0x80100000, 0x81e00000)"
                ),
            ),
            (
                format!("[images]\ndrive = \"entry.elf\"\n{drive}"),
                format!(
                    "images.drive: {entry}: entry point 0x80100100 is not in the file bytes of any PT_LOAD segment"
                ),
            ),
            (
                format!("image_size = \"512\"\n[images]\ndrive = \"good.elf\"\n{drive}"),
                format!("images.drive: {good}: payload is 600 bytes, more than the pad size 512"),
            ),
            (
                format!("[images]\nrobot = \"good.elf\"\n{drive}"),
                "line 2: images.robot: unknown node type \"robot\"".into(),
            ),
            (
                format!("[images]\nxy = \"good.elf\"\n{drive}"),
                "line 2: images.xy: no node of the fleet is of type xy".into(),
            ),
            (
                format!("[images]\ndrive = {{ elf = \"good.elf\", version = \"1.2\" }}\n{drive}"),
                "images.drive.version: version \"1.2\" is not MAJOR.MINOR.PATCH".into(),
            ),
            (
                format!(
                    "[images]\ndrive = {{ elf = \"good.elf\", name = \"seventeen-bytes-x\" }}\n{drive}"
                ),
                "images.drive.name: image name \"seventeen-bytes-x\" is longer than 16 bytes"
                    .into(),
            ),
            (
                format!("[images]\ndrive = {{ elf = \"good.elf\", colour = \"red\" }}\n{drive}"),
                "images.drive: unknown key `colour` (elf, name, version)".into(),
            ),
            (
                format!("[images]\ndrive = 3\n{drive}"),
                "images.drive: give the path of an ELF file, or a table".into(),
            ),
            (
                format!("[images]\ndrive = {{ version = \"1.0.0\" }}\n{drive}"),
                "images.drive: give the path of an ELF file".into(),
            ),
            (
                format!("[images]\ndrive = \"\"\n{drive}"),
                "images.drive: the ELF path is empty".into(),
            ),
        ];
        for (fleet, want) in cases {
            let err = format!("{:#}", Fleet::parse_in(&fleet, dir.path()).unwrap_err());
            assert!(
                err.contains(&want),
                "for {fleet:?}:\n got {err}\nwant {want}"
            );
        }
        // And a fleet file's error names the fleet file too.
        let file = dir.path().join("f.toml");
        std::fs::write(&file, format!("[images]\ndrive = \"x86.elf\"\n{drive}")).unwrap();
        let err = format!("{:#}", Fleet::load(&file).unwrap_err());
        assert!(
            err.starts_with(&format!(
                "fleet file {}: line 2: images.drive: {x86}:",
                file.display()
            )),
            "{err}"
        );
    }
}

//! Scenario files: a fleet, a timeline of actions, and what must hold.
//!
//! A scenario file is a fleet file (its `image_size`, `[bus]`, `[master]`
//! and `[[nodes]]`, or `fleet = "other.toml"` naming one) plus:
//!
//! ```toml
//! name = "storm-40"
//! seed = 7                        # every random choice of the run
//!
//! [[timeline]]
//! at_s = 10                       # scenario time, from the first power-on
//! action = "power-cycle"          # see `Action`
//! select = { type = "drive", random = 3 }
//! every_s = 4                     # optional: repeat...
//! until_s = 70                    # ...until this time
//!
//! [expect]
//! all_verified_by_s = 120
//! max_broadcasts_per_type_per_window = 1
//! ```
//!
//! Errors name the line and the field.

use crate::fleet::{Fleet, FleetFile, NodeSpec, line_of};
use anyhow::{Context, Result, bail};
use bus_bridge::Fault;
use proto::NodeType;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// How the scenario reboots a node; serialised as its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reboot {
    /// Kill the node's QEMU process and start it again: RAM is lost.
    PowerCycle,
    /// QMP `system_reset`: RAM is kept.
    Reset,
    /// `Reboot` over the bus.
    SoftReboot,
}

impl Reboot {
    /// Every way, in the order `mixed-reboot` draws from.
    pub const ALL: [Reboot; 3] = [Reboot::PowerCycle, Reboot::Reset, Reboot::SoftReboot];

    /// The name a timeline writes.
    pub fn name(self) -> &'static str {
        match self {
            Reboot::PowerCycle => "power-cycle",
            Reboot::Reset => "reset",
            Reboot::SoftReboot => "soft-reboot",
        }
    }
}

/// Which nodes an action acts on, resolved against the fleet when the
/// scenario loads: every key given in the file filtered the fleet then.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Select {
    /// The nodes every given key matched, in id order.
    pub nodes: Vec<u16>,
    /// Then this many of them (at least 1), at random with the scenario's seed.
    pub random: Option<usize>,
}

/// `select = { ... }` as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SelectFile {
    ids: Option<Vec<u16>>,
    #[serde(rename = "type")]
    node_type: Option<String>,
    group: Option<String>,
    segment: Option<String>,
    set: Option<String>,
    random: Option<usize>,
}

/// One step of a rolling update: the sets rebooted together, and their
/// nodes of the updated types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// The sets, as named (several at once break availability if they hold
    /// every member of a group: useful to check the checker).
    pub sets: Vec<String>,
    /// Their nodes of the updated types, in id order.
    pub nodes: Vec<u16>,
}

/// A step as written: one set or several.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
enum StepFile {
    One(String),
    Many(Vec<String>),
}

impl StepFile {
    fn sets(&self) -> Vec<String> {
        match self {
            StepFile::One(s) => vec![s.clone()],
            StepFile::Many(v) => v.clone(),
        }
    }
}

/// What an entry does.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// `power-cycle`, `reset` or `soft-reboot` the selected nodes.
    Reboot(Reboot, Select),
    /// Each selected node one of the three ways, picked at random.
    MixedReboot(Select),
    /// A `Reboot` the scenario does not own, from a tool port: a
    /// disturbance the invariants must catch.
    Disturb(Select),
    /// Add a bus fault.
    InjectFault(Fault),
    /// Remove every bus fault.
    ClearFaults,
    /// Cut a segment link.
    CutLink(String),
    /// Restore a segment link.
    RestoreLink(String),
    /// Kill the primary master.
    KillMaster,
    /// Put a new version of a type's image in the master's store.
    Publish {
        /// The type.
        node_type: NodeType,
        /// The version.
        version: u32,
    },
    /// Publish a version of the given types, then reboot their nodes one
    /// step of sets at a time, each step waiting until its nodes run the
    /// new version.
    RollingUpdate {
        /// The types to update.
        types: Vec<NodeType>,
        /// The version.
        version: u32,
        /// The order.
        steps: Vec<Step>,
        /// How long one step may take.
        step_timeout: Duration,
    },
}

impl Action {
    /// The action's name as written.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Reboot(how, _) => how.name(),
            Action::MixedReboot(_) => "mixed-reboot",
            Action::Disturb(_) => "disturb",
            Action::InjectFault(_) => "inject-fault",
            Action::ClearFaults => "clear-faults",
            Action::CutLink(_) => "cut-link",
            Action::RestoreLink(_) => "restore-link",
            Action::KillMaster => "kill-master",
            Action::Publish { .. } => "publish",
            Action::RollingUpdate { .. } => "rolling-update",
        }
    }
}

/// One timeline entry, with its repetition.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The line it starts on.
    pub line: usize,
    /// When it first runs.
    pub at: Duration,
    /// What it does.
    pub action: Action,
    /// Repeat every this long...
    pub every: Option<Duration>,
    /// ...until this time.
    pub until: Option<Duration>,
}

/// What the run must show, besides the invariants every storm checks.
#[derive(Clone, Debug, PartialEq)]
pub struct Expect {
    /// Every node verified (after the last action) by this scenario time.
    pub all_verified_by: Duration,
    /// At most this many sessions per type in one window.
    pub max_broadcasts_per_type_per_window: usize,
    /// Bus drops allowed without a cause of the scenario's own (e.g.
    /// overruns of slow receivers).
    pub allow_drops: Vec<bus_bridge::DropCause>,
}

/// A parsed scenario.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Its name.
    pub name: String,
    /// The seed of every random choice.
    pub seed: u64,
    /// The fleet.
    pub fleet: Fleet,
    /// The timeline, in time order.
    pub timeline: Vec<Entry>,
    /// The expectations.
    pub expect: Expect,
    /// The text it was read from, kept so a run can be replayed.
    pub source: Source,
}

/// A scenario's text and, when it names one, its fleet file's: everything
/// needed to read the same scenario again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// The scenario file's text.
    pub text: String,
    /// The fleet file it names (`fleet = "..."`), as written, and its text.
    pub fleet_file: Option<(String, String)>,
    /// The name it had, when it has none of its own.
    pub default_name: Option<String>,
    /// The folder of the fleet file, against which its `[images]` paths
    /// are resolved (absolute; `None`: the current folder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet_dir: Option<std::path::PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    name: Option<String>,
    seed: Option<u64>,
    fleet: Option<String>,
    image_size: Option<String>,
    bus: Option<crate::fleet::BusSection>,
    master: Option<toml::Spanned<crate::fleet::MasterSettings>>,
    nodes: Option<Vec<toml::Spanned<crate::fleet::NodesSection>>>,
    #[serde(default)]
    timeline: Vec<toml::Spanned<EntryFile>>,
    expect: Option<toml::Spanned<ExpectFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryFile {
    at_s: f64,
    action: String,
    select: Option<SelectFile>,
    every_s: Option<f64>,
    until_s: Option<f64>,
    fault: Option<Fault>,
    link: Option<String>,
    #[serde(rename = "type")]
    node_type: Option<String>,
    types: Option<Vec<String>>,
    version: Option<String>,
    sets: Option<Vec<StepFile>>,
    step_timeout_s: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectFile {
    all_verified_by_s: Option<f64>,
    max_broadcasts_per_type_per_window: Option<i64>,
    #[serde(default)]
    allow_drops: Vec<String>,
}

fn seconds(field: &str, v: f64) -> Result<Duration> {
    if !v.is_finite() || !(0.0..=86_400.0).contains(&v) {
        bail!("{field}: must be 0 to 86400 seconds, got {v}");
    }
    Ok(Duration::from_secs_f64(v))
}

fn node_type(field: &str, name: &str) -> Result<NodeType> {
    NodeType::from_name(name).with_context(|| format!("{field}: unknown node type {name:?}"))
}

impl Scenario {
    /// Reads a scenario file; `fleet = "..."` is relative to it.
    pub fn load(path: &Path) -> Result<Scenario> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read scenario {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let default_name = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        Scenario::parse(&text, base, default_name)
            .with_context(|| format!("scenario {}", path.display()))
    }

    /// Parses scenario text; `base` resolves `fleet = "..."`.
    pub fn parse(text: &str, base: &Path, default_name: Option<String>) -> Result<Scenario> {
        let mut fleet_dir = None;
        let fleet_file = match fleet_name(text)? {
            Some(name) => {
                let path = base.join(&name);
                let fleet_text = std::fs::read_to_string(&path)
                    .with_context(|| format!("fleet = {name:?}: cannot read {}", path.display()))?;
                fleet_dir = path.parent().and_then(|d| std::path::absolute(d).ok());
                Some((name, fleet_text))
            }
            None => None,
        };
        Scenario::from_source(Source {
            text: text.to_string(),
            fleet_file,
            default_name,
            fleet_dir,
        })
    }

    /// Reads a scenario from its source alone (a replay reads no file).
    pub fn from_source(source: Source) -> Result<Scenario> {
        let text = source.text.as_str();
        let file: ScenarioFile = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        let fleet = match (&file.fleet, &file.nodes) {
            (Some(_), Some(_)) => bail!("fleet: name a fleet file or give [[nodes]], not both"),
            (Some(name), None) => {
                if file.bus.is_some() || file.master.is_some() || file.image_size.is_some() {
                    bail!("fleet: with a fleet file, [bus], [master] and image_size belong in it");
                }
                let fleet_text = source
                    .fleet_file
                    .as_ref()
                    .filter(|(n, _)| n == name)
                    .map(|(_, t)| t.as_str())
                    .with_context(|| format!("fleet = {name:?}: its text is missing"))?;
                let dir = source.fleet_dir.as_deref().unwrap_or(Path::new("."));
                Fleet::parse_in(fleet_text, dir).with_context(|| format!("fleet = {name:?}"))?
            }
            (None, Some(_)) => {
                let fleet_file = FleetFile {
                    images: None,
                    image_size: file.image_size,
                    bus: file.bus,
                    master: file.master,
                    nodes: file.nodes.unwrap_or_default(),
                };
                Fleet::from_file(fleet_file, text, Path::new("."))?
            }
            (None, None) => {
                bail!("nodes: the scenario has no fleet: give [[nodes]] or fleet = \"file.toml\"")
            }
        };
        let mut timeline = Vec::new();
        for (i, e) in file.timeline.iter().enumerate() {
            let line = line_of(text, e.span().start);
            let entry =
                entry(i, line, e.get_ref(), &fleet).with_context(|| format!("line {line}"))?;
            timeline.push(entry);
        }
        timeline.sort_by_key(|e| e.at);
        let expect = match &file.expect {
            Some(x) => {
                let line = line_of(text, x.span().start);
                expect(x.get_ref(), &timeline).with_context(|| format!("line {line}"))?
            }
            None => expect(
                &ExpectFile {
                    all_verified_by_s: None,
                    max_broadcasts_per_type_per_window: None,
                    allow_drops: Vec::new(),
                },
                &timeline,
            )?,
        };
        Ok(Scenario {
            name: file
                .name
                .or_else(|| source.default_name.clone())
                .unwrap_or_else(|| "scenario".into()),
            seed: file.seed.unwrap_or(1),
            fleet,
            timeline,
            expect,
            source,
        })
    }
}

/// The fleet file a scenario's text names, if any.
fn fleet_name(text: &str) -> Result<Option<String>> {
    #[derive(Deserialize)]
    struct Named {
        fleet: Option<String>,
    }
    let named: Named = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(named.fleet)
}

fn expect(x: &ExpectFile, timeline: &[Entry]) -> Result<Expect> {
    let last = timeline
        .iter()
        .map(|e| e.until.unwrap_or(e.at))
        .max()
        .unwrap_or_default();
    let all_verified_by = match x.all_verified_by_s {
        Some(v) => seconds("expect.all_verified_by_s", v)?,
        None => last + Duration::from_secs(90),
    };
    if all_verified_by < last {
        bail!(
            "expect.all_verified_by_s: {:.1} is before the timeline's last action at {:.1} s",
            all_verified_by.as_secs_f64(),
            last.as_secs_f64()
        );
    }
    let max = match x.max_broadcasts_per_type_per_window {
        Some(v) if v < 1 => {
            bail!("expect.max_broadcasts_per_type_per_window: must be at least 1, got {v}")
        }
        Some(v) => v as usize,
        None => 1,
    };
    let allow_drops = x
        .allow_drops
        .iter()
        .map(|k| {
            bus_bridge::DropCause::from_key(k).with_context(|| {
                let all: Vec<&str> = bus_bridge::DropCause::ALL
                    .iter()
                    .map(|c| c.as_str())
                    .collect();
                format!(
                    "expect.allow_drops: unknown drop cause {k:?}; one of {}",
                    all.join(", ")
                )
            })
        })
        .collect::<Result<_>>()?;
    Ok(Expect {
        all_verified_by,
        max_broadcasts_per_type_per_window: max,
        allow_drops,
    })
}

/// One timeline entry being read: errors name `timeline[i].field`.
struct EntryReader<'a> {
    i: usize,
    e: &'a EntryFile,
    fleet: &'a Fleet,
}

impl EntryReader<'_> {
    fn field(&self, k: &str) -> String {
        format!("timeline[{}].{k}", self.i)
    }

    /// `v`, or an error saying the action needs field `k`.
    fn needs<T: Clone>(&self, k: &str, v: &Option<T>) -> Result<T> {
        v.clone()
            .with_context(|| format!("{}: action {:?} needs it", self.field(k), self.e.action))
    }

    fn seconds(&self, k: &str, v: f64) -> Result<Duration> {
        seconds(&self.field(k), v)
    }

    fn version(&self) -> Result<u32> {
        let v = self.needs("version", &self.e.version)?;
        images::build::parse_version(&v)
            .map_err(|m| anyhow::anyhow!("{}: {m}", self.field("version")))
    }

    fn link(&self) -> Result<String> {
        let l = self.needs("link", &self.e.link)?;
        let links = &self.fleet.topology.links;
        if !links.iter().any(|k| k.name == l) {
            let names: Vec<&str> = links.iter().map(|k| k.name.as_str()).collect();
            bail!("{}: no link {l:?} (links: {names:?})", self.field("link"));
        }
        Ok(l)
    }

    /// The selected nodes: each key checked against the fleet, then all
    /// applied.
    fn select(&self) -> Result<Select> {
        let s = self.needs("select", &self.e.select)?;
        let fleet = self.fleet;
        let f = |k: &str| format!("{}.{k}", self.field("select"));
        for id in s.ids.iter().flatten() {
            if !fleet.nodes.iter().any(|n| n.id == *id) {
                bail!(
                    "{}: there is no node {id} (the fleet has 1 to {})",
                    f("ids"),
                    fleet.nodes.len()
                );
            }
        }
        let node_type = s
            .node_type
            .as_deref()
            .map(|t| node_type(&f("type"), t))
            .transpose()?;
        let named = |name: &Option<String>, of: fn(&NodeSpec) -> Option<&String>| {
            name.as_ref()
                .is_none_or(|g| fleet.nodes.iter().any(|n| of(n) == Some(g)))
        };
        if !named(&s.group, |n| n.group.as_ref()) {
            bail!(
                "{}: no node is in group {:?}",
                f("group"),
                s.group.unwrap_or_default()
            );
        }
        if let Some(seg) = &s.segment
            && !fleet.topology.segments.contains(seg)
        {
            bail!(
                "{}: no segment {seg:?} (segments: {:?})",
                f("segment"),
                fleet.topology.segments
            );
        }
        if !named(&s.set, |n| n.set.as_ref()) {
            bail!(
                "{}: no node is in set {:?}",
                f("set"),
                s.set.unwrap_or_default()
            );
        }
        if s.random == Some(0) {
            bail!("{}: must be at least 1", f("random"));
        }
        let nodes = fleet
            .nodes
            .iter()
            .filter(|n| s.ids.as_ref().is_none_or(|ids| ids.contains(&n.id)))
            .filter(|n| node_type.is_none_or(|t| n.node_type == t))
            .filter(|n| s.group.is_none() || n.group == s.group)
            .filter(|n| s.segment.as_ref().is_none_or(|g| &n.segment == g))
            .filter(|n| s.set.is_none() || n.set == s.set)
            .map(|n| n.id)
            .collect();
        Ok(Select {
            nodes,
            random: s.random,
        })
    }

    fn publish(&self) -> Result<Action> {
        let t = self.needs("type", &self.e.node_type)?;
        Ok(Action::Publish {
            node_type: node_type(&self.field("type"), &t)?,
            version: self.version()?,
        })
    }

    fn rolling_update(&self) -> Result<Action> {
        let fleet = self.fleet;
        let types = match &self.e.types {
            Some(names) => names
                .iter()
                .map(|n| node_type(&self.field("types"), n))
                .collect::<Result<Vec<_>>>()?,
            // Every type with an update set.
            None => {
                let mut v: Vec<NodeType> = fleet
                    .nodes
                    .iter()
                    .filter(|n| n.set.is_some())
                    .map(|n| n.node_type)
                    .collect();
                v.sort();
                v.dedup();
                v
            }
        };
        if types.is_empty() {
            bail!(
                "{}: no node has an update set, so there is nothing to roll",
                self.field("types")
            );
        }
        let written = self.needs("sets", &self.e.sets)?;
        if written.is_empty() {
            bail!("{}: lists no step", self.field("sets"));
        }
        let updated = |n: &&NodeSpec, sets: &[String]| {
            types.contains(&n.node_type) && n.set.as_ref().is_some_and(|s| sets.contains(s))
        };
        let mut steps = Vec::new();
        for sets in written.iter().map(StepFile::sets) {
            for s in &sets {
                if !fleet
                    .nodes
                    .iter()
                    .any(|n| updated(&n, std::slice::from_ref(s)))
                {
                    bail!(
                        "{}: no node of the updated types is in set {s:?}",
                        self.field("sets")
                    );
                }
            }
            let nodes = fleet
                .nodes
                .iter()
                .filter(|n| updated(n, &sets))
                .map(|n| n.id)
                .collect();
            steps.push(Step { sets, nodes });
        }
        Ok(Action::RollingUpdate {
            types,
            version: self.version()?,
            steps,
            step_timeout: self.seconds("step_timeout_s", self.e.step_timeout_s.unwrap_or(120.0))?,
        })
    }

    fn action(&self) -> Result<Action> {
        Ok(match self.e.action.as_str() {
            "power-cycle" => Action::Reboot(Reboot::PowerCycle, self.select()?),
            "reset" => Action::Reboot(Reboot::Reset, self.select()?),
            "soft-reboot" => Action::Reboot(Reboot::SoftReboot, self.select()?),
            "mixed-reboot" => Action::MixedReboot(self.select()?),
            "disturb" => Action::Disturb(self.select()?),
            "inject-fault" => Action::InjectFault(self.needs("fault", &self.e.fault)?),
            "clear-faults" => Action::ClearFaults,
            "cut-link" => Action::CutLink(self.link()?),
            "restore-link" => Action::RestoreLink(self.link()?),
            "kill-master" => Action::KillMaster,
            "publish" => self.publish()?,
            "rolling-update" => self.rolling_update()?,
            other => bail!(
                "{}: unknown action {other:?} (power-cycle, reset, soft-reboot, mixed-reboot, disturb, inject-fault, clear-faults, cut-link, restore-link, kill-master, publish, rolling-update)",
                self.field("action")
            ),
        })
    }

    /// `every_s` and `until_s`: both or neither.
    fn repeat(&self, at: Duration) -> Result<(Option<Duration>, Option<Duration>)> {
        let e = self.e;
        let every = e.every_s.map(|v| self.seconds("every_s", v)).transpose()?;
        let until = e.until_s.map(|v| self.seconds("until_s", v)).transpose()?;
        match (every, until) {
            (Some(ev), _) if ev < Duration::from_millis(100) => {
                bail!("{}: must be at least 0.1", self.field("every_s"))
            }
            (Some(_), None) => bail!("{}: `every_s` needs `until_s`", self.field("until_s")),
            (None, Some(_)) => bail!("{}: `until_s` needs `every_s`", self.field("every_s")),
            (Some(_), Some(u)) if u < at => bail!("{}: is before at_s", self.field("until_s")),
            _ => Ok((every, until)),
        }
    }
}

fn entry(i: usize, line: usize, e: &EntryFile, fleet: &Fleet) -> Result<Entry> {
    let r = EntryReader { i, e, fleet };
    let at = r.seconds("at_s", e.at_s)?;
    let action = r.action()?;
    let (every, until) = r.repeat(at)?;
    Ok(Entry {
        line,
        at,
        action,
        every,
        until,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLEET: &str = "[[nodes]]\ntype = \"accessor\"\ncount = 2\ngroup = \"acc\"\nsets = [\"A\", \"B\"]\n\
                         [[nodes]]\ntype = \"drive\"\ncount = 3\n";

    fn parse(timeline: &str) -> Result<Scenario> {
        Scenario::parse(
            &format!("name = \"t\"\nseed = 3\n{FLEET}{timeline}"),
            Path::new("."),
            None,
        )
    }

    #[test]
    fn a_full_scenario_parses() {
        let s = parse(
            "[[timeline]]\nat_s = 5\naction = \"power-cycle\"\nselect = { type = \"drive\", random = 2 }\nevery_s = 3\nuntil_s = 20\n\
             [[timeline]]\nat_s = 2\naction = \"publish\"\ntype = \"drive\"\nversion = \"1.1.0\"\n\
             [[timeline]]\nat_s = 30\naction = \"rolling-update\"\nversion = \"1.2.0\"\nsets = [\"A\", \"B\"]\n\
             [[timeline]]\nat_s = 40\naction = \"inject-fault\"\nfault = { kind = \"loss\", probability = 0.1 }\n\
             [expect]\nall_verified_by_s = 100\n",
        )
        .unwrap();
        assert_eq!(s.seed, 3);
        assert_eq!(s.timeline.len(), 4);
        assert_eq!(s.timeline[0].action.name(), "publish", "sorted by time");
        assert_eq!(s.timeline[1].every, Some(Duration::from_secs(3)));
        match &s.timeline[2].action {
            Action::RollingUpdate { types, steps, .. } => {
                assert_eq!(types, &vec![NodeType::Accessor]);
                assert_eq!(steps.len(), 2);
            }
            a => panic!("{a:?}"),
        }
        assert_eq!(s.expect.all_verified_by, Duration::from_secs(100));
    }

    #[test]
    fn selects_and_steps_are_resolved_to_nodes_when_the_scenario_loads() {
        let s = parse(
            "[[timeline]]\nat_s = 1\naction = \"power-cycle\"\nselect = { type = \"drive\", random = 2 }\n\
             [[timeline]]\nat_s = 2\naction = \"mixed-reboot\"\nselect = { group = \"acc\", set = \"B\" }\n\
             [[timeline]]\nat_s = 3\naction = \"reset\"\nselect = { type = \"drive\", group = \"acc\" }\n\
             [[timeline]]\nat_s = 4\naction = \"soft-reboot\"\nselect = { ids = [5, 1], segment = \"base\" }\n\
             [[timeline]]\nat_s = 5\naction = \"rolling-update\"\nversion = \"1.2.0\"\nsets = [[\"A\", \"B\"], \"B\"]\n",
        )
        .unwrap();
        let select = |nodes: &[u16], random| Select {
            nodes: nodes.to_vec(),
            random,
        };
        let actions: Vec<&Action> = s.timeline.iter().map(|e| &e.action).collect();
        assert_eq!(
            actions[..4],
            [
                &Action::Reboot(Reboot::PowerCycle, select(&[3, 4, 5], Some(2))),
                &Action::MixedReboot(select(&[2], None)),
                // Every key exists, but no drive is in the group: no node.
                &Action::Reboot(Reboot::Reset, select(&[], None)),
                &Action::Reboot(Reboot::SoftReboot, select(&[1, 5], None)),
            ]
        );
        let Action::RollingUpdate { steps, .. } = actions[4] else {
            panic!("{:?}", actions[4])
        };
        let step = |sets: &[&str], nodes: &[u16]| Step {
            sets: sets.iter().map(|s| s.to_string()).collect(),
            nodes: nodes.to_vec(),
        };
        assert_eq!(steps, &[step(&["A", "B"], &[1, 2]), step(&["B"], &[2])]);
    }

    #[test]
    fn reboot_names_are_the_actions_and_mixed_reboots_draw_in_this_order() {
        // `mixed-reboot` indexes ALL with the seed: its order is part of a
        // scenario's replay.
        assert_eq!(
            Reboot::ALL.map(Reboot::name),
            ["power-cycle", "reset", "soft-reboot"]
        );
    }

    #[test]
    fn errors_name_the_line_and_the_field() {
        let cases = [
            (
                "[[timeline]]\nat_s = 1\naction = \"explode\"\n",
                "line 11: timeline[0].action: unknown action \"explode\"",
            ),
            (
                "[[timeline]]\nat_s = -1\naction = \"kill-master\"\n",
                "line 11: timeline[0].at_s: must be 0 to 86400",
            ),
            (
                "[[timeline]]\nat_s = 1\naction = \"reset\"\n",
                "line 11: timeline[0].select: action \"reset\" needs it",
            ),
            (
                "[[timeline]]\nat_s = 1\naction = \"reset\"\nselect = { ids = [99] }\n",
                "timeline[0].select.ids: there is no node 99",
            ),
            (
                "[[timeline]]\nat_s = 1\naction = \"reset\"\nselect = { type = \"robot\" }\n",
                "timeline[0].select.type: unknown node type",
            ),
            (
                "[[timeline]]\nat_s = 1\naction = \"reset\"\nselect = { group = \"x\" }\n",
                "timeline[0].select.group: no node is in group",
            ),
            (
                "[[timeline]]\nat_s = 1\naction = \"reset\"\nselect = { colour = 1 }\n",
                "unknown field `colour`",
            ),
            (
                "[[timeline]]\nat_s = 1\naction = \"cut-link\"\nlink = \"x-y\"\n",
                "timeline[0].link: no link \"x-y\"",
            ),
            (
                "[[timeline]]\nat_s = 1\naction = \"publish\"\ntype = \"drive\"\nversion = \"1\"\n",
                "timeline[0].version: version \"1\"",
            ),
            (
                "[[timeline]]\nat_s = 1\naction = \"rolling-update\"\nversion = \"1.0.1\"\nsets = [\"C\"]\n",
                "timeline[0].sets: no node of the updated types is in set \"C\"",
            ),
            (
                "[[timeline]]\nat_s = 1\naction = \"reset\"\nselect = { ids = [1] }\nevery_s = 2\n",
                "timeline[0].until_s: `every_s` needs `until_s`",
            ),
            (
                "[[timeline]]\nat_s = 50\naction = \"kill-master\"\n[expect]\nall_verified_by_s = 10\n",
                "line 14: expect.all_verified_by_s: 10.0 is before",
            ),
            (
                "[[timeline]]\nat_s = 1\naction = \"kill-master\"\nbogus = 2\n",
                "unknown field `bogus`",
            ),
        ];
        for (timeline, want) in cases {
            let err = format!("{:#}", parse(timeline).unwrap_err());
            assert!(
                err.contains(want),
                "for {timeline:?}:\n got {err}\nwant {want}"
            );
        }
        let err = format!(
            "{:#}",
            Scenario::parse("seed = 1\n", Path::new("."), None).unwrap_err()
        );
        assert!(err.contains("the scenario has no fleet"), "{err}");
    }
}

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

use crate::fleet::{Fleet, FleetFile, line_of};
use anyhow::{Context, Result, bail};
use bus_bridge::Fault;
use proto::NodeType;
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;

/// Which nodes an action acts on. Every given key filters; `random` then
/// picks that many of what is left, with the scenario's seed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Select {
    /// These node ids.
    pub ids: Option<Vec<u16>>,
    /// Nodes of this type.
    #[serde(rename = "type")]
    pub node_type: Option<String>,
    /// Members of this redundancy group.
    pub group: Option<String>,
    /// Nodes on this segment.
    pub segment: Option<String>,
    /// Nodes of this update set.
    pub set: Option<String>,
    /// This many of them, at random.
    pub random: Option<usize>,
}

/// One step of a rolling update: the sets rebooted together.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Step {
    /// One set.
    One(String),
    /// Several sets at once (which breaks availability if they hold every
    /// member of a group: useful to check the checker).
    Many(Vec<String>),
}

impl Step {
    /// The sets of the step.
    pub fn sets(&self) -> Vec<String> {
        match self {
            Step::One(s) => vec![s.clone()],
            Step::Many(v) => v.clone(),
        }
    }
}

/// What an entry does.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Kill the node's QEMU process and start it again: RAM is lost.
    PowerCycle(Select),
    /// QMP `system_reset`: RAM is kept.
    Reset(Select),
    /// `Reboot` over the bus.
    SoftReboot(Select),
    /// One of the three above, picked at random for each node.
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
            Action::PowerCycle(_) => "power-cycle",
            Action::Reset(_) => "reset",
            Action::SoftReboot(_) => "soft-reboot",
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
    select: Option<Select>,
    every_s: Option<f64>,
    until_s: Option<f64>,
    fault: Option<Fault>,
    link: Option<String>,
    #[serde(rename = "type")]
    node_type: Option<String>,
    types: Option<Vec<String>>,
    version: Option<String>,
    sets: Option<Vec<Step>>,
    step_timeout_s: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectFile {
    all_verified_by_s: Option<f64>,
    max_broadcasts_per_type_per_window: Option<i64>,
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
        let file: ScenarioFile = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        let fleet = match (&file.fleet, &file.nodes) {
            (Some(_), Some(_)) => bail!("fleet: name a fleet file or give [[nodes]], not both"),
            (Some(name), None) => {
                if file.bus.is_some() || file.master.is_some() || file.image_size.is_some() {
                    bail!("fleet: with a fleet file, [bus], [master] and image_size belong in it");
                }
                Fleet::load(&base.join(name)).with_context(|| format!("fleet = {name:?}"))?
            }
            (None, Some(_)) => {
                let fleet_file = FleetFile {
                    image_size: file.image_size,
                    bus: file.bus,
                    master: file.master,
                    nodes: file.nodes.unwrap_or_default(),
                };
                Fleet::from_file(fleet_file, text)?
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
                },
                &timeline,
            )?,
        };
        Ok(Scenario {
            name: file
                .name
                .or(default_name)
                .unwrap_or_else(|| "scenario".into()),
            seed: file.seed.unwrap_or(1),
            fleet,
            timeline,
            expect,
        })
    }
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
    Ok(Expect {
        all_verified_by,
        max_broadcasts_per_type_per_window: max,
    })
}

fn check_select(i: usize, s: &Select, fleet: &Fleet) -> Result<()> {
    let f = |k: &str| format!("timeline[{i}].select.{k}");
    for id in s.ids.iter().flatten() {
        if !fleet.nodes.iter().any(|n| n.id == *id) {
            bail!(
                "{}: there is no node {id} (the fleet has 1 to {})",
                f("ids"),
                fleet.nodes.len()
            );
        }
    }
    if let Some(t) = &s.node_type {
        node_type(&f("type"), t)?;
    }
    if let Some(g) = &s.group
        && !fleet.nodes.iter().any(|n| n.group.as_ref() == Some(g))
    {
        bail!("{}: no node is in group {g:?}", f("group"));
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
    if let Some(set) = &s.set
        && !fleet.nodes.iter().any(|n| n.set.as_ref() == Some(set))
    {
        bail!("{}: no node is in set {set:?}", f("set"));
    }
    if s.random == Some(0) {
        bail!("{}: must be at least 1", f("random"));
    }
    Ok(())
}

fn entry(i: usize, line: usize, e: &EntryFile, fleet: &Fleet) -> Result<Entry> {
    let field = |k: &str| format!("timeline[{i}].{k}");
    let at = seconds(&field("at_s"), e.at_s)?;
    let need_select = || -> Result<Select> {
        let s = e
            .select
            .clone()
            .with_context(|| format!("{}: action {:?} needs it", field("select"), e.action))?;
        check_select(i, &s, fleet)?;
        Ok(s)
    };
    let version = || -> Result<u32> {
        let v = e
            .version
            .as_deref()
            .with_context(|| format!("{}: action {:?} needs it", field("version"), e.action))?;
        images::build::parse_version(v).map_err(|m| anyhow::anyhow!("{}: {m}", field("version")))
    };
    let link = || -> Result<String> {
        let l = e
            .link
            .clone()
            .with_context(|| format!("{}: action {:?} needs it", field("link"), e.action))?;
        if !fleet.topology.links.iter().any(|k| k.name == l) {
            let names: Vec<&str> = fleet
                .topology
                .links
                .iter()
                .map(|k| k.name.as_str())
                .collect();
            bail!("{}: no link {l:?} (links: {names:?})", field("link"));
        }
        Ok(l)
    };
    let action = match e.action.as_str() {
        "power-cycle" => Action::PowerCycle(need_select()?),
        "reset" => Action::Reset(need_select()?),
        "soft-reboot" => Action::SoftReboot(need_select()?),
        "mixed-reboot" => Action::MixedReboot(need_select()?),
        "disturb" => Action::Disturb(need_select()?),
        "inject-fault" => Action::InjectFault(
            e.fault
                .clone()
                .with_context(|| format!("{}: action \"inject-fault\" needs it", field("fault")))?,
        ),
        "clear-faults" => Action::ClearFaults,
        "cut-link" => Action::CutLink(link()?),
        "restore-link" => Action::RestoreLink(link()?),
        "kill-master" => Action::KillMaster,
        "publish" => {
            let t = e
                .node_type
                .as_deref()
                .with_context(|| format!("{}: action \"publish\" needs it", field("type")))?;
            Action::Publish {
                node_type: node_type(&field("type"), t)?,
                version: version()?,
            }
        }
        "rolling-update" => {
            let grouped: Vec<NodeType> = {
                let mut v: Vec<NodeType> = fleet
                    .nodes
                    .iter()
                    .filter(|n| n.set.is_some())
                    .map(|n| n.node_type)
                    .collect();
                v.sort();
                v.dedup();
                v
            };
            let types = match &e.types {
                Some(names) => names
                    .iter()
                    .map(|n| node_type(&field("types"), n))
                    .collect::<Result<Vec<_>>>()?,
                None => grouped,
            };
            if types.is_empty() {
                bail!(
                    "{}: no node has an update set, so there is nothing to roll",
                    field("types")
                );
            }
            let steps = e.sets.clone().with_context(|| {
                format!("{}: action \"rolling-update\" needs it", field("sets"))
            })?;
            if steps.is_empty() {
                bail!("{}: lists no step", field("sets"));
            }
            for s in steps.iter().flat_map(|s| s.sets()) {
                if !fleet
                    .nodes
                    .iter()
                    .any(|n| n.set.as_ref() == Some(&s) && types.contains(&n.node_type))
                {
                    bail!(
                        "{}: no node of the updated types is in set {s:?}",
                        field("sets")
                    );
                }
            }
            Action::RollingUpdate {
                types,
                version: version()?,
                steps,
                step_timeout: seconds(&field("step_timeout_s"), e.step_timeout_s.unwrap_or(120.0))?,
            }
        }
        other => bail!(
            "{}: unknown action {other:?} (power-cycle, reset, soft-reboot, mixed-reboot, disturb, inject-fault, clear-faults, cut-link, restore-link, kill-master, publish, rolling-update)",
            field("action")
        ),
    };
    let every = e
        .every_s
        .map(|v| seconds(&field("every_s"), v))
        .transpose()?;
    let until = e
        .until_s
        .map(|v| seconds(&field("until_s"), v))
        .transpose()?;
    match (every, until) {
        (Some(ev), _) if ev < Duration::from_millis(100) => {
            bail!("{}: must be at least 0.1", field("every_s"))
        }
        (Some(_), None) => bail!("{}: `every_s` needs `until_s`", field("until_s")),
        (None, Some(_)) => bail!("{}: `until_s` needs `every_s`", field("every_s")),
        (Some(_), Some(u)) if u < at => bail!("{}: is before at_s", field("until_s")),
        _ => {}
    }
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

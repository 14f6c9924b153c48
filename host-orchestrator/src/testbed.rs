//! A testbed: bridge, master, supervisor and a fleet of QEMU nodes, started
//! together and always torn down together.

use crate::child::{self, Child};
use crate::clock::RunClock;
use crate::fleet::Fleet;
use crate::live::LiveView;
use crate::master::{self, MasterRecord, Role};
use crate::qemu::{self, NodeLaunch, NodeProcess};
use crate::report::{self, MasterLog, Report};
use crate::rundir::RunDir;
use crate::seeds::Seeds;
use crate::store::Store;
use crate::supervisor::{self, FleetView, Published, Supervisor};
use anyhow::{Context, Result, bail};
use board::strap::Strap;
use proto::NodeType;
use proto::msg::{Message, Reboot};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

/// How long an unpaced bus waits for a receiver that takes nothing.
const UNPACED_STALL: Duration = Duration::from_secs(10);

/// Frames a node's bridge port queues for it on an unpaced bus.
const UNPACED_RX_QUEUE: usize = 64;

/// Frames a node's bridge port queues for it on the virtual clock.
const VIRTUAL_RX_QUEUE: usize = 512;

/// Frames a node's bridge port queues for it on a paced wall-clock bus:
/// about 1.4 s of a CAN FD 1M/5M bus busy with 64-byte frames. Forty
/// nodes receiving an image on two cores run behind the bus for a while
/// (each translates its receive and check code when the session starts);
/// with 512 they lost a sixth of the frames, and repair sent most of the
/// image again.
const PACED_RX_QUEUE: usize = 8192;

/// TX FIFO places of the host's own bus clients (masters, supervisor) on
/// a paced wall-clock bus: about 10 ms of 64-byte CAN FD 1M/5M frames.
const HOST_TX_FIFO: usize = 64;

/// On a paced bus, frames go to a node at most every this many ms,
/// together: its boot ROM takes them in batches of up to 10 ms anyway, and
/// a socket write, a QEMU read and a device buffer per frame cost the host
/// more than the node's own work once tens of nodes receive an image.
/// Forty nodes receiving 256 KiB were all verified sooner with 4 ms than
/// with 1 or 10 (`bench scale`, three runs each: 1.78, 1.63 and 1.71 s).
const NODE_DELIVERY_MS: u64 = 4;

/// Built guest artifacts: the flash file and the reference images.
#[derive(Clone, Debug)]
pub struct Artifacts {
    /// The folder `cargo xtask build` writes.
    pub dir: PathBuf,
}

impl Artifacts {
    /// `explicit`, else `$BOOTCAST_ARTIFACTS`, else `bootcast` in cargo's
    /// target directory (`$CARGO_TARGET_DIR`, else the workspace's
    /// `target`). Fails, saying how to build them, when they are missing.
    pub fn locate(explicit: Option<PathBuf>) -> Result<Artifacts> {
        let dir = explicit
            .or_else(|| std::env::var_os("BOOTCAST_ARTIFACTS").map(PathBuf::from))
            .unwrap_or_else(default_artifacts);
        let a = Artifacts { dir };
        for needed in [a.flash(), a.images()] {
            if !needed.exists() {
                return Err(crate::exit::EnvironmentMissing(format!(
                    "guest artifacts missing: {} does not exist; run `cargo xtask build` (or `cargo xtask test`, which builds them)",
                    needed.display()
                ))
                .into());
            }
        }
        Ok(a)
    }

    /// The 32 MiB boot ROM flash file.
    pub fn flash(&self) -> PathBuf {
        self.dir.join("flash.bin")
    }

    /// The folder of reference images, one per type.
    pub fn images(&self) -> PathBuf {
        self.dir.join("images")
    }

    /// The key the build signed its images with (`build.json` names it):
    /// images the testbed makes (padded, published) need it, or nodes
    /// refuse them.
    pub fn signing_key(&self) -> Result<images::sign::SigningKey> {
        let path = self.dir.join(images::build_manifest::FILE_NAME);
        let build = images::build_manifest::BuildManifest::load(&path)?;
        images::sign::SigningKey::load(&build.signing.key)
    }
}

/// `bootcast` in cargo's target directory: `$CARGO_TARGET_DIR` when set,
/// else the workspace's `target`.
fn default_artifacts() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("bootcast")
}

/// How to start a testbed.
#[derive(Clone, Debug)]
pub struct Options {
    /// The fleet.
    pub fleet: Fleet,
    /// Built artifacts.
    pub artifacts: Artifacts,
    /// The master's image store; defaults to the reference images.
    pub store: Option<PathBuf>,
    /// Keep everything in this folder instead of a fresh temporary one.
    pub run_dir: Option<PathBuf>,
    /// Rejections after which a node counts as failed.
    pub max_rejects: usize,
    /// Show the live view on stderr (bars on a terminal, else plain lines).
    pub progress: bool,
    /// The `bootcast` executable, to run a backup master as its own process
    /// (needed when the fleet asks for a backup).
    pub master_exe: Option<PathBuf>,
    /// Nodes left powered off at start; see [`Testbed::power_on`].
    pub held: std::collections::BTreeSet<u16>,
    /// Power the nodes that start at once on in the same instant: each QEMU
    /// starts with its CPU stopped, and all are released together once every
    /// one is up, so QEMU's own start-up time (seconds, for 40 on two cores)
    /// does not smear the fleet's power-on. Wall clock only: on the virtual
    /// clock a node's time starts with the node.
    pub power_on_together: bool,
    /// A stop the user asked for (Ctrl-C): once cancelled, every wait of the
    /// testbed returns at once, so its owner can end it with
    /// [`Testbed::shutdown`].
    pub interrupt: CancellationToken,
    /// The run's seeds (node jitter, bus fault decisions). `None`: drawn at
    /// random, with the fleet file's `[bus.faults] seed` for the bus; the
    /// report records them either way.
    pub seeds: Option<Seeds>,
    /// The run ends once the fleet settles (every node verified or failed):
    /// on the virtual clock the bus's time stops there, at a point of
    /// virtual time, so that the same fleet and seed give the same report
    /// to its end. (Nothing on the wall clock.)
    pub end_when_settled: bool,
}

impl Options {
    /// Defaults for `fleet`.
    pub fn new(fleet: Fleet, artifacts: Artifacts) -> Options {
        Options {
            fleet,
            artifacts,
            store: None,
            run_dir: None,
            max_rejects: 3,
            progress: false,
            master_exe: None,
            held: Default::default(),
            power_on_together: false,
            interrupt: CancellationToken::new(),
            seeds: None,
            end_when_settled: false,
        }
    }
}

/// The host's drops on the bus (besides the nodes'), in port order. "tool"
/// is a spare drop for test harnesses and tools (a rogue sender, a bus
/// analyser); nothing of the testbed's uses it.
const HOST_PORTS: [&str; 4] = ["master", "supervisor", "backup", "tool"];

/// The masters: the primary's task, the backup's process, and their log.
struct Masters {
    primary: Option<JoinHandle<Result<()>>>,
    /// Tells the primary to stop.
    stop: watch::Sender<bool>,
    backup: Option<Child>,
    /// The masters' events, as report entries; the recorder task owns it.
    log: watch::Receiver<Arc<MasterLog>>,
}

/// A running testbed. [`Testbed::shutdown`] is its one exit: it ends every
/// node process, the masters, the supervisor and the bridge in order, and
/// drains every task it started. Dropped without it (a panic), its node
/// processes are still killed.
pub struct Testbed {
    run_dir: RunDir,
    t0: Instant,
    /// The run's clock: reports and the live view read their times on it.
    clock: RunClock,
    bridge: Option<bus_bridge::Bridge>,
    /// Every task the testbed started.
    tasks: TaskTracker,
    /// Ends the supervisor and the progress printer (also when the testbed
    /// is dropped without a shutdown).
    cancel: DropGuard,
    interrupt: CancellationToken,
    masters: Masters,
    supervisor: Supervisor,
    /// The live view, while it runs.
    live: Option<LiveView>,
    nodes: BTreeMap<u16, NodeProcess>,
    launches: BTreeMap<u16, NodeLaunch>,
    /// Nodes whose power comes on later: (when, on the run's clock; node),
    /// soonest last.
    power_on_later: Vec<(crate::clock::Moment, u16)>,
    /// On the virtual clock: where the fleet's time is held
    /// ([`Testbed::pause_until`]).
    paused_at: Option<u64>,
    /// The supervisor holds the bus's time once the fleet settles
    /// ([`Options::end_when_settled`]): no pause is reached after that.
    ends_when_settled: bool,
    /// The master's store (the run's own copy).
    store_dir: PathBuf,
    artifacts: Artifacts,
    seeds: Seeds,
}

impl Testbed {
    /// Starts the bridge, the master, the supervisor and every node.
    pub async fn start(mut opts: Options) -> Result<Testbed> {
        qemu::check_installed()?;
        if opts.fleet.clock_unset {
            let found = qemu::VirtualTools::find(&opts.artifacts.dir);
            opts.fleet.choose_clock(found.is_ok());
        }
        // On the virtual clock a node's time starts with the node anyway.
        opts.power_on_together &= opts.fleet.clock == board::strap::Clock::Wall;
        let run_dir = RunDir::create(opts.run_dir.as_deref())?;
        let reference = prepare_stores(&opts, &run_dir)?;
        qemu::write_boot_rom(&opts.artifacts.flash(), &run_dir.boot_rom())?;
        let seeds = opts.seeds.clone().unwrap_or_else(|| Seeds {
            bus_faults: opts.fleet.faults.seed,
            ..Seeds::derive(rand::random(), opts.fleet.nodes.iter().map(|n| n.id))
        });
        let bridge = bus_bridge::start(bridge_config(&opts, &run_dir, seeds.bus_faults))
            .await
            .context("starting the bus bridge")?;
        let t0 = Instant::now();
        let clock = match opts.fleet.clock {
            board::strap::Clock::Wall => RunClock::Wall { t0 },
            board::strap::Clock::Virtual => RunClock::Bus(bridge.time()),
        };
        let tasks = TaskTracker::new();
        let cancel = CancellationToken::new();
        // The supervisor first: it must hear every frame, the masters' first
        // beacons included.
        let supervisor = Supervisor::start(
            supervisor_options(&opts, &run_dir, reference, t0, &seeds),
            &tasks,
            cancel.clone(),
        )
        .await?;
        let masters = start_masters(&opts, &run_dir, &tasks)?;
        let live = opts.progress.then(|| {
            LiveView::start(
                supervisor.subscribe(),
                masters.log.clone(),
                clock.clone(),
                &tasks,
                &cancel,
            )
        });
        let mut tb = Testbed {
            store_dir: run_dir.store(),
            run_dir,
            t0,
            clock,
            bridge: Some(bridge),
            tasks,
            cancel: cancel.drop_guard(),
            interrupt: opts.interrupt.clone(),
            masters,
            supervisor,
            live,
            nodes: BTreeMap::new(),
            launches: BTreeMap::new(),
            power_on_later: Vec::new(),
            // The bridge holds the fleet's time there from its start.
            paused_at: held_at_start(&opts),
            ends_when_settled: opts.end_when_settled,
            artifacts: opts.artifacts.clone(),
            seeds,
        };
        tb.await_masters().await?;
        tb.power_on_fleet(&opts).await?;
        Ok(tb)
    }

    /// On the virtual clock, waits for the masters to join the fleet's
    /// time before any node powers on: a master still loading a large
    /// store would otherwise join only once the nodes' requests and their
    /// timeouts had passed without it.
    async fn await_masters(&mut self) -> Result<()> {
        let Some(bus) = self.bus().filter(|_| self.on_virtual_clock()) else {
            return Ok(());
        };
        let backup = self.masters.backup.is_some().then_some("backup");
        for port in std::iter::once("master").chain(backup) {
            let ended = async {
                loop {
                    let primary = self.masters.primary.as_ref();
                    if port == "master" && primary.is_none_or(|p| p.is_finished()) {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            };
            tokio::select! {
                r = tokio::time::timeout(MASTER_UP, bus.await_clock(port)) => r
                    .map_err(|_| anyhow::anyhow!(
                        "the {port} master did not join the bus within {MASTER_UP:?}; see {}",
                        self.run_dir.path().join("log").display()
                    ))??,
                () = ended => bail!(
                    "the master ended before it joined the bus; see {}",
                    self.run_dir.path().join("log").display()
                ),
            }
        }
        Ok(())
    }

    /// Powers on every node that starts at once, and schedules the rest.
    async fn power_on_fleet(&mut self, opts: &Options) -> Result<()> {
        let tools = match opts.fleet.clock {
            board::strap::Clock::Virtual => Some(qemu::VirtualTools::find(&opts.artifacts.dir)?),
            board::strap::Clock::Wall => None,
        };
        for n in &opts.fleet.nodes {
            let launch = NodeLaunch {
                id: n.id,
                boot_rom: self.run_dir.boot_rom(),
                bus_socket: self.run_dir.node_socket(n.id),
                qmp_socket: self.run_dir.qmp_socket(n.id),
                log: self.run_dir.qemu_log(n.id),
                console: self.run_dir.console_log(n.id),
                strap: Strap {
                    node: n.id,
                    node_type: n.node_type as u8,
                    segment: 0,
                    min_version: n.min_version,
                    seed: self.seeds.nodes.get(&n.id).copied().unwrap_or(1),
                    transport: opts.fleet.transport,
                    clock: opts.fleet.clock,
                },
                paused: false,
                clock: tools.as_ref().map(|t| qemu::NodeClock {
                    tools: t.clone(),
                    socket: self.run_dir.clock_socket(n.id),
                    shift: opts.fleet.icount_shift,
                }),
                ram: Some(self.run_dir.ram_file(n.id)),
                monitor: Some(self.run_dir.monitor_socket(n.id)),
            };
            self.launches.insert(n.id, launch);
            if opts.held.contains(&n.id) {
                continue;
            }
            if n.power_on_after.is_zero() {
                self.spawn(n.id, opts.power_on_together).await?;
            } else {
                let at = crate::clock::Moment::from_duration(n.power_on_after);
                self.power_on_later.push((at, n.id));
            }
        }
        self.power_on_later
            .sort_by_key(|(at, _)| std::cmp::Reverse(*at));
        if opts.power_on_together {
            self.release_paused().await?;
        }
        // On the virtual clock the fleet's time is held at the first later
        // power-on (nodes before it come on there): with nothing to hold it
        // back it would run far ahead before anyone waits on the testbed.
        if let Some(&(first, _)) = self.power_on_later.last()
            && self.on_virtual_clock()
        {
            self.pause_until(first).await;
        }
        Ok(())
    }

    async fn spawn(&mut self, id: u16, paused: bool) -> Result<()> {
        let mut launch = self.launches.get(&id).context("no such node")?.clone();
        launch.paused = paused;
        let p = NodeProcess::spawn(&launch)?;
        self.nodes.insert(id, p);
        self.supervisor.mark_spawned(id).await
    }

    /// Starts every node spawned paused in the same instant: first connects
    /// to each one's QMP, then sends every `cont` before reading any answer.
    async fn release_paused(&mut self) -> Result<()> {
        let mut conns = Vec::new();
        for (&id, launch) in &self.launches {
            if !self.nodes.contains_key(&id) {
                continue;
            }
            let q = qemu::Qmp::connect_within(&launch.qmp_socket, Duration::from_secs(60))
                .await
                .with_context(|| format!("node {id}: waiting for QEMU to start"))?;
            conns.push((id, q));
        }
        for (id, q) in &mut conns {
            q.send("cont")
                .await
                .with_context(|| format!("node {id}: powering on"))?;
        }
        for (id, _) in &conns {
            self.supervisor.mark_spawned(*id).await?;
        }
        for (id, q) in &mut conns {
            q.result("cont")
                .await
                .with_context(|| format!("node {id}: powering on"))?;
        }
        Ok(())
    }

    /// CPU time the node processes have used so far (user and system), summed
    /// over the processes running now.
    pub fn fleet_cpu_time(&self) -> Duration {
        let ticks_per_s = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .unwrap_or(100) as u64;
        let ticks: u64 = self
            .nodes
            .values()
            .filter_map(|p| {
                let stat = std::fs::read_to_string(format!("/proc/{}/stat", p.process.pid)).ok()?;
                // Fields after the parenthesised command name; utime and
                // stime are the 14th and 15th of the whole line.
                let rest = &stat[stat.rfind(')')? + 2..];
                let f: Vec<&str> = rest.split_whitespace().collect();
                Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
            })
            .sum();
        Duration::from_millis(ticks * 1000 / ticks_per_s)
    }

    /// Powers node `id` on: starts its QEMU process (RAM starts empty).
    pub async fn power_on(&mut self, id: u16) -> Result<()> {
        if self.nodes.contains_key(&id) {
            bail!("node {id} is already powered on");
        }
        self.spawn(id, false).await?;
        // On the virtual clock the fleet's time must wait for the new
        // node from where it is now, not from wherever the bus has got to
        // when its QEMU is up.
        if let (true, Some(bus)) = (self.on_virtual_clock(), self.bus()) {
            let port = RunDir::node_port_name(id);
            tokio::time::timeout(QMP_UP, bus.await_clock(&port))
                .await
                .map_err(|_| {
                    anyhow::anyhow!(
                        "node {id}'s clock plugin did not connect within {QMP_UP:?}; see {}",
                        self.run_dir.qemu_log(id).display()
                    )
                })??;
        }
        Ok(())
    }

    /// Publishes version `version` of type `t`'s image in the master's store:
    /// the current image's code, padded by 4 KiB so that it is a distinct
    /// image, with the new version in its manifest. Nodes of that type that
    /// boot from now on must run it; running ones are left alone.
    pub async fn publish(&self, t: NodeType, version: u32) -> Result<Published> {
        let store = Store::load(&self.store_dir)?;
        let current = store.by_type.get(&t).with_context(|| {
            format!(
                "the store has no {} image to publish a version of",
                t.name()
            )
        })?;
        let size = (current.image.payload.len() as u32).div_ceil(4096) * 4096 + 4096;
        let mut image = current
            .image
            .padded(size)
            .context("cannot make the new version")?;
        image.manifest.version = version;
        image.sign(&self.artifacts.signing_key()?);
        let path = self.store_dir.join(crate::store::image_file_name(t));
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, image.to_bytes())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
        let published = Published {
            digest: image.payload_sha256(),
            version,
            load_addr: image.manifest.load_addr,
            payload: Arc::new(image.payload),
        };
        self.supervisor.publish(t, published.clone()).await?;
        Ok(published)
    }

    /// Resets node `id` through QMP `system_reset`: RAM is kept, the boot
    /// ROM runs again.
    pub async fn reset(&self, id: u16) -> Result<()> {
        anyhow::ensure!(self.nodes.contains_key(&id), "node {id} is not powered on");
        // On the virtual clock the node's plugin resets it at a point of
        // virtual time; a monitor command would land wherever the host
        // happens to be (and a vCPU held at its grant cannot take it).
        if let (RunClock::Bus(_), Some(bus)) = (&self.clock, self.bus()) {
            let port = RunDir::node_port_name(id);
            if bus
                .reset_node(&port, None)
                .await
                .with_context(|| format!("resetting node {id}"))?
            {
                return self.supervisor.mark_rebooting(id).await;
            }
        }
        let launch = self.launches.get(&id).context("no such node")?;
        // A node just powered on may not have its QMP socket up yet.
        let mut q = qemu::Qmp::connect_within(&launch.qmp_socket, QMP_UP)
            .await
            .with_context(|| format!("resetting node {id}"))?;
        q.execute("system_reset")
            .await
            .with_context(|| format!("resetting node {id}"))?;
        self.supervisor.mark_rebooting(id).await
    }

    /// Power-cycles node `id`: its RAM is lost, the boot ROM starts afresh.
    pub async fn power_cycle(&mut self, id: u16) -> Result<()> {
        self.power_off(id).await?;
        self.power_on(id).await
    }

    /// Cuts node `id`'s power: kills its QEMU process at once, so its RAM
    /// (and the image in it) is lost.
    pub async fn power_off(&mut self, id: u16) -> Result<()> {
        let mut p = self
            .nodes
            .remove(&id)
            .with_context(|| format!("node {id} is not powered on"))?;
        p.process.kill_now().await;
        self.supervisor.mark_off(id).await
    }

    /// The file that backs node `id`'s RAM (QEMU maps it shared: writing
    /// it changes the guest's memory behind its back).
    pub fn ram_file(&self, id: u16) -> PathBuf {
        self.run_dir.ram_file(id)
    }

    /// The bus's statistics now.
    pub fn bus_stats(&self) -> Option<bus_bridge::BusStats> {
        self.bridge.as_ref().map(|b| b.stats())
    }

    /// The bus's control handle: faults, link cuts, statistics.
    pub fn bus(&self) -> Option<bus_bridge::BridgeControl> {
        self.bridge.as_ref().map(|b| b.control())
    }

    /// Where the socketcand server for external tools listens.
    pub fn socketcand_addr(&self) -> Option<std::net::SocketAddr> {
        self.bridge.as_ref().and_then(|b| b.socketcand_addr())
    }

    /// The pcap capture of every frame on the bus (complete after shutdown).
    pub fn capture_pcap(&self) -> PathBuf {
        self.run_dir.capture_pcap()
    }

    /// The socket of the spare "tool" port: connect with the link codec
    /// (see `bus_bridge::client`) to send and receive frames like any node.
    pub fn tool_port(&self) -> PathBuf {
        self.run_dir.port_socket("tool")
    }

    /// Proportional set size of every node process, summed (KiB): what the
    /// fleet costs the host in memory right now.
    pub fn fleet_pss_kib(&self) -> u64 {
        self.nodes
            .values()
            .map(|p| {
                std::fs::read_to_string(format!("/proc/{}/smaps_rollup", p.process.pid))
                    .ok()
                    .and_then(|s| {
                        let line = s.lines().find(|l| l.starts_with("Pss:"))?;
                        line.split_whitespace().nth(1)?.parse::<u64>().ok()
                    })
                    .unwrap_or(0)
            })
            .sum()
    }

    /// Node ids whose QEMU is running.
    pub fn powered(&self) -> Vec<u16> {
        self.nodes.keys().copied().collect()
    }

    /// The instant the report's times (`started_s`, `opened_s`, ...) count
    /// from.
    pub fn started_at(&self) -> Instant {
        self.t0
    }

    /// Now on the run's clock (the host's since the start, or the bus's
    /// virtual time): what the report's times count.
    pub fn now(&self) -> crate::clock::Moment {
        self.clock.now()
    }

    /// The run's clock, for other tasks to read.
    pub fn clock(&self) -> RunClock {
        self.clock.clone()
    }

    /// The run folder.
    pub fn run_dir(&self) -> &Path {
        self.run_dir.path()
    }

    /// Keeps the run folder after the testbed ends (for diagnosis).
    pub fn keep_run_dir(&mut self) {
        self.run_dir.keep();
    }

    /// The fleet as the supervisor sees it now.
    pub fn fleet(&self) -> Arc<FleetView> {
        self.supervisor.snapshot()
    }

    /// Every new view of the fleet, as the supervisor publishes it.
    pub fn watch_fleet(&self) -> watch::Receiver<Arc<FleetView>> {
        self.supervisor.subscribe()
    }

    /// Whether the user asked the run to stop (see [`Options::interrupt`]).
    pub fn interrupted(&self) -> bool {
        self.interrupt.is_cancelled()
    }

    /// Waits until every node is verified or failed, or `timeout` passes.
    /// A QEMU process that exits by itself fails its node.
    pub async fn wait_settled(&mut self, timeout: Duration) -> bool {
        self.wait_until(timeout, |v| v.settled()).await
    }

    /// Waits until `done` holds on the fleet view, watching for dead nodes
    /// and powering on nodes whose time has come. Returns `false` at once
    /// when the run is interrupted.
    pub async fn wait_until(
        &mut self,
        timeout: Duration,
        done: impl Fn(&FleetView) -> bool,
    ) -> bool {
        if self.on_virtual_clock() {
            return self.wait_until_virtual(timeout, done).await;
        }
        let deadline = Instant::now() + timeout;
        loop {
            if self.interrupted() {
                return false;
            }
            self.reap_exited().await;
            self.power_on_due().await;
            let now = self.now();
            let next_power_on = self.power_on_later.last().map(|(at, _)| *at);
            // Exited processes are looked for at least this often.
            let step = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(250))
                .min(next_power_on.map_or(Duration::MAX, |at| at.saturating_duration_since(now)));
            let held = tokio::select! {
                held = self.supervisor.wait_for(step, &done) => held,
                _ = self.interrupt.cancelled() => false,
            };
            if held {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
        }
    }

    /// Whether the run's clock is the bus's virtual time.
    pub fn on_virtual_clock(&self) -> bool {
        matches!(self.clock, RunClock::Bus(_))
    }

    /// [`Testbed::wait_until`] on the virtual clock: `done` is judged with
    /// the fleet held at each [`VIRTUAL_CHECK`] of virtual time, so where
    /// it first holds does not depend on the host.
    async fn wait_until_virtual(
        &mut self,
        timeout: Duration,
        done: impl Fn(&FleetView) -> bool,
    ) -> bool {
        self.held_steps_until(timeout, |tb| done(&tb.fleet())).await
    }

    /// Judges `done` with the fleet's time held at each [`VIRTUAL_CHECK`]
    /// of virtual time, for at most `timeout` of it; whether it held.
    async fn held_steps_until(&mut self, timeout: Duration, done: impl Fn(&Self) -> bool) -> bool {
        let deadline = self.now() + timeout;
        loop {
            if done(self) {
                return true;
            }
            let now = self.now();
            if now >= deadline || !self.pause_until((now + VIRTUAL_CHECK).min(deadline)).await {
                return done(self);
            }
        }
    }

    /// On the virtual clock, lets the fleet's time run on to `at` (from a
    /// pause before, if any) and holds it there: what the caller does next
    /// happens at `at` of virtual time. Nodes due to power on before then
    /// are powered on at their own times on the way. Looks after the
    /// testbed meanwhile. False if interrupted, on the wall clock, or if
    /// the bus is gone.
    pub async fn pause_until(&mut self, at: crate::clock::Moment) -> bool {
        while let Some(&(on, _)) = self.power_on_later.last().filter(|(on, _)| *on <= at) {
            if !self.hold_at(on).await {
                return false;
            }
            self.power_on_due().await;
        }
        self.hold_at(at).await
    }

    /// [`Testbed::pause_until`] without the power-ons.
    async fn hold_at(&mut self, at: crate::clock::Moment) -> bool {
        let Some(bus) = self.bus().filter(|_| self.on_virtual_clock()) else {
            return false;
        };
        // A pause held now moves on to `at` in one step.
        let was = self.paused_at.take();
        if was.is_some() {
            self.supervisor.pin(None);
        }
        let reached = async {
            match was {
                Some(was) => bus.move_pause(was, at.as_ns()).await,
                None => bus.pause_at(at.as_ns()).await,
            }
        };
        tokio::pin!(reached);
        loop {
            tokio::select! {
                r = &mut reached => {
                    return match r {
                        Ok(Some(t)) => {
                            self.paused_at = Some(t);
                            self.supervisor.pin(Some(crate::clock::Moment::from_ns(t)));
                            true
                        }
                        _ => false,
                    };
                }
                _ = self.interrupt.cancelled() => return false,
                _ = tokio::time::sleep(Duration::from_millis(250)) => {
                    self.reap_exited().await;
                    // The supervisor has stopped the bus's time for good.
                    if self.ends_when_settled && self.fleet().settled() {
                        return false;
                    }
                }
            }
        }
    }

    /// Powers on the nodes whose time has come (on the virtual clock, with
    /// the fleet held at it: see [`Testbed::power_on`]).
    async fn power_on_due(&mut self) {
        while let Some(&(at, id)) = self.power_on_later.last() {
            if at > self.now() {
                break;
            }
            self.power_on_later.pop();
            if let Err(e) = self.power_on(id).await {
                self.fail_node(id, format!("could not power on: {e:#}"))
                    .await;
            }
        }
    }

    async fn reap_exited(&mut self) {
        let mut dead = Vec::new();
        for (id, p) in &mut self.nodes {
            if let Some(status) = p.process.exited() {
                dead.push((*id, status));
            }
        }
        for (id, status) in dead {
            self.nodes.remove(&id);
            let tail = log_tail(&self.run_dir.qemu_log(id), 5);
            self.fail_node(id, format!("QEMU exited ({status}); log tail: {tail}"))
                .await;
        }
    }

    async fn fail_node(&self, id: u16, why: String) {
        if let Err(e) = self.supervisor.fail(id, why).await {
            tracing::warn!(node = id, "cannot record the failure: {e:#}");
        }
    }

    /// Sends `Reboot` to one node over the bus (a soft reboot).
    pub async fn soft_reboot(&self, node: u16) -> Result<()> {
        self.supervisor
            .send(Message::Reboot(Reboot {
                target: node,
                target_type: 0,
                reason: proto::msg::RebootReason::Requested as u8,
            }))
            .await?;
        self.supervisor.mark_rebooting(node).await
    }

    /// The report as of now (bus statistics from the bridge included).
    pub fn report(&self) -> Report {
        let bus = self.bridge.as_ref().map(|b| b.stats());
        let log = self.masters.log.borrow().clone();
        let mut report = report::build(
            &self.supervisor.snapshot(),
            &log,
            bus,
            self.clock.now(),
            self.run_dir().display().to_string(),
        );
        report.seeds = Some(self.seeds.clone());
        report.clock = self.clock.kind();
        report.wall_s = self.t0.elapsed().as_secs_f64();
        report
    }

    /// Kills the primary master at once (its bus port goes silent), as a
    /// crash would. The backup master, if any, takes over.
    pub async fn kill_primary_master(&mut self) {
        if let Some(m) = self.masters.primary.take() {
            m.abort();
            let _ = m.await;
        }
    }

    /// The one way a testbed ends: lets sessions in progress end, stops
    /// every node process (SIGTERM, then SIGKILL), the masters, the
    /// supervisor (whose logs go to `log/nN.bus.log`) and the bridge, waits
    /// for every task it started, and returns the final report.
    pub async fn shutdown(mut self) -> Report {
        self.let_sessions_end().await;
        self.end_live_view().await;
        self.hold_time().await;
        self.stop_processes().await;
        self.stop_primary().await;
        let Testbed {
            supervisor,
            bridge,
            tasks,
            cancel,
            masters,
            run_dir,
            clock,
            seeds,
            t0,
            ..
        } = self;
        // Nothing will change now: one last view for the report.
        let (view, timelines) = match supervisor.stop().await {
            Ok(stopped) => {
                write_node_logs(&run_dir, &stopped.logs);
                (stopped.view, stopped.timelines)
            }
            Err(e) => {
                tracing::warn!("{e:#}");
                (Arc::new(FleetView::default()), BTreeMap::new())
            }
        };
        cancel.disarm().cancel();
        let now = clock.now();
        let bus = match bridge {
            Some(b) => Some(b.shutdown().await),
            None => None,
        };
        // The recorder ends once both masters' event senders are gone.
        tasks.close();
        tasks.wait().await;
        let log = masters.log.borrow().clone();
        let mut report = report::build(&view, &log, bus, now, run_dir.path().display().to_string());
        report.seeds = Some(seeds);
        report.clock = clock.kind();
        report.wall_s = t0.elapsed().as_secs_f64();
        report.attach_timelines(&timelines);
        report
    }

    /// On the virtual clock the run ends here: the bus's time stops, so that
    /// nothing the ending does (nodes leaving one by one, the masters'
    /// timers racing on without nodes to hold them) counts in the report.
    async fn hold_time(&self) {
        if let (RunClock::Bus(_), Some(b)) = (&self.clock, &self.bridge)
            && let Err(e) = b.control().hold_time().await
        {
            tracing::warn!("cannot stop the bus's time: {e}");
        }
    }

    /// Draws the live view's last state and ends it, so that what is
    /// printed next stands below it.
    pub async fn end_live_view(&mut self) {
        if let Some(live) = self.live.take() {
            live.end().await;
        }
    }

    /// Waits (a little) for sessions in progress to end, so that the report
    /// has their repair rounds: nodes may be verified before the master's
    /// last repair wait is over.
    /// On the virtual clock the wait is in virtual time, with the fleet
    /// held every 0.1 s: a session's last repair wait is virtual time too.
    pub async fn let_sessions_end(&mut self) {
        if self.masters.primary.is_none() && self.masters.backup.is_none() {
            return;
        }
        let quiet = |l: &MasterLog| {
            !l.broadcasts
                .iter()
                .any(|b| b.ended_s.is_none() && b.error.is_none())
        };
        if self.on_virtual_clock() {
            self.held_steps_until(SESSIONS_END, |tb| quiet(&tb.masters.log.borrow()))
                .await;
            return;
        }
        let mut log = self.masters.log.clone();
        let _ = tokio::time::timeout(SESSIONS_END, log.wait_for(|l| quiet(l))).await;
    }

    /// Ends every node process and the backup master: SIGTERM to all at
    /// once, then each is awaited (SIGKILL after the grace period).
    async fn stop_processes(&mut self) {
        for p in self.nodes.values_mut() {
            p.process.terminate();
        }
        if let Some(b) = &mut self.masters.backup {
            b.terminate();
        }
        let deadline = Instant::now() + child::TERM_GRACE;
        for p in self.nodes.values_mut() {
            p.process.wait_or_kill(deadline).await;
        }
        if let Some(mut b) = self.masters.backup.take() {
            b.wait_or_kill(deadline).await;
        }
        self.nodes.clear();
    }

    async fn stop_primary(&mut self) {
        let _ = self.masters.stop.send(true);
        if let Some(mut m) = self.masters.primary.take() {
            match tokio::time::timeout(MASTER_STOP, &mut m).await {
                Ok(Ok(Err(e))) => tracing::warn!("master stopped with an error: {e:#}"),
                Ok(_) => {}
                Err(_) => {
                    tracing::warn!("master did not stop in time; aborting it");
                    m.abort();
                    let _ = m.await;
                }
            }
        }
    }
}

/// How long a reset waits for a node's QMP socket (a node just powered on
/// creates it within a second or so on a loaded host).
const QMP_UP: Duration = Duration::from_secs(10);
/// How long a master may take to load its store and join the bus (a store
/// of large images is hashed and checked first).
const MASTER_UP: Duration = Duration::from_secs(120);
/// On the virtual clock, how often a wait for the fleet judges it (in
/// virtual time; each check holds the fleet for a round).
const VIRTUAL_CHECK: Duration = Duration::from_millis(100);
/// How long the shutdown waits for sessions in progress to end.
const SESSIONS_END: Duration = Duration::from_secs(5);
/// How long the primary master gets to stop.
const MASTER_STOP: Duration = Duration::from_secs(2);

/// Checks the stores, makes the run's own copies (padded and signed again
/// when the fleet asks for a size; the images the fleet builds from ELF
/// files, signed, in place of their types' images) and returns the
/// reference images the supervisor verifies against.
fn prepare_stores(opts: &Options, run_dir: &RunDir) -> Result<Arc<Store>> {
    let fleet = &opts.fleet;
    let given_store = opts
        .store
        .clone()
        .unwrap_or_else(|| opts.artifacts.images());
    // Types the fleet builds from ELF files need no image in the store.
    let from_store: Vec<NodeType> = fleet
        .types()
        .into_iter()
        .filter(|t| !fleet.images.contains_key(t))
        .collect();
    // Checked where the user put it, so errors name their file.
    Store::load(&given_store)?.require(&from_store, &given_store)?;
    let key = if fleet.image_size.is_some() || !fleet.images.is_empty() {
        Some(opts.artifacts.signing_key()?)
    } else {
        None
    };
    // The master's store is the run's own copy: publishing writes to it.
    let store_dir = run_dir.store();
    let pad = fleet.image_size.zip(key.clone());
    copy_images(&given_store, &store_dir, pad.as_ref())?;
    let mut reference_dir = opts.artifacts.images();
    if key.is_some() {
        reference_dir = run_dir.reference();
        copy_images(&opts.artifacts.images(), &reference_dir, pad.as_ref())?;
    }
    if let Some(key) = &key {
        for (t, elf) in &fleet.images {
            let mut image = (*elf.image).clone();
            image.sign(key);
            let bytes = image.to_bytes();
            for dir in [&store_dir, &reference_dir] {
                let out = dir.join(crate::store::image_file_name(*t));
                std::fs::write(&out, &bytes)
                    .with_context(|| format!("cannot write {}", out.display()))?;
            }
            tracing::info!(
                node_type = t.name(),
                elf = %elf.elf.display(),
                sha256 = %images::build::hex(&image.manifest.sha256),
                "image built from the fleet's ELF file"
            );
        }
    }
    let reference = Arc::new(Store::load(&reference_dir)?);
    reference.require(&fleet.types(), &reference_dir)?;
    Store::load(&store_dir)?;
    Ok(reference)
}

/// The supervisor's options for the testbed `opts` in `run_dir`.
fn supervisor_options(
    opts: &Options,
    run_dir: &RunDir,
    reference: Arc<Store>,
    t0: Instant,
    seeds: &Seeds,
) -> supervisor::Options {
    supervisor::Options {
        port: run_dir.port_socket("supervisor"),
        nodes: opts.fleet.nodes.clone(),
        reference,
        max_rejects: opts.max_rejects,
        clock: opts.fleet.clock,
        t0,
        nonces: match opts.fleet.clock {
            board::strap::Clock::Wall => Box::new(StdRng::from_entropy()),
            board::strap::Clock::Virtual => Box::new(seeds.nonces()),
        },
        hold_when_settled: opts.end_when_settled,
        access: opts
            .fleet
            .nodes
            .iter()
            .map(|n| {
                let access = supervisor::probe::NodeAccess::new(
                    run_dir.ram_file(n.id),
                    run_dir.monitor_socket(n.id),
                );
                (n.id, access)
            })
            .collect(),
    }
}

/// The bridge for the fleet: the host's ports, then one per node.
/// On the virtual clock, where the bridge holds the fleet's time from its
/// start (ns): the first later power-on. Without it the fleet's time could
/// pass that before the testbed first holds it ([`Testbed::pause_until`]):
/// with few nodes running, or none, it races ahead.
fn held_at_start(opts: &Options) -> Option<u64> {
    if opts.fleet.clock != board::strap::Clock::Virtual {
        return None;
    }
    opts.fleet
        .nodes
        .iter()
        .filter(|n| !opts.held.contains(&n.id) && !n.power_on_after.is_zero())
        .map(|n| n.power_on_after.as_nanos() as u64)
        .min()
}

/// Frames a node's bridge port queues for it.
fn rx_queue_depth(paced: bool, on_virtual: bool) -> usize {
    match (paced, on_virtual) {
        // A controller's receive FIFO plus a little: frames queued for a
        // node are frames it has not seen, so keep the lag short.
        (false, _) => UNPACED_RX_QUEUE,
        // The bus does not wait: the queue absorbs the host's scheduling
        // of the node's QEMU (tens of processes share two cores).
        (true, false) => PACED_RX_QUEUE,
        // Nodes keep the bus's time: none falls behind it for the host.
        (true, true) => VIRTUAL_RX_QUEUE,
    }
}

fn bridge_config(opts: &Options, run_dir: &RunDir, fault_seed: u64) -> bus_bridge::BridgeConfig {
    // The host's own drops sit on the first segment (the base frame).
    let host_segment = &opts.fleet.topology.segments[0];
    let port = |name: String, segment: &str| bus_bridge::PortConfig {
        socket: run_dir.port_socket(&name),
        name,
        segment: segment.to_string(),
        clock: None,
        timed: false,
        deliver_every_ms: 0,
        tx_fifo_depth: None,
    };
    let mut ports: Vec<_> = HOST_PORTS
        .iter()
        .map(|p| port(p.to_string(), host_segment))
        .collect();
    let on_virtual = opts.fleet.clock == board::strap::Clock::Virtual;
    // On the virtual clock the masters and the supervisor keep the bus's
    // time (the tool port stays a plain client). On a paced wall clock
    // their frames wait in a deep FIFO: the bridge reads a client's next
    // frames only as places free, and a read the host scheduled late
    // would otherwise leave the bus idle (the tool port keeps a
    // controller's FIFO).
    for p in &mut ports {
        let own = p.name != "tool";
        p.timed = on_virtual && own;
        if own && opts.fleet.paced && !on_virtual {
            p.tx_fifo_depth = Some(HOST_TX_FIFO);
        }
    }
    for n in &opts.fleet.nodes {
        let mut p = port(RunDir::node_port_name(n.id), &n.segment);
        p.deliver_every_ms = if opts.fleet.paced && !on_virtual {
            NODE_DELIVERY_MS
        } else {
            0
        };
        p.clock = on_virtual.then(|| bus_bridge::PortClock {
            socket: run_dir.clock_socket(n.id),
            from_start: n.power_on_after.is_zero() && !opts.held.contains(&n.id),
        });
        ports.push(p);
    }
    bus_bridge::BridgeConfig {
        ports,
        faults: bus_bridge::FaultConfig {
            seed: fault_seed,
            ..opts.fleet.faults.clone()
        },
        capture: bus_bridge::CaptureConfig {
            pcap: Some(run_dir.capture_pcap()),
            candump: Some(run_dir.capture_candump()),
        },
        socketcand: Some(bus_bridge::SocketcandConfig::default()),
        control_socket: Some(run_dir.control_socket()),
        // The masters and the supervisor keep the bus's time too: nothing
        // paces it but the fleet.
        clock: if on_virtual {
            bus_bridge::BusClock::Virtual(bus_bridge::VirtualClock {
                pace_with_wall: false,
                held_at_start: held_at_start(opts),
            })
        } else {
            bus_bridge::BusClock::Wall
        },
        timing: opts.fleet.timing,
        paced: opts.fleet.paced,
        // Unpaced, the bus waits for its slowest receiver: 40 TCG guests
        // on two cores can each fall seconds behind while images flow.
        // Only a node that takes nothing for this long is dropped for.
        stall_timeout: UNPACED_STALL,
        rx_queue_depth: rx_queue_depth(opts.fleet.paced, on_virtual),
        ..bus_bridge::BridgeConfig::default()
    }
    .with_topology(opts.fleet.topology.clone())
}

/// Starts the primary master as a task, the backup (if the fleet has one)
/// as a process, and the task that records their events.
fn start_masters(opts: &Options, run_dir: &RunDir, tasks: &TaskTracker) -> Result<Masters> {
    let (events_tx, events_rx) = mpsc::channel::<MasterRecord>(256);
    let (log_tx, log) = watch::channel(Arc::new(MasterLog::default()));
    tasks.spawn(record_master_events(events_rx, log_tx, master::now_ms()));
    let backup = if opts.fleet.master.backup {
        let (child, reader) = spawn_backup(opts, run_dir, events_tx.clone())?;
        tasks.spawn(reader);
        Some(child)
    } else {
        None
    };
    let (stop, stopped) = watch::channel(false);
    let port = run_dir.port_socket("master");
    let store = run_dir.store();
    let config = opts.fleet.master.clone();
    let clock = opts.fleet.clock;
    let primary = tasks.spawn(async move {
        master::run(
            &port,
            &store,
            config,
            Role::Primary,
            events_tx,
            stopped,
            clock,
        )
        .await
    });
    Ok(Masters {
        primary: Some(primary),
        stop,
        backup,
        log,
    })
}

/// Owns the masters' log: adds every event and publishes the result.
async fn record_master_events(
    mut events: mpsc::Receiver<MasterRecord>,
    log: watch::Sender<Arc<MasterLog>>,
    t0_ms: u64,
) {
    while let Some(e) = events.recv().await {
        log.send_modify(|l| Arc::make_mut(l).record(&e, t0_ms));
    }
}

/// Writes each node's log (what it said on the bus) to `log/nN.bus.log`.
fn write_node_logs(run_dir: &RunDir, logs: &BTreeMap<u16, Vec<String>>) {
    for (id, lines) in logs {
        let path = run_dir.bus_log(*id);
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        if let Err(e) = std::fs::write(&path, text) {
            tracing::warn!("cannot write {}: {e}", path.display());
        }
    }
}

/// Copies the images in `src` to `dst`, padded to a size and signed again
/// when `pad` says so (only images that were validly signed are signed again).
fn copy_images(
    src: &Path,
    dst: &Path,
    pad: Option<&(u32, images::sign::SigningKey)>,
) -> Result<()> {
    std::fs::create_dir_all(dst)?;
    for e in std::fs::read_dir(src).with_context(|| format!("cannot read {}", src.display()))? {
        let path = e?.path();
        if path.extension().is_none_or(|x| x != "bcimg") {
            continue;
        }
        let mut bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        if let Some((size, key)) = pad {
            let image =
                images::build::Image::parse(&bytes).with_context(|| path.display().to_string())?;
            bytes = image
                .padded_signed(*size, key)
                .with_context(|| format!("image_size: {}", path.display()))?
                .to_bytes();
        }
        let out = dst.join(path.file_name().context("file name")?);
        std::fs::write(&out, bytes).with_context(|| format!("cannot write {}", out.display()))?;
    }
    Ok(())
}

/// Starts the backup master as its own process, its events read from its
/// stdout as JSON lines.
fn spawn_backup(
    opts: &Options,
    run_dir: &RunDir,
    events: mpsc::Sender<MasterRecord>,
) -> Result<(
    Child,
    impl std::future::Future<Output = ()> + Send + 'static,
)> {
    let exe = opts
        .master_exe
        .clone()
        .or_else(|| std::env::current_exe().ok())
        .context("the fleet asks for a backup master, but the bootcast executable is unknown")?;
    let config = run_dir.master_config();
    std::fs::write(&config, serde_json::to_vec_pretty(&opts.fleet.master)?)
        .with_context(|| format!("cannot write {}", config.display()))?;
    let log_path = run_dir.log("backup-master.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    let mut cmd = tokio::process::Command::new(&exe);
    cmd.arg("master")
        .arg("--role")
        .arg("backup")
        .arg("--port")
        .arg(run_dir.port_socket("backup"))
        .arg("--store")
        .arg(run_dir.store())
        .arg("--config")
        .arg(&config)
        .arg("--clock")
        .arg(crate::clock::ClockKind::from(opts.fleet.clock).as_str())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::from(log));
    let mut child = Child::spawn(cmd, &format!("the backup master ({})", exe.display()))?;
    let stdout = child.take_stdout().context("backup master stdout")?;
    let reader = async move {
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            match serde_json::from_str::<MasterRecord>(&line) {
                Ok(r) => {
                    if events.send(r).await.is_err() {
                        break;
                    }
                }
                Err(e) => tracing::warn!(
                    "backup master printed a line that is not an event ({e}): {line}"
                ),
            }
        }
    };
    Ok((child, reader))
}

/// The last `n` lines of a log file, joined with " | ".
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(n)..];
    if tail.is_empty() {
        "(empty)".into()
    } else {
        tail.join(" | ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(paced: bool, clock: board::strap::Clock) -> bus_bridge::BridgeConfig {
        let mut fleet = Fleet::default_mix(3).unwrap();
        fleet.paced = paced;
        fleet.clock = clock;
        let opts = Options::new(fleet, Artifacts { dir: "a".into() });
        bridge_config(&opts, &RunDir::at("r"), 1)
    }

    fn host_fifo(c: &bus_bridge::BridgeConfig, name: &str) -> Option<usize> {
        c.ports
            .iter()
            .find(|p| p.name == name)
            .unwrap()
            .tx_fifo_depth
    }

    #[test]
    fn a_paced_wall_bus_queues_deep_for_nodes_and_the_host_clients() {
        use board::strap::Clock::{Virtual, Wall};
        let c = config(true, Wall);
        assert_eq!(c.rx_queue_depth, PACED_RX_QUEUE);
        for name in ["master", "backup", "supervisor"] {
            assert_eq!(host_fifo(&c, name), Some(HOST_TX_FIFO), "{name}");
        }
        // A tool and the nodes keep a controller's FIFO.
        assert_eq!(host_fifo(&c, "tool"), None);
        assert!(
            c.ports
                .iter()
                .skip(HOST_PORTS.len())
                .all(|p| p.tx_fifo_depth.is_none())
        );
        // Unpaced, or on the virtual clock, nothing changes.
        for (paced, clock, rx) in [
            (false, Wall, UNPACED_RX_QUEUE),
            (true, Virtual, VIRTUAL_RX_QUEUE),
        ] {
            let c = config(paced, clock);
            assert_eq!(c.rx_queue_depth, rx);
            assert!(c.ports.iter().all(|p| p.tx_fifo_depth.is_none()));
        }
    }
}

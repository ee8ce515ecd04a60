//! The compaction service as the benchmarks configure it: the `--csa_*`
//! flag group (also the `[csa]` table of a config file), its checks, the
//! engine's [`CompactionServiceOptions`] it resolves to, and the line that
//! reports it with the results.
//!
//! With `--csa_scheduler HOST:PORT --token_file F` the database hands
//! compactions to an `o3-csa scheduler` process (whose agents were started
//! with their own slots and storage). With `--csa_agents N` the benchmark
//! starts a scheduler and N agents inside its own process
//! ([`LocalService`]) for a one-command run; those agents run their jobs on
//! storage throttled like the database's (`--storage_*`), through a channel
//! of their own, as agents on other machines would. `--token_file` is the
//! offloading flag group's: one cluster token serves both.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use o3_compute::{
    ClusterToken, CompactionServiceOptions, FlushPlacement, LocalFs, PlacementPolicy, Storage,
};
use o3_csa::scheduler::SchedulerConfig;
use o3_csa::{LocalService, LocalServiceOptions};
use o3_storage::env::ThrottledStorage;
use serde::{Deserialize, Serialize};

use crate::engine::EngineConfig;
use crate::error::{BenchError, Result};
use crate::offload::OffloadArgs;

/// Slots of each in-process agent unless `--csa_slots` says otherwise.
pub const DEFAULT_SLOTS: u32 = 2;

/// Compaction service flags; every one is optional so a config file can
/// supply it.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[command(rename_all = "snake_case")]
pub struct CsaArgs {
    /// Hand compactions to the `o3-csa scheduler` at HOST:PORT (needs
    /// --token_file).
    #[arg(long, value_name = "HOST:PORT")]
    pub csa_scheduler: Option<String>,
    /// Start a scheduler and N agents in this process and hand compactions
    /// to them (instead of --csa_scheduler).
    #[arg(long, value_name = "N")]
    pub csa_agents: Option<usize>,
    /// Jobs each in-process agent runs at once (default 2).
    #[arg(long, value_name = "K")]
    pub csa_slots: Option<u32>,
    /// Where compactions run: auto (the cost model), remote (the service
    /// whenever it has room) or local (default auto).
    #[arg(long, value_name = "POLICY")]
    pub csa_policy: Option<String>,
    /// This database's priority at the scheduler (default 0).
    #[arg(long, value_name = "P")]
    pub csa_priority: Option<u32>,
    /// This database's name at the scheduler (default: its directory).
    #[arg(long, value_name = "NAME")]
    pub csa_tenant: Option<String>,
    /// Agents a job may be given to before it runs here (default 3).
    #[arg(long, value_name = "N")]
    pub csa_max_tries: Option<u32>,
    /// Fraction of its cores this process must keep busy before a job the
    /// service would finish sooner goes there (default 0.5).
    #[arg(long, value_name = "F")]
    pub csa_busy_threshold: Option<f64>,
    /// Where flushes of offloaded memtables run: local, memnode (the memory
    /// node holding the images), agent (reads them from the memory node)
    /// or auto (estimated completion; default). Needs --offload; with
    /// --csa_agents the in-process memory node is served on loopback and
    /// runs flushes itself.
    #[arg(long, value_name = "PLACE")]
    pub flush_placement: Option<String>,
}

impl CsaArgs {
    /// Flags given on the command line win over the config file.
    pub fn over(self, base: CsaArgs) -> CsaArgs {
        CsaArgs {
            csa_scheduler: self.csa_scheduler.or(base.csa_scheduler),
            csa_agents: self.csa_agents.or(base.csa_agents),
            csa_slots: self.csa_slots.or(base.csa_slots),
            csa_policy: self.csa_policy.or(base.csa_policy),
            csa_priority: self.csa_priority.or(base.csa_priority),
            csa_tenant: self.csa_tenant.or(base.csa_tenant),
            csa_max_tries: self.csa_max_tries.or(base.csa_max_tries),
            csa_busy_threshold: self.csa_busy_threshold.or(base.csa_busy_threshold),
            flush_placement: self.flush_placement.or(base.flush_placement),
        }
    }

    /// Split `--token_file` between the offloading flags and these: with
    /// `--csa_scheduler` the token file is the service's, and stays the
    /// offloading's too only when `--memnode` uses it as well.
    pub fn take_token_file(&self, offload: OffloadArgs) -> (OffloadArgs, Option<PathBuf>) {
        if self.csa_scheduler.is_none() {
            return (offload, None);
        }
        let token_file = offload.token_file.clone();
        let offload = if offload.memnode.is_some() {
            offload
        } else {
            OffloadArgs {
                token_file: None,
                ..offload
            }
        };
        (offload, token_file)
    }

    /// The service the flags ask for, or `None` without `--csa_scheduler`
    /// and `--csa_agents`; `token_file` is `--token_file` as
    /// [`CsaArgs::take_token_file`] routed it. Any other csa flag alone is
    /// an error (it would silently do nothing).
    pub fn resolve(self, token_file: Option<PathBuf>) -> Result<Option<CsaConfig>> {
        let bad = |m: String| Err(BenchError::InvalidArgument(m));
        let service = match (self.csa_scheduler.clone(), self.csa_agents) {
            (Some(address), Some(n)) => {
                return bad(format!(
                    "--csa_agents {n} starts a service in this process and --csa_scheduler {address} names another: give one"
                ));
            }
            (None, None) => {
                return match self.first_flag_given() {
                    Some(flag) => bad(format!(
                        "{flag} needs --csa_scheduler HOST:PORT or --csa_agents N"
                    )),
                    None => Ok(None),
                };
            }
            (Some(address), None) => {
                if let Some(k) = self.csa_slots {
                    return bad(format!(
                        "--csa_slots {k} sizes in-process agents (--csa_agents); the agents of {address} have their own --slots"
                    ));
                }
                check_address(&address)?;
                let Some(token_file) = token_file else {
                    return bad(format!(
                        "--csa_scheduler {address} needs --token_file (the cluster token's file)"
                    ));
                };
                let token = crate::offload::read_token(&token_file)?;
                (
                    ServiceSetting::Scheduler {
                        address: address.clone(),
                        token_file,
                    },
                    address,
                    token,
                )
            }
            (None, Some(agents)) => {
                if agents == 0 {
                    return bad("--csa_agents must be at least 1".into());
                }
                let slots_per_agent = self.csa_slots.unwrap_or(DEFAULT_SLOTS);
                if slots_per_agent == 0 {
                    return bad("--csa_slots must be at least 1".into());
                }
                let secret = format!("o3-bench-csa-{:016x}", rand::random::<u64>());
                let token = ClusterToken::new(&secret)
                    .map_err(|e| BenchError::InvalidArgument(format!("cluster token: {e}")))?;
                (
                    ServiceSetting::InProcess {
                        agents,
                        slots_per_agent,
                        agent_storage: String::new(),
                    },
                    String::new(),
                    token,
                )
            }
        };
        let (service, scheduler, token) = service;
        let policy = match self.csa_policy.as_deref() {
            Some(p) => p
                .parse()
                .map_err(|e: String| BenchError::InvalidArgument(format!("--csa_policy: {e}")))?,
            None => PlacementPolicy::Auto,
        };
        let flush_given = self.flush_placement.is_some();
        let flush = match self.flush_placement.as_deref() {
            Some(p) => crate::flush_compare::parse_flush_placement(p)?,
            None => FlushPlacement::default(),
        };
        let defaults = CompactionServiceOptions::new("", token.clone());
        let config = CsaConfig {
            service,
            scheduler,
            policy,
            priority: self.csa_priority.unwrap_or(defaults.priority),
            tenant: self.csa_tenant,
            max_tries: self.csa_max_tries.unwrap_or(defaults.max_tries),
            busy_threshold: self.csa_busy_threshold.unwrap_or(defaults.busy_threshold),
            flush,
            flush_given,
            token,
        };
        if !(1..=16).contains(&config.max_tries) {
            return bad(format!(
                "--csa_max_tries {} must lie in [1, 16]",
                config.max_tries
            ));
        }
        if !(0.0..=1.0).contains(&config.busy_threshold) {
            return bad(format!(
                "--csa_busy_threshold {} must lie in [0, 1]",
                config.busy_threshold
            ));
        }
        Ok(Some(config))
    }

    /// The name of the first csa flag given besides the service's.
    fn first_flag_given(&self) -> Option<&'static str> {
        [
            ("--csa_slots", self.csa_slots.is_some()),
            ("--csa_policy", self.csa_policy.is_some()),
            ("--csa_priority", self.csa_priority.is_some()),
            ("--csa_tenant", self.csa_tenant.is_some()),
            ("--csa_max_tries", self.csa_max_tries.is_some()),
            ("--csa_busy_threshold", self.csa_busy_threshold.is_some()),
            ("--flush_placement", self.flush_placement.is_some()),
        ]
        .into_iter()
        .find(|(_, given)| *given)
        .map(|(flag, _)| flag)
    }
}

/// `HOST:PORT` with a non-empty host and a port number.
fn check_address(address: &str) -> Result<()> {
    let ok = address
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if ok {
        Ok(())
    } else {
        Err(BenchError::InvalidArgument(format!(
            "--csa_scheduler '{address}' is not HOST:PORT"
        )))
    }
}

/// Which service, as configured.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ServiceSetting {
    /// A scheduler and agents inside this process ([`LocalService`]);
    /// `agent_storage` describes their storage once started.
    InProcess {
        agents: usize,
        slots_per_agent: u32,
        agent_storage: String,
    },
    /// An `o3-csa scheduler` process.
    Scheduler {
        address: String,
        token_file: PathBuf,
    },
}

/// Resolved compaction service settings (reported verbatim).
#[derive(Debug, Clone, Serialize)]
pub struct CsaConfig {
    pub service: ServiceSetting,
    /// The scheduler's address (an in-process one's once started).
    pub scheduler: String,
    #[serde(serialize_with = "policy_name")]
    pub policy: PlacementPolicy,
    pub priority: u32,
    pub tenant: Option<String>,
    pub max_tries: u32,
    pub busy_threshold: f64,
    #[serde(serialize_with = "flush_name")]
    pub flush: FlushPlacement,
    /// `--flush_placement` was given (not the default).
    #[serde(skip)]
    flush_given: bool,
    #[serde(skip)]
    token: ClusterToken,
}

pub(crate) fn flush_name<S: serde::Serializer>(
    flush: &FlushPlacement,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(crate::flush_compare::flush_placement_flag(*flush))
}

/// The name `--csa_policy` takes for `policy`.
pub fn policy_flag(policy: PlacementPolicy) -> &'static str {
    match policy {
        PlacementPolicy::Auto => "auto",
        PlacementPolicy::PreferRemote => "remote",
        PlacementPolicy::Local => "local",
    }
}

fn policy_name<S: serde::Serializer>(
    policy: &PlacementPolicy,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(policy_flag(*policy))
}

impl CsaConfig {
    /// Start the in-process service, if this configuration has one, on
    /// storage throttled like `engine`'s (a channel of its own); returns
    /// it (it stops when dropped) and records its address. A scheduler
    /// process needs nothing started: `None`.
    pub fn start(&mut self, engine: &EngineConfig) -> Result<Option<LocalService>> {
        let ServiceSetting::InProcess {
            agents,
            slots_per_agent,
            agent_storage,
        } = &mut self.service
        else {
            return Ok(None);
        };
        let local: Arc<dyn Storage> = Arc::new(LocalFs::new());
        let (storage, described): (Arc<dyn Storage>, String) = match engine.remote_storage() {
            Some(model) => (
                Arc::new(ThrottledStorage::new(local, model)),
                format!("remote storage ({model}), a channel apart from this node's"),
            ),
            None => (local, "local file system, not throttled".into()),
        };
        let service = LocalService::start(LocalServiceOptions {
            agents: *agents,
            slots_per_agent: *slots_per_agent,
            token: self.token.clone(),
            storage,
            scheduler: SchedulerConfig {
                max_tries: self.max_tries,
                ..SchedulerConfig::default()
            },
        })
        .map_err(|e| {
            BenchError::InvalidArgument(format!("starting the in-process compaction service: {e}"))
        })?;
        *agent_storage = described;
        self.scheduler = service.endpoint().to_string();
        Ok(Some(service))
    }

    /// With an in-process service, flushes that may leave and an
    /// in-process memory node: serve that memory node on loopback (agents
    /// read its images over its `tcp` data plane) with a flush executor
    /// registered with the service (unless flushes go to agents only),
    /// writing through a storage channel of its own throttled like
    /// `engine`'s; `engine`'s offloading then connects to it. The node
    /// stops when the returned handle is dropped.
    pub fn serve_memory_node(
        &self,
        engine: &mut EngineConfig,
    ) -> Result<Option<o3_memnode::local::LocalMemoryNode>> {
        let in_process_service = matches!(self.service, ServiceSetting::InProcess { .. });
        // The memory node's own storage channel, throttled like this node's.
        let storage = crate::flush_compare::node_storage(engine);
        let Some(offload) = engine.offload.as_mut() else {
            if self.flush_given && self.flush != FlushPlacement::Local {
                return Err(BenchError::InvalidArgument(format!(
                    "--flush_placement {} needs --offload: only flushes of offloaded memtables leave this node",
                    crate::flush_compare::flush_placement_flag(self.flush)
                )));
            }
            return Ok(None);
        };
        let crate::offload::MemoryNodeSetting::InProcess { pool_size } = offload.memory_node else {
            return Ok(None);
        };
        if !in_process_service || self.flush == FlushPlacement::Local {
            return Ok(None);
        }
        let flush_executor = self.flush != FlushPlacement::Agent;
        let node =
            o3_memnode::local::LocalMemoryNode::start(o3_memnode::local::LocalMemoryNodeOptions {
                pool_size,
                lease_ttl: std::time::Duration::from_secs(30),
                token: self.token.clone(),
                flush_executor: flush_executor.then(|| {
                    (
                        self.scheduler.clone(),
                        crate::flush_compare::DEFAULT_FLUSH_SLOTS,
                    )
                }),
                storage: Some(storage),
            })
            .map_err(|e| {
                BenchError::InvalidArgument(format!("serving the in-process memory node: {e}"))
            })?;
        if flush_executor {
            crate::flush_compare::wait_for_flush_executor(
                &self.scheduler,
                &self.token,
                node.plane(),
            )?;
        }
        offload.memory_node = crate::offload::MemoryNodeSetting::Served {
            control: node.control().to_string(),
            pool_size,
            flush_executor,
            token: self.token.clone(),
        };
        Ok(Some(node))
    }

    /// The engine's options for this service.
    pub fn options(&self) -> CompactionServiceOptions {
        CompactionServiceOptions {
            tenant: self.tenant.clone(),
            priority: self.priority,
            policy: self.policy,
            busy_threshold: self.busy_threshold,
            max_tries: self.max_tries,
            flush: self.flush,
            ..CompactionServiceOptions::new(self.scheduler.clone(), self.token.clone())
        }
    }

    /// Every condition the service adds, for the report's "emulated
    /// conditions" line.
    pub fn describe(&self) -> String {
        let service = match &self.service {
            ServiceSetting::InProcess {
                agents,
                slots_per_agent,
                agent_storage,
            } => format!(
                "in-process compaction service at {}: {agents} agent(s) x {slots_per_agent} slot(s), agents' storage: {agent_storage}",
                self.scheduler
            ),
            ServiceSetting::Scheduler { address, .. } => format!(
                "compaction service o3-csa scheduler at {address} (agents, slots and their storage as those processes were started)"
            ),
        };
        format!(
            "{service}; placement policy {}, priority {}, max tries {}, busy threshold {:.2}",
            policy_flag(self.policy),
            self.priority,
            self.max_tries,
            self.busy_threshold
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(args: CsaArgs, token_file: Option<PathBuf>) -> String {
        let e = args.resolve(token_file).unwrap_err().to_string();
        assert_eq!(e.lines().count(), 1, "{e}");
        e
    }

    #[test]
    fn without_csa_flags_there_is_no_service() {
        assert!(CsaArgs::default().resolve(None).unwrap().is_none());
    }

    #[test]
    fn in_process_agents_take_the_defaults_and_reach_the_options() {
        let c = CsaArgs {
            csa_agents: Some(2),
            csa_policy: Some("remote".into()),
            csa_priority: Some(7),
            csa_tenant: Some("t1".into()),
            ..Default::default()
        }
        .resolve(None)
        .unwrap()
        .unwrap();
        assert!(matches!(
            c.service,
            ServiceSetting::InProcess {
                agents: 2,
                slots_per_agent: DEFAULT_SLOTS,
                ..
            }
        ));
        let o = c.options();
        assert_eq!(o.policy, PlacementPolicy::PreferRemote);
        assert_eq!((o.priority, o.tenant.as_deref()), (7, Some("t1")));
        assert_eq!(o.max_tries, 3);
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["policy"], "remote");
        assert_eq!(json["service"]["kind"], "in_process");
        assert!(c.describe().contains("2 agent(s) x 2 slot(s)"));
        assert!(c.describe().contains("placement policy remote"));
    }

    #[test]
    fn a_scheduler_reads_the_shared_token_file() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret\n").unwrap();
        let args = CsaArgs {
            csa_scheduler: Some("127.0.0.1:7390".into()),
            ..Default::default()
        };
        let offload = OffloadArgs {
            token_file: Some(token.clone()),
            ..Default::default()
        };
        let (offload, token_file) = args.take_token_file(offload);
        assert!(offload.token_file.is_none());
        assert!(offload.resolve().unwrap().is_none());
        let c = args.resolve(token_file).unwrap().unwrap();
        assert_eq!(c.options().scheduler, "127.0.0.1:7390");
        assert!(!serde_json::to_string(&c).unwrap().contains("s3cret"));
        // With --memnode the token file serves both.
        let both = OffloadArgs {
            memnode: Some("127.0.0.1:7380".into()),
            token_file: Some(token.clone()),
            ..Default::default()
        };
        let (both, token_file) = CsaArgs {
            csa_scheduler: Some("h:1".into()),
            ..Default::default()
        }
        .take_token_file(both);
        assert_eq!(both.token_file.as_ref(), Some(&token));
        assert_eq!(token_file, Some(token));
    }

    #[test]
    fn bad_combinations_are_one_line_errors() {
        let cases: Vec<(CsaArgs, &[&str])> = vec![
            (
                CsaArgs {
                    csa_policy: Some("remote".into()),
                    ..Default::default()
                },
                &["--csa_policy needs --csa_scheduler", "--csa_agents"],
            ),
            (
                CsaArgs {
                    csa_slots: Some(2),
                    ..Default::default()
                },
                &["--csa_slots needs"],
            ),
            (
                CsaArgs {
                    csa_agents: Some(2),
                    csa_scheduler: Some("h:1".into()),
                    ..Default::default()
                },
                &["give one"],
            ),
            (
                CsaArgs {
                    csa_scheduler: Some("h:1".into()),
                    ..Default::default()
                },
                &["needs --token_file"],
            ),
            (
                CsaArgs {
                    csa_scheduler: Some("no-port".into()),
                    ..Default::default()
                },
                &["not HOST:PORT"],
            ),
            (
                CsaArgs {
                    csa_scheduler: Some("h:1".into()),
                    csa_slots: Some(1),
                    ..Default::default()
                },
                &["--csa_slots 1 sizes in-process agents"],
            ),
            (
                CsaArgs {
                    csa_agents: Some(0),
                    ..Default::default()
                },
                &["--csa_agents must be at least 1"],
            ),
            (
                CsaArgs {
                    csa_agents: Some(1),
                    csa_slots: Some(0),
                    ..Default::default()
                },
                &["--csa_slots must be at least 1"],
            ),
            (
                CsaArgs {
                    csa_agents: Some(1),
                    csa_policy: Some("sometimes".into()),
                    ..Default::default()
                },
                &["--csa_policy", "sometimes", "auto, remote or local"],
            ),
            (
                CsaArgs {
                    csa_agents: Some(1),
                    csa_max_tries: Some(0),
                    ..Default::default()
                },
                &["--csa_max_tries 0"],
            ),
            (
                CsaArgs {
                    csa_agents: Some(1),
                    csa_busy_threshold: Some(1.5),
                    ..Default::default()
                },
                &["--csa_busy_threshold 1.5"],
            ),
        ];
        for (args, needles) in cases {
            let e = error(args, None);
            for n in needles {
                assert!(e.contains(n), "{e:?} lacks {n:?}");
            }
        }
    }
}

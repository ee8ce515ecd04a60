//! [`LocalService`]: a scheduler and N agents inside this process, on a
//! tokio runtime of their own (threads `o3-csa-*`), for one-command runs
//! and tests. The scheduler listens on `127.0.0.1:<ephemeral>`; clients
//! reach it with [`crate::SchedulerClient`] like a remote one.
//!
//! It can be started and dropped from any thread, an async one included:
//! nothing here blocks on the runtime from the caller's thread, and the
//! runtime is shut down on a thread of its own.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use o3_storage::env::Storage;
use o3_transport::control::ClusterToken;
use parking_lot::Mutex;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::agent::{self, AgentConfig};
use crate::error::CsaError;
use crate::scheduler::{self, SchedulerConfig};

/// How long [`LocalService::start`] waits for every agent to register.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// What to start.
#[derive(Clone, Debug)]
pub struct LocalServiceOptions {
    pub agents: usize,
    pub slots_per_agent: u32,
    pub token: ClusterToken,
    /// The storage every agent runs its jobs against.
    pub storage: Arc<dyn Storage>,
    pub scheduler: SchedulerConfig,
}

#[derive(Debug)]
struct AgentHandle {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), CsaError>>,
}

/// A running in-process compaction service; stopped on drop.
#[derive(Debug)]
pub struct LocalService {
    endpoint: String,
    runtime: Option<tokio::runtime::Runtime>,
    scheduler_stop: Option<oneshot::Sender<()>>,
    agents: Mutex<Vec<AgentHandle>>,
    grace: Duration,
}

impl LocalService {
    /// Starts the scheduler and the agents; returns once every agent
    /// registered (at most 10 s).
    pub fn start(options: LocalServiceOptions) -> Result<LocalService, CsaError> {
        options.scheduler.validate()?;
        if options.slots_per_agent == 0 {
            return Err(CsaError::InvalidArgument(
                "agents need at least one slot".into(),
            ));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("o3-csa-local")
            .enable_all()
            .build()
            .map_err(|source| CsaError::Io {
                action: "start the compaction service's runtime".into(),
                source,
            })?;
        let io = |action: &str| {
            let action = action.to_owned();
            move |source| CsaError::Io { action, source }
        };
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").map_err(io("listen on 127.0.0.1:0"))?;
        listener
            .set_nonblocking(true)
            .map_err(io("configure the listener"))?;
        let addr = listener
            .local_addr()
            .map_err(io("read the bound address"))?;
        let endpoint = format!("http://{addr}");

        let (scheduler_stop, stopped) = oneshot::channel::<()>();
        let config = options.scheduler.clone();
        let token = options.token.clone();
        runtime.spawn(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => listener,
                Err(e) => {
                    tracing::error!(error = %e, "in-process scheduler cannot listen");
                    return;
                }
            };
            let stopped = async {
                let _ = stopped.await;
            };
            if let Err(e) = scheduler::serve(listener, config, token, stopped).await {
                tracing::error!(error = %e, "in-process scheduler failed");
            }
        });

        let (registered, registrations) = mpsc::channel::<usize>();
        let mut agents = Vec::with_capacity(options.agents);
        for i in 0..options.agents {
            let (stop, stopped) = oneshot::channel::<()>();
            let config =
                AgentConfig::new(&endpoint, &format!("local-{i}"), options.slots_per_agent);
            let registered = registered.clone();
            let task = runtime.spawn(agent::run_with(
                config,
                options.token.clone(),
                Arc::clone(&options.storage),
                async {
                    let _ = stopped.await;
                },
                move |_| {
                    let _ = registered.send(i);
                },
            ));
            agents.push(AgentHandle {
                stop: Some(stop),
                task,
            });
        }
        let service = LocalService {
            endpoint,
            runtime: Some(runtime),
            scheduler_stop: Some(scheduler_stop),
            agents: Mutex::new(agents),
            grace: AgentConfig::new("", "", 1).shutdown_grace,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        let mut seen = vec![false; options.agents];
        while seen.iter().any(|s| !s) {
            let left = deadline.saturating_duration_since(Instant::now());
            match registrations.recv_timeout(left) {
                Ok(i) => seen[i] = true,
                Err(_) => {
                    return Err(CsaError::Unavailable {
                        endpoint: service.endpoint.clone(),
                        reason: format!(
                            "{} of {} agents registered within {START_TIMEOUT:?}",
                            seen.iter().filter(|s| **s).count(),
                            options.agents
                        ),
                    });
                }
            }
        }
        Ok(service)
    }

    /// The scheduler's URI.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Crashes agent `i`: its tasks are aborted, so it stops heartbeating
    /// and never reports its jobs (a job already on a blocking thread runs
    /// to its end unobserved).
    pub fn stop_agent(&self, i: usize) {
        if let Some(agent) = self.agents.lock().get_mut(i) {
            agent.task.abort();
            agent.stop.take();
        }
    }

    /// Stops the agents (running jobs get the agents' shutdown grace) and
    /// the scheduler, then the runtime; returns when its threads are gone.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        for agent in self.agents.lock().iter_mut() {
            if let Some(stop) = agent.stop.take() {
                let _ = stop.send(());
            }
        }
        let Some(runtime) = self.runtime.take() else {
            return;
        };
        let agents: Vec<_> = self.agents.lock().drain(..).map(|a| a.task).collect();
        let scheduler_stop = self.scheduler_stop.take();
        let grace = self.grace;
        // A runtime cannot be waited for on an async thread; a plain
        // thread can, and joining it makes the shutdown complete.
        let stopper = std::thread::Builder::new()
            .name("o3-csa-stop".into())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = tokio::time::timeout(grace, async {
                        for task in agents {
                            let _ = task.await;
                        }
                    })
                    .await;
                });
                if let Some(stop) = scheduler_stop {
                    let _ = stop.send(());
                }
                runtime.shutdown_timeout(grace);
            });
        match stopper {
            Ok(thread) => {
                let _ = thread.join();
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the thread that stops the compaction service")
            }
        }
    }
}

impl Drop for LocalService {
    fn drop(&mut self) {
        self.stop();
    }
}

//! The machine and build a result came from, printed with every report so
//! numbers are never compared without their conditions.

use serde::Serialize;

/// Where and how the benchmark ran.
#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    pub o3_bench_version: &'static str,
    /// The commit o3-bench was built from, `-dirty` when tracked files
    /// differed from it at build time, `unknown` outside a git checkout.
    pub git_commit: &'static str,
    /// When the run started (UTC, RFC 3339).
    pub started_at: String,
    pub host: String,
    /// `release` or `debug` (debug numbers are not meaningful).
    pub build_profile: &'static str,
    pub cpus: usize,
    pub cpu_model: Option<String>,
    pub os: &'static str,
    pub arch: &'static str,
    /// Injected latency or bandwidth limits (`none`, or the emulated
    /// remote storage the engine flags ask for).
    pub emulated_conditions: String,
}

impl Environment {
    pub fn detect() -> Environment {
        Environment {
            o3_bench_version: env!("CARGO_PKG_VERSION"),
            git_commit: env!("O3_GIT_COMMIT"),
            started_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            host: host_name(),
            build_profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            cpu_model: cpu_model(),
            os: std::env::consts::OS,
            arch: std::env::consts::ARCH,
            emulated_conditions: "none".to_string(),
        }
    }

    /// Lines for stdout; a debug build gets a warning line.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        if self.build_profile != "release" {
            s.push_str(
                "WARNING: o3-bench was built without --release; its numbers are not representative\n",
            );
        }
        s.push_str(&format!(
            "environment: {} CPUs ({}), {}/{}, build profile {}, o3-bench {}\n",
            self.cpus,
            self.cpu_model.as_deref().unwrap_or("unknown model"),
            self.os,
            self.arch,
            self.build_profile,
            self.o3_bench_version
        ));
        s.push_str(&format!(
            "provenance: commit {}, host {}, started {}\n",
            self.git_commit, self.host, self.started_at
        ));
        s.push_str(&format!(
            "emulated conditions: {}\n",
            self.emulated_conditions
        ));
        s
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

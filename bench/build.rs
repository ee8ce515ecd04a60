//! Records the git commit o3-bench is built from (with `-dirty` when tracked
//! files differ from it), so every report can say which code produced it.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    // No optional locks: `git status` would otherwise refresh and rewrite
    // the index, which this script watches, so every build would run it
    // (and rebuild o3-bench) again.
    let out = Command::new("git")
        .args(args)
        .env("GIT_OPTIONAL_LOCKS", "0")
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let commit = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".to_string());
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    let suffix = if dirty { "-dirty" } else { "" };
    println!("cargo:rustc-env=O3_GIT_COMMIT={commit}{suffix}");
    // Build again when the commit moves or the workspace's sources change
    // (the latter may make the tree dirty or clean again). Not on changes of
    // the index alone: git commands rewrite it, and each would cost a
    // release rebuild of o3-bench.
    let head_ref = git(&["symbolic-ref", "-q", "HEAD"]);
    for name in ["HEAD", "packed-refs"]
        .into_iter()
        .map(str::to_string)
        .chain(head_ref)
    {
        if let Some(path) = git(&["rev-parse", "--git-path", &name])
            && Path::new(&path).exists()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    for dir in [
        "src",
        "../storage/src",
        "../compute/src",
        "../transport/src",
        "../memnode/src",
        "../csa/src",
        "../Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={dir}");
    }
}

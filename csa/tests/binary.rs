//! The `o3-csa` binary's command line: bad input is one line on stderr and
//! a non-zero exit; SIGTERM stops a scheduler and an agent cleanly.

mod common;
mod csa_child;

use csa_child::{CsaChild, run_to_end, token_file};

fn assert_one_line_error(args: &[&str], needle: &str) {
    let (status, stderr) = run_to_end(args);
    assert!(!status.success(), "{args:?} succeeded");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: {stderr}");
    assert!(lines[0].starts_with("o3-csa: "), "{args:?}: {stderr}");
    assert!(lines[0].contains(needle), "{args:?}: {stderr}");
}

#[test]
fn bad_flags_and_config_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path());
    let token = token.to_str().unwrap();
    let missing = dir.path().join("missing");
    assert_one_line_error(
        &[
            "scheduler",
            "--listen",
            "127.0.0.1:0",
            "--token-file",
            missing.to_str().unwrap(),
        ],
        "token file",
    );
    assert_one_line_error(&["scheduler", "--listen", "127.0.0.1:0"], "token_file");
    assert_one_line_error(
        &["scheduler", "--listen", "nowhere", "--token-file", token],
        "listen",
    );
    assert_one_line_error(&["agent", "--slots", "0", "--token-file", token], "slots");
    assert_one_line_error(&["scheduler", "--no-such-flag"], "no-such-flag");
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "slots = 2\nslotz = 3\n").unwrap();
    assert_one_line_error(
        &["agent", "--config", config.to_str().unwrap()],
        "agent.toml line 2",
    );
}

#[test]
fn sigterm_stops_the_scheduler_and_an_agent_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (mut scheduler, addr) = CsaChild::scheduler(dir.path(), &[]);
    let mut agent = CsaChild::agent(dir.path(), &addr, "a1", &[]);
    agent.signal(libc::SIGTERM);
    assert!(agent.wait_exit().success());
    scheduler.signal(libc::SIGTERM);
    assert!(scheduler.wait_exit().success());
}

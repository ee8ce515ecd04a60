//! YCSB's client spells its long options with one dash (`-threads 4
//! -target 50000`), which clap reads as bundles of short flags. Before clap
//! sees the command line, [`ycsb_long_options`] turns exactly those two
//! options into clap's spelling (`--threads`, `--target`), and only after
//! the `ycsb` subcommand, so every other subcommand parses as it always did.

use std::ffi::OsString;

/// YCSB's single-dash long options and the spelling clap parses.
const SINGLE_DASH: &[(&str, &str)] = &[("-threads", "--threads"), ("-target", "--target")];

/// `args` with `-threads`/`-target` after the `ycsb` subcommand written as
/// `--threads`/`--target` (also in the `-threads=N` form); everything else,
/// and everything before `ycsb` or after a `--`, is passed on untouched.
pub fn ycsb_long_options(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut in_ycsb = false;
    let mut options_ended = false;
    let mut out = Vec::new();
    // The program name is never the subcommand.
    for (i, arg) in args.into_iter().enumerate() {
        if i == 0 || options_ended {
            out.push(arg);
            continue;
        }
        if !in_ycsb {
            in_ycsb = arg == "ycsb";
            out.push(arg);
            continue;
        }
        if arg == "--" {
            options_ended = true;
            out.push(arg);
            continue;
        }
        out.push(rewrite(arg));
    }
    out
}

/// One argument after `ycsb`, respelt if it is a YCSB single-dash option.
fn rewrite(arg: OsString) -> OsString {
    let Some(text) = arg.to_str() else {
        return arg;
    };
    for (single, double) in SINGLE_DASH {
        if text == *single {
            return OsString::from(*double);
        }
        if let Some(value) = text.strip_prefix(single).and_then(|v| v.strip_prefix('=')) {
            return OsString::from(format!("{double}={value}"));
        }
    }
    arg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(args: &[&str]) -> Vec<String> {
        ycsb_long_options(args.iter().map(OsString::from))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn threads_and_target_after_ycsb_get_two_dashes() {
        assert_eq!(
            rewritten(&[
                "o3-bench",
                "ycsb",
                "run",
                "-threads",
                "2",
                "-target=500",
                "-s"
            ]),
            [
                "o3-bench",
                "ycsb",
                "run",
                "--threads",
                "2",
                "--target=500",
                "-s"
            ]
        );
    }

    #[test]
    fn other_subcommands_and_other_flags_are_untouched() {
        let dbbench = ["o3-bench", "dbbench", "-threads", "2"];
        assert_eq!(rewritten(&dbbench), dbbench);
        let before = [
            "o3-bench", "--json", "-threads", "ycsb", "-P", "w", "-p", "a=1",
        ];
        assert_eq!(rewritten(&before), before);
        // Only the exact option names: a -p value that looks similar stays.
        let similar = ["o3-bench", "ycsb", "-targets", "-p", "x=-threads"];
        assert_eq!(rewritten(&similar), similar);
        let after_dashes = ["o3-bench", "ycsb", "--", "-threads"];
        assert_eq!(rewritten(&after_dashes), after_dashes);
    }
}

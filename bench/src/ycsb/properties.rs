//! YCSB workload property files (Java `.properties` syntax, as YCSB reads
//! them), merged with `-p NAME=VALUE` overrides and the client's flags into
//! one set of [`Properties`]; [`crate::ycsb::spec`] turns them into a typed
//! [`WorkloadSpec`].
//!
//! Syntax: one `name=value` (or `name: value`, or `name value`) per logical
//! line; `#` and `!` start comment lines; a trailing backslash continues a
//! line. Every property name must be one this tool implements or knowingly
//! ignores ([`IGNORED`]): a misspelt name is an error naming the property and
//! where it was given (file and line, or the `-p` flag), never silently
//! ignored.

use std::path::Path;

use crate::error::{BenchError, Result};
pub use crate::ycsb::spec::{
    FieldLengthDistribution, RequestDistribution, ScanLengthDistribution, WorkloadSpec,
};

/// Where a property came from, for error messages: a file and line, or a
/// command-line flag with its value (`command line -p fieldlength=0`).
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    source: String,
    line: Option<usize>,
}

impl Origin {
    pub(crate) fn describe(&self) -> String {
        match self.line {
            Some(l) => format!("{}:{l}", self.source),
            None => self.source.clone(),
        }
    }
}

/// Property names this tool understands (YCSB `CoreWorkload` and client).
const KNOWN: &[&str] = &[
    "workload",
    "recordcount",
    "operationcount",
    "threadcount",
    "fieldcount",
    "fieldlength",
    "minfieldlength",
    "fieldlengthdistribution",
    "readallfields",
    "writeallfields",
    "readproportion",
    "updateproportion",
    "insertproportion",
    "scanproportion",
    "readmodifywriteproportion",
    "requestdistribution",
    "exponential.percentile",
    "exponential.frac",
    "minscanlength",
    "maxscanlength",
    "scanlengthdistribution",
    "insertorder",
    "insertstart",
    "insertcount",
    "zeropadding",
    "hotspotdatafraction",
    "hotspotopnfraction",
    "target",
    "status",
    "status.interval",
    "maxexecutiontime",
    "o3.allowempty",
];

/// YCSB properties accepted and ignored: they choose things o3-bench has
/// only one of (the table, the measurement type: always HdrHistogram; the
/// workload class: always `CoreWorkload`).
pub const IGNORED: &[&str] = &["table", "measurementtype", "workload"];

/// Raw `(name, value, origin)` triples, later ones overriding earlier ones.
#[derive(Debug, Default)]
pub struct Properties {
    entries: Vec<(String, String, Origin)>,
}

impl Properties {
    /// Read a property file.
    pub fn read_file(path: &Path) -> Result<Properties> {
        let mut p = Properties::default();
        p.add_file(path)?;
        Ok(p)
    }

    /// Add a property file's properties over those already given (YCSB's
    /// `-P` repeated: later files override earlier ones).
    pub fn add_file(&mut self, path: &Path) -> Result<()> {
        let text = std::fs::read_to_string(path).map_err(|e| BenchError::io(path, e))?;
        self.parse(&text, &path.display().to_string())
    }

    /// Parse `text` (named `source` in errors) and add its properties.
    pub fn parse(&mut self, text: &str, source: &str) -> Result<()> {
        let mut logical = String::new();
        let mut start_line = 0;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim_start();
            if logical.is_empty() {
                if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                    continue;
                }
                start_line = i + 1;
            }
            // An odd number of trailing backslashes continues the line.
            let trailing = line.len() - line.trim_end_matches('\\').len();
            if trailing % 2 == 1 {
                logical.push_str(&line[..line.len() - 1]);
                continue;
            }
            logical.push_str(line);
            let origin = Origin {
                source: source.to_string(),
                line: Some(start_line),
            };
            self.add_line(&std::mem::take(&mut logical), origin)?;
        }
        if !logical.is_empty() {
            let origin = Origin {
                source: source.to_string(),
                line: Some(start_line),
            };
            self.add_line(&logical, origin)?;
        }
        Ok(())
    }

    /// Add a `name=value` override from the command line (`-p`); errors
    /// about it name the flag with its value.
    pub fn add_override(&mut self, assignment: &str) -> Result<()> {
        let origin = Origin {
            source: format!("command line -p {assignment}"),
            line: None,
        };
        if !assignment.contains('=') {
            return Err(BenchError::Workload {
                source_name: origin.describe(),
                message: format!("'{assignment}' is not name=value"),
            });
        }
        self.add_line(assignment, origin)
    }

    fn add_line(&mut self, line: &str, origin: Origin) -> Result<()> {
        let sep = line
            .find(|c: char| c == '=' || c == ':' || c.is_whitespace())
            .unwrap_or(line.len());
        let name = line[..sep].trim();
        let rest = line[sep..].trim_start();
        let value = rest
            .strip_prefix(['=', ':'])
            .unwrap_or(rest)
            .trim()
            .to_string();
        if !KNOWN.contains(&name) && !IGNORED.contains(&name) {
            return Err(BenchError::Workload {
                source_name: origin.describe(),
                message: format!("unknown property '{name}' (known: {})", KNOWN.join(", ")),
            });
        }
        self.entries.push((name.to_string(), value, origin));
        Ok(())
    }

    /// Set `name` from a client flag (`-threads 4` sets `threadcount`),
    /// over the files and `-p`; errors about it name the flag.
    pub fn add_flag(&mut self, name: &str, value: &str, flag: &str) {
        let origin = Origin {
            source: format!("command line {flag} {value}"),
            line: None,
        };
        self.entries
            .push((name.to_string(), value.to_string(), origin));
    }

    /// The last value given for `name`, with where it came from.
    pub(crate) fn get(&self, name: &str) -> Option<(&str, &Origin)> {
        self.entries
            .iter()
            .rev()
            .find(|(n, _, _)| n == name)
            .map(|(_, v, o)| (v.as_str(), o))
    }

    pub(crate) fn parsed<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T> {
        match self.get(name) {
            None => Ok(default),
            Some((v, origin)) => v.parse().map_err(|_| BenchError::Workload {
                source_name: origin.describe(),
                message: format!("property '{name}' has invalid value '{v}'"),
            }),
        }
    }

    /// An error about property `name`, blamed on where it was set (the
    /// file otherwise).
    pub(crate) fn error(&self, name: &str, file: &str, message: String) -> BenchError {
        self.error_among(&[name], file, message)
    }

    /// An error about several properties together (a sum, a product, a
    /// range), blamed on the one set last: a `-p` that broke a valid file is
    /// named as the `-p`, not as the file.
    pub(crate) fn error_among(&self, names: &[&str], file: &str, message: String) -> BenchError {
        let source_name = self
            .entries
            .iter()
            .rev()
            .find(|(n, _, _)| names.contains(&n.as_str()))
            .map(|(_, _, o)| o.describe())
            .unwrap_or_else(|| file.to_string());
        BenchError::Workload {
            source_name,
            message,
        }
    }
}

/// The spec of a property file's `text` (for tests).
#[cfg(test)]
pub(crate) fn spec_of(text: &str) -> Result<WorkloadSpec> {
    let mut p = Properties::default();
    p.parse(text, "test.properties")?;
    p.to_spec("test.properties")
}

#[cfg(test)]
mod tests {
    use super::spec_of as spec;
    use super::*;

    #[test]
    fn parses_workload_a_and_applies_defaults() {
        let s = spec(
            "# comment\n! also a comment\nworkload=site.ycsb.workloads.CoreWorkload\n\
             recordcount=1000\noperationcount = 2000\nreadproportion: 0.5\n\
             updateproportion 0.5\nscanproportion=0\ninsertproportion=0\n\
             requestdistribution=zipfian\n",
        )
        .unwrap();
        assert_eq!(s.recordcount, 1000);
        assert_eq!(s.operationcount, 2000);
        assert_eq!(s.readproportion, 0.5);
        assert_eq!(s.updateproportion, 0.5);
        assert_eq!(s.requestdistribution, RequestDistribution::Zipfian);
        assert_eq!((s.fieldcount, s.fieldlength), (10, 100));
        assert_eq!(s.insertcount, 1000);
        assert!(!s.ordered_inserts);
    }

    #[test]
    fn continuation_lines_join() {
        let s = spec("recordcount=10\\\n  00\nreadproportion=1\nupdateproportion=0\n").unwrap();
        assert_eq!(s.recordcount, 1000);
    }

    #[test]
    fn unknown_property_names_the_property_and_line() {
        let e = spec("recordcount=10\nreadproportoin=0.5\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("test.properties:2"), "{e}");
        assert!(e.contains("'readproportoin'"), "{e}");
    }

    #[test]
    fn proportions_above_one_are_rejected() {
        let e = spec("recordcount=10\nreadproportion=0.7\nupdateproportion=0.5\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("sum to 1.2"), "{e}");
    }

    #[test]
    fn bad_values_name_property_and_line() {
        let e = spec("recordcount=ten\n").unwrap_err().to_string();
        assert!(
            e.contains("test.properties:1") && e.contains("'recordcount'"),
            "{e}"
        );
        assert!(spec("recordcount=10\nrequestdistribution=normal\n").is_err());
        assert!(spec("recordcount=0\n").is_err());
    }

    #[test]
    fn overrides_win_and_must_be_assignments() {
        let mut p = Properties::default();
        p.parse("recordcount=10\n", "f").unwrap();
        p.add_override("recordcount=20").unwrap();
        assert_eq!(p.to_spec("f").unwrap().recordcount, 20);
        assert!(p.add_override("recordcount").is_err());
        assert!(p.add_override("bogus=1").is_err());
    }

    proptest::proptest! {
        /// Arbitrary text (including near-miss property lines) never panics
        /// the parser: it yields a spec or a one-line error.
        #[test]
        fn arbitrary_text_never_panics(
            text in "(([a-z]{1,12}|recordcount|readproportion|requestdistribution)[=: ]?[ -~]{0,12}\\\\?\n){0,8}|[ -~\n]{0,200}|\\PC{0,100}"
        ) {
            let mut p = Properties::default();
            match p.parse(&text, "fuzz") {
                Ok(()) => {
                    if let Err(e) = p.to_spec("fuzz") {
                        proptest::prop_assert!(!e.to_string().contains('\n'));
                    }
                }
                Err(e) => proptest::prop_assert!(!e.to_string().contains('\n')),
            }
        }
    }
}

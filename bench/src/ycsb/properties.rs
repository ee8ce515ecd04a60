//! YCSB workload property files (Java `.properties` syntax, as YCSB reads
//! them) and the typed [`WorkloadSpec`] they describe.
//!
//! Syntax: one `name=value` (or `name: value`, or `name value`) per logical
//! line; `#` and `!` start comment lines; a trailing backslash continues a
//! line. Every property name must be one this tool implements: a misspelt
//! name is an error naming the property and the file, never silently ignored.

use std::path::Path;

use serde::Serialize;

use crate::error::{BenchError, Result};

/// Where a property came from, for error messages.
#[derive(Debug, Clone)]
struct Origin {
    source: String,
    line: Option<usize>,
}

impl Origin {
    fn describe(&self) -> String {
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
    "fieldlengthdistribution",
    "readallfields",
    "writeallfields",
    "readproportion",
    "updateproportion",
    "insertproportion",
    "scanproportion",
    "readmodifywriteproportion",
    "requestdistribution",
    "minscanlength",
    "maxscanlength",
    "scanlengthdistribution",
    "insertorder",
    "insertstart",
    "insertcount",
    "zeropadding",
    "hotspotdatafraction",
    "hotspotopnfraction",
];

/// YCSB's workload class names for the core workload (old and new package).
const CORE_WORKLOAD_CLASSES: &[&str] = &[
    "site.ycsb.workloads.CoreWorkload",
    "com.yahoo.ycsb.workloads.CoreWorkload",
];

/// Largest record (all fields) accepted: one value in the engine.
const MAX_RECORD_BYTES: usize = 64 << 20;
/// More worker threads than this is a typo, not a benchmark.
const MAX_THREADS: usize = 1024;
/// Key padding beyond this is a typo (keys are built per operation).
const MAX_ZERO_PADDING: usize = 1024;

/// How the run phase picks existing keys.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestDistribution {
    Uniform,
    Zipfian,
    Latest,
    Hotspot,
}

/// How scan lengths are drawn from `minscanlength..=maxscanlength`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScanLengthDistribution {
    Uniform,
    Zipfian,
}

/// A parsed, validated core workload.
#[derive(Debug, Clone, Serialize)]
pub struct WorkloadSpec {
    /// The file the workload came from.
    pub file: String,
    pub recordcount: u64,
    pub operationcount: u64,
    pub threadcount: usize,
    pub fieldcount: usize,
    pub fieldlength: usize,
    pub readallfields: bool,
    pub writeallfields: bool,
    pub readproportion: f64,
    pub updateproportion: f64,
    pub insertproportion: f64,
    pub scanproportion: f64,
    pub readmodifywriteproportion: f64,
    pub requestdistribution: RequestDistribution,
    pub minscanlength: u64,
    pub maxscanlength: u64,
    pub scanlengthdistribution: ScanLengthDistribution,
    /// `insertorder=ordered` (true) or `hashed` (false, the default).
    pub ordered_inserts: bool,
    pub insertstart: u64,
    pub insertcount: u64,
    pub zeropadding: usize,
    pub hotspotdatafraction: f64,
    pub hotspotopnfraction: f64,
}

/// Raw `(name, value, origin)` triples, later ones overriding earlier ones.
#[derive(Debug, Default)]
pub struct Properties {
    entries: Vec<(String, String, Origin)>,
}

impl Properties {
    /// Read a property file.
    pub fn read_file(path: &Path) -> Result<Properties> {
        let text = std::fs::read_to_string(path).map_err(|e| BenchError::io(path, e))?;
        let mut p = Properties::default();
        p.parse(&text, &path.display().to_string())?;
        Ok(p)
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

    /// Add a `name=value` override from the command line (`-p`).
    pub fn add_override(&mut self, assignment: &str) -> Result<()> {
        let origin = Origin {
            source: "command line (-p)".to_string(),
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
        if !KNOWN.contains(&name) {
            return Err(BenchError::Workload {
                source_name: origin.describe(),
                message: format!("unknown property '{name}' (known: {})", KNOWN.join(", ")),
            });
        }
        self.entries.push((name.to_string(), value, origin));
        Ok(())
    }

    /// The last value given for `name`, with where it came from.
    fn get(&self, name: &str) -> Option<(&str, &Origin)> {
        self.entries
            .iter()
            .rev()
            .find(|(n, _, _)| n == name)
            .map(|(_, v, o)| (v.as_str(), o))
    }

    fn parsed<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T> {
        match self.get(name) {
            None => Ok(default),
            Some((v, origin)) => v.parse().map_err(|_| BenchError::Workload {
                source_name: origin.describe(),
                message: format!("property '{name}' has invalid value '{v}'"),
            }),
        }
    }

    fn error(&self, name: &str, file: &str, message: String) -> BenchError {
        let source_name = self
            .get(name)
            .map(|(_, o)| o.describe())
            .unwrap_or_else(|| file.to_string());
        BenchError::Workload {
            source_name,
            message,
        }
    }

    /// Build the workload, with YCSB's `CoreWorkload` defaults for what is
    /// not set. `file` names the workload file in errors that concern no
    /// single property.
    pub fn to_spec(&self, file: &str) -> Result<WorkloadSpec> {
        if let Some((class, _)) = self.get("workload")
            && !CORE_WORKLOAD_CLASSES.contains(&class)
        {
            return Err(self.error(
                "workload",
                file,
                format!("workload class '{class}' is not supported (only CoreWorkload)"),
            ));
        }
        let recordcount: u64 = self.parsed("recordcount", 0)?;
        let insertstart: u64 = self.parsed("insertstart", 0)?;
        let bool_prop = |name: &str, default: bool| -> Result<bool> {
            match self.get(name) {
                None => Ok(default),
                Some((v, origin)) => match v.to_ascii_lowercase().as_str() {
                    "true" => Ok(true),
                    "false" => Ok(false),
                    _ => Err(BenchError::Workload {
                        source_name: origin.describe(),
                        message: format!("property '{name}' must be true or false, not '{v}'"),
                    }),
                },
            }
        };
        let spec = WorkloadSpec {
            file: file.to_string(),
            recordcount,
            operationcount: self.parsed("operationcount", 0)?,
            threadcount: self.parsed("threadcount", 1)?,
            fieldcount: self.parsed("fieldcount", 10)?,
            fieldlength: self.parsed("fieldlength", 100)?,
            readallfields: bool_prop("readallfields", true)?,
            writeallfields: bool_prop("writeallfields", false)?,
            readproportion: self.parsed("readproportion", 0.95)?,
            updateproportion: self.parsed("updateproportion", 0.05)?,
            insertproportion: self.parsed("insertproportion", 0.0)?,
            scanproportion: self.parsed("scanproportion", 0.0)?,
            readmodifywriteproportion: self.parsed("readmodifywriteproportion", 0.0)?,
            requestdistribution: match self.get("requestdistribution").map(|(v, _)| v) {
                None | Some("uniform") => RequestDistribution::Uniform,
                Some("zipfian") => RequestDistribution::Zipfian,
                Some("latest") => RequestDistribution::Latest,
                Some("hotspot") => RequestDistribution::Hotspot,
                Some(other) => {
                    return Err(self.error(
                        "requestdistribution",
                        file,
                        format!(
                            "requestdistribution '{other}' is not supported (uniform, zipfian, latest, hotspot)"
                        ),
                    ));
                }
            },
            minscanlength: self.parsed("minscanlength", 1)?,
            maxscanlength: self.parsed("maxscanlength", 1000)?,
            scanlengthdistribution: match self.get("scanlengthdistribution").map(|(v, _)| v) {
                None | Some("uniform") => ScanLengthDistribution::Uniform,
                Some("zipfian") => ScanLengthDistribution::Zipfian,
                Some(other) => {
                    return Err(self.error(
                        "scanlengthdistribution",
                        file,
                        format!(
                            "scanlengthdistribution '{other}' is not supported (uniform, zipfian)"
                        ),
                    ));
                }
            },
            ordered_inserts: match self.get("insertorder").map(|(v, _)| v) {
                None | Some("hashed") => false,
                Some("ordered") => true,
                Some(other) => {
                    return Err(self.error(
                        "insertorder",
                        file,
                        format!("insertorder '{other}' must be hashed or ordered"),
                    ));
                }
            },
            insertstart,
            insertcount: self.parsed("insertcount", recordcount.saturating_sub(insertstart))?,
            zeropadding: self.parsed("zeropadding", 1)?,
            hotspotdatafraction: self.parsed("hotspotdatafraction", 0.2)?,
            hotspotopnfraction: self.parsed("hotspotopnfraction", 0.8)?,
        };
        if let Some((v, _)) = self.get("fieldlengthdistribution")
            && v != "constant"
        {
            return Err(self.error(
                "fieldlengthdistribution",
                file,
                format!("fieldlengthdistribution '{v}' is not supported (constant)"),
            ));
        }
        self.validate(&spec, file)?;
        Ok(spec)
    }

    fn validate(&self, s: &WorkloadSpec, file: &str) -> Result<()> {
        let proportions = [
            ("readproportion", s.readproportion),
            ("updateproportion", s.updateproportion),
            ("insertproportion", s.insertproportion),
            ("scanproportion", s.scanproportion),
            ("readmodifywriteproportion", s.readmodifywriteproportion),
        ];
        for (name, p) in proportions {
            if !(0.0..=1.0).contains(&p) {
                return Err(self.error(name, file, format!("{name} {p} is outside [0, 1]")));
            }
        }
        let sum: f64 = proportions.iter().map(|(_, p)| p).sum();
        if sum > 1.0 + 1e-9 {
            let listed: Vec<String> = proportions
                .iter()
                .filter(|(_, p)| *p > 0.0)
                .map(|(n, p)| format!("{n}={p}"))
                .collect();
            return Err(BenchError::Workload {
                source_name: file.to_string(),
                message: format!(
                    "operation proportions sum to {sum} (above 1): {}",
                    listed.join(" + ")
                ),
            });
        }
        if sum <= 0.0 && s.operationcount > 0 {
            return Err(BenchError::Workload {
                source_name: file.to_string(),
                message: "every operation proportion is 0".to_string(),
            });
        }
        if s.recordcount == 0 {
            return Err(self.error("recordcount", file, "recordcount must be at least 1".into()));
        }
        if s.insertstart.saturating_add(s.insertcount) > s.recordcount {
            return Err(self.error(
                "insertcount",
                file,
                format!(
                    "insertstart {} + insertcount {} exceeds recordcount {}",
                    s.insertstart, s.insertcount, s.recordcount
                ),
            ));
        }
        let record_len = s.fieldcount.checked_mul(s.fieldlength);
        if s.fieldcount == 0
            || s.fieldlength == 0
            || record_len.is_none_or(|l| l > MAX_RECORD_BYTES)
        {
            return Err(self.error(
                "fieldcount",
                file,
                format!(
                    "fieldcount {} x fieldlength {} must be at least 1 byte and at most {MAX_RECORD_BYTES}",
                    s.fieldcount, s.fieldlength
                ),
            ));
        }
        if s.threadcount == 0 || s.threadcount > MAX_THREADS {
            return Err(self.error(
                "threadcount",
                file,
                format!(
                    "threadcount {} must lie in [1, {MAX_THREADS}]",
                    s.threadcount
                ),
            ));
        }
        if s.zeropadding > MAX_ZERO_PADDING {
            return Err(self.error(
                "zeropadding",
                file,
                format!("zeropadding {} exceeds {MAX_ZERO_PADDING}", s.zeropadding),
            ));
        }
        if s.minscanlength == 0 || s.minscanlength > s.maxscanlength {
            return Err(self.error(
                "maxscanlength",
                file,
                format!(
                    "scan lengths need 1 <= minscanlength ({}) <= maxscanlength ({})",
                    s.minscanlength, s.maxscanlength
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> Result<WorkloadSpec> {
        let mut p = Properties::default();
        p.parse(text, "test.properties")?;
        p.to_spec("test.properties")
    }

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
        assert!(spec("recordcount=10\nrequestdistribution=exponential\n").is_err());
        assert!(spec("recordcount=10\nworkload=com.Other\n").is_err());
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

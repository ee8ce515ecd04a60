//! The typed, validated YCSB workload ([`WorkloadSpec`]) built from
//! [`Properties`], with YCSB's `CoreWorkload` and client defaults for what
//! is not set. Errors name the property and where it was set; an error about
//! several properties together names the one set last, so a `-p` that broke
//! a valid file is blamed on the `-p`.

use serde::Serialize;

use crate::error::{BenchError, Result};
use crate::ycsb::properties::Properties;

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
    /// YCSB's `ExponentialGenerator`: distance back from the newest record.
    Exponential,
}

/// How scan lengths are drawn from `minscanlength..=maxscanlength`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScanLengthDistribution {
    Uniform,
    Zipfian,
}

/// How each field's length is drawn (YCSB's `fieldlengthdistribution`):
/// always `fieldlength`, or from `minfieldlength..=fieldlength`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldLengthDistribution {
    Constant,
    Uniform,
    Zipfian,
}

/// A parsed, validated core workload and the client's settings.
#[derive(Debug, Clone, Serialize)]
pub struct WorkloadSpec {
    /// The file(s) the workload came from.
    pub file: String,
    pub recordcount: u64,
    pub operationcount: u64,
    pub threadcount: usize,
    pub fieldcount: usize,
    /// The length of every field (constant), or the longest.
    pub fieldlength: usize,
    pub minfieldlength: usize,
    pub fieldlengthdistribution: FieldLengthDistribution,
    pub readallfields: bool,
    pub writeallfields: bool,
    pub readproportion: f64,
    pub updateproportion: f64,
    pub insertproportion: f64,
    pub scanproportion: f64,
    pub readmodifywriteproportion: f64,
    pub requestdistribution: RequestDistribution,
    /// `exponential.percentile`: this percentage of the exponential
    /// distribution's picks fall within the newest `exponential.frac` of
    /// the records.
    pub exponential_percentile: f64,
    pub exponential_frac: f64,
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
    /// Total operations per second over all threads (`target`, `-target`);
    /// 0 runs unthrottled.
    pub target: f64,
    /// Status lines on stderr (`status`, `-s`).
    pub status: bool,
    /// Seconds between status lines (`status.interval`).
    pub status_interval_secs: u64,
    /// A phase stops after this many seconds (`maxexecutiontime`); 0: never.
    pub maxexecutiontime_secs: u64,
    /// `o3.allowempty`: a run phase may start on a missing or empty database.
    pub allow_empty: bool,
}

impl WorkloadSpec {
    /// Whether this load covers only part of the key space
    /// (`insertstart`/`insertcount` of one of several loading clients): it
    /// then adds its slice to the database instead of starting empty.
    pub fn loads_a_slice(&self) -> bool {
        self.insertstart > 0 || self.insertcount < self.recordcount
    }
}

impl Properties {
    /// A `true`/`false` property.
    fn flag(&self, name: &str, default: bool) -> Result<bool> {
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
    }

    /// A property that names one of `choices` (the first is the default).
    fn choice<T: Copy>(&self, name: &str, file: &str, choices: &[(&str, T)]) -> Result<T> {
        let Some((first, rest)) = choices.split_first() else {
            return Err(self.error(name, file, format!("property '{name}' has no choices")));
        };
        let Some((value, _)) = self.get(name) else {
            return Ok(first.1);
        };
        std::iter::once(first)
            .chain(rest)
            .find(|(n, _)| *n == value)
            .map(|(_, t)| *t)
            .ok_or_else(|| {
                let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
                self.error(
                    name,
                    file,
                    format!("{name} '{value}' is not supported ({})", names.join(", ")),
                )
            })
    }

    /// Build the workload, with YCSB's `CoreWorkload` defaults for what is
    /// not set. `file` names the workload file(s) in errors that concern no
    /// property set anywhere.
    pub fn to_spec(&self, file: &str) -> Result<WorkloadSpec> {
        self.warn_ignored();
        let recordcount: u64 = self.parsed("recordcount", 0)?;
        let insertstart: u64 = self.parsed("insertstart", 0)?;
        let fieldlength: usize = self.parsed("fieldlength", 100)?;
        let spec = WorkloadSpec {
            file: file.to_string(),
            recordcount,
            operationcount: self.parsed("operationcount", 0)?,
            threadcount: self.parsed("threadcount", 1)?,
            fieldcount: self.parsed("fieldcount", 10)?,
            fieldlength,
            minfieldlength: self.parsed("minfieldlength", 1)?,
            fieldlengthdistribution: self.choice(
                "fieldlengthdistribution",
                file,
                &[
                    ("constant", FieldLengthDistribution::Constant),
                    ("uniform", FieldLengthDistribution::Uniform),
                    ("zipfian", FieldLengthDistribution::Zipfian),
                ],
            )?,
            readallfields: self.flag("readallfields", true)?,
            writeallfields: self.flag("writeallfields", false)?,
            readproportion: self.parsed("readproportion", 0.95)?,
            updateproportion: self.parsed("updateproportion", 0.05)?,
            insertproportion: self.parsed("insertproportion", 0.0)?,
            scanproportion: self.parsed("scanproportion", 0.0)?,
            readmodifywriteproportion: self.parsed("readmodifywriteproportion", 0.0)?,
            requestdistribution: self.choice(
                "requestdistribution",
                file,
                &[
                    ("uniform", RequestDistribution::Uniform),
                    ("zipfian", RequestDistribution::Zipfian),
                    ("latest", RequestDistribution::Latest),
                    ("hotspot", RequestDistribution::Hotspot),
                    ("exponential", RequestDistribution::Exponential),
                ],
            )?,
            // YCSB's ExponentialGenerator defaults.
            exponential_percentile: self.parsed("exponential.percentile", 95.0)?,
            exponential_frac: self.parsed("exponential.frac", 0.857_142_857_1)?,
            minscanlength: self.parsed("minscanlength", 1)?,
            maxscanlength: self.parsed("maxscanlength", 1000)?,
            scanlengthdistribution: self.choice(
                "scanlengthdistribution",
                file,
                &[
                    ("uniform", ScanLengthDistribution::Uniform),
                    ("zipfian", ScanLengthDistribution::Zipfian),
                ],
            )?,
            ordered_inserts: self.choice(
                "insertorder",
                file,
                &[("hashed", false), ("ordered", true)],
            )?,
            insertstart,
            insertcount: self.parsed("insertcount", recordcount.saturating_sub(insertstart))?,
            zeropadding: self.parsed("zeropadding", 1)?,
            hotspotdatafraction: self.parsed("hotspotdatafraction", 0.2)?,
            hotspotopnfraction: self.parsed("hotspotopnfraction", 0.8)?,
            target: self.parsed("target", 0.0)?,
            status: self.flag("status", false)?,
            status_interval_secs: self.parsed("status.interval", 10)?,
            maxexecutiontime_secs: self.parsed("maxexecutiontime", 0)?,
            allow_empty: self.flag("o3.allowempty", false)?,
        };
        self.validate_mix(&spec, file)?;
        self.validate_keys(&spec, file)?;
        self.validate_records(&spec, file)?;
        self.validate_client(&spec, file)?;
        Ok(spec)
    }

    /// A workload class other than `CoreWorkload` is ignored with a warning:
    /// o3-bench runs the core workload whatever the file names.
    fn warn_ignored(&self) {
        if let Some((class, origin)) = self.get("workload")
            && !CORE_WORKLOAD_CLASSES.contains(&class)
        {
            tracing::warn!(
                "{}: workload class '{class}' ignored: o3-bench runs YCSB's CoreWorkload",
                origin.describe()
            );
        }
    }

    /// The operation proportions.
    fn validate_mix(&self, s: &WorkloadSpec, file: &str) -> Result<()> {
        let proportions = [
            ("readproportion", s.readproportion),
            ("updateproportion", s.updateproportion),
            ("insertproportion", s.insertproportion),
            ("scanproportion", s.scanproportion),
            ("readmodifywriteproportion", s.readmodifywriteproportion),
        ];
        let names: Vec<&str> = proportions.iter().map(|(n, _)| *n).collect();
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
            return Err(self.error_among(
                &names,
                file,
                format!(
                    "operation proportions sum to {sum} (above 1): {}",
                    listed.join(" + ")
                ),
            ));
        }
        if sum <= 0.0 && s.operationcount > 0 {
            return Err(self.error_among(
                &names,
                file,
                "every operation proportion is 0".to_string(),
            ));
        }
        Ok(())
    }

    /// Record counts, the insert slice and the key choosers' parameters.
    fn validate_keys(&self, s: &WorkloadSpec, file: &str) -> Result<()> {
        if s.recordcount == 0 {
            return Err(self.error("recordcount", file, "recordcount must be at least 1".into()));
        }
        if s.insertstart.saturating_add(s.insertcount) > s.recordcount {
            return Err(self.error_among(
                &["insertstart", "insertcount", "recordcount"],
                file,
                format!(
                    "insertstart {} + insertcount {} exceeds recordcount {}",
                    s.insertstart, s.insertcount, s.recordcount
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
            return Err(self.error_among(
                &["minscanlength", "maxscanlength"],
                file,
                format!(
                    "scan lengths need 1 <= minscanlength ({}) <= maxscanlength ({})",
                    s.minscanlength, s.maxscanlength
                ),
            ));
        }
        let percentile = s.exponential_percentile;
        if !(percentile > 0.0 && percentile < 100.0) {
            return Err(self.error(
                "exponential.percentile",
                file,
                format!("exponential.percentile {percentile} must lie in (0, 100)"),
            ));
        }
        if !(s.exponential_frac > 0.0 && s.exponential_frac.is_finite()) {
            return Err(self.error(
                "exponential.frac",
                file,
                format!("exponential.frac {} must be above 0", s.exponential_frac),
            ));
        }
        Ok(())
    }

    /// Field counts and lengths.
    fn validate_records(&self, s: &WorkloadSpec, file: &str) -> Result<()> {
        let record_len = s.fieldcount.checked_mul(s.fieldlength);
        if s.fieldcount == 0
            || s.fieldlength == 0
            || record_len.is_none_or(|l| l > MAX_RECORD_BYTES)
        {
            return Err(self.error_among(
                &["fieldcount", "fieldlength"],
                file,
                format!(
                    "fieldcount {} x fieldlength {} must be at least 1 byte and at most {MAX_RECORD_BYTES}",
                    s.fieldcount, s.fieldlength
                ),
            ));
        }
        let variable = s.fieldlengthdistribution != FieldLengthDistribution::Constant;
        if variable && (s.minfieldlength == 0 || s.minfieldlength > s.fieldlength) {
            return Err(self.error_among(
                &["minfieldlength", "fieldlength", "fieldlengthdistribution"],
                file,
                format!(
                    "field lengths need 1 <= minfieldlength ({}) <= fieldlength ({})",
                    s.minfieldlength, s.fieldlength
                ),
            ));
        }
        Ok(())
    }

    /// Threads, throttling and status settings.
    fn validate_client(&self, s: &WorkloadSpec, file: &str) -> Result<()> {
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
        if !(s.target >= 0.0 && s.target.is_finite()) {
            return Err(self.error(
                "target",
                file,
                format!(
                    "target {} must be 0 (unthrottled) or more ops/sec",
                    s.target
                ),
            ));
        }
        if s.status_interval_secs == 0 {
            return Err(self.error(
                "status.interval",
                file,
                "status.interval must be at least 1 second".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ycsb::properties::spec_of as spec;

    #[test]
    fn exponential_and_its_parameters_parse_with_ycsb_defaults() {
        let s = spec("recordcount=10\nrequestdistribution=exponential\n").unwrap();
        assert_eq!(s.requestdistribution, RequestDistribution::Exponential);
        assert_eq!(s.exponential_percentile, 95.0);
        assert!((s.exponential_frac - 6.0 / 7.0).abs() < 1e-9);
        let s = spec(
            "recordcount=10\nrequestdistribution=exponential\n\
             exponential.percentile=50\nexponential.frac=0.1\n",
        )
        .unwrap();
        assert_eq!((s.exponential_percentile, s.exponential_frac), (50.0, 0.1));
        let e = spec("recordcount=10\nexponential.percentile=100\n").unwrap_err();
        assert!(e.to_string().contains("exponential.percentile"), "{e}");
    }

    #[test]
    fn field_length_distributions_parse_and_check_their_range() {
        for (name, d) in [
            ("constant", FieldLengthDistribution::Constant),
            ("uniform", FieldLengthDistribution::Uniform),
            ("zipfian", FieldLengthDistribution::Zipfian),
        ] {
            let s = spec(&format!(
                "recordcount=10\nfieldlengthdistribution={name}\nminfieldlength=5\nfieldlength=50\n"
            ))
            .unwrap();
            assert_eq!((s.fieldlengthdistribution, s.minfieldlength), (d, 5));
        }
        let e = spec("recordcount=10\nfieldlengthdistribution=uniform\nminfieldlength=200\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("minfieldlength (200)"), "{e}");
        let e = spec("recordcount=10\nfieldlengthdistribution=histogram\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("'histogram'") && e.contains("test.properties:2"),
            "{e}"
        );
    }

    #[test]
    fn ignored_properties_are_accepted_whatever_their_value() {
        let s = spec(
            "recordcount=10\ntable=usertable\nmeasurementtype=timeseries\n\
             workload=site.ycsb.workloads.TimeSeriesWorkload\n",
        )
        .unwrap();
        assert_eq!(s.recordcount, 10);
    }

    #[test]
    fn client_settings_default_like_ycsb_and_are_checked() {
        let s = spec("recordcount=10\n").unwrap();
        assert_eq!(
            (s.target, s.status, s.status_interval_secs),
            (0.0, false, 10)
        );
        assert_eq!((s.maxexecutiontime_secs, s.allow_empty), (0, false));
        let s = spec(
            "recordcount=10\ntarget=500\nstatus=true\nstatus.interval=2\nmaxexecutiontime=30\no3.allowempty=true\n",
        )
        .unwrap();
        assert_eq!(
            (s.target, s.status, s.status_interval_secs),
            (500.0, true, 2)
        );
        assert_eq!((s.maxexecutiontime_secs, s.allow_empty), (30, true));
        assert!(spec("recordcount=10\ntarget=-1\n").is_err());
        assert!(spec("recordcount=10\nstatus.interval=0\n").is_err());
    }

    #[test]
    fn a_slice_is_any_load_short_of_the_whole_key_space() {
        let whole = spec("recordcount=100\n").unwrap();
        assert!(!whole.loads_a_slice());
        let first = spec("recordcount=100\ninsertcount=50\n").unwrap();
        let second = spec("recordcount=100\ninsertstart=50\n").unwrap();
        assert!(first.loads_a_slice() && second.loads_a_slice());
        assert_eq!(second.insertcount, 50);
    }

    #[test]
    fn a_p_override_that_breaks_a_valid_file_is_blamed_on_the_p() {
        let mut p = Properties::default();
        p.parse(
            "recordcount=10\nreadproportion=0.5\nupdateproportion=0.5\n",
            "wl",
        )
        .unwrap();
        p.add_override("fieldlength=0").unwrap();
        let e = p.to_spec("wl").unwrap_err().to_string();
        assert!(e.starts_with("command line -p fieldlength=0:"), "{e}");
        let mut p = Properties::default();
        p.parse(
            "recordcount=10\nreadproportion=0.5\nupdateproportion=0.5\n",
            "wl",
        )
        .unwrap();
        p.add_override("readproportion=0.9").unwrap();
        let e = p.to_spec("wl").unwrap_err().to_string();
        assert!(e.starts_with("command line -p readproportion=0.9:"), "{e}");
        p.add_flag("threadcount", "0", "-threads");
        p.add_override("readproportion=0.5").unwrap();
        let e = p.to_spec("wl").unwrap_err().to_string();
        assert!(e.starts_with("command line -threads 0:"), "{e}");
    }
}

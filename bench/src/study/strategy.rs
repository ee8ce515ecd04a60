//! Strategy specifications of the study: a preset name, optionally followed
//! by overrides of its primitives and numbers,
//! `preset[:key=value,key=value...]`, e.g.
//! `one-leveling:picker=tombstone-density,trigger=level-saturation+tombstone-ttl,tombstone_ttl_ms=1000`.
//!
//! Names are parsed by the storage crate's `FromStr` implementations, so an
//! unknown name fails with the list of valid ones.

use std::str::FromStr;

use o3_storage::compaction::{
    CompactionOptions, FilePicker, Granularity, Layout, LeveledOptions, Preset, Trigger,
};

use crate::error::{BenchError, Result};

/// Override keys a specification may use after the preset.
pub const OVERRIDE_KEYS: &[&str] = &[
    "picker",
    "trigger",
    "granularity",
    "layouts",
    "runs_per_tier",
    "max_file_age_ms",
    "max_space_amplification",
    "tombstone_ttl_ms",
];

/// One strategy of a study: the text it was given as (its label) and the
/// compaction options it stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct StrategySpec {
    pub label: String,
    pub options: CompactionOptions,
}

impl StrategySpec {
    /// Parse one specification over `levels` (the tree's numbers, shared by
    /// every strategy of a study so only the strategy differs).
    pub fn parse(text: &str, levels: &LeveledOptions) -> Result<StrategySpec> {
        let text = text.trim();
        let (preset, overrides) = match text.split_once(':') {
            Some((p, rest)) => (p, Some(rest)),
            None => (text, None),
        };
        let preset: Preset = parse_name(preset, "strategy")?;
        let mut options = CompactionOptions {
            preset,
            levels: levels.clone(),
            ..CompactionOptions::default()
        };
        for pair in overrides.into_iter().flat_map(|s| s.split(',')) {
            let Some((key, value)) = pair.split_once('=') else {
                return Err(bad(format!(
                    "strategy {text:?}: {pair:?} is not key=value; keys: {}",
                    OVERRIDE_KEYS.join(", ")
                )));
            };
            apply_override(&mut options, key.trim(), value.trim(), text)?;
        }
        // Let the storage crate judge the whole composition now, so a bad
        // combination is reported before any strategy runs.
        options
            .composition()
            .map_err(|e| bad(format!("strategy {text:?}: {e}")))?;
        Ok(StrategySpec {
            label: text.to_string(),
            options,
        })
    }

    /// Parse a comma-separated list whose items are separated by `;` when
    /// any item has overrides (overrides use commas themselves).
    pub fn parse_list(text: &str, levels: &LeveledOptions) -> Result<Vec<StrategySpec>> {
        let items: Vec<&str> = if text.contains(':') {
            text.split(';').collect()
        } else {
            text.split(',').collect()
        };
        let specs: Vec<StrategySpec> = items
            .into_iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| StrategySpec::parse(s, levels))
            .collect::<Result<_>>()?;
        if specs.is_empty() {
            return Err(bad("--strategies names no strategy".to_string()));
        }
        Ok(specs)
    }
}

fn bad(message: String) -> BenchError {
    BenchError::InvalidArgument(message)
}

/// A name parsed by the storage crate; its error already lists the valid
/// names, prefixed here with what was being parsed.
fn parse_name<T: FromStr<Err = o3_storage::Error>>(text: &str, what: &str) -> Result<T> {
    text.trim()
        .parse()
        .map_err(|e: o3_storage::Error| bad(format!("{what}: {e}")))
}

fn parse_number<T: FromStr>(key: &str, value: &str, spec: &str) -> Result<T> {
    value.parse().map_err(|_| {
        bad(format!(
            "strategy {spec:?}: {key}={value:?} is not a number"
        ))
    })
}

fn apply_override(o: &mut CompactionOptions, key: &str, value: &str, spec: &str) -> Result<()> {
    match key {
        "picker" => o.picker = Some(parse_name::<FilePicker>(value, "picker")?),
        "granularity" => o.granularity = Some(parse_name::<Granularity>(value, "granularity")?),
        "trigger" => {
            o.triggers = Some(
                value
                    .split('+')
                    .map(|t| parse_name::<Trigger>(t, "trigger"))
                    .collect::<Result<_>>()?,
            )
        }
        "layouts" => {
            o.layouts = Some(
                value
                    .split('+')
                    .map(|t| parse_name::<Layout>(t, "layout"))
                    .collect::<Result<_>>()?,
            )
        }
        "runs_per_tier" => o.runs_per_tier = parse_number(key, value, spec)?,
        "max_file_age_ms" => o.max_file_age_ms = parse_number(key, value, spec)?,
        "max_space_amplification" => o.max_space_amplification = parse_number(key, value, spec)?,
        "tombstone_ttl_ms" => o.tombstone_ttl_ms = parse_number(key, value, spec)?,
        _ => {
            return Err(bad(format!(
                "strategy {spec:?}: unknown key {key:?}; valid: {}",
                OVERRIDE_KEYS.join(", ")
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_and_overrides_parse() {
        let levels = LeveledOptions::default();
        let list = StrategySpec::parse_list("leveling,tiering,one-leveling", &levels).unwrap();
        let presets: Vec<Preset> = list.iter().map(|s| s.options.preset).collect();
        assert_eq!(
            presets,
            vec![Preset::Leveling, Preset::Tiering, Preset::OneLeveling]
        );
        let s = StrategySpec::parse(
            "one-leveling:picker=tombstone-density,trigger=level-saturation+tombstone-ttl,tombstone_ttl_ms=500",
            &levels,
        )
        .unwrap();
        assert_eq!(s.options.picker, Some(FilePicker::TombstoneDensity));
        assert_eq!(
            s.options.triggers,
            Some(vec![Trigger::LevelSaturation, Trigger::TombstoneTtl])
        );
        assert_eq!(s.options.tombstone_ttl_ms, 500);
    }

    #[test]
    fn unknown_names_list_the_valid_ones() {
        let levels = LeveledOptions::default();
        let e = StrategySpec::parse_list("leveling,sideways", &levels)
            .unwrap_err()
            .to_string();
        assert!(e.contains("sideways") && e.contains("lazy-leveling"), "{e}");
        let e = StrategySpec::parse("tiering:picker=best", &levels)
            .unwrap_err()
            .to_string();
        assert!(e.contains("round-robin"), "{e}");
        let e = StrategySpec::parse("tiering:speed=3", &levels)
            .unwrap_err()
            .to_string();
        assert!(e.contains("tombstone_ttl_ms"), "{e}");
    }
}

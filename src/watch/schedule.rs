//! `on.schedule`: cron expressions in UTC, when each fires next, and the
//! last firing of each, kept under `.runner/state/` so a firing missed
//! while runner was down can still run at start (within
//! `on.starting_deadline`) and never runs twice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use crate::error::{Error, WatchError};

/// Where the last firing of each schedule is kept.
pub const STATE_FILE: &str = ".runner/state/watch-schedules.json";

/// One cron expression of one pipeline.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub pipeline: String,
    pub expr: String,
    cron: Cron,
}

impl Schedule {
    /// Parses `expr` as validation does (5 fields, or 6 with seconds first).
    pub fn parse(pipeline: &str, expr: &str) -> Result<Schedule, Error> {
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build();
        let cron = parser.parse(expr).map_err(|err| {
            Error::from(WatchError::Cron {
                pipeline: pipeline.to_string(),
                expr: expr.to_string(),
                message: err.to_string(),
            })
        })?;
        Ok(Schedule {
            pipeline: pipeline.to_string(),
            expr: expr.to_string(),
            cron,
        })
    }

    /// The first firing strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&after, false).ok()
    }

    /// The last firing at or before `now`.
    pub fn latest(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_previous_occurrence(&now, true).ok()
    }

    /// The firing missed while runner was down that must still run now: the
    /// latest one, when it is newer than the last recorded firing and at
    /// most `deadline` old. No deadline: missed firings are dropped.
    pub fn missed(
        &self,
        last: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        deadline: Option<Duration>,
    ) -> Option<DateTime<Utc>> {
        let deadline = chrono::Duration::from_std(deadline?).ok()?;
        let latest = self.latest(now)?;
        if last.is_some_and(|last| latest <= last) {
            return None;
        }
        // Strictly within: cron-driven `--once` jobs every `deadline` catch
        // each firing once, not on two consecutive jobs.
        (now - latest < deadline).then_some(latest)
    }
}

/// The last firing of each (pipeline, expression), as stored on disk.
#[derive(Debug, Default)]
pub struct FiredState {
    path: PathBuf,
    fired: BTreeMap<String, BTreeMap<String, DateTime<Utc>>>,
}

impl FiredState {
    /// Reads the state of the checkout at `root`; a missing or unreadable
    /// file is an empty state (a warning says why when unreadable).
    pub fn load(root: &Path) -> (FiredState, Option<String>) {
        let path = root.join(STATE_FILE);
        let mut state = FiredState {
            path: path.clone(),
            fired: BTreeMap::new(),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return (state, None),
            Err(err) => {
                return (
                    state,
                    Some(format!("cannot read {}: {err}", path.display())),
                );
            }
        };
        match serde_json::from_str::<BTreeMap<String, BTreeMap<String, String>>>(&text) {
            Ok(stored) => {
                for (pipeline, exprs) in stored {
                    let parsed = exprs.into_iter().filter_map(|(expr, at)| {
                        let at = DateTime::parse_from_rfc3339(&at).ok()?;
                        Some((expr, at.with_timezone(&Utc)))
                    });
                    state.fired.insert(pipeline, parsed.collect());
                }
                (state, None)
            }
            Err(err) => (
                state,
                Some(format!(
                    "{} is not valid JSON ({err}); missed schedules are not caught up, and it is rewritten at the next firing",
                    path.display()
                )),
            ),
        }
    }

    /// When `schedule` last fired.
    pub fn last(&self, schedule: &Schedule) -> Option<DateTime<Utc>> {
        self.fired
            .get(&schedule.pipeline)
            .and_then(|exprs| exprs.get(&schedule.expr))
            .copied()
    }

    /// Records a firing (never moving a record back) and writes the file.
    pub fn record(&mut self, schedule: &Schedule, at: DateTime<Utc>) -> Result<(), Error> {
        let entry = self
            .fired
            .entry(schedule.pipeline.clone())
            .or_default()
            .entry(schedule.expr.clone())
            .or_insert(at);
        if *entry < at {
            *entry = at;
        }
        self.save()
    }

    fn save(&self) -> Result<(), Error> {
        let io = |source| Error::Io {
            path: self.path.clone(),
            source,
        };
        let stored: BTreeMap<&String, BTreeMap<&String, String>> = self
            .fired
            .iter()
            .map(|(pipeline, exprs)| {
                let exprs = exprs
                    .iter()
                    .map(|(expr, at)| (expr, at.to_rfc3339()))
                    .collect();
                (pipeline, exprs)
            })
            .collect();
        let text = serde_json::to_string_pretty(&stored).unwrap_or_default();
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        // Written aside and renamed: a crash never leaves half a file.
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn five_and_six_fields_fire_in_utc() {
        let daily = Schedule::parse("p", "0 3 * * *").unwrap();
        assert_eq!(
            daily.next_after(at("2026-01-01T03:00:00Z")),
            Some(at("2026-01-02T03:00:00Z"))
        );
        let every2s = Schedule::parse("p", "*/2 * * * * *").unwrap();
        assert_eq!(
            every2s.next_after(at("2026-01-01T00:00:01Z")),
            Some(at("2026-01-01T00:00:02Z"))
        );
        assert!(Schedule::parse("p", "61 * * * *").is_err());
    }

    #[test]
    fn a_missed_firing_runs_once_within_the_deadline() {
        let hourly = Schedule::parse("p", "0 * * * *").unwrap();
        let now = at("2026-01-01T10:20:00Z");
        let hour = Some(Duration::from_secs(3600));
        let ten_min = Some(Duration::from_secs(600));
        assert_eq!(
            hourly.missed(Some(at("2026-01-01T08:00:00Z")), now, hour),
            Some(at("2026-01-01T10:00:00Z"))
        );
        // Too old, already run, or no deadline: nothing.
        assert_eq!(
            hourly.missed(Some(at("2026-01-01T08:00:00Z")), now, ten_min),
            None
        );
        assert_eq!(
            hourly.missed(Some(at("2026-01-01T10:00:00Z")), now, hour),
            None
        );
        assert_eq!(hourly.missed(None, now, None), None);
    }

    #[test]
    fn firings_are_kept_across_restarts() {
        let tmp = tempfile::tempdir().unwrap();
        let s = Schedule::parse("p", "0 * * * *").unwrap();
        let (mut state, warning) = FiredState::load(tmp.path());
        assert!(warning.is_none());
        state.record(&s, at("2026-01-01T10:00:00Z")).unwrap();
        state.record(&s, at("2026-01-01T09:00:00Z")).unwrap();
        let (state, _) = FiredState::load(tmp.path());
        assert_eq!(state.last(&s), Some(at("2026-01-01T10:00:00Z")));
        std::fs::write(tmp.path().join(STATE_FILE), "{").unwrap();
        let (state, warning) = FiredState::load(tmp.path());
        assert!(warning.is_some() && state.last(&s).is_none());
    }
}

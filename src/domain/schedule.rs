//! The schedule grammar of cron triggers. (Placeholder until the schedule work lands: it accepts
//! what croner parses.)

use std::str::FromStr;

#[derive(Debug, Clone)]
pub struct Schedule(String);

#[derive(Debug, thiserror::Error)]
#[error("invalid schedule {0:?}")]
pub struct ScheduleError(String);

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.starts_with("@every ") || croner::Cron::from_str(s).is_ok() {
            Ok(Self(s.to_owned()))
        } else {
            Err(ScheduleError(s.to_owned()))
        }
    }
}

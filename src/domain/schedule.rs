//! The schedule grammar of cron triggers (filled in by the schedule work).

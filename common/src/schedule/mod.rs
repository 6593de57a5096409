//! Schedules: cron expressions, timer configurations and the fire times they produce.

pub mod cron;
pub mod timer;

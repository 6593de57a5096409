//! `kai-loadtest`: load tests of a KAI-Fusion deployment that report not only how fast it
//! answered but what became of every accepted request (the audit).

pub mod audit;
pub mod bursts;
pub mod ceiling;
pub mod html;
pub mod listing;
pub mod pacing;
pub mod partition;
pub mod process;
pub mod readback;
pub mod recorder;
pub mod report;
pub mod schedules;
pub mod seed;
pub mod target;
pub mod thresholds;
pub mod vectors;
pub mod webhook;

//! Integration tests of the scheduler: real `kai-scheduler` processes against real PostgreSQL
//! and NATS JetStream, schedules created through the real API; each test has its own database
//! and NATS prefix.

mod deployment;
mod harness;
mod housekeeping;
mod leadership;
mod timers;

//! Integration tests of the worker process: killed with SIGKILL or stopped with SIGTERM while
//! webhooks pour in, nothing accepted is lost or run twice.

mod crash;
mod deployment;
mod document_jobs;
mod drain;
mod harness;
mod inflight;
mod outage;
mod pulls;
mod replicas;
mod secrets;
mod stranded;
mod writer;

//! Sandboxes for user code (CodeNode): embedded interpreters with no file, network, process or
//! environment access, each run bounded in time, memory and printed output, run on the compute
//! pool's threads (never on the async runtime). See docs/decisions/0003-code-node-sandboxes.md.

pub mod javascript;
pub mod python;

use std::time::Duration;

use serde_json::Value;

/// What one run may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub time: Duration,
    pub memory_bytes: usize,
    /// Bytes the code may print.
    pub output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            time: Duration::from_secs(30),
            memory_bytes: 128 * 1024 * 1024,
            output_bytes: 1024 * 1024,
        }
    }
}

/// What a run produced: what it printed, and the value it ended with (JavaScript's `return`,
/// Python's last expression), if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub printed: String,
    pub result: Option<Value>,
}

/// Why a run failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SandboxError {
    #[error("the code ran longer than its time limit ({0:?}) and was stopped")]
    TimeLimit(Duration),
    #[error("the code used more memory than its limit ({} MiB) and was stopped", .0 / (1024 * 1024))]
    MemoryLimit(usize),
    #[error("the code printed more than its limit ({0} bytes)")]
    OutputLimit(usize),
    /// A syntax error or an exception the code did not catch, with its message or traceback.
    #[error("the code failed: {0}")]
    Failed(String),
}

//! Python in Monty (pydantic's interpreter written in Rust): no CPython, no C. The code sees only
//! the language and the modules Monty implements itself; opening files or sockets and importing
//! `os`, `socket` or `subprocess` fail. Each run has its own resource tracker: a time limit,
//! a memory limit counted by the interpreter (a huge allocation is refused before it is made),
//! and a cap on printed output. `node_data` is the input.

use std::borrow::Cow;

use monty::MontyRun;
use monty_types::{
    CompileOptions, ExcType, LimitedTracker, MontyException, MontyObject, PrintWriter,
    PrintWriterCallback, ResourceLimits,
};
use serde_json::{Map, Number, Value};

use super::{Finished, Limits, SandboxError};

/// Runs `code` with `input` as `node_data`.
pub fn run(code: &str, input: &Value, limits: &Limits) -> Result<Finished, SandboxError> {
    let runner = MontyRun::new(
        code.to_owned(),
        "code.py",
        vec!["node_data".to_owned()],
        CompileOptions::default(),
    )
    .map_err(|e| SandboxError::Failed(e.to_string()))?;
    let tracker = LimitedTracker::new(
        ResourceLimits::new()
            .max_duration(limits.time)
            .max_memory(limits.memory_bytes),
    );
    let mut printed = Printed {
        text: String::new(),
        cap: limits.output_bytes,
        overflowed: false,
    };
    let result = runner.run(
        vec![to_python(input)],
        tracker,
        PrintWriter::Callback(&mut printed),
    );
    if printed.overflowed {
        return Err(SandboxError::OutputLimit(limits.output_bytes));
    }
    let printed = printed.text;
    match result {
        Ok(value) => Ok(Finished {
            printed,
            result: match value {
                MontyObject::None => None,
                other => Some(to_json(&other)),
            },
        }),
        Err(error) => Err(failure(&error, limits)),
    }
}

/// A printed Python literal (`{'values': ['a']}`, as `print(a_dict)` writes it) as JSON, when it
/// is one: evaluated in a sandbox of its own, with small limits.
pub fn literal(text: &str) -> Option<Value> {
    let text = text.trim();
    if !(text.starts_with('{') || text.starts_with('[')) {
        return None;
    }
    let limits = Limits {
        time: std::time::Duration::from_millis(200),
        memory_bytes: 16 * 1024 * 1024 + text.len() * 8,
        output_bytes: 0,
    };
    let finished = run(text, &Value::Null, &limits).ok()?;
    finished.result
}

/// What the code printed, up to `cap` bytes; printing past it stops the code.
struct Printed {
    text: String,
    cap: usize,
    overflowed: bool,
}

impl Printed {
    fn push(&mut self, text: &str) -> Result<(), MontyException> {
        if self.text.len() + text.len() > self.cap {
            self.overflowed = true;
            return Err(MontyException::new(
                ExcType::MemoryError,
                Some("printed output limit exceeded".to_owned()),
            ));
        }
        self.text.push_str(text);
        Ok(())
    }
}

impl PrintWriterCallback for Printed {
    fn stdout_write(&mut self, output: Cow<'_, str>) -> Result<(), MontyException> {
        self.push(&output)
    }

    fn stdout_push(&mut self, end: char) -> Result<(), MontyException> {
        self.push(end.encode_utf8(&mut [0; 4]))
    }
}

fn failure(error: &MontyException, limits: &Limits) -> SandboxError {
    match error.exc_type() {
        ExcType::TimeoutError if error.summary().contains("time limit") => {
            SandboxError::TimeLimit(limits.time)
        }
        ExcType::MemoryError => SandboxError::MemoryLimit(limits.memory_bytes),
        _ => SandboxError::Failed(error.to_string()),
    }
}

fn to_python(value: &Value) -> MontyObject {
    match value {
        Value::Null => MontyObject::None,
        Value::Bool(b) => MontyObject::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => MontyObject::Int(i),
            None => MontyObject::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => MontyObject::String(s.clone()),
        Value::Array(items) => MontyObject::List(items.iter().map(to_python).collect()),
        Value::Object(fields) => MontyObject::dict(
            fields
                .iter()
                .map(|(k, v)| (MontyObject::String(k.clone()), to_python(v)))
                .collect::<Vec<_>>(),
        ),
    }
}

fn to_json(value: &MontyObject) -> Value {
    match value {
        MontyObject::None | MontyObject::Ellipsis => Value::Null,
        MontyObject::Bool(b) => Value::Bool(*b),
        MontyObject::Int(i) => Value::from(*i),
        MontyObject::BigInt(i) => Value::String(i.to_string()),
        MontyObject::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
        MontyObject::String(s) => Value::String(s.clone()),
        MontyObject::Bytes(b) => Value::String(String::from_utf8_lossy(b).into_owned()),
        MontyObject::List(items)
        | MontyObject::Tuple(items)
        | MontyObject::Set(items)
        | MontyObject::FrozenSet(items) => Value::Array(items.iter().map(to_json).collect()),
        MontyObject::NamedTuple { values, .. } => {
            Value::Array(values.iter().map(to_json).collect())
        }
        MontyObject::Dict(pairs) => Value::Object(
            pairs
                .into_iter()
                .map(|(k, v)| {
                    let key = match k {
                        MontyObject::String(s) => s.clone(),
                        other => match to_json(other) {
                            Value::String(s) => s,
                            json => json.to_string(),
                        },
                    };
                    (key, to_json(v))
                })
                .collect::<Map<_, _>>(),
        ),
        other => Value::String(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use serde_json::json;

    use super::*;

    fn limits() -> Limits {
        Limits {
            time: Duration::from_millis(500),
            ..Limits::default()
        }
    }

    #[test]
    fn prints_and_ends_with_a_value_with_the_input_in_scope() {
        let finished = run(
            "print('hi', node_data['name'])\nnode_data['n'] * 2",
            &json!({"name": "Ada", "n": 21}),
            &limits(),
        )
        .unwrap();
        assert_eq!(finished.printed, "hi Ada\n");
        assert_eq!(finished.result, Some(json!(42)));
        assert_eq!(
            literal("{'values': ['a', 'b'], 'ok': True, 'none': None}\n"),
            Some(json!({"values": ["a", "b"], "ok": true, "none": null}))
        );
        assert_eq!(literal("hello"), None);
    }

    #[test]
    fn loops_allocations_and_host_access_are_stopped() {
        let started = Instant::now();
        assert_eq!(
            run("while True:\n    pass", &json!(null), &limits()),
            Err(SandboxError::TimeLimit(Duration::from_millis(500)))
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        // Generous time, so that a slow machine reaches the memory limit first.
        let small = Limits {
            time: Duration::from_secs(30),
            memory_bytes: 32 * 1024 * 1024,
            ..limits()
        };
        for huge in [
            "x = 'a' * (1024 ** 3)",
            "x = []\nwhile True:\n    x.append('a' * 10000)",
        ] {
            assert_eq!(
                run(huge, &json!(null), &small),
                Err(SandboxError::MemoryLimit(32 * 1024 * 1024)),
                "{huge}"
            );
        }
        for escape in [
            "open('/etc/passwd').read()",
            "import socket",
            "import os\nos.system('true')",
            "import subprocess",
        ] {
            assert!(
                matches!(
                    run(escape, &json!(null), &limits()),
                    Err(SandboxError::Failed(_))
                ),
                "{escape}"
            );
        }
        let chatty = Limits {
            output_bytes: 100,
            ..limits()
        };
        assert_eq!(
            run(
                "for i in range(100):\n    print('0123456789')",
                &json!(null),
                &chatty
            ),
            Err(SandboxError::OutputLimit(100))
        );
    }
}

//! JavaScript in QuickJS (rquickjs): a fresh runtime per run with a memory limit, a stack limit
//! and an interrupt handler that stops the code at its deadline. Nothing but the language is
//! in scope (no `require`, no module loader, no timers); `print` and `console.*` are captured.
//! The code runs as a function body, so it may `return` its result; `node_data` is the input.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use rquickjs::prelude::Rest;
use rquickjs::{Context, Ctx, Function, Runtime};
use serde_json::Value;

use super::{Finished, Limits, SandboxError};

/// Stack the code may use (deep recursion is an error, not a crash).
const MAX_STACK_BYTES: usize = 1024 * 1024;

/// Formats printed values as a console would: strings as they are, the rest as JSON.
const PRELUDE: &str = r#"
(() => {
  const show = (v) => typeof v === "string" ? v
    : v === undefined ? "undefined"
    : (typeof v === "function" ? String(v) : JSON.stringify(v));
  const out = globalThis.__kai_print;
  delete globalThis.__kai_print;
  globalThis.print = (...values) => out(values.map(show).join(" "));
  globalThis.console = { log: print, info: print, warn: print, error: print, debug: print };
})();
"#;

/// What the code printed so far, bounded.
#[derive(Default)]
struct Printed {
    text: String,
    overflowed: bool,
}

/// Runs `code` with `input` as `node_data`.
pub fn run(code: &str, input: &Value, limits: &Limits) -> Result<Finished, SandboxError> {
    let failed = |e: rquickjs::Error| SandboxError::Failed(e.to_string());
    let runtime = Runtime::new().map_err(failed)?;
    runtime.set_memory_limit(limits.memory_bytes);
    runtime.set_max_stack_size(MAX_STACK_BYTES);
    let deadline = Instant::now() + limits.time;
    runtime.set_interrupt_handler(Some(Box::new(move || Instant::now() >= deadline)));
    let context = Context::full(&runtime).map_err(failed)?;
    let printed = Rc::new(RefCell::new(Printed::default()));
    let input_json = serde_json::to_string(input).expect("JSON serialises");
    let source = format!("(function (node_data) {{\n{code}\n}})(node_data)");

    let outcome = context.with(|ctx| -> Result<Option<Value>, SandboxError> {
        let sink = printed.clone();
        let cap = limits.output_bytes;
        let print = Function::new(ctx.clone(), move |lines: Rest<String>| {
            let mut printed = sink.borrow_mut();
            for line in lines.0 {
                if printed.text.len() + line.len() + 1 > cap {
                    printed.overflowed = true;
                    return;
                }
                printed.text.push_str(&line);
                printed.text.push('\n');
            }
        })
        .map_err(failed)?;
        let globals = ctx.globals();
        globals.set("__kai_print", print).map_err(failed)?;
        let node_data = ctx
            .json_parse(input_json)
            .map_err(|e| caught(&ctx, e, limits, deadline))?;
        globals.set("node_data", node_data).map_err(failed)?;
        ctx.eval::<(), _>(PRELUDE)
            .map_err(|e| caught(&ctx, e, limits, deadline))?;
        let result: rquickjs::Value = ctx
            .eval(source)
            .map_err(|e| caught(&ctx, e, limits, deadline))?;
        if result.is_undefined() {
            return Ok(None);
        }
        let text = ctx
            .json_stringify(result)
            .map_err(|e| caught(&ctx, e, limits, deadline))?;
        Ok(match text {
            Some(text) => serde_json::from_str(&text.to_string().map_err(failed)?).ok(),
            None => None,
        })
    });
    let printed = Rc::try_unwrap(printed)
        .map(RefCell::into_inner)
        .unwrap_or_else(|shared| std::mem::take(&mut *shared.borrow_mut()));
    if printed.overflowed {
        return Err(SandboxError::OutputLimit(limits.output_bytes));
    }
    Ok(Finished {
        printed: printed.text,
        result: outcome?,
    })
}

/// What a failed evaluation means: the deadline, the memory limit, or the code's own error.
fn caught(
    ctx: &Ctx<'_>,
    error: rquickjs::Error,
    limits: &Limits,
    deadline: Instant,
) -> SandboxError {
    if Instant::now() >= deadline {
        return SandboxError::TimeLimit(limits.time);
    }
    match error {
        rquickjs::Error::Exception => {
            let thrown = ctx.catch();
            // QuickJS throws `null` when it cannot even allocate the error.
            if thrown.is_null() {
                return SandboxError::MemoryLimit(limits.memory_bytes);
            }
            let message = match thrown.as_exception() {
                Some(exception) => {
                    let message = exception.message().unwrap_or_default();
                    if message.contains("out of memory") {
                        return SandboxError::MemoryLimit(limits.memory_bytes);
                    }
                    let stack = exception.stack().unwrap_or_default();
                    format!("{message}\n{stack}").trim_end().to_owned()
                }
                None => thrown
                    .as_string()
                    .and_then(|s| s.to_string().ok())
                    .unwrap_or_else(|| format!("{thrown:?}")),
            };
            SandboxError::Failed(message)
        }
        rquickjs::Error::Allocation => SandboxError::MemoryLimit(limits.memory_bytes),
        other => SandboxError::Failed(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    fn limits() -> Limits {
        Limits {
            time: Duration::from_millis(500),
            ..Limits::default()
        }
    }

    #[test]
    fn prints_and_returns_with_the_input_in_scope() {
        let finished = run(
            "print('hi', node_data.name); console.log({a: [1, 2]}); return node_data.n * 2;",
            &json!({"name": "Ada", "n": 21}),
            &limits(),
        )
        .unwrap();
        assert_eq!(finished.printed, "hi Ada\n{\"a\":[1,2]}\n");
        assert_eq!(finished.result, Some(json!(42)));
    }

    #[test]
    fn loops_allocations_and_host_access_are_stopped() {
        let started = Instant::now();
        assert_eq!(
            run("for (;;) {}", &json!(null), &limits()),
            Err(SandboxError::TimeLimit(Duration::from_millis(500)))
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        // Generous time, so that a slow machine reaches the memory limit first.
        let small = Limits {
            time: Duration::from_secs(30),
            memory_bytes: 32 * 1024 * 1024,
            ..limits()
        };
        let huge = run(
            "const a = []; for (;;) a.push(new Array(100000).fill(1));",
            &json!(null),
            &small,
        );
        assert_eq!(huge, Err(SandboxError::MemoryLimit(32 * 1024 * 1024)));
        for escape in [
            "require('fs')",
            "process.exit(1)",
            "new XMLHttpRequest()",
            "fetch('http://x')",
        ] {
            match run(escape, &json!(null), &limits()) {
                Err(SandboxError::Failed(message)) => {
                    assert!(message.contains("is not defined"), "{escape}: {message}")
                }
                other => panic!("{escape}: {other:?}"),
            }
        }
        assert!(matches!(
            run("throw new Error('boom')", &json!(null), &limits()),
            Err(SandboxError::Failed(m)) if m.contains("boom")
        ));
        assert!(matches!(
            run("function f() { return f() } f()", &json!(null), &limits()),
            Err(SandboxError::Failed(_))
        ));
        let chatty = Limits {
            output_bytes: 100,
            ..limits()
        };
        assert_eq!(
            run(
                "for (let i = 0; i < 100; i++) print('0123456789')",
                &json!(null),
                &chatty
            ),
            Err(SandboxError::OutputLimit(100))
        );
    }
}

//! Property tests: the parsers that read what users send (workflow graphs, templates, cron
//! expressions and timer settings, outbound allow lists) answer every input with a value or an
//! error, never a panic, and templates stay within their fuel. Run with the unit tests; more
//! cases with `PROPTEST_CASES=10000 cargo test -p kai-common parser_properties`.

use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::outbound::guard::{AllowedHosts, forbidden_rule};
use crate::schedule::cron::CronExpression;
use crate::schedule::timer::TimerConfig;
use crate::workflow::template::{TemplateScope, render};
use crate::workflow::{FlowData, Graph};

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Graph-shaped JSON: known and unknown node types, ids from a small pool (so duplicates,
/// cycles and dangling edges are common), arbitrary data.
fn graph_body() -> impl Strategy<Value = Value> {
    let kinds = prop::sample::select(vec![
        "StartNode",
        "EndNode",
        "WebhookStartNode",
        "TimerStartNode",
        "HttpRequest",
        "ConditionNode",
        "CodeNode",
        "Agent",
        "OpenAIChat",
        "BufferMemory",
        "NoSuchNode",
        "",
    ]);
    let ids = prop::sample::select(vec!["a", "b", "c", "d", "", "a.b", "{{x}}"]);
    let node = (ids.clone(), kinds, json_value())
        .prop_map(|(id, kind, data)| json!({"id": id, "type": kind, "data": data}));
    let edge = (ids.clone(), ids, prop::option::of(".{0,6}"))
        .prop_map(|(source, target, handle)| {
            json!({"source": source, "target": target, "sourceHandle": handle})
        });
    (
        prop::collection::vec(node, 0..6),
        prop::collection::vec(edge, 0..8),
        any::<bool>(),
    )
        .prop_map(|(nodes, edges, wrapped)| {
            let flow = json!({"nodes": nodes, "edges": edges});
            if wrapped {
                json!({"name": "w", "flow_data": flow})
            } else {
                flow
            }
        })
}

/// Template-ish text: fragments of minijinja syntax in any order.
fn template_text() -> impl Strategy<Value = String> {
    let fragment = prop::sample::select(vec![
        "{{",
        "}}",
        "{%",
        "%}",
        "{#",
        "#}",
        " for x in ",
        " range(",
        "99999999",
        ")",
        " endfor ",
        " if ",
        " endif ",
        " else ",
        "|",
        "upper",
        "tojson",
        "input",
        ".",
        "[0]",
        "x",
        " ~ ",
        "'",
        "\"",
        " * ",
        "loop",
        " set y = ",
        "y",
        "10",
        "-",
        ",",
        "(",
        "\u{0}",
        "é",
        " macro m() ",
        " endmacro ",
        "m()",
        " include 'a' ",
        " import ",
    ]);
    prop::collection::vec(fragment, 0..24).prop_map(|parts| parts.concat())
}

fn cron_text() -> impl Strategy<Value = String> {
    let field = prop::sample::select(vec![
        "*",
        "*/5",
        "0",
        "59",
        "60",
        "1-5",
        "5-1",
        "1,2,3",
        "MON",
        "JAN",
        "L",
        "W",
        "#",
        "?",
        "-1",
        "*/0",
        "99999999999",
        "",
        "1-",
        ",",
    ]);
    prop::collection::vec(field, 0..8).prop_map(|fields| fields.join(" "))
}

fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    // Years 1970 to 2200.
    (0i64..7_258_118_400).prop_map(|secs| DateTime::from_timestamp(secs, 0).expect("in range"))
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_json_is_read_as_a_flow_or_refused(body in json_value()) {
        if let Ok(flow) = FlowData::from_body(&body) {
            let _ = Graph::new(flow);
        }
    }

    #[test]
    fn graph_shaped_json_is_built_or_refused(body in graph_body()) {
        if let Ok(flow) = FlowData::from_body(&body)
            && let Ok(graph) = Graph::new(flow)
        {
            // A built graph orders every node exactly once.
            let mut order = graph.order().to_vec();
            order.sort_unstable();
            order.dedup();
            prop_assert_eq!(order.len(), graph.len());
        }
    }

    #[test]
    fn templates_render_or_fail_within_their_fuel(text in template_text(), input in json_value()) {
        let _ = render(&text, &TemplateScope::empty(), &Arc::new(input));
    }

    #[test]
    fn any_text_renders_or_fails(text in ".{0,64}") {
        let _ = render(&text, &TemplateScope::empty(), &Arc::new(Value::Null));
    }

    #[test]
    fn cron_expressions_parse_or_are_refused(text in cron_text(), after in instant()) {
        if let Ok(cron) = CronExpression::parse(&text) {
            let _ = cron.describe();
            if let Some(next) = cron.next_after(after, chrono_tz::UTC) {
                prop_assert!(next > after);
            }
        }
    }

    #[test]
    fn any_text_is_a_cron_expression_or_refused(text in ".{0,40}") {
        let _ = CronExpression::parse(&text);
    }

    #[test]
    fn timer_settings_are_read_or_refused(config in json_value(), after in instant()) {
        if let Ok(timer) = TimerConfig::from_json(&config) {
            let schedule = timer.schedule(after);
            let _ = schedule.describe();
            for at in schedule.upcoming(after, 3) {
                prop_assert!(at > after);
            }
        }
    }

    #[test]
    fn timer_shaped_settings_are_read_or_refused(
        cron in prop::option::of(cron_text()),
        interval in prop::option::of(any::<i64>()),
        zone in prop::option::of(".{0,20}"),
        at in prop::option::of(".{0,30}"),
        after in instant(),
    ) {
        let config = json!({"cron_expression": cron, "interval_seconds": interval,
                            "timezone": zone, "scheduled_time": at});
        if let Ok(timer) = TimerConfig::from_json(&config) {
            let _ = timer.schedule(after).upcoming(after, 2);
        }
    }

    #[test]
    fn allow_lists_parse_or_are_refused(text in "[0-9a-f:./,* -]{0,40}") {
        let _ = text.parse::<AllowedHosts>();
    }

    #[test]
    fn every_address_is_judged(address in any::<IpAddr>()) {
        let _ = forbidden_rule(address);
    }
}

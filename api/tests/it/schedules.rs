//! Scheduled jobs through the API: synced from timer nodes on save, managed through
//! `/api/v1/jobs/scheduled`, previewed, triggered by hand. Firing by the scheduler is tested in
//! the scheduler's own tests.

use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, json_of};

fn timer_workflow(data: Value) -> Value {
    json!({"name": "timed", "nodes": [
        {"id": "timer", "type": "TimerStartNode", "data": data},
        {"id": "end", "type": "EndNode"}
    ], "edges": [{"source": "timer", "target": "end"}]})
}

fn instant(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not an instant: {value}"))
        .parse()
        .unwrap()
}

async fn jobs_of(app: &TestApp, token: &str, workflow_id: &str) -> Vec<Value> {
    let (status, jobs) = app
        .get_json(
            &format!("/api/v1/jobs/scheduled?workflow_id={workflow_id}"),
            token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{jobs}");
    jobs.as_array().unwrap().clone()
}

async fn put_workflow(app: &TestApp, token: &str, id: &str, body: &Value) {
    let (status, body) = app
        .put_json(&format!("/api/v1/workflows/{id}"), token, body)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn saving_a_workflow_creates_changes_and_deletes_its_scheduled_job() {
    let app = TestApp::spawn_api_only().await;
    let token = app.user("timers@example.com").await;
    let saved_at = Utc::now();
    let workflow = app
        .create_workflow(
            &token,
            &timer_workflow(json!({"name": "Nightly report", "schedule_type": "cron",
                "cron_expression": "30 2 * * *", "timezone": "Europe/Berlin",
                "trigger_data": {"report": "daily"}})),
        )
        .await;
    let id = workflow["id"].as_str().unwrap();
    let jobs = jobs_of(&app, &token, id).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let job = &jobs[0];
    assert_eq!(job["job_name"], "Nightly report");
    assert_eq!(job["timer_type"], "cron");
    assert_eq!(job["timezone"], "Europe/Berlin");
    assert_eq!(job["trigger_data"], json!({"report": "daily"}));
    assert_eq!(job["misfire_policy"], "fire_once");
    assert!(
        job["description"]
            .as_str()
            .unwrap()
            .contains("Europe/Berlin")
    );
    // 02:30 in Berlin is 00:30 or 01:30 UTC.
    let next = instant(&job["next_run_at"]);
    assert!(next > saved_at && next - saved_at <= chrono::Duration::days(1));
    assert_eq!(next.format("%M").to_string(), "30");
    assert!(["00", "01"].contains(&next.format("%H").to_string().as_str()));

    // Saved again unchanged: same job, same tick.
    put_workflow(
        &app,
        &token,
        id,
        &timer_workflow(json!({"name": "Nightly report", "schedule_type": "cron",
            "cron_expression": "30 2 * * *", "timezone": "Europe/Berlin",
            "trigger_data": {"report": "daily"}})),
    )
    .await;
    let again = jobs_of(&app, &token, id).await;
    assert_eq!(again[0]["id"], job["id"]);
    assert_eq!(again[0]["next_run_at"], job["next_run_at"]);
    assert_eq!(again[0]["updated_at"], job["updated_at"]);

    // Changed to an interval: the ticks count from the change.
    let changed_at = Utc::now();
    put_workflow(
        &app,
        &token,
        id,
        &timer_workflow(json!({"schedule_type": "interval", "interval_seconds": 600})),
    )
    .await;
    let changed = jobs_of(&app, &token, id).await;
    assert_eq!(changed[0]["id"], job["id"]);
    assert_eq!(changed[0]["timer_type"], "interval");
    assert_eq!(changed[0]["description"], "Every 10 minutes");
    let next = instant(&changed[0]["next_run_at"]);
    let offset = (next - changed_at).num_seconds();
    assert!((599..=601).contains(&offset), "next tick {offset} s away");

    // A manual timer has no schedule, and a removed node no job.
    put_workflow(
        &app,
        &token,
        id,
        &timer_workflow(json!({"schedule_type": "manual"})),
    )
    .await;
    assert!(jobs_of(&app, &token, id).await.is_empty());
    put_workflow(
        &app,
        &token,
        id,
        &timer_workflow(json!({"interval_seconds": 60})),
    )
    .await;
    assert_eq!(jobs_of(&app, &token, id).await.len(), 1);
    put_workflow(
        &app,
        &token,
        id,
        &json!({"name": "no timer", "nodes": [{"id": "start", "type": "StartNode"}]}),
    )
    .await;
    assert!(jobs_of(&app, &token, id).await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn invalid_timer_settings_are_refused_naming_what_is_wrong_and_change_nothing() {
    let app = TestApp::spawn_api_only().await;
    let token = app.user("bad-timers@example.com").await;

    let response = app
        .request(Method::POST, "/api/v1/workflows", Some(&token))
        .json(&timer_workflow(
            json!({"schedule_type": "cron", "cron_expression": "0 25 * * *"}),
        ))
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["node_id"], "timer");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("cron_expression"),
        "{body}"
    );

    let workflow = app
        .create_workflow(&token, &timer_workflow(json!({"interval_seconds": 60})))
        .await;
    let id = workflow["id"].as_str().unwrap();
    let job = jobs_of(&app, &token, id).await.remove(0);
    let job_id = job["id"].as_str().unwrap();
    let cases = [
        (
            json!({"timer_config": {"timer_type": "cron", "cron_expression": "* * *"}}),
            "5 fields",
        ),
        (
            json!({"timer_config": {"timer_type": "cron", "cron_expression": "0 9 * * MOON"}}),
            "cron_expression",
        ),
        (
            json!({"timer_config": {"timezone": "Europe/Atlantis"}}),
            "timezone",
        ),
        (
            json!({"timer_config": {"interval_seconds": 0}}),
            "interval_seconds",
        ),
        (json!({"timer_config": {"timer_type": "once"}}), "run_at"),
        (
            json!({"timer_config": {"misfire_policy": "later"}}),
            "misfire_policy",
        ),
        (
            json!({"timer_config": {"schedule_type": "manual"}}),
            "manual",
        ),
        (
            json!({"timer_config": {"cron": "* * * * *"}}),
            "unknown setting",
        ),
        (json!({"timer_config": [1]}), "must be an object"),
        (
            json!({"timer_config": {"trigger_data": {"x": "a\u{0}b"}}}),
            "trigger_data",
        ),
        (
            json!({"timer_config": {"timer_type": "cron",
                "cron_expression": format!("0 0 1 1 {}2", "1,".repeat(60))}}),
            "at most 100",
        ),
    ];
    for (body, expected) in cases {
        let (status, answer) = app
            .put_json(&format!("/api/v1/jobs/scheduled/{job_id}"), &token, &body)
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body} → {answer}"
        );
        assert!(
            answer["message"].as_str().unwrap().contains(expected),
            "{body} → {answer}"
        );
    }
    let (_, unchanged) = app
        .get_json(&format!("/api/v1/jobs/scheduled/{job_id}"), &token)
        .await;
    assert_eq!(unchanged["updated_at"], job["updated_at"]);
    assert_eq!(unchanged["next_run_at"], job["next_run_at"]);
    app.stop().await;
}

#[tokio::test]
async fn jobs_are_created_changed_and_deleted_through_the_api_by_their_owner_only() {
    let app = TestApp::spawn_api_only().await;
    let token = app.user("owner@example.com").await;
    let stranger = app.user("stranger@example.com").await;
    let workflow = app
        .create_workflow(&token, &timer_workflow(json!({"interval_seconds": 60})))
        .await;
    let workflow_id = workflow["id"].as_str().unwrap();
    let job = jobs_of(&app, &token, workflow_id).await.remove(0);
    let job_id = job["id"].as_str().unwrap();
    let path = format!("/api/v1/jobs/scheduled/{job_id}");

    // Only one job per node.
    let create = json!({"workflow_id": workflow_id, "node_id": "timer",
        "timer_config": {"interval_seconds": 30}});
    let (status, body) = app
        .post_json("/api/v1/jobs/scheduled", &token, &create)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = app
        .post_json(
            "/api/v1/jobs/scheduled",
            &token,
            &json!({"workflow_id": workflow_id, "node_id": "end"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["node_id"], "end");

    // Strangers see nothing and change nothing.
    let (status, _) = app.get_json(&path, &stranger).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, listed) = app.get_json("/api/v1/jobs/scheduled", &stranger).await;
    assert_eq!(listed, json!([]));
    let (status, _) = app
        .put_json(&path, &stranger, &json!({"enabled": false}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let response = app
        .request(Method::DELETE, &path, Some(&stranger))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // Disabled: no next tick, listed as disabled; enabled again: ticking.
    let (status, disabled) = app
        .put_json(&path, &token, &json!({"enabled": false}))
        .await;
    assert_eq!(status, StatusCode::OK, "{disabled}");
    assert_eq!(disabled["enabled"], false);
    assert_eq!(disabled["next_run_at"], Value::Null);
    let (_, listed) = app
        .get_json("/api/v1/jobs/scheduled?enabled=false", &token)
        .await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let (_, listed) = app
        .get_json("/api/v1/jobs/scheduled?enabled=true", &token)
        .await;
    assert_eq!(listed, json!([]));
    let (status, enabled) = app
        .put_json(
            &path,
            &token,
            &json!({"timer_config": {"enabled": true, "interval_seconds": 120,
                "overlap_policy": "skip", "max_executions": 3}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{enabled}");
    assert_eq!(enabled["interval_seconds"], 120);
    assert_eq!(enabled["overlap_policy"], "skip");
    assert_eq!(enabled["max_executions"], 3);
    assert!(enabled["next_run_at"].is_string());

    // Deleted: gone, and its node can have a job again through POST.
    let response = app
        .request(Method::DELETE, &path, Some(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let (status, _) = app.get_json(&path, &token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, created) = app
        .post_json("/api/v1/jobs/scheduled", &token, &create)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["interval_seconds"], 30);
    assert_eq!(created["description"], "Every 30 seconds");
    assert_ne!(created["id"], job["id"]);
    app.stop().await;
}

#[tokio::test]
async fn preview_lists_the_next_fire_times_in_the_schedule_s_time_zone() {
    let app = TestApp::spawn_api_only().await;
    let token = app.user("preview@example.com").await;
    // Weekdays at 09:00 in New York, across the spring-forward change of 8 March 2026.
    let (status, body) = app
        .post_json(
            "/api/v1/jobs/scheduled/preview",
            &token,
            &json!({"timer_config": {"timer_type": "cron", "cron_expression": "0 9 * * MON-FRI",
                "timezone": "America/New_York"}, "count": 4, "after": "2026-03-05T15:00:00Z"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["next_runs"],
        json!([
            "2026-03-06T14:00:00Z",
            "2026-03-09T13:00:00Z",
            "2026-03-10T13:00:00Z",
            "2026-03-11T13:00:00Z"
        ])
    );
    // Six fields: seconds first.
    let (_, body) = app
        .post_json(
            "/api/v1/jobs/scheduled/preview",
            &token,
            &json!({"timer_config": {"timer_type": "cron", "cron_expression": "0 */5 * * * *"},
                "count": 2, "after": "2026-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(
        body["next_runs"],
        json!(["2026-01-01T00:05:00Z", "2026-01-01T00:10:00Z"])
    );
    let (_, body) = app
        .post_json(
            "/api/v1/jobs/scheduled/preview",
            &token,
            &json!({"timer_config": {"timer_type": "once", "run_at": "2026-01-02T00:00:00Z"},
                "count": 5, "after": "2026-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(body["next_runs"], json!(["2026-01-02T00:00:00Z"]));
    for (request, expected) in [
        (
            json!({"timer_config": {"interval_seconds": 5}, "count": 101}),
            "count",
        ),
        (
            json!({"timer_config": {"interval_seconds": 5}, "count": 0}),
            "count",
        ),
        (
            json!({"timer_config": {"timer_type": "cron", "cron_expression": "@often"}}),
            "nickname",
        ),
    ] {
        let (status, body) = app
            .post_json("/api/v1/jobs/scheduled/preview", &token, &request)
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{request}");
        assert!(
            body["message"].as_str().unwrap().contains(expected),
            "{body}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_triggered_job_runs_now_and_is_listed_with_its_run() {
    let app = TestApp::spawn().await;
    let token = app.user("trigger@example.com").await;
    let workflow = app
        .create_workflow(
            &token,
            &timer_workflow(json!({"interval_seconds": 3600, "trigger_data": {"k": "v"}})),
        )
        .await;
    let workflow_id = workflow["id"].as_str().unwrap();
    let job = jobs_of(&app, &token, workflow_id).await.remove(0);
    let job_id = job["id"].as_str().unwrap();
    let (status, triggered) = app
        .post_json(
            &format!("/api/v1/jobs/scheduled/{job_id}/trigger"),
            &token,
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{triggered}");
    let execution_id = triggered["execution_id"].as_str().unwrap();
    let execution = app.wait_for_execution(&token, execution_id).await;
    assert_eq!(execution["trigger_type"], "timer");
    assert_eq!(execution["inputs"]["trigger_data"], json!({"k": "v"}));
    assert_eq!(execution["inputs"]["source"], "manual");

    let runs_path = format!("/api/v1/jobs/scheduled/{job_id}/executions");
    let mut listed = Value::Null;
    for _ in 0..100 {
        let (status, body) = app.get_json(&runs_path, &token).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body[0]["status"] == "completed" {
            listed = body;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let run = &listed[0];
    assert_eq!(run["execution_id"], execution_id, "{listed}");
    assert_eq!(run["job_id"], job_id);
    assert_eq!(run["source"], "manual");
    assert!(run["started_at"].is_string() && run["completed_at"].is_string());
    let (_, failed) = app
        .get_json(&format!("{runs_path}?status=failed"), &token)
        .await;
    assert_eq!(failed, json!([]));
    let (status, _) = app
        .get_json(&format!("{runs_path}?status=lost"), &token)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // A manual trigger is not a tick: it does not count toward max_executions.
    let (_, after) = app
        .get_json(&format!("/api/v1/jobs/scheduled/{job_id}"), &token)
        .await;
    assert_eq!(after["current_executions"], 0);
    app.stop().await;
}

#[tokio::test]
async fn the_dev_cluster_s_timer_example_gets_a_job_ticking_within_the_minute() {
    let app = TestApp::spawn_api_only().await;
    let token = app.user("heartbeat@example.com").await;
    let example: Value =
        serde_json::from_str(include_str!("../../../examples/timer-heartbeat.json")).unwrap();
    let workflow = app.create_workflow(&token, &example).await;
    let jobs = jobs_of(&app, &token, workflow["id"].as_str().unwrap()).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["cron_expression"], "* * * * *");
    assert_eq!(jobs[0]["timezone"], "Europe/Berlin");
    let next = instant(&jobs[0]["next_run_at"]);
    assert!(next - Utc::now() <= chrono::Duration::seconds(60));
    assert_eq!(next.timestamp() % 60, 0);
    app.stop().await;
}

//! Credentials: stored sealed and shown masked, owner-scoped, refused with 422 naming the field,
//! kept while a workflow uses them, bound to their row and owner, and re-encrypted by
//! `kai-api rotate-credentials` under a new key.

use kai_common::credentials::{KeyRing, OpenError};
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, json_of, lone_webhook_workflow};

const API_KEY: &str = "sk-proj-4f8a1c2e9b7d6f5a3c1e9f2a";
/// The key `TestApp` runs with when none is configured (the development default).
const DEV_KEY: &str = "kai-development-encryption-key-do-not-use-in-production";
const NEW_KEY: &str = "a-brand-new-encryption-key-of-at-least-32-chars";

fn ring(current: &str, previous: &[&str]) -> KeyRing {
    let previous: Vec<SecretString> = previous
        .iter()
        .map(|k| SecretString::from(k.to_string()))
        .collect();
    KeyRing::new(&SecretString::from(current.to_owned()), &previous)
}

async fn create(app: &TestApp, token: &str, body: Value) -> (StatusCode, Value) {
    app.post_json("/api/v1/credentials", token, &body).await
}

async fn sealed_row(app: &TestApp, id: &str) -> (Uuid, Uuid, String, Vec<u8>) {
    sqlx::query_as(
        "SELECT id, user_id, key_id, encrypted_secret FROM user_credentials WHERE id = $1",
    )
    .bind(id.parse::<Uuid>().unwrap())
    .fetch_one(&app.state.db)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_credential_round_trips_sealed_and_is_shown_masked_to_its_owner_only() {
    let app = TestApp::spawn_api_only().await;
    let token = app.user("creds@example.com").await;
    let stranger = app.user("creds-stranger@example.com").await;
    let (status, created) = create(
        &app,
        &token,
        json!({"name": "OpenAI", "service_type": "openai", "data": {"api_key": API_KEY}}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["secret_hint"], "sk-…9f2a");
    assert_eq!(created["data"], json!({}));
    assert!(!created.to_string().contains(API_KEY));
    let id = created["id"].as_str().unwrap().to_owned();

    let (row_id, owner, key_id, sealed) = sealed_row(&app, &id).await;
    assert!(
        !sealed
            .windows(API_KEY.len())
            .any(|w| w == API_KEY.as_bytes()),
        "the secret is not stored in clear"
    );
    let opened = app
        .state
        .credential_keys
        .open(row_id, owner, &key_id, &sealed)
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&opened).unwrap(),
        json!({"api_key": API_KEY})
    );

    let (_, listed) = app.get_json("/api/v1/credentials", &token).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert!(!listed.to_string().contains(API_KEY));
    let (status, one) = app
        .get_json(&format!("/api/v1/credentials/{id}"), &token)
        .await;
    assert_eq!((status, &one["name"]), (StatusCode::OK, &json!("OpenAI")));

    // Another user sees nothing and changes nothing.
    let path = format!("/api/v1/credentials/{id}");
    assert_eq!(
        app.get_json(&path, &stranger).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, _) = app
        .put_json(&path, &stranger, &json!({"name": "mine"}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let response = app
        .request(Method::DELETE, &path, Some(&stranger))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let (_, theirs) = app.get_json("/api/v1/credentials", &stranger).await;
    assert_eq!(theirs, json!([]));

    // A rename keeps the secret; a new secret changes the hint.
    let (status, renamed) = app
        .put_json(&path, &token, &json!({"name": "Main OpenAI"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    assert_eq!(renamed["secret_hint"], "sk-…9f2a");
    let (_, rekeyed) = app
        .put_json(
            &path,
            &token,
            &json!({"data": {"api_key": "sk-another-key-0000001234"}}),
        )
        .await;
    assert_eq!(rekeyed["secret_hint"], "sk-…1234");
    app.stop().await;
}

#[tokio::test]
async fn bad_credentials_are_refused_naming_what_is_wrong_and_nothing_is_stored() {
    let app = TestApp::spawn_api_only().await;
    let token = app.user("bad-creds@example.com").await;
    let refused = [
        (
            json!({"name": "x", "service_type": "fernet", "data": {}}),
            "service_type",
        ),
        (
            json!({"name": "x", "service_type": "basic_auth", "data": {"username": "ada"}}),
            "data.password",
        ),
        (
            json!({"name": "x", "service_type": "bearer", "data": {"token": "t", "tokne": "t"}}),
            "data.tokne",
        ),
        (
            json!({"name": "x", "service_type": "tavily", "data": {"api_key": ""}}),
            "data.api_key",
        ),
        (
            json!({"name": "x", "service_type": "tavily", "data": "tvly-key"}),
            "data",
        ),
        (
            json!({"name": " ", "service_type": "tavily", "data": {"api_key": "k"}}),
            "name",
        ),
        (
            json!({"name": "x", "service_type": "openai_compatible", "data": {"api_key": "k"}}),
            "data.base_url",
        ),
    ];
    for (body, names) in refused {
        let (status, answer) = create(&app, &token, body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
        assert!(answer.to_string().contains(names), "{body}: {answer}");
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM user_credentials")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(count, 0);

    let basic = json!({"name": "svc", "service_type": "basic_auth",
        "data": {"username": "ada", "password": "correct-horse-battery"}});
    assert_eq!(
        create(&app, &token, basic.clone()).await.0,
        StatusCode::CREATED
    );
    let (status, taken) = create(&app, &token, basic).await;
    assert_eq!(status, StatusCode::CONFLICT, "{taken}");
    assert!(taken.to_string().contains("svc"));
    app.stop().await;
}

#[tokio::test]
async fn a_credential_a_workflow_uses_cannot_be_deleted() {
    let app = TestApp::spawn_api_only().await;
    let token = app.user("in-use@example.com").await;
    let (_, created) = create(
        &app,
        &token,
        json!({"name": "hook", "service_type": "bearer", "data": {"token": "t0ken-value-123456"}}),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    // A node's configuration naming the credential, as saved graphs do (`credential_id`).
    let mut graph = lone_webhook_workflow();
    graph["nodes"][0]["data"]["credential_id"] = json!(id);
    let workflow = app.create_workflow(&token, &graph).await;
    let workflow_id: Uuid = workflow["id"].as_str().unwrap().parse().unwrap();
    let path = format!("/api/v1/credentials/{id}");
    let (status, refused) = json_of(
        app.request(Method::DELETE, &path, Some(&token))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert!(
        refused.to_string().contains(&workflow_id.to_string()),
        "{refused}"
    );
    assert_eq!(
        app.get_json(&path, &token).await.0,
        StatusCode::OK,
        "still there"
    );

    let response = app
        .request(
            Method::DELETE,
            &format!("/api/v1/workflows/{workflow_id}"),
            Some(&token),
        )
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let response = app
        .request(Method::DELETE, &path, Some(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.get_json(&path, &token).await.0, StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test]
async fn a_ciphertext_moved_to_another_row_does_not_decrypt() {
    let app = TestApp::spawn_api_only().await;
    let token = app.user("moved@example.com").await;
    let mut ids = Vec::new();
    for name in ["a", "b"] {
        let (_, created) = create(
            &app,
            &token,
            json!({"name": name, "service_type": "tavily", "data": {"api_key": format!("tvly-{name}-0123456789")}}),
        )
        .await;
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    let (_, owner, key_id, sealed_a) = sealed_row(&app, &ids[0]).await;
    let b: Uuid = ids[1].parse().unwrap();
    sqlx::query("UPDATE user_credentials SET encrypted_secret = $2 WHERE id = $1")
        .bind(b)
        .bind(&sealed_a)
        .execute(&app.state.db)
        .await
        .unwrap();
    let (_, _, _, moved) = sealed_row(&app, &ids[1]).await;
    assert_eq!(
        app.state.credential_keys.open(b, owner, &key_id, &moved),
        Err(OpenError::Rejected)
    );
    app.stop().await;
}

#[tokio::test]
async fn rotation_re_encrypts_every_credential_under_the_new_key_and_can_be_run_again() {
    let app = TestApp::spawn_api_only().await;
    let token = app.user("rotate@example.com").await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let (_, created) = create(
            &app,
            &token,
            json!({"name": format!("k{n}"), "service_type": "api_key", "data": {"api_key": format!("key-{n}-abcdefghijkl")}}),
        )
        .await;
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    let old = ring(DEV_KEY, &[]);
    let rotating = ring(NEW_KEY, &[DEV_KEY]);
    let new_only = ring(NEW_KEY, &[]);
    // Before: the rows are under the old key, which the new ring still opens.
    for id in &ids {
        let (row, owner, key_id, sealed) = sealed_row(&app, id).await;
        assert_eq!(key_id, old.current_key_id());
        assert!(rotating.open(row, owner, &key_id, &sealed).is_ok());
        assert!(matches!(
            new_only.open(row, owner, &key_id, &sealed),
            Err(OpenError::UnknownKey(_))
        ));
    }
    let mut reports = Vec::new();
    let rotation =
        kai_api::rotate::rotate_credentials(&app.state.db, &rotating, 2, |done, total| {
            reports.push((done, total))
        })
        .await
        .unwrap();
    assert_eq!((rotation.resealed, rotation.failed.len()), (5, 0));
    assert_eq!(
        reports,
        [(2, 5), (4, 5), (5, 5)],
        "progress after each batch of 2"
    );
    // After: the new key alone opens every row, so the old one can be removed.
    for (n, id) in ids.iter().enumerate() {
        let (row, owner, key_id, sealed) = sealed_row(&app, id).await;
        assert_eq!(key_id, new_only.current_key_id());
        let secret: Value =
            serde_json::from_slice(&new_only.open(row, owner, &key_id, &sealed).unwrap()).unwrap();
        assert_eq!(secret["api_key"], format!("key-{n}-abcdefghijkl"));
    }
    let again = kai_api::rotate::rotate_credentials(&app.state.db, &rotating, 2, |_, _| {})
        .await
        .unwrap();
    assert_eq!(again.resealed, 0, "nothing left to do");
    app.stop().await;
}

#[tokio::test]
async fn rotation_waits_for_a_credential_being_changed_instead_of_skipping_it() {
    let app = TestApp::spawn_api_only().await;
    let token = app.user("rotate-locked@example.com").await;
    let (_, created) = create(
        &app,
        &token,
        json!({"name": "busy", "service_type": "bearer", "data": {"token": "token-being-renamed"}}),
    )
    .await;
    let id: Uuid = created["id"].as_str().unwrap().parse().unwrap();
    // A change in progress holds the row (as a rename through the API does).
    let mut change = app.state.db.begin().await.unwrap();
    sqlx::query("SELECT id FROM user_credentials WHERE id = $1 FOR UPDATE")
        .bind(id)
        .execute(&mut *change)
        .await
        .unwrap();
    let rotating = ring(NEW_KEY, &[DEV_KEY]);
    let db = app.state.db.clone();
    let rotation = tokio::spawn(async move {
        kai_api::rotate::rotate_credentials(&db, &rotating, 10, |_, _| {}).await
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    change.commit().await.unwrap();
    let rotation = rotation.await.unwrap().unwrap();
    assert_eq!(
        rotation.resealed, 1,
        "the busy row was waited for, not left under the old key"
    );
    let (_, _, key_id, _) = sealed_row(&app, &id.to_string()).await;
    assert_eq!(key_id, ring(NEW_KEY, &[]).current_key_id());
    app.stop().await;
}

/// Runs `kai-api rotate-credentials --batch-size 2` on `app`'s database with these keys.
async fn rotate_command(app: &TestApp, current: &str, previous: Option<&str>) -> (bool, String) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_kai-api"));
    command
        .args(["rotate-credentials", "--batch-size", "2"])
        .env("DATABASE_URL", app.env.database_url())
        .env("KAI_ENCRYPTION_KEY", current)
        .env_remove("KAI_ENCRYPTION_KEYS_PREVIOUS");
    if let Some(previous) = previous {
        command.env("KAI_ENCRYPTION_KEYS_PREVIOUS", previous);
    }
    let output = command.output().await.unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!text.contains(current), "a key was printed: {text}");
    (output.status.success(), text)
}

#[tokio::test]
async fn the_rotate_command_prints_progress_and_names_what_it_cannot_decrypt() {
    let app = TestApp::spawn_api_only().await;
    let token = app.user("rotate-cli@example.com").await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let (_, created) = create(
            &app,
            &token,
            json!({"name": format!("c{n}"), "service_type": "bearer", "data": {"token": format!("token-{n}-abcdefghij")}}),
        )
        .await;
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    let (ok, output) = rotate_command(&app, NEW_KEY, Some(DEV_KEY)).await;
    assert!(ok, "{output}");
    assert!(
        output.contains("2 of 3") && output.contains("3 of 3"),
        "{output}"
    );
    assert!(output.contains("3 re-encrypted"), "{output}");
    let new_key_id = ring(NEW_KEY, &[]).current_key_id().to_owned();
    for id in &ids {
        assert_eq!(sealed_row(&app, id).await.2, new_key_id);
    }
    // Run again: nothing to do.
    let (ok, output) = rotate_command(&app, NEW_KEY, Some(DEV_KEY)).await;
    assert!(ok && output.contains("0 re-encrypted"), "{output}");
    // Under yet another key without the one that sealed them: each row is named, none changed.
    let (ok, output) = rotate_command(&app, "a-third-key-nobody-sealed-anything-with", None).await;
    assert!(!ok, "{output}");
    for id in &ids {
        assert!(output.contains(id.as_str()), "{id} not named: {output}");
        assert_eq!(sealed_row(&app, id).await.2, new_key_id, "left as it was");
    }
    assert!(
        !output.contains(NEW_KEY) && !output.contains("token-0"),
        "{output}"
    );
    app.stop().await;
}

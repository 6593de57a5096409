//! The HTTP test API and credential tests against a fake upstream: answers, truncation, the
//! SSRF guard, the per-user limit, verdicts and their cache.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::upstream::{GOOD_KEY, GOOD_PASSWORD, Upstream};

#[tokio::test]
async fn the_http_test_api_answers_through_the_guard_and_keeps_secrets_out() {
    let app = TestApp::spawn_api_only().await;
    let upstream = Upstream::start().await;
    let token = app.user("http-test@example.com").await;

    let (status, answer) = app
        .post_json(
            "/api/v1/tools/http/test",
            &token,
            &json!({"url": upstream.url("/echo?x=1"), "method": "put",
                    "headers": {"X-Probe": "yes"}, "body": {"a": 1},
                    "auth": {"type": "bearer", "token": GOOD_KEY}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status_code"], 200);
    assert_eq!(answer["is_json"], true);
    assert_eq!(answer["body_truncated"], false);
    assert_eq!(answer["body"]["method"], "PUT");
    assert_eq!(answer["body"]["headers"]["x-probe"], "yes");
    assert_eq!(answer["body"]["body"], "{\"a\":1}");
    assert!(answer["duration_ms"].is_u64());
    // The echo reflected the token; the answer does not carry it.
    assert_eq!(
        upstream.echoed()[0]["headers"]["authorization"],
        format!("Bearer {GOOD_KEY}")
    );
    assert!(!answer.to_string().contains(GOOD_KEY), "{answer}");

    // A stored credential instead of inline auth.
    let basic = app
        .credential(
            &token,
            "basic",
            "basic_auth",
            json!({"username": "ada", "password": GOOD_PASSWORD}),
        )
        .await;
    let (status, answer) = app
        .post_json(
            "/api/v1/tools/http/test",
            &token,
            &json!({"url": upstream.url("/protected"), "credential_id": basic}),
        )
        .await;
    assert_eq!(
        (status, answer["status_code"].clone()),
        (StatusCode::OK, json!(200)),
        "{answer}"
    );

    // A long answer is cut at 256 KiB and says so.
    let (status, answer) = app
        .post_json(
            "/api/v1/tools/http/test",
            &token,
            &json!({"url": upstream.url("/big?bytes=300000")}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["body_truncated"], true);
    assert_eq!(answer["body"].as_str().unwrap().len(), 256 * 1024);

    // No answer at all is reported, not a server error.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let (status, answer) = app
        .post_json(
            "/api/v1/tools/http/test",
            &token,
            &json!({"url": format!("http://127.0.0.1:{closed_port}/"), "timeout": 5}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(
        answer["status_code"].is_null() && answer["error"].is_string(),
        "{answer}"
    );

    // Internal addresses the operator did not allow, bad input: 422 naming what is wrong.
    for (body, says) in [
        (json!({"url": "http://10.0.0.1/"}), "SSRF guard"),
        (json!({"url": "http://169.254.169.254/"}), "SSRF guard"),
        (json!({"url": "file:///etc/passwd"}), "only http and https"),
        (json!({"url": "not a url"}), "url"),
        (
            json!({"url": upstream.url("/echo"), "method": "TRACE"}),
            "method",
        ),
        (
            json!({"url": upstream.url("/echo"), "timeout": 0}),
            "timeout",
        ),
        (
            json!({"url": upstream.url("/echo"), "headers": {"bad header": "x"}}),
            "header `bad header` is not a valid name",
        ),
        (
            json!({"url": upstream.url("/echo"), "auth": {"type": "bearer"}}),
            "auth.token",
        ),
    ] {
        let (status, answer) = app
            .post_json("/api/v1/tools/http/test", &token, &body)
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        // The message starts with the field at fault.
        assert!(message.contains(says), "{body}: {answer}");
        assert!(
            !says.starts_with("header") || message.starts_with("header"),
            "{body}: {answer}"
        );
    }
    let (status, _) = app
        .post_json(
            "/api/v1/tools/http/test",
            &token,
            &json!({"url": upstream.url("/echo"), "credential_id": uuid::Uuid::new_v4()}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let anonymous = app
        .request(Method::POST, "/api/v1/tools/http/test", None)
        .json(&json!({"url": upstream.url("/echo")}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    // At most 30 a minute per user; another user is not held back.
    let mut limited = None;
    for _ in 0..40 {
        let response = app
            .request(Method::POST, "/api/v1/tools/http/test", Some(&token))
            .json(&json!({"url": upstream.url("/echo")}))
            .send()
            .await
            .unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            break;
        }
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert!(limited.is_some(), "never limited");
    let other = app.user("http-test-other@example.com").await;
    let (status, _) = app
        .post_json(
            "/api/v1/tools/http/test",
            &other,
            &json!({"url": upstream.url("/echo")}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn credentials_are_tested_against_their_service_and_the_verdict_cached_until_they_change() {
    let app = TestApp::spawn_api_only().await;
    let upstream = Upstream::start().await;
    let token = app.user("cred-test@example.com").await;
    let other = app.user("cred-test-other@example.com").await;
    let base_url = upstream.url("/v1");
    let good = app
        .credential(
            &token,
            "local llm",
            "openai_compatible",
            json!({"base_url": base_url, "api_key": GOOD_KEY}),
        )
        .await;
    let test = |id: String, body: Value| {
        let app = &app;
        let token = token.clone();
        async move {
            app.post_json(&format!("/api/v1/credentials/{id}/test"), &token, &body)
                .await
        }
    };

    let (status, verdict) = test(good.clone(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{verdict}");
    assert_eq!(verdict["verdict"], "valid", "{verdict}");
    assert_eq!(verdict["valid"], true);
    assert_eq!(verdict["cached"], false);
    assert!(!verdict.to_string().contains(GOOD_KEY));
    // Within 10 minutes the verdict comes from the cache: no second call.
    let (_, again) = test(good.clone(), json!({})).await;
    assert_eq!(again["cached"], true, "{again}");
    assert_eq!(
        upstream
            .seen
            .model_calls
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );

    // A change to the credential is checked afresh: now refused.
    let (status, _) = app
        .put_json(
            &format!("/api/v1/credentials/{good}"),
            &token,
            &json!({"data": {"api_key": "sk-wrong-key-000000000000"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, changed) = test(good.clone(), json!({})).await;
    assert_eq!(changed["verdict"], "invalid", "{changed}");
    assert_eq!(changed["cached"], false);
    assert_eq!(changed["status_code"], 401);
    assert_eq!(
        upstream
            .seen
            .model_calls
            .load(std::sync::atomic::Ordering::SeqCst),
        2
    );

    // Tavily and Cohere with their base URLs, a generic credential with a HEAD of `url`.
    let tavily = app
        .credential(
            &token,
            "search",
            "tavily",
            json!({"api_key": GOOD_KEY, "base_url": upstream.base}),
        )
        .await;
    let (_, verdict) = test(tavily, json!({})).await;
    assert_eq!(verdict["verdict"], "valid", "{verdict}");
    let cohere = app
        .credential(
            &token,
            "rerank",
            "cohere",
            json!({"api_key": "sk-bad-cohere-key-00000000", "base_url": upstream.base}),
        )
        .await;
    let (_, verdict) = test(cohere, json!({})).await;
    assert_eq!(verdict["verdict"], "invalid", "{verdict}");
    let basic = app
        .credential(
            &token,
            "site",
            "basic_auth",
            json!({"username": "ada", "password": GOOD_PASSWORD}),
        )
        .await;
    let (status, verdict) = test(basic.clone(), json!({"url": upstream.url("/protected")})).await;
    assert_eq!(status, StatusCode::OK, "{verdict}");
    assert_eq!(verdict["verdict"], "valid", "{verdict}");
    let (status, missing) = test(basic.clone(), json!({})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(missing.to_string().contains("url"), "{missing}");
    let (status, refused) = test(basic, json!({"url": "http://10.9.8.7/"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.to_string().contains("SSRF guard"), "{refused}");

    // Another user's credential is not found.
    let (status, _) = app
        .post_json(
            &format!("/api/v1/credentials/{good}/test"),
            &other,
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}

//! Manual workouts, the history, changes, deletion, visibility and idempotent creation.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{assert_detail_says, assert_problem, create, manual_run, spawn_app};

#[tokio::test]
async fn a_manual_workout_keeps_what_the_person_knows_and_nulls_the_rest() {
    let app = spawn_app().await;
    let athlete = app.new_account().await;
    let activity = create(&app, &athlete.access_token, manual_run(3, 5000.0)).await;
    assert_eq!(activity["status"], "finished");
    assert_eq!(activity["source"], "manual");
    assert_eq!(activity["owner_id"], athlete.user_id.to_string());
    assert_eq!(activity["summary"]["elapsed_time_s"], 1800.0);
    assert_eq!(activity["summary"]["distance_m"], 5000.0);
    assert_eq!(activity["summary"]["avg_heart_rate"], Value::Null);
    assert_eq!(
        activity["visibility"], "followers",
        "the owner's default visibility"
    );
    let start =
        chrono::DateTime::parse_from_rfc3339(activity["start_time"].as_str().expect("start"))
            .expect("rfc3339");
    let end = chrono::DateTime::parse_from_rfc3339(activity["end_time"].as_str().expect("end"))
        .expect("rfc3339");
    assert_eq!((end - start).num_seconds(), 1800);
}

#[tokio::test]
async fn bad_workouts_are_refused_with_a_reason_and_nothing_is_stored() {
    let app = spawn_app().await;
    let athlete = app.new_account().await;
    let token = &athlete.access_token;
    let now = chrono::Utc::now();
    let hour_ago = (now - chrono::Duration::hours(1)).to_rfc3339();
    let two_hours_ago = (now - chrono::Duration::hours(2)).to_rfc3339();
    for (body, expected) in [
        (json!({"sport": "quidditch"}), "sport"),
        (
            json!({"sport": "run", "status": "finished", "summary": {"elapsed_time_s": 60}}),
            "start_time",
        ),
        (
            json!({"sport": "run", "status": "finished", "start_time": hour_ago}),
            "summary",
        ),
        (
            json!({"sport": "run", "status": "finished", "start_time": hour_ago, "summary": {"elapsed_time_s": -60}}),
            "elapsed_time_s",
        ),
        (
            json!({"sport": "run", "status": "finished", "start_time": hour_ago, "end_time": two_hours_ago, "summary": {"elapsed_time_s": 60}}),
            "before start_time",
        ),
        (
            json!({"sport": "run", "status": "finished", "start_time": hour_ago, "summary": {"elapsed_time_s": 600, "moving_time_s": 900}}),
            "moving_time_s",
        ),
        (
            json!({"sport": "run", "status": "finished", "start_time": hour_ago, "summary": {"elapsed_time_s": 600, "distance_m": -5}}),
            "distance_m",
        ),
        (
            json!({"sport": "run", "status": "finished", "start_time": (now + chrono::Duration::days(1)).to_rfc3339(), "summary": {"elapsed_time_s": 600}}),
            "future",
        ),
        (json!({"sport": "run", "status": "paused"}), "status"),
        (json!({"sport": "run", "name": ""}), "name"),
        (json!({"sport": "run", "colour": "red"}), "colour"),
    ] {
        let response = app.post_authed("/v1/activities", token, Some(&body)).await;
        let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
        assert_detail_says(&problem, expected);
    }
    let list: Value = app
        .get_authed("/v1/activities", token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(list["activities"].as_array().map(Vec::len), Some(0));
    let anonymous = app
        .post_json("/v1/activities", &json!({"sport": "run"}))
        .await;
    assert_problem(anonymous, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn the_history_is_newest_first_filtered_and_paged_with_a_cursor() {
    let app = spawn_app().await;
    let athlete = app.new_account().await;
    let other = app.new_account().await;
    let token = &athlete.access_token;
    for hours_ago in [30, 10, 20, 40, 50] {
        create(
            &app,
            token,
            manual_run(hours_ago, 1000.0 * hours_ago as f64),
        )
        .await;
    }
    let mut ride = manual_run(5, 20_000.0);
    ride["sport"] = json!("ride");
    create(&app, token, ride).await;
    create(&app, &other.access_token, manual_run(1, 1000.0)).await;

    let mut distances = Vec::new();
    let mut path = "/v1/activities?sport=run&limit=2".to_owned();
    loop {
        let page: Value = app
            .get_authed(&path, token)
            .await
            .json()
            .await
            .expect("json");
        for activity in page["activities"].as_array().expect("array") {
            assert_eq!(activity["owner_id"], athlete.user_id.to_string());
            distances.push(
                activity["summary"]["distance_m"]
                    .as_f64()
                    .expect("distance"),
            );
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/activities?sport=run&limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(
        distances,
        vec![10_000.0, 20_000.0, 30_000.0, 40_000.0, 50_000.0]
    );

    let all: Value = app
        .get_authed("/v1/activities", token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(all["activities"].as_array().map(Vec::len), Some(6));
    assert_eq!(all["activities"][0]["sport"], "ride", "newest first");
    let after = (chrono::Utc::now() - chrono::Duration::hours(25)).to_rfc3339();
    let recent: Value = app
        .client
        .get(app.url("/v1/activities"))
        .query(&[("after", after.as_str()), ("status", "finished")])
        .bearer_auth(token)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(recent["activities"].as_array().map(Vec::len), Some(3));
    for bad in [
        "/v1/activities?sport=chess",
        "/v1/activities?limit=500",
        "/v1/activities?cursor=zz",
        "/v1/activities?status=sleeping",
    ] {
        assert_problem(app.get_authed(bad, token).await, StatusCode::BAD_REQUEST).await;
    }
}

#[tokio::test]
async fn others_see_public_activities_only() {
    let app = spawn_app().await;
    let owner = app.new_account().await;
    let viewer = app.new_account().await;
    let mut public = manual_run(2, 1000.0);
    public["visibility"] = json!("public");
    let public = create(&app, &owner.access_token, public).await;
    let mut followers = manual_run(3, 1000.0);
    followers["visibility"] = json!("followers");
    let followers = create(&app, &owner.access_token, followers).await;
    let mut private = manual_run(4, 1000.0);
    private["visibility"] = json!("private");
    let private = create(&app, &owner.access_token, private).await;

    let path =
        |activity: &Value| format!("/v1/activities/{}", activity["id"].as_str().expect("id"));
    assert_eq!(
        app.get_authed(&path(&public), &viewer.access_token)
            .await
            .status(),
        StatusCode::OK
    );
    for hidden in [&followers, &private] {
        assert_problem(
            app.get_authed(&path(hidden), &viewer.access_token).await,
            StatusCode::NOT_FOUND,
        )
        .await;
        assert_eq!(
            app.get_authed(&path(hidden), &owner.access_token)
                .await
                .status(),
            StatusCode::OK
        );
    }
    // Nobody else can change or delete them, whatever their visibility.
    for target in [&public, &private] {
        let patch = app
            .patch_authed(
                &path(target),
                &viewer.access_token,
                &json!({"name": "mine now"}),
            )
            .await;
        assert_problem(patch, StatusCode::NOT_FOUND).await;
        assert_problem(
            app.delete_authed(&path(target), &viewer.access_token).await,
            StatusCode::NOT_FOUND,
        )
        .await;
    }
    let list: Value = app
        .get_authed("/v1/activities", &viewer.access_token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        list["activities"].as_array().map(Vec::len),
        Some(0),
        "a list shows the caller's own only"
    );
}

#[tokio::test]
async fn patch_changes_the_given_fields_and_delete_removes_the_activity() {
    let app = spawn_app().await;
    let athlete = app.new_account().await;
    let token = &athlete.access_token;
    let activity = create(&app, token, manual_run(2, 8000.0)).await;
    let path = format!("/v1/activities/{}", activity["id"].as_str().expect("id"));
    let gear = uuid::Uuid::now_v7();
    let patched: Value = app
        .patch_authed(
            &path,
            token,
            &json!({"name": "Tempo", "sport": "trail_run", "visibility": "public", "gear_id": gear, "commute": true}),
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(patched["name"], "Tempo");
    assert_eq!(patched["sport"], "trail_run");
    assert_eq!(patched["gear_id"], gear.to_string());
    assert_eq!(patched["commute"], true);
    assert_eq!(patched["summary"]["distance_m"], 8000.0, "untouched");
    let cleared: Value = app
        .patch_authed(&path, token, &json!({"gear_id": null}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(cleared["gear_id"], Value::Null);
    for bad in [
        json!({"sport": "darts"}),
        json!({"name": ""}),
        json!({"status": "planned"}),
        json!({"visibility": "friends"}),
    ] {
        assert_problem(
            app.patch_authed(&path, token, &bad).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
    assert_eq!(
        app.delete_authed(&path, token).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_problem(app.get_authed(&path, token).await, StatusCode::NOT_FOUND).await;
    assert_problem(app.delete_authed(&path, token).await, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn a_retried_creation_with_the_same_idempotency_key_creates_one_workout() {
    let app = spawn_app().await;
    let athlete = app.new_account().await;
    let body = manual_run(2, 4200.0);
    let send = |key: &'static str, body: Value| {
        let app = &app;
        let token = athlete.access_token.clone();
        async move {
            app.client
                .post(app.url("/v1/activities"))
                .bearer_auth(token)
                .header("idempotency-key", key)
                .json(&body)
                .send()
                .await
                .expect("sent")
        }
    };
    let first = send("retry-1", body.clone()).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.expect("json");
    let again = send("retry-1", body.clone()).await;
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.expect("json");
    assert_eq!(again["id"], first["id"]);
    let mut other_body = body.clone();
    other_body["summary"]["distance_m"] = json!(9999.0);
    let misuse = send("retry-1", other_body).await;
    assert_problem(misuse, StatusCode::UNPROCESSABLE_ENTITY).await;
    let list: Value = app
        .get_authed("/v1/activities", &athlete.access_token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(list["activities"].as_array().map(Vec::len), Some(1));
    // Another user may use the same key for their own request.
    let other = app.new_account().await;
    let theirs = app
        .client
        .post(app.url("/v1/activities"))
        .bearer_auth(&other.access_token)
        .header("idempotency-key", "retry-1")
        .json(&body)
        .send()
        .await
        .expect("sent");
    assert_eq!(theirs.status(), StatusCode::CREATED);
    assert_ne!(
        theirs.json::<Value>().await.expect("json")["id"],
        first["id"]
    );
}

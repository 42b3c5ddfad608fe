//! `GET /v1/activities/{id}/streams` and erasure of a deleted user's samples.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{assert_problem, post_batch, recording, samples, spawn_app, streams_with};

#[tokio::test]
async fn downsampled_streams_keep_equal_lengths_and_full_keeps_everything() {
    let app = spawn_app().await;
    let ride = recording(&app, "ride", "private").await;
    for seq in 0..4 {
        let response = post_batch(&app, &ride, seq, samples(&ride, seq as i64 * 900, 900)).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
    let token = &ride.account.access_token;
    let full = streams_with(&app, token, &ride.activity_id, "?resolution=full", 3600).await;
    assert_eq!(full["time"]["data"].as_array().map(Vec::len), Some(3600));
    for (resolution, points) in [("low", 100), ("medium", 1000)] {
        let streams: Value = app
            .get_authed(
                &format!(
                    "/v1/activities/{}/streams?resolution={resolution}",
                    ride.activity_id
                ),
                token,
            )
            .await
            .json()
            .await
            .expect("json");
        let lengths: Vec<usize> = streams
            .as_object()
            .expect("object")
            .values()
            .map(|stream| stream["data"].as_array().map(Vec::len).unwrap_or(0))
            .collect();
        assert!(
            lengths.iter().all(|length| *length == points),
            "{resolution}: {lengths:?}"
        );
        assert_eq!(streams["heartrate"]["original_size"], 3600);
        assert_eq!(streams["heartrate"]["resolution"], resolution);
        // The shape is kept: the extremes of heart rate survive downsampling.
        let max = streams["heartrate"]["data"]
            .as_array()
            .expect("array")
            .iter()
            .filter_map(Value::as_f64)
            .fold(0.0, f64::max);
        assert_eq!(max, 159.0, "{resolution}");
    }
    let distance = full["distance"]["data"].as_array().expect("array");
    let last = distance.last().and_then(Value::as_f64).expect("distance");
    // 3599 steps of 0.00005 degrees of latitude, about 20 km.
    assert!((last - 20_010.0).abs() < 50.0, "{last}");
    for bad in ["?types=heartrate,mood", "?resolution=ultra"] {
        let response = app
            .get_authed(
                &format!("/v1/activities/{}/streams{bad}", ride.activity_id),
                token,
            )
            .await;
        assert_problem(response, StatusCode::BAD_REQUEST).await;
    }
}

#[tokio::test]
async fn the_activity_visibility_decides_who_may_read_its_streams() {
    let app = spawn_app().await;
    let private = recording(&app, "run", "private").await;
    let public = recording(&app, "run", "public").await;
    let viewer = app.new_account().await;
    for (rec, seq) in [(&private, 1), (&public, 1)] {
        assert_eq!(
            post_batch(&app, rec, seq, samples(rec, 0, 30))
                .await
                .status(),
            StatusCode::ACCEPTED
        );
    }
    streams_with(
        &app,
        &public.account.access_token,
        &public.activity_id,
        "",
        30,
    )
    .await;
    streams_with(
        &app,
        &private.account.access_token,
        &private.activity_id,
        "",
        30,
    )
    .await;
    let seen = streams_with(&app, &viewer.access_token, &public.activity_id, "", 30).await;
    assert_eq!(seen["heartrate"]["original_size"], 30);
    let hidden = app
        .get_authed(
            &format!("/v1/activities/{}/streams", private.activity_id),
            &viewer.access_token,
        )
        .await;
    assert_problem(hidden, StatusCode::NOT_FOUND).await;
    let missing = app
        .get_authed(
            &format!("/v1/activities/{}/streams", uuid::Uuid::now_v7()),
            &viewer.access_token,
        )
        .await;
    assert_problem(missing, StatusCode::NOT_FOUND).await;
    let anonymous = app
        .client
        .get(app.url(&format!("/v1/activities/{}/streams", public.activity_id)))
        .send()
        .await
        .expect("sent");
    assert_problem(anonymous, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn deleting_the_account_deletes_its_samples() {
    let app = spawn_app().await;
    let ride = recording(&app, "ride", "public").await;
    let witness = app.new_account().await;
    assert_eq!(
        post_batch(&app, &ride, 1, samples(&ride, 0, 60))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    streams_with(&app, &witness.access_token, &ride.activity_id, "", 60).await;
    let influx =
        stride_telemetry::influx::Influx::new(&app.config.influx_url, &app.config.influx_database);
    let user = ride.account.user_id.to_string();
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1)).timestamp_millis();
    let before = influx
        .samples(&user, None, 0, tomorrow)
        .await
        .expect("query");
    assert_eq!(before.len(), 60);
    assert_eq!(
        app.delete_authed("/v1/me", &ride.account.access_token)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let mut remaining = before.len();
    for _ in 0..100 {
        remaining = influx
            .samples(&user, None, 0, tomorrow)
            .await
            .expect("query")
            .len();
        if remaining == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(remaining, 0, "the deleted user's samples are gone");
}

#[tokio::test]
async fn finishing_a_live_workout_summarises_its_stored_samples() {
    let app = spawn_app().await;
    let ride = recording(&app, "ride", "private").await;
    let token = &ride.account.access_token;
    let profile = app
        .patch_authed(
            "/v1/me",
            token,
            &serde_json::json!({"max_heart_rate": 190, "resting_heart_rate": 50, "weight_kg": 70}),
        )
        .await;
    assert_eq!(profile.status(), StatusCode::OK);
    for seq in 0..2 {
        let response = post_batch(&app, &ride, seq, samples(&ride, seq as i64 * 600, 600)).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
    // Finished right after the last 202, as a device would: nothing accepted may be missing.
    let finished: Value = app
        .post_authed(
            &format!("/v1/activities/{}/finish", ride.activity_id),
            token,
            None,
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(finished["status"], "finished");
    let summary = &finished["summary"];
    // 1200 samples, 1 s apart, 5.5 m/s along a straight line: about 6.6 km.
    let distance = summary["distance_m"].as_f64().expect("distance");
    assert!((distance - 6_660.0).abs() < 100.0, "{summary}");
    let avg_hr = summary["avg_heart_rate"].as_f64().expect("heart rate");
    assert!((avg_hr - 139.5).abs() < 1.0, "{summary}");
    assert_eq!(summary["max_heart_rate"], 159.0);
    assert_eq!(summary["max_power_w"], 249.0);
    assert!(
        summary["normalized_power_w"]
            .as_f64()
            .is_some_and(|np| np >= 224.0)
    );
    assert!(
        summary["hr_zone_s"]
            .as_array()
            .is_some_and(|zones| zones.len() == 5)
    );
    assert!(
        summary["calories_kcal"]
            .as_f64()
            .is_some_and(|kcal| kcal > 0.0)
    );
    // Elapsed is the wall clock since the start two hours ago; moving time is what was ridden.
    assert!(
        summary["elapsed_time_s"]
            .as_f64()
            .is_some_and(|s| s > 7_000.0),
        "{summary}"
    );
    let moving = summary["moving_time_s"].as_f64().expect("moving");
    assert!((moving - 1_200.0).abs() < 10.0, "{summary}");
    assert!(
        finished["splits"]
            .as_array()
            .is_some_and(|splits| splits.len() >= 6)
    );
    let efforts = finished["best_efforts"].as_array().expect("best efforts");
    assert!(
        efforts.iter().any(|effort| effort["name"] == "5min"),
        "{efforts:?}"
    );
}

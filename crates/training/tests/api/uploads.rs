//! `/v1/uploads` with the real recordings in the shared fixtures.

use std::{io::Write as _, path::PathBuf, time::Duration};

use reqwest::{StatusCode, multipart};
use serde_json::Value;

use crate::helpers::{TestApp, assert_problem, spawn, test_config};

async fn spawn_platform() -> TestApp {
    spawn(
        &[
            &stride_identity::SERVICE,
            &stride_training::SERVICE,
            &stride_telemetry::SERVICE,
        ],
        test_config(),
    )
    .await
}

fn fixture(path: &str) -> Vec<u8> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/workouts");
    std::fs::read(root.join(path)).expect("fixture")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("compressed");
    encoder.finish().expect("compressed")
}

async fn upload(
    app: &TestApp,
    token: &str,
    file_name: &str,
    bytes: Vec<u8>,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut form = multipart::Form::new().part(
        "file",
        multipart::Part::bytes(bytes).file_name(file_name.to_owned()),
    );
    for (name, value) in extra {
        form = form.text(name.to_string(), value.to_string());
    }
    app.client
        .post(app.url("/v1/uploads"))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .expect("sent")
}

/// Uploads and waits until the upload is no longer processing.
async fn settled(
    app: &TestApp,
    token: &str,
    file_name: &str,
    bytes: Vec<u8>,
    extra: &[(&str, &str)],
) -> Value {
    let response = upload(app, token, file_name, bytes, extra).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let accepted: Value = response.json().await.expect("json");
    assert_eq!(accepted["status"], "processing");
    let path = format!("/v1/uploads/{}", accepted["id"].as_str().expect("id"));
    for _ in 0..200 {
        let status: Value = app
            .get_authed(&path, token)
            .await
            .json()
            .await
            .expect("json");
        if status["status"] != "processing" {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the upload never settled");
}

#[tokio::test]
async fn an_uploaded_gpx_becomes_an_activity_that_agrees_with_the_reference_decoder() {
    let app = spawn_platform().await;
    let athlete = app.new_account().await;
    let token = &athlete.access_token;
    let status = settled(
        &app,
        token,
        "garmin-activity.gpx",
        fixture("gpx/garmin-activity.gpx"),
        &[("name", "Evening hike")],
    )
    .await;
    assert_eq!(status["status"], "ready", "{status}");
    assert_eq!(status["error"], Value::Null);
    let id = status["activity_id"].as_str().expect("activity");
    let activity: Value = app
        .get_authed(&format!("/v1/activities/{id}"), token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(activity["source"], "upload");
    assert_eq!(activity["status"], "finished");
    assert_eq!(activity["name"], "Evening hike");
    assert_eq!(activity["start_time"], "2017-07-29T14:46:35Z");
    let summary = &activity["summary"];
    // The reference decoder's figures (expected.json), within the fixtures' tolerances.
    let distance = summary["distance_m"].as_f64().expect("distance");
    assert!(
        (distance - 12_835.545).abs() / 12_835.545 < 0.01,
        "{summary}"
    );
    assert_eq!(summary["elapsed_time_s"], 5498.0);
    let heart_rate = summary["avg_heart_rate"].as_f64().expect("heart rate");
    assert!((heart_rate - 145.5172).abs() <= 1.0, "{summary}");
    let gain = summary["elevation_gain_m"].as_f64().expect("gain");
    assert!((gain - 228.84).abs() / 228.84 <= 0.10, "{summary}");
    assert!(
        activity["splits"]
            .as_array()
            .is_some_and(|splits| splits.len() >= 12)
    );
    // The samples went to telemetry: streams work as for a live workout.
    let mut size = 0;
    for _ in 0..100 {
        let streams: Value = app
            .get_authed(
                &format!("/v1/activities/{id}/streams?types=heartrate"),
                token,
            )
            .await
            .json()
            .await
            .expect("json");
        size = streams["heartrate"]["original_size"].as_u64().unwrap_or(0);
        if size == 988 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(size, 988);
}

#[tokio::test]
async fn the_same_workout_uploaded_again_is_reported_as_a_duplicate() {
    let app = spawn_platform().await;
    let athlete = app.new_account().await;
    let token = &athlete.access_token;
    let first = settled(
        &app,
        token,
        "run.fit",
        fixture("fit/garmin-fenix-5-run.fit"),
        &[],
    )
    .await;
    assert_eq!(first["status"], "ready", "{first}");
    let again = settled(
        &app,
        token,
        "run.fit",
        fixture("fit/garmin-fenix-5-run.fit"),
        &[],
    )
    .await;
    assert_eq!(again["status"], "error");
    assert_eq!(again["activity_id"], first["activity_id"]);
    assert!(
        again["error"]
            .as_str()
            .is_some_and(|e| e.contains("duplicate")),
        "{again}"
    );
    // The same workout compressed is another file of the same workout.
    let gzipped = settled(
        &app,
        token,
        "run.fit.gz",
        gzip(&fixture("fit/garmin-fenix-5-run.fit")),
        &[],
    )
    .await;
    assert_eq!(gzipped["status"], "error");
    assert_eq!(gzipped["activity_id"], first["activity_id"]);
    let list: Value = app
        .get_authed("/v1/activities", token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(list["activities"].as_array().map(Vec::len), Some(1));
    // Another athlete may upload the same file.
    let other = app.new_account().await;
    let theirs = settled(
        &app,
        &other.access_token,
        "run.fit",
        fixture("fit/garmin-fenix-5-run.fit"),
        &[],
    )
    .await;
    assert_eq!(theirs["status"], "ready");
}

#[tokio::test]
async fn gzipped_tcx_and_a_chosen_sport_are_taken() {
    let app = spawn_platform().await;
    let athlete = app.new_account().await;
    let token = &athlete.access_token;
    let status = settled(
        &app,
        token,
        "ride.tcx.gz",
        gzip(&fixture("tcx/mapmyride_biking.tcx")),
        &[("sport", "mountain_bike"), ("external_id", "mmr-1")],
    )
    .await;
    assert_eq!(status["status"], "ready", "{status}");
    let activity: Value = app
        .get_authed(
            &format!(
                "/v1/activities/{}",
                status["activity_id"].as_str().expect("id")
            ),
            token,
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(activity["sport"], "mountain_bike");
    assert_eq!(activity["external_id"], "mmr-1");
}

#[tokio::test]
async fn broken_files_end_as_errors_a_person_understands_and_store_nothing() {
    let app = spawn_platform().await;
    let athlete = app.new_account().await;
    let token = &athlete.access_token;
    for (name, bytes, expected) in [
        (
            "truncated.fit",
            fixture("edge/activity-unexpected-eof.fit"),
            "truncated",
        ),
        ("bad-crc.fit", fixture("edge/activity-filecrc.fit"), "CRC"),
        (
            "no-times.gpx",
            fixture("edge/cerknicko-without-times.gpx"),
            "timestamp",
        ),
        (
            "notes.fit",
            b"this is a shopping list, not a workout".to_vec(),
            "not a FIT, GPX or TCX",
        ),
        (
            "cut.gpx",
            fixture("gpx/garmin-activity.gpx")[..2000].to_vec(),
            "could not be read",
        ),
    ] {
        let status = settled(&app, token, name, bytes, &[]).await;
        assert_eq!(status["status"], "error", "{name}");
        assert_eq!(status["activity_id"], Value::Null, "{name}");
        let error = status["error"].as_str().unwrap_or_default();
        assert!(error.contains(expected), "{name}: {error}");
    }
    let list: Value = app
        .get_authed("/v1/activities", token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(list["activities"].as_array().map(Vec::len), Some(0));
}

#[tokio::test]
async fn bad_upload_requests_are_4xx_problems() {
    let app = spawn_platform().await;
    let athlete = app.new_account().await;
    let token = &athlete.access_token;
    let huge = vec![b'x'; 51 * 1024 * 1024];
    assert_problem(
        upload(&app, token, "huge.fit", huge, &[]).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    let no_file = app
        .client
        .post(app.url("/v1/uploads"))
        .bearer_auth(token)
        .multipart(multipart::Form::new().text("name", "nothing"))
        .send()
        .await
        .expect("sent");
    assert_problem(no_file, StatusCode::BAD_REQUEST).await;
    let sport = upload(
        &app,
        token,
        "a.gpx",
        fixture("gpx/garmin-activity.gpx"),
        &[("sport", "quidditch")],
    )
    .await;
    assert_problem(sport, StatusCode::BAD_REQUEST).await;
    let empty = upload(&app, token, "a.gpx", Vec::new(), &[]).await;
    assert_problem(empty, StatusCode::BAD_REQUEST).await;
    let anonymous = app
        .client
        .post(app.url("/v1/uploads"))
        .multipart(multipart::Form::new().part("file", multipart::Part::bytes(b"x".to_vec())))
        .send()
        .await
        .expect("sent");
    assert_problem(anonymous, StatusCode::UNAUTHORIZED).await;
    // Somebody else's upload is not there for you.
    let stranger = app.new_account().await;
    let accepted: Value = upload(
        &app,
        token,
        "b.tcx",
        fixture("tcx/running_activity_1.tcx"),
        &[],
    )
    .await
    .json()
    .await
    .expect("json");
    let theirs = app
        .get_authed(
            &format!("/v1/uploads/{}", accepted["id"].as_str().expect("id")),
            &stranger.access_token,
        )
        .await;
    assert_problem(theirs, StatusCode::NOT_FOUND).await;
}

//! `stride sim` against the whole platform in-process: simulated devices set themselves up,
//! stream their workouts and finish them through the public API, and the samples come back
//! as streams.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use stride::sim::{Options, Report, SportChoice};
use stride_testkit::{TestApp, spawn, test_config};

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

/// The activity as another athlete sees it.
async fn activity(app: &TestApp, token: &str, id: &str) -> Value {
    let response = app.get_authed(&format!("/v1/activities/{id}"), token).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("json")
}

/// The full-resolution streams once `expected` samples are queryable (the writer drains the
/// buffer into InfluxDB in the background); panics after 20 seconds.
async fn streams_with(app: &TestApp, token: &str, id: &str, expected: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let response = app
            .get_authed(
                &format!("/v1/activities/{id}/streams?resolution=full"),
                token,
            )
            .await;
        let status = response.status();
        let streams: Value = response.json().await.unwrap_or(Value::Null);
        if status == StatusCode::OK && streams["heartrate"]["original_size"] == expected {
            return streams;
        }
        assert!(
            Instant::now() < deadline,
            "activity {id}: {status} {}",
            streams["heartrate"]["original_size"]
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn assert_complete(report: &Report, samples: u64) {
    assert_eq!(report.failed_devices(), 0, "{report}");
    for device in &report.devices {
        assert!(device.activity_id.is_some(), "{report}");
        assert_eq!(device.samples_accepted, samples, "{report}");
        assert_eq!(device.samples_sent, samples, "{report}");
        assert_eq!(device.duplicates, 0, "{report}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simulated_devices_record_whole_workouts_that_read_back_as_streams() {
    let app = spawn_platform().await;
    let report = stride::sim::run(Options {
        base_url: app.address.clone(),
        devices: 2,
        speedup: 600.0,
        duration_mins: 3.0,
        batch_secs: 10,
        sport: SportChoice::Mixed,
        protobuf: false,
        keep_active: false,
        seed: Some(2024),
    })
    .await
    .expect("the simulation runs");
    assert_complete(&report, 180);
    assert_eq!(report.batches(), 2 * 18, "{report}");
    assert!(report.devices.iter().all(|device| device.finished));
    let printed = report.to_string();

    // Anyone may open the public workouts the report names.
    let viewer = app.new_account().await;
    for (device, sport) in report.devices.iter().zip(["run", "ride"]) {
        let id = device.activity_id.expect("an activity").to_string();
        assert!(printed.contains(&id), "the report names {id}:\n{printed}");
        let activity = activity(&app, &viewer.access_token, &id).await;
        assert_eq!(activity["status"], "finished", "{activity}");
        assert_eq!(activity["sport"], sport);
        assert_eq!(activity["visibility"], "public");

        let streams = streams_with(&app, &viewer.access_token, &id, 180).await;
        for name in [
            "time",
            "latlng",
            "distance",
            "altitude",
            "heartrate",
            "cadence",
        ] {
            let data = streams[name]["data"].as_array().expect(name);
            assert_eq!(data.len(), 180, "{name}");
        }
        let times = streams["time"]["data"].as_array().expect("time");
        assert_eq!(times[0].as_f64(), Some(0.0));
        assert_eq!(times[179].as_f64(), Some(179.0));
        let heart_rates: Vec<f64> = streams["heartrate"]["data"]
            .as_array()
            .expect("heart rate")
            .iter()
            .filter_map(Value::as_f64)
            .collect();
        assert_eq!(heart_rates.len(), 180);
        assert!(heart_rates.iter().all(|hr| (40.0..=200.0).contains(hr)));
        let distance = streams["distance"]["data"][179].as_f64().expect("distance");
        let watts = streams["watts"]["data"].as_array();
        match sport {
            "run" => {
                assert!((300.0..900.0).contains(&distance), "{distance} m in 3 min");
                assert!(
                    watts.is_none_or(|values| values.iter().all(Value::is_null)),
                    "runs have no power"
                );
            }
            _ => {
                assert!((700.0..2200.0).contains(&distance), "{distance} m in 3 min");
                let watts = watts.expect("rides have power");
                assert_eq!(watts.len(), 180);
                assert!(watts.iter().any(|value| value.as_f64() > Some(50.0)));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn protobuf_devices_can_leave_their_workouts_active() {
    let app = spawn_platform().await;
    let report = stride::sim::run(Options {
        base_url: format!("{}/", app.address),
        devices: 1,
        speedup: 1200.0,
        duration_mins: 2.0,
        batch_secs: 30,
        sport: SportChoice::Ride,
        protobuf: true,
        keep_active: true,
        seed: None,
    })
    .await
    .expect("the simulation runs");
    assert_complete(&report, 120);
    assert_eq!(report.batches(), 4, "{report}");
    let device = &report.devices[0];
    assert!(!device.finished);
    let id = device.activity_id.expect("an activity").to_string();

    let viewer = app.new_account().await;
    let activity = activity(&app, &viewer.access_token, &id).await;
    assert_eq!(activity["status"], "active", "{activity}");
    assert_eq!(activity["sport"], "ride");
    let streams = streams_with(&app, &viewer.access_token, &id, 120).await;
    assert_eq!(streams["watts"]["data"].as_array().map(Vec::len), Some(120));
}

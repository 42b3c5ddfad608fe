//! Wear from training's events: named and default gear, bikes and their components, moving
//! wear on update, taking it back on delete, alerts at 80% and 100%, reordered and repeated
//! events, and erasing a deleted user.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use stride_events::{
    Envelope,
    training::{ActivityDeleted, ActivityFinished, ActivityUpdated},
};
use stride_inventory::{events::GearWearThresholdReached, store};
use uuid::Uuid;

use crate::helpers::{
    create_gear, events_of, gear_when, hours_ago, id, republish, spawn_app, workout, worn_m,
};

async fn assert_incremental_equals_recomputed(app: &crate::helpers::TestApp, gear_ids: &[String]) {
    let db = app.database("inventory").await;
    let mut connection = db.acquire().await.expect("connection");
    for gear_id in gear_ids {
        let gear_id: Uuid = gear_id.parse().expect("uuid");
        let row = store::gear(&mut connection, gear_id)
            .await
            .expect("read")
            .expect("gear");
        let recomputed = store::recomputed_totals(&mut connection, gear_id)
            .await
            .expect("entries");
        let incremental = row.totals();
        assert_eq!(incremental.activities, recomputed.activities);
        assert!((incremental.distance_m - recomputed.distance_m).abs() < 1e-6);
        assert!((incremental.moving_time_s - recomputed.moving_time_s).abs() < 1e-6);
    }
}

#[tokio::test]
async fn workouts_wear_their_gear_or_the_default_and_the_wear_moves_and_goes_back() {
    let app = spawn_app().await;
    let athlete = app.new_account().await;
    let token = &athlete.access_token;
    let daily = create_gear(
        &app,
        token,
        json!({"kind": "shoes", "name": "Daily", "initial_distance_m": 50000.0}),
    )
    .await;
    let racers = create_gear(&app, token, json!({"kind": "shoes", "name": "Racers"})).await;
    let set = app
        .client
        .put(app.url("/v1/gear/defaults/run"))
        .bearer_auth(token)
        .json(&json!({"gear_id": id(&daily)}))
        .send()
        .await
        .expect("sent");
    assert_eq!(set.status(), StatusCode::OK);
    // Named gear, and the default for a workout that names none.
    workout(&app, token, "run", 10.0, hours_ago(30), Some(&id(&racers))).await;
    let unnamed = workout(&app, token, "run", 12.0, hours_ago(20), None).await;
    // No default for walks: no wear anywhere.
    workout(&app, token, "walk", 3.0, hours_ago(10), None).await;
    let racers_now = gear_when(&app, token, &id(&racers), |g| g["wear"]["activities"] == 1).await;
    assert_eq!(worn_m(&racers_now), 10_000.0);
    assert_eq!(racers_now["wear"]["moving_time_s"], 3000.0);
    let daily_now = gear_when(&app, token, &id(&daily), |g| g["wear"]["activities"] == 1).await;
    assert_eq!(worn_m(&daily_now), 62_000.0);
    // Recent use gives a forecast: 12 km in 28 days, 638 km to go.
    assert!(
        daily_now["wear"]["forecast_date"].is_string(),
        "{daily_now}"
    );

    // Moving the workout to the racers moves its wear.
    let path = format!("/v1/activities/{}", id(&unnamed));
    let patched = app
        .patch_authed(&path, token, &json!({"gear_id": id(&racers)}))
        .await;
    assert_eq!(patched.status(), StatusCode::OK);
    gear_when(&app, token, &id(&racers), |g| g["wear"]["activities"] == 2).await;
    let daily_now = gear_when(&app, token, &id(&daily), |g| g["wear"]["activities"] == 0).await;
    assert_eq!(worn_m(&daily_now), 50_000.0);
    assert_eq!(daily_now["wear"]["forecast_date"], Value::Null);
    // Deleting it takes its wear back.
    assert_eq!(
        app.delete_authed(&path, token).await.status(),
        StatusCode::NO_CONTENT
    );
    let racers_now = gear_when(&app, token, &id(&racers), |g| g["wear"]["activities"] == 1).await;
    assert_eq!(worn_m(&racers_now), 10_000.0);
    assert_incremental_equals_recomputed(&app, &[id(&daily), id(&racers)]).await;
}

#[tokio::test]
async fn a_ride_wears_the_bike_and_the_components_on_it_at_the_time() {
    let app = spawn_app().await;
    let athlete = app.new_account().await;
    let token = &athlete.access_token;
    let road = create_gear(&app, token, json!({"kind": "bike", "name": "Road"})).await;
    let gravel = create_gear(&app, token, json!({"kind": "bike", "name": "Gravel"})).await;
    let chain = create_gear(
        &app,
        token,
        json!({"kind": "component", "component_type": "chain", "name": "Chain",
               "bike_id": id(&road), "attached_at": hours_ago(100).to_rfc3339()}),
    )
    .await;
    let tyre = create_gear(
        &app,
        token,
        json!({"kind": "component", "component_type": "tyre", "name": "Tyre",
               "bike_id": id(&road), "attached_at": hours_ago(50).to_rfc3339()}),
    )
    .await;
    // Before the tyre went on; after; and one on the other bike.
    workout(&app, token, "ride", 40.0, hours_ago(70), Some(&id(&road))).await;
    workout(&app, token, "ride", 60.0, hours_ago(40), Some(&id(&road))).await;
    workout(&app, token, "ride", 25.0, hours_ago(30), Some(&id(&gravel))).await;
    let road_now = gear_when(&app, token, &id(&road), |g| g["wear"]["activities"] == 2).await;
    assert_eq!(worn_m(&road_now), 100_000.0);
    gear_when(&app, token, &id(&gravel), |g| g["wear"]["activities"] == 1).await;
    let chain_now = gear_when(&app, token, &id(&chain), |g| g["wear"]["activities"] == 2).await;
    assert_eq!(worn_m(&chain_now), 100_000.0);
    let tyre_now = gear_when(&app, token, &id(&tyre), |g| g["wear"]["activities"] == 1).await;
    assert_eq!(worn_m(&tyre_now), 60_000.0);

    // The chain moved to the gravel bike 35 hours ago: the gravel ride since then wears it,
    // the road ride before stays with it, and later road rides no longer do.
    let moved = app
        .patch_authed(
            &format!("/v1/gear/{}", id(&chain)),
            token,
            &json!({"bike_id": id(&gravel), "attached_at": hours_ago(35).to_rfc3339()}),
        )
        .await;
    assert_eq!(moved.status(), StatusCode::OK);
    let moved: Value = moved.json().await.expect("json");
    assert_eq!(moved["wear"]["activities"], 3);
    assert_eq!(worn_m(&moved), 125_000.0);
    workout(&app, token, "ride", 30.0, hours_ago(5), Some(&id(&road))).await;
    gear_when(&app, token, &id(&tyre), |g| g["wear"]["activities"] == 2).await;
    let chain_now = gear_when(&app, token, &id(&chain), |g| g["wear"]["activities"] == 3).await;
    assert_eq!(worn_m(&chain_now), 125_000.0);
    assert_incremental_equals_recomputed(&app, &[id(&road), id(&gravel), id(&chain), id(&tyre)])
        .await;
}

#[tokio::test]
async fn crossing_80_and_100_percent_opens_alerts_and_publishes_once_each() {
    let app = spawn_app().await;
    let athlete = app.new_account().await;
    let token = &athlete.access_token;
    let shoes = create_gear(
        &app,
        token,
        json!({"kind": "shoes", "name": "Short-lived", "limit_m": 10000.0}),
    )
    .await;
    workout(&app, token, "run", 8.5, hours_ago(30), Some(&id(&shoes))).await;
    gear_when(&app, token, &id(&shoes), |g| g["wear"]["activities"] == 1).await;
    let alerts: Value = app
        .get_authed("/v1/gear/alerts", token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        alerts["alerts"].as_array().expect("alerts").len(),
        1,
        "{alerts}"
    );
    assert_eq!(alerts["alerts"][0]["threshold_percent"], 80);
    assert_eq!(alerts["alerts"][0]["gear_id"], shoes["id"]);
    workout(&app, token, "run", 2.0, hours_ago(20), Some(&id(&shoes))).await;
    workout(&app, token, "run", 2.0, hours_ago(10), Some(&id(&shoes))).await;
    let worn = gear_when(&app, token, &id(&shoes), |g| g["wear"]["activities"] == 3).await;
    assert_eq!(worn["wear"]["percent"], 125.0);
    assert_eq!(
        worn["wear"]["forecast_date"],
        json!(chrono::Utc::now().date_naive()),
        "a limit reached is reached today"
    );
    let alerts: Value = app
        .get_authed("/v1/gear/alerts", token)
        .await
        .json()
        .await
        .expect("json");
    let thresholds: Vec<i64> = alerts["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .filter_map(|a| a["threshold_percent"].as_i64())
        .collect();
    assert_eq!(thresholds, vec![100, 80]);
    // Once each, through the outbox.
    let mut published = Vec::new();
    for _ in 0..100 {
        published = events_of(&app, "inventory.gear_wear_threshold_reached.v1").await;
        if published.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let published = if published.len() >= 2 {
        events_of(&app, "inventory.gear_wear_threshold_reached.v1").await
    } else {
        published
    };
    let mut reached: Vec<i32> = published
        .iter()
        .map(|e| {
            e.decode::<GearWearThresholdReached>()
                .expect("typed")
                .threshold_percent
        })
        .collect();
    reached.sort();
    assert_eq!(reached, vec![80, 100]);
    // Retiring closes the alerts.
    app.post_authed(&format!("/v1/gear/{}/retire", id(&shoes)), token, None)
        .await;
    let alerts: Value = app
        .get_authed("/v1/gear/alerts", token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(alerts["alerts"], json!([]));
}

#[tokio::test]
async fn repeated_and_reordered_events_count_once_and_deleted_users_lose_their_gear() {
    let app = spawn_app().await;
    let athlete = app.new_account().await;
    let token = &athlete.access_token;
    let shoes = create_gear(&app, token, json!({"kind": "shoes", "name": "Shoes"})).await;
    let other = create_gear(&app, token, json!({"kind": "shoes", "name": "Other"})).await;
    let first = workout(&app, token, "run", 10.0, hours_ago(30), Some(&id(&shoes))).await;
    gear_when(&app, token, &id(&shoes), |g| g["wear"]["activities"] == 1).await;
    // Every finish again: nothing changes.
    let finished = events_of(&app, "training.activity_finished.v1").await;
    for envelope in &finished {
        republish(&app, envelope).await;
    }
    let template = finished
        .iter()
        .find(|e| e.subject == id(&first))
        .expect("event")
        .decode::<ActivityFinished>()
        .expect("typed")
        .activity;
    // A deletion that arrives before its finish: the finish changes nothing.
    let mut ghost = template.clone();
    ghost.activity_id = Uuid::now_v7();
    for envelope in [
        Envelope::new(
            "training",
            ghost.activity_id.to_string(),
            &ActivityDeleted {
                activity: ghost.clone(),
                was_finished: true,
            },
        ),
        Envelope::new(
            "training",
            ghost.activity_id.to_string(),
            &ActivityFinished {
                activity: ghost.clone(),
            },
        ),
    ] {
        republish(&app, &envelope.expect("event")).await;
    }
    // An update that arrives before its finish: it counts as updated, once.
    let mut early = template.clone();
    early.activity_id = Uuid::now_v7();
    let mut moved = early.clone();
    moved.gear_id = Some(id(&other).parse().expect("uuid"));
    moved.summary.distance_m = Some(7000.0);
    for envelope in [
        Envelope::new(
            "training",
            early.activity_id.to_string(),
            &ActivityUpdated {
                previous: early.clone(),
                activity: moved,
            },
        ),
        Envelope::new(
            "training",
            early.activity_id.to_string(),
            &ActivityFinished { activity: early },
        ),
    ] {
        republish(&app, &envelope.expect("event")).await;
    }
    // A last real workout marks the point where everything before was consumed.
    workout(&app, token, "run", 1.0, hours_ago(2), Some(&id(&other))).await;
    let other_now = gear_when(&app, token, &id(&other), |g| g["wear"]["activities"] == 2).await;
    assert_eq!(worn_m(&other_now), 8000.0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let shoes_now = gear_when(&app, token, &id(&shoes), |_| true).await;
    assert_eq!(shoes_now["wear"]["activities"], 1, "{shoes_now}");
    assert_eq!(worn_m(&shoes_now), 10_000.0);
    assert_incremental_equals_recomputed(&app, &[id(&shoes), id(&other)]).await;

    // Deleting the account erases the gear.
    let deleted = app
        .client
        .delete(app.url("/v1/me"))
        .bearer_auth(token)
        .json(&json!({"password": athlete.password}))
        .send()
        .await
        .expect("sent");
    assert!(deleted.status().is_success(), "{}", deleted.status());
    let db = app.database("inventory").await;
    let owner = athlete.user_id;
    for _ in 0..200 {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM gear WHERE owner_id = $1")
            .bind(owner)
            .fetch_one(&db)
            .await
            .expect("count");
        if left == 0 {
            let entries: i64 =
                sqlx::query_scalar("SELECT count(*) FROM wear_entries WHERE owner_id = $1")
                    .bind(owner)
                    .fetch_one(&db)
                    .await
                    .expect("count");
            assert_eq!(entries, 0);
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the deleted user's gear was never erased");
}

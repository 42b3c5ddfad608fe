//! Redelivered and reordered events, a flushed Redis, and gamification catching up after it
//! was down.

use std::time::Duration;

use serde_json::Value;
use sqlx::PgPool;
use stride_events::{
    Envelope,
    training::{ActivityDeleted, ActivityFinished, ActivityUpdated},
};
use stride_platform::config::Config;

use crate::helpers::{
    PrivateRedis, points_when, spawn, spawn_app, spawn_app_with, test_config, workout,
};

async fn ledger_sum(db: &PgPool, user: uuid::Uuid) -> (i64, i64) {
    sqlx::query_as(
        "SELECT coalesce(sum(amount), 0)::bigint, count(*) FROM ledger WHERE user_id = $1",
    )
    .bind(user)
    .fetch_one(db)
    .await
    .expect("sum")
}

#[tokio::test]
async fn events_delivered_twice_and_out_of_order_count_once() {
    let app = spawn_app().await;
    let athlete = app.new_account().await;
    let token = &athlete.access_token;
    workout(&app, token, "run", 50.0, 10.0, 1).await;
    let changed = workout(&app, token, "run", 30.0, 5.0, 2).await;
    let deleted = workout(&app, token, "run", 20.0, 4.0, 3).await;
    app.patch_authed(
        &format!("/v1/activities/{}", changed["id"].as_str().expect("id")),
        token,
        &serde_json::json!({"sport": "walk"}),
    )
    .await;
    app.delete_authed(
        &format!("/v1/activities/{}", deleted["id"].as_str().expect("id")),
        token,
    )
    .await;
    // 150 for the run kept, 15 + 20 for the walk, nothing left of the deleted one.
    points_when(&app, token, |p| {
        p["balance"] == 185 && p["history"].as_array().is_some_and(|h| h.len() == 5)
    })
    .await;
    let db = app.database("gamification").await;
    let before = ledger_sum(&db, athlete.user_id).await;

    // Every event again, newest first.
    let mut all = Vec::new();
    for kind in [
        "training.activity_deleted.v1",
        "training.activity_updated.v1",
        "training.activity_finished.v1",
    ] {
        all.extend(app.events(kind, 0).await);
    }
    for envelope in &all {
        app.republish(envelope).await;
    }
    // A workout whose deletion arrives before its finish, and one whose update arrives first.
    let late = workout(&app, token, "run", 10.0, 2.0, 4).await;
    let early = workout(&app, token, "run", 10.0, 2.0, 5).await;
    points_when(&app, token, |p| p["balance"] == 185 + 30 + 30).await;
    let finished = app.events("training.activity_finished.v1", 0).await;
    let find = |id: &str| {
        finished
            .iter()
            .find(|e| e.subject == id)
            .cloned()
            .expect("event")
    };
    let late_finished = find(late["id"].as_str().expect("id"));
    let mut snapshot = late_finished
        .decode::<ActivityFinished>()
        .expect("typed")
        .activity;
    snapshot.activity_id = uuid::Uuid::now_v7();
    let ghost_delete = Envelope::new(
        "training",
        snapshot.activity_id.to_string(),
        &ActivityDeleted {
            activity: snapshot.clone(),
            was_finished: true,
        },
    )
    .expect("event");
    let ghost_finish = Envelope::new(
        "training",
        snapshot.activity_id.to_string(),
        &ActivityFinished {
            activity: snapshot.clone(),
        },
    )
    .expect("event");
    app.republish(&ghost_delete).await;
    app.republish(&ghost_finish).await;
    let early_finished = find(early["id"].as_str().expect("id"))
        .decode::<ActivityFinished>()
        .expect("typed")
        .activity;
    let mut moved = early_finished.clone();
    moved.activity_id = uuid::Uuid::now_v7();
    let mut as_walk = moved.clone();
    as_walk.sport = "walk".into();
    let update_first = Envelope::new(
        "training",
        moved.activity_id.to_string(),
        &ActivityUpdated {
            previous: moved.clone(),
            activity: as_walk,
        },
    )
    .expect("event");
    let finish_late = Envelope::new(
        "training",
        moved.activity_id.to_string(),
        &ActivityFinished { activity: moved },
    )
    .expect("event");
    app.republish(&update_first).await;
    app.republish(&finish_late).await;
    // The reordered walk earns 5 + 8; the deleted ghost earns nothing.
    let points = points_when(&app, token, |p| p["balance"] == 245 + 13).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = ledger_sum(&db, athlete.user_id).await;
    assert_eq!(after.0, before.0 + 60 + 13, "{points}");
    assert_eq!(
        after.1,
        before.1 + 3,
        "one entry per new workout, none for redeliveries"
    );
    let again: Value = app
        .get_authed("/v1/me/points", token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(again["balance"], 258);
    // The leaderboards count each workout once too: 10 + 5 (the walk) + 2 + 2 + 2 km, the
    // deleted ones not at all.
    let board: Value = app
        .get_authed("/v1/leaderboards/distance", token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(board["entries"][0]["score"], 21_000.0, "{board}");
    let points_board: Value = app
        .get_authed("/v1/leaderboards/points", token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(points_board["entries"][0]["score"], 258.0, "{points_board}");
    // The walk board holds the workout changed to a walk and the reordered walk: the running
    // totals followed the change of sport.
    let walks: Value = app
        .get_authed("/v1/leaderboards/distance?sport=walk", token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(walks["entries"][0]["score"], 7_000.0, "{walks}");
    // The running totals, kept step by step through updates, deletions and redeliveries,
    // equal the totals recomputed from what each workout counts for now.
    let differences: i64 = sqlx::query_scalar(
        "WITH recomputed AS (
             SELECT user_id, period, sport, count(*) AS workouts,
                    sum(distance_m) AS distance_m, sum(moving_time_s) AS moving_time_s,
                    sum(elevation_gain_m) AS elevation_gain_m, sum(points) AS points
             FROM activity_points,
                  LATERAL (VALUES
                      ('all'),
                      ('y' || to_char(start_time AT TIME ZONE 'UTC', 'YYYY')),
                      ('m' || to_char(start_time AT TIME ZONE 'UTC', 'YYYY-MM')),
                      ('w' || to_char(start_time AT TIME ZONE 'UTC', 'IYYY-IW'))
                  ) AS periods (period)
             WHERE user_id = $1
             GROUP BY user_id, period, sport
         ), kept AS (
             SELECT user_id, period, sport, workouts, distance_m, moving_time_s,
                    elevation_gain_m, points
             FROM running_totals WHERE user_id = $1 AND workouts > 0
         )
         SELECT count(*) FROM ((TABLE recomputed EXCEPT TABLE kept)
                               UNION ALL (TABLE kept EXCEPT TABLE recomputed)) AS d",
    )
    .bind(athlete.user_id)
    .fetch_one(&db)
    .await
    .expect("compare");
    assert_eq!(differences, 0, "running totals differ from a recount");
}

#[tokio::test]
async fn a_flushed_redis_is_rebuilt_to_the_same_leaderboards() {
    let redis = PrivateRedis::start().await;
    let app = spawn_app_with(Config {
        redis_url: redis.url().into(),
        ..test_config()
    })
    .await;
    let mut users = Vec::new();
    for km in [5.0, 8.0, 13.0] {
        let athlete = app.new_account().await;
        workout(&app, &athlete.access_token, "run", 40.0, km, 0).await;
        users.push(athlete);
    }
    for athlete in &users {
        points_when(&app, &athlete.access_token, |p| {
            p["balance"].as_i64().unwrap_or(0) > 0
        })
        .await;
    }
    let token = &users[0].access_token;
    let app = &app;
    let read = |query: &'static str| async move {
        app.get_authed(&format!("/v1/leaderboards/{query}"), token)
            .await
            .json::<Value>()
            .await
            .expect("json")
    };
    let before = [read("distance").await, read("points?period=month").await];
    // Between two events of a stream, Redis loses everything.
    let client = redis::Client::open(redis.url()).expect("url");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("connects");
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut connection)
        .await
        .expect("flushed");
    let fourth = app.new_account().await;
    workout(app, &fourth.access_token, "run", 40.0, 1.0, 0).await;
    points_when(app, &fourth.access_token, |p| {
        p["balance"].as_i64().unwrap_or(0) > 0
    })
    .await;
    let after = [read("distance").await, read("points?period=month").await];
    for (before, after) in before.iter().zip(&after) {
        let old = before["entries"].as_array().expect("entries");
        let new = after["entries"].as_array().expect("entries");
        assert_eq!(
            &new[..3],
            &old[..],
            "the three earlier users keep their ranks and scores"
        );
        assert_eq!(new.len(), 4);
    }
    // Each score equals the ledger's sum.
    let db = app.database("gamification").await;
    for entry in after[1]["entries"].as_array().expect("entries") {
        let user: uuid::Uuid = entry["user_id"]
            .as_str()
            .expect("id")
            .parse()
            .expect("uuid");
        assert_eq!(
            entry["score"].as_f64(),
            Some(ledger_sum(&db, user).await.0 as f64)
        );
    }
}

#[tokio::test]
async fn workouts_finished_while_gamification_was_down_are_all_counted_when_it_returns() {
    let config = test_config();
    let platform = spawn(
        &[&stride_identity::SERVICE, &stride_training::SERVICE],
        config.clone(),
    )
    .await;
    let mut athletes = Vec::new();
    for _ in 0..10 {
        athletes.push(platform.new_account().await);
    }
    for day in 0..100 {
        for athlete in &athletes {
            workout(&platform, &athlete.access_token, "run", 30.0, 5.0, day).await;
        }
    }
    let gamification = spawn(
        &[&stride_gamification::SERVICE],
        Config {
            identity_grpc_url: Some(platform.grpc_address.clone()),
            jwks_url: Some(platform.url("/.well-known/jwks.json")),
            ..config
        },
    )
    .await;
    let db = gamification.database("gamification").await;
    let mut counted = 0;
    for _ in 0..600 {
        counted = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM activity_points")
            .fetch_one(&db)
            .await
            .expect("count");
        if counted == 1000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(counted, 1000, "every workout is accounted for");
    // 30 minutes and 5 km of running: 80 points each, under the daily cap.
    let balance = points_when(&gamification, &athletes[0].access_token, |p| {
        p["balance"] == 8000
    })
    .await;
    assert_eq!(balance["balance"], 8000);
}

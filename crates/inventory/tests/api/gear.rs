//! Gear: creating, listing, changing, retiring and deleting; components on bikes; defaults;
//! bad input; and that nobody but the owner sees or changes an item.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{assert_detail_says, assert_problem, create_gear, id, spawn_app};

#[tokio::test]
async fn gear_is_created_read_listed_changed_and_deleted_with_its_wear() {
    let app = spawn_app().await;
    let athlete = app.new_account().await;
    let token = &athlete.access_token;
    let shoes = create_gear(
        &app,
        token,
        json!({
            "kind": "shoes", "name": "  Daily trainers ", "brand": "Asics", "model": "Novablast 4",
            "sports": ["run", "trail_run", "run"], "purchase_date": "2025-03-01",
            "initial_distance_m": 120000.0, "initial_moving_time_s": 36000.0, "notes": "wide fit"
        }),
    )
    .await;
    assert_eq!(shoes["name"], "Daily trainers");
    assert_eq!(shoes["kind"], "shoes");
    assert_eq!(shoes["sports"], json!(["run", "trail_run"]));
    assert_eq!(shoes["wear"]["distance_m"], 120000.0);
    assert_eq!(shoes["wear"]["activities"], 0);
    assert_eq!(shoes["wear"]["limit_m"], 700000.0);
    assert_eq!(shoes["wear"]["percent"], 17.1);
    assert_eq!(shoes["wear"]["forecast_date"], Value::Null);
    let path = format!("/v1/gear/{}", id(&shoes));
    let read: Value = app
        .get_authed(&path, token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(read["id"], shoes["id"]);

    let patched = app
        .patch_authed(
            &path,
            token,
            &json!({"name": "Race shoes", "limit_m": 500000.0, "purchase_date": null}),
        )
        .await;
    assert_eq!(patched.status(), StatusCode::OK);
    let patched: Value = patched.json().await.expect("json");
    assert_eq!(patched["name"], "Race shoes");
    assert_eq!(patched["brand"], "Asics", "absent fields stay");
    assert_eq!(patched["purchase_date"], Value::Null);
    assert_eq!(patched["limit_m"], 500000.0);
    assert_eq!(patched["wear"]["limit_m"], 500000.0);
    assert_eq!(patched["wear"]["percent"], 24.0);
    // null goes back to the kind's default
    let reset: Value = app
        .patch_authed(&path, token, &json!({"limit_m": null}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(reset["wear"]["limit_m"], 700000.0);

    // Listing, newest first, with cursors.
    for n in 0..3 {
        create_gear(
            &app,
            token,
            json!({"kind": "other", "name": format!("thing {n}")}),
        )
        .await;
    }
    let first: Value = app
        .get_authed("/v1/gear?limit=2", token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(first["gear"].as_array().expect("gear").len(), 2);
    assert_eq!(first["gear"][0]["name"], "thing 2");
    let cursor = first["next_cursor"].as_str().expect("cursor");
    let second: Value = app
        .get_authed(&format!("/v1/gear?limit=2&cursor={cursor}"), token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(second["gear"].as_array().expect("gear").len(), 2);
    assert_eq!(second["gear"][1]["id"], shoes["id"]);
    assert_eq!(second["next_cursor"], Value::Null);
    let only_shoes: Value = app
        .get_authed("/v1/gear?kind=shoes", token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(only_shoes["gear"].as_array().expect("gear").len(), 1);
    assert_eq!(
        app.get_authed("/v1/gear?kind=surfboard", token)
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );

    assert_eq!(
        app.delete_authed(&path, token).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_problem(app.get_authed(&path, token).await, StatusCode::NOT_FOUND).await;
    assert_problem(app.delete_authed(&path, token).await, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn only_the_owner_sees_or_changes_gear_on_every_route() {
    let app = spawn_app().await;
    let owner = app.new_account().await;
    let other = app.new_account().await;
    let bike = create_gear(
        &app,
        &owner.access_token,
        json!({"kind": "bike", "name": "Roadie"}),
    )
    .await;
    let chain = create_gear(
        &app,
        &owner.access_token,
        json!({"kind": "component", "component_type": "chain", "name": "KMC X11"}),
    )
    .await;
    let path = format!("/v1/gear/{}", id(&bike));
    let token = &other.access_token;
    assert_problem(app.get_authed(&path, token).await, StatusCode::NOT_FOUND).await;
    assert_problem(
        app.patch_authed(&path, token, &json!({"name": "mine now"}))
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_problem(
        app.post_authed(&format!("{path}/retire"), token, None)
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_problem(
        app.client
            .put(app.url("/v1/gear/defaults/ride"))
            .bearer_auth(token)
            .json(&json!({"gear_id": id(&bike)}))
            .send()
            .await
            .expect("sent"),
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_problem(app.delete_authed(&path, token).await, StatusCode::NOT_FOUND).await;
    let listed: Value = app
        .get_authed("/v1/gear", token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(listed["gear"], json!([]));
    let alerts: Value = app
        .get_authed("/v1/gear/alerts", token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(alerts["alerts"], json!([]));

    // Someone else's bike cannot take my component, and my bike cannot take theirs.
    let my_bike = create_gear(&app, token, json!({"kind": "bike", "name": "Mine"})).await;
    assert_problem(
        app.post_authed(
            "/v1/gear",
            token,
            Some(
                &json!({"kind": "component", "component_type": "tyre", "name": "GP5000",
                         "bike_id": id(&bike)}),
            ),
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_problem(
        app.patch_authed(
            &format!("/v1/gear/{}", id(&chain)),
            token,
            &json!({"bike_id": id(&my_bike)}),
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    // Nothing changed for the owner.
    let still: Value = app
        .get_authed(&path, &owner.access_token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(still["name"], "Roadie");
    assert_eq!(still["retired_at"], Value::Null);
    let chain_now: Value = app
        .get_authed(&format!("/v1/gear/{}", id(&chain)), &owner.access_token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(chain_now["bike_id"], Value::Null);
    let without_token = app
        .client
        .get(app.url("/v1/gear"))
        .send()
        .await
        .expect("sent");
    assert_problem(without_token, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn bad_input_is_a_clear_400_and_stores_nothing() {
    let app = spawn_app().await;
    let athlete = app.new_account().await;
    let token = &athlete.access_token;
    let shoes = create_gear(&app, token, json!({"kind": "shoes", "name": "Shoes"})).await;
    let cases = [
        json!({"kind": "surfboard", "name": "Board"}),
        json!({"kind": "shoes", "name": "Shoes", "initial_distance_m": -1.0}),
        json!({"kind": "shoes", "name": "Shoes", "initial_moving_time_s": -5.0}),
        json!({"kind": "shoes", "name": "Shoes", "limit_m": 0.0}),
        json!({"kind": "shoes", "name": "   "}),
        json!({"kind": "shoes", "name": "x".repeat(101)}),
        json!({"kind": "shoes", "name": "Shoes", "sports": ["quidditch"]}),
        json!({"kind": "shoes", "name": "Shoes", "color": "red"}),
        json!({"kind": "shoes", "name": "Shoes", "purchase_date": "2999-01-01"}),
        json!({"kind": "component", "name": "Chain"}),
        json!({"kind": "shoes", "name": "Shoes", "component_type": "chain"}),
        json!({"kind": "component", "component_type": "sprocket", "name": "Chain"}),
        // a component attached to a non-bike
        json!({"kind": "component", "component_type": "chain", "name": "Chain", "bike_id": id(&shoes)}),
        // only components go on bikes
        json!({"kind": "shoes", "name": "Shoes", "bike_id": id(&shoes)}),
    ];
    for body in cases {
        let problem = assert_problem(
            app.post_authed("/v1/gear", token, Some(&body)).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(
            problem["type"], "urn:stride:problem:validation-error",
            "{body}"
        );
    }
    let path = format!("/v1/gear/{}", id(&shoes));
    for patch in [
        json!({"initial_distance_m": -10.0}),
        json!({"kind": "bike"}),
        json!({"bike_id": id(&shoes)}),
        json!({"limit_m": -3.0}),
    ] {
        assert_problem(
            app.patch_authed(&path, token, &patch).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
    let listed: Value = app
        .get_authed("/v1/gear", token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        listed["gear"].as_array().expect("gear").len(),
        1,
        "{listed}"
    );
    assert_eq!(listed["gear"][0]["initial_distance_m"], 0.0);
    assert_problem(
        app.get_authed("/v1/gear/not-a-uuid", token).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
}

#[tokio::test]
async fn defaults_are_set_listed_cleared_and_refused_for_components_and_retired_gear() {
    let app = spawn_app().await;
    let athlete = app.new_account().await;
    let token = &athlete.access_token;
    let shoes = create_gear(&app, token, json!({"kind": "shoes", "name": "Shoes"})).await;
    let chain = create_gear(
        &app,
        token,
        json!({"kind": "component", "component_type": "chain", "name": "Chain"}),
    )
    .await;
    let put = |sport: &str, body: Value| {
        app.client
            .put(app.url(&format!("/v1/gear/defaults/{sport}")))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let set = put("run", json!({"gear_id": id(&shoes)}))
        .await
        .expect("sent");
    assert_eq!(set.status(), StatusCode::OK);
    let set: Value = set.json().await.expect("json");
    assert_eq!(set, json!({"sport": "run", "gear_id": id(&shoes)}));
    let listed: Value = app
        .get_authed("/v1/gear/defaults", token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        listed["defaults"],
        json!([{"sport": "run", "gear_id": id(&shoes)}])
    );
    assert_problem(
        put("quidditch", json!({"gear_id": id(&shoes)}))
            .await
            .expect("sent"),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_problem(
        put("ride", json!({"gear_id": id(&chain)}))
            .await
            .expect("sent"),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_problem(
        put("ride", json!({"gear_id": uuid::Uuid::now_v7()}))
            .await
            .expect("sent"),
        StatusCode::NOT_FOUND,
    )
    .await;
    let cleared = put("run", json!({"gear_id": null})).await.expect("sent");
    assert_eq!(cleared.status(), StatusCode::OK);
    let listed: Value = app
        .get_authed("/v1/gear/defaults", token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(listed["defaults"], json!([]));

    // Retiring removes a default and keeps the item; retired gear cannot become one.
    put("walk", json!({"gear_id": id(&shoes)}))
        .await
        .expect("sent");
    let retired = app
        .post_authed(&format!("/v1/gear/{}/retire", id(&shoes)), token, None)
        .await;
    assert_eq!(retired.status(), StatusCode::OK);
    let retired: Value = retired.json().await.expect("json");
    assert!(retired["retired_at"].is_string());
    let again: Value = app
        .post_authed(&format!("/v1/gear/{}/retire", id(&shoes)), token, None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        again["retired_at"], retired["retired_at"],
        "retiring twice changes nothing"
    );
    let listed: Value = app
        .get_authed("/v1/gear/defaults", token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(listed["defaults"], json!([]));
    assert_problem(
        put("walk", json!({"gear_id": id(&shoes)}))
            .await
            .expect("sent"),
        StatusCode::BAD_REQUEST,
    )
    .await;
    let in_use: Value = app
        .get_authed("/v1/gear?retired=false", token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(in_use["gear"].as_array().expect("gear").len(), 1);
    let retired_only: Value = app
        .get_authed("/v1/gear?retired=true", token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(retired_only["gear"][0]["id"], shoes["id"]);
}

#[tokio::test]
async fn components_move_between_bikes_with_dates() {
    let app = spawn_app().await;
    let athlete = app.new_account().await;
    let token = &athlete.access_token;
    let road = create_gear(&app, token, json!({"kind": "bike", "name": "Road"})).await;
    let gravel = create_gear(&app, token, json!({"kind": "bike", "name": "Gravel"})).await;
    let chain = create_gear(
        &app,
        token,
        json!({"kind": "component", "component_type": "chain", "name": "Chain",
               "bike_id": id(&road), "attached_at": "2026-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(chain["bike_id"], road["id"]);
    assert_eq!(chain["wear"]["limit_m"], 3000000.0);
    let path = format!("/v1/gear/{}", id(&chain));
    // A move dated before the current attachment is refused.
    assert_problem(
        app.patch_authed(
            &path,
            token,
            &json!({"bike_id": id(&gravel), "attached_at": "2025-06-01T00:00:00Z"}),
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    let moved: Value = app
        .patch_authed(&path, token, &json!({"bike_id": id(&gravel)}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(moved["bike_id"], gravel["id"]);
    let off: Value = app
        .patch_authed(&path, token, &json!({"bike_id": null}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(off["bike_id"], Value::Null);
    let db = app.database("inventory").await;
    let history: Vec<(uuid::Uuid, bool)> = sqlx::query_as(
        "SELECT bike_id, detached_at IS NOT NULL FROM attachments WHERE component_id = $1
         ORDER BY attached_at",
    )
    .bind(id(&chain).parse::<uuid::Uuid>().expect("uuid"))
    .fetch_all(&db)
    .await
    .expect("attachments");
    assert_eq!(
        history,
        vec![
            (id(&road).parse().expect("uuid"), true),
            (id(&gravel).parse().expect("uuid"), true)
        ]
    );
    // Deleting a bike leaves its components, off any bike.
    app.patch_authed(&path, token, &json!({"bike_id": id(&road)}))
        .await;
    assert_eq!(
        app.delete_authed(&format!("/v1/gear/{}", id(&road)), token)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let after: Value = app
        .get_authed(&path, token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(after["bike_id"], Value::Null);
}

#[tokio::test]
async fn a_retried_creation_with_the_same_idempotency_key_creates_one_item() {
    let app = spawn_app().await;
    let athlete = app.new_account().await;
    let body = json!({"kind": "shoes", "name": "Race flats", "sports": ["run"]});
    let send = |token: String, key: &'static str, body: Value| {
        let app = &app;
        async move {
            app.client
                .post(app.url("/v1/gear"))
                .bearer_auth(token)
                .header("idempotency-key", key)
                .json(&body)
                .send()
                .await
                .expect("sent")
        }
    };
    let token = athlete.access_token.clone();
    // A retry racing the first request still makes one item.
    let (first, second) = tokio::join!(
        send(token.clone(), "shoes-1", body.clone()),
        send(token.clone(), "shoes-1", body.clone())
    );
    assert_eq!(first.status(), StatusCode::CREATED);
    assert_eq!(second.status(), StatusCode::CREATED);
    let replayed = [&first, &second]
        .iter()
        .filter(|response| response.headers().get("idempotent-replayed").is_some())
        .count();
    assert_eq!(replayed, 1, "exactly one answer is a replay");
    let first: Value = first.json().await.expect("json");
    let second: Value = second.json().await.expect("json");
    assert_eq!(first["id"], second["id"]);
    // The same key with another body is refused, and creates nothing.
    let mut other_body = body.clone();
    other_body["name"] = json!("Trainers");
    let problem = assert_problem(
        send(token.clone(), "shoes-1", other_body).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_detail_says(&problem, "Idempotency-Key");
    // A bad body with a fresh key is a 400 and records nothing: the key stays usable.
    assert_problem(
        send(
            token.clone(),
            "shoes-2",
            json!({"kind": "surfboard", "name": "Board"}),
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    let created = send(
        token.clone(),
        "shoes-2",
        json!({"kind": "bike", "name": "Bike"}),
    )
    .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    assert!(created.headers().get("idempotent-replayed").is_none());
    // An empty key is a 400.
    let problem = assert_problem(
        app.client
            .post(app.url("/v1/gear"))
            .bearer_auth(&token)
            .header("idempotency-key", "  ")
            .json(&body)
            .send()
            .await
            .expect("sent"),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(problem["type"], "urn:stride:problem:validation-error");
    let listed: Value = app
        .get_authed("/v1/gear", &token)
        .await
        .json()
        .await
        .expect("json");
    let names: Vec<&str> = listed["gear"]
        .as_array()
        .expect("gear")
        .iter()
        .map(|item| item["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(names, ["Bike", "Race flats"], "{listed}");
    // Another user may use the same key for their own item.
    let other = app.new_account().await;
    let theirs = send(other.access_token.clone(), "shoes-1", body.clone()).await;
    assert_eq!(theirs.status(), StatusCode::CREATED);
    assert!(theirs.headers().get("idempotent-replayed").is_none());
    assert_ne!(
        theirs.json::<Value>().await.expect("json")["id"],
        first["id"]
    );
}

//! The partner catalog: admin import (JSON array and NDJSON), search, replacements.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{assert_problem, create_gear, id, spawn_app};

async fn import(app: &crate::helpers::TestApp, token: &str, body: String) -> reqwest::Response {
    app.client
        .post(app.url("/v1/catalog/import"))
        .bearer_auth(token)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .expect("sent")
}

#[tokio::test]
async fn admins_import_feeds_that_everyone_searches_and_gets_replacements_from() {
    let app = spawn_app().await;
    let admin = app.new_account().await;
    app.make_admin(&admin).await;
    let (admin_token, _) = app.login_ok(&admin.email, &admin.password).await;
    let athlete = app.new_account().await;
    let token = &athlete.access_token;

    let array = json!([
        {"partner": "velo", "sku": "C-1", "category": "chain", "brand": "Shimano",
         "model": "Ultegra CN-HG701", "price": {"amount": 39.9, "currency": "EUR"},
         "link": "https://example.org/c1", "attributes": {"speeds": 11}},
        {"partner": "velo", "sku": "T-1", "category": "tyre", "brand": "Continental",
         "model": "Grand Prix 5000", "attributes": {"width_mm": 28}},
        {"partner": "velo", "sku": "bad", "category": "tyre", "brand": "NoModel"},
        "not an object"
    ]);
    let athletes_try = import(&app, token, array.to_string()).await;
    assert_problem(athletes_try, StatusCode::FORBIDDEN).await;
    let response = import(&app, &admin_token, array.to_string()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let report: Value = response.json().await.expect("json");
    assert_eq!(report["upserted"], 2);
    let rejected: Vec<i64> = report["rejected"]
        .as_array()
        .expect("rejected")
        .iter()
        .filter_map(|r| r["row"].as_i64())
        .collect();
    assert_eq!(rejected, vec![2, 3], "{report}");

    // NDJSON, updating a SKU by (partner, sku).
    let ndjson = [
        json!({"partner": "velo", "sku": "C-1", "category": "chain", "brand": "Shimano",
               "model": "Ultegra CN-HG701 v2"}),
        json!({"partner": "run", "sku": "S-1", "category": "shoes", "brand": "Asics",
               "model": "Novablast 4"}),
    ]
    .iter()
    .map(Value::to_string)
    .collect::<Vec<_>>()
    .join("\n");
    let report: Value = import(&app, &admin_token, ndjson)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(report["upserted"], 2);

    let found: Value = app
        .get_authed("/v1/catalog/search?q=ultegra", token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(found["products"].as_array().expect("products").len(), 1);
    assert_eq!(
        found["products"][0]["document"]["model"],
        "Ultegra CN-HG701 v2"
    );
    let tyres: Value = app
        .get_authed("/v1/catalog/search?category=tyre", token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(tyres["products"][0]["sku"], "T-1");
    let none: Value = app
        .get_authed("/v1/catalog/search?q=ultegra&category=shoes", token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(none["products"], json!([]));

    let chain = create_gear(
        &app,
        token,
        json!({"kind": "component", "component_type": "chain", "name": "Chain"}),
    )
    .await;
    let path = format!("/v1/gear/{}/replacements", id(&chain));
    let suggested: Value = app
        .get_authed(&path, token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(suggested["products"][0]["sku"], "C-1");
    let other = app.new_account().await;
    assert_problem(
        app.get_authed(&path, &other.access_token).await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn a_huge_row_or_a_feed_without_valid_rows_is_a_4xx_and_stores_nothing() {
    let app = spawn_app().await;
    let admin = app.new_account().await;
    app.make_admin(&admin).await;
    let (admin_token, _) = app.login_ok(&admin.email, &admin.password).await;
    let huge = json!({"partner": "p", "sku": "s", "category": "tyre", "brand": "b",
                      "model": "m", "notes": "x".repeat(10 * 1024 * 1024)});
    let response = import(&app, &admin_token, huge.to_string()).await;
    assert!(response.status().is_client_error(), "{}", response.status());
    let small_huge = json!({"partner": "p", "sku": "s", "category": "tyre", "brand": "b",
                            "model": "m", "notes": "x".repeat(100 * 1024)});
    let problem = assert_problem(
        import(&app, &admin_token, small_huge.to_string()).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("bytes")),
        "{problem}"
    );
    assert_problem(
        import(&app, &admin_token, "[{\"partner\": ".into()).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    let found: Value = app
        .get_authed("/v1/catalog/search", &admin_token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(found["products"], json!([]));
}

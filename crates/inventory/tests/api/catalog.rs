//! The partner catalog: admin import (JSON array and NDJSON), search, replacements.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{assert_detail_says, assert_problem, create_gear, id, spawn_app};

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
    assert_detail_says(&problem, "bytes");
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

/// The SKUs of a search, in order.
async fn skus(app: &crate::helpers::TestApp, token: &str, query: &str) -> Vec<String> {
    let response = app
        .get_authed(&format!("/v1/catalog/search?{query}"), token)
        .await;
    assert_eq!(response.status(), StatusCode::OK, "{query}");
    let found: Value = response.json().await.expect("json");
    found["products"]
        .as_array()
        .expect("products")
        .iter()
        .map(|product| product["sku"].as_str().expect("sku").to_owned())
        .collect()
}

#[tokio::test]
async fn searches_filter_by_brand_and_attributes_as_json_numbers_booleans_and_strings() {
    let app = spawn_app().await;
    let admin = app.new_account().await;
    app.make_admin(&admin).await;
    let (admin_token, _) = app.login_ok(&admin.email, &admin.password).await;
    let token = &app.new_account().await.access_token;
    let feed = json!([
        {"partner": "run", "sku": "S-1", "category": "running_shoes", "brand": "Hoka",
         "model": "Speedgoat 6 GTX", "attributes": {"drop_mm": 4, "waterproof": true, "surface": "trail"}},
        {"partner": "run", "sku": "S-2", "category": "running_shoes", "brand": "Hoka",
         "model": "Clifton 9", "attributes": {"drop_mm": 5, "waterproof": false, "surface": "road"}},
        {"partner": "run", "sku": "S-3", "category": "running_shoes", "brand": "Saucony",
         "model": "Peregrine 14 GTX", "attributes": {"drop_mm": 4, "waterproof": true, "surface": "trail"}},
        {"partner": "run", "sku": "S-4", "category": "running_shoes", "brand": "Saucony",
         "model": "Endorphin Speed", "attributes": {"drop_mm": "8", "waterproof": "true"}},
        {"partner": "velo", "sku": "T-1", "category": "tyre", "brand": "Continental",
         "model": "Grand Prix 5000", "attributes": {"width_mm": 28, "tubeless": true}}
    ]);
    let report: Value = import(&app, &admin_token, feed.to_string())
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(report["upserted"], 5, "{report}");

    assert_eq!(skus(&app, token, "brand=hoka").await, ["S-1", "S-2"]);
    assert_eq!(skus(&app, token, "brand=HOKA&q=gtx").await, ["S-1"]);
    assert_eq!(skus(&app, token, "brand=Hok").await, Vec::<String>::new());
    // Numbers and booleans match JSON numbers and booleans, not strings that look like them.
    assert_eq!(skus(&app, token, "attr.drop_mm=4").await, ["S-1", "S-3"]);
    assert_eq!(
        skus(&app, token, "attr.drop_mm=8").await,
        Vec::<String>::new()
    );
    assert_eq!(
        skus(&app, token, "attr.waterproof=true").await,
        ["S-1", "S-3"]
    );
    assert_eq!(
        skus(&app, token, "attr.waterproof=false&category=running_shoes").await,
        ["S-2"]
    );
    assert_eq!(
        skus(&app, token, "attr.surface=trail&brand=saucony").await,
        ["S-3"]
    );
    assert_eq!(
        skus(
            &app,
            token,
            "attr.drop_mm=4&attr.waterproof=true&q=peregrine"
        )
        .await,
        ["S-3"]
    );
    assert_eq!(
        skus(&app, token, "attr.tubeless=true&attr.width_mm=28").await,
        ["T-1"]
    );
    assert_eq!(
        skus(&app, token, "attr.tubeless=true&attr.width_mm=25").await,
        Vec::<String>::new()
    );
    // Other parameters are ignored; an empty brand is no filter.
    assert_eq!(
        skus(&app, token, "brand=&page=2&category=tyre").await,
        ["T-1"]
    );
}

#[tokio::test]
async fn too_many_or_too_long_search_filters_are_a_400() {
    let app = spawn_app().await;
    let token = &app.new_account().await.access_token;
    let eleven = (0..11)
        .map(|i| format!("attr.a{i}=1"))
        .collect::<Vec<_>>()
        .join("&");
    let ten = (0..10)
        .map(|i| format!("attr.a{i}=1"))
        .collect::<Vec<_>>()
        .join("&");
    assert_eq!(skus(&app, token, &ten).await, Vec::<String>::new());
    let long = "x".repeat(101);
    for query in [
        eleven,
        format!("attr.{long}=1"),
        format!("attr.colour={long}"),
        format!("brand={long}"),
        "attr.=1".to_owned(),
        "attr.colour=".to_owned(),
        "attr.colour=red&attr.colour=blue".to_owned(),
        "limit=0".to_owned(),
    ] {
        let problem = assert_problem(
            app.get_authed(&format!("/v1/catalog/search?{query}"), token)
                .await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert!(problem["detail"].is_string(), "{query}: {problem}");
    }
}

#[tokio::test]
async fn partners_publish_only_under_their_own_account() {
    let app = spawn_app().await;
    let shop = app.new_account().await;
    stride_identity::grant_role(
        &app.config,
        &shop.email,
        stride_identity::domain::Role::Partner,
    )
    .await
    .expect("granted");
    let (token, _) = app.login_ok(&shop.email, &shop.password).await;
    let own = shop.user_id.to_string();
    let feed = [
        json!({"partner": own, "sku": "S-1", "category": "running_shoes", "brand": "Hoka", "model": "Clifton 9"}),
        json!({"partner": "someone-else", "sku": "S-2", "category": "running_shoes", "brand": "Hoka", "model": "Bondi 8"}),
    ]
    .iter()
    .map(Value::to_string)
    .collect::<Vec<_>>()
    .join("\n");
    let response = import(&app, &token, feed).await;
    assert_eq!(response.status(), StatusCode::OK);
    let report: Value = response.json().await.expect("json");
    assert_eq!(report["upserted"], 1);
    assert_eq!(report["rejected"][0]["row"], 1);
    assert!(
        report["rejected"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("own account"))
    );
    let found: Value = app
        .get_authed("/v1/catalog/search?q=bondi", &token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        found["products"].as_array().map(Vec::len),
        Some(0),
        "the other partner's row was not stored"
    );
}

#[tokio::test]
async fn a_cached_search_is_answered_again_and_never_outlives_an_import() {
    let app = spawn_app().await;
    let admin = app.new_account().await;
    app.make_admin(&admin).await;
    let (admin_token, _) = app.login_ok(&admin.email, &admin.password).await;
    let athlete = app.new_account().await;
    let row = |model: &str| {
        json!({"partner": "velo", "sku": "C-9", "category": "chain", "brand": "KMC",
               "model": model})
        .to_string()
    };
    let imported = import(&app, &admin_token, row("X11 Silver")).await;
    assert_eq!(imported.status(), StatusCode::OK);
    let search = || async {
        let response = app
            .get_authed("/v1/catalog/search?q=kmc", &athlete.access_token)
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "application/json");
        let cache = response.headers()["x-cache"]
            .to_str()
            .expect("ascii")
            .to_owned();
        let body: Value = response.json().await.expect("json");
        let models: Vec<String> = body["products"]
            .as_array()
            .expect("products")
            .iter()
            .map(|p| {
                p["document"]["model"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        (cache, models)
    };
    assert_eq!(
        search().await,
        ("miss".to_owned(), vec!["X11 Silver".to_owned()])
    );
    assert_eq!(
        search().await,
        ("hit".to_owned(), vec!["X11 Silver".to_owned()])
    );
    // Another query is its own entry.
    let other = app
        .get_authed("/v1/catalog/search?q=kmc&limit=5", &athlete.access_token)
        .await;
    assert_eq!(other.headers()["x-cache"], "miss");
    // An import changes the product: the very next search sees it.
    let imported = import(&app, &admin_token, row("X11 Gold")).await;
    assert_eq!(imported.status(), StatusCode::OK);
    assert_eq!(
        search().await,
        ("miss".to_owned(), vec!["X11 Gold".to_owned()])
    );
    assert_eq!(
        search().await,
        ("hit".to_owned(), vec!["X11 Gold".to_owned()])
    );
    // A refused feed changes nothing and keeps the cache.
    let refused = import(&app, &admin_token, "{\"partner\": \"velo\"}".to_owned()).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        search().await,
        ("hit".to_owned(), vec!["X11 Gold".to_owned()])
    );
}

/// A search with the cache off, so every answer is computed from the database.
async fn spawn_uncached() -> crate::helpers::TestApp {
    crate::helpers::spawn(
        &[
            &stride_identity::SERVICE,
            &stride_training::SERVICE,
            &stride_inventory::SERVICE,
        ],
        stride_platform::config::Config {
            catalog_search_cache_seconds: 0,
            ..crate::helpers::test_config()
        },
    )
    .await
}

#[tokio::test]
async fn filters_find_the_first_products_in_order_whether_they_are_common_or_rare() {
    let app = spawn_uncached().await;
    let admin = app.new_account().await;
    app.make_admin(&admin).await;
    let (admin_token, _) = app.login_ok(&admin.email, &admin.password).await;
    let token = &app.new_account().await.access_token;
    // 2,400 chains: every third is 12-speed; only the last 30 are from "Rare" and have
    // 13 speeds, so a search for them must look past the first 2,000 products in order.
    // "Edge" makes one chain among the first 2,000 and 40 after them.
    let rows: Vec<String> = (0..2_400)
        .map(|n| {
            let speeds = if n >= 2_370 {
                13
            } else if n % 3 == 0 {
                12
            } else {
                11
            };
            let brand = match n {
                2_370.. => "Rare",
                1_990 | 2_300..2_340 => "Edge",
                _ => "KMC",
            };
            json!({"partner": "velo", "sku": format!("C-{n:05}"), "category": "chain",
                   "brand": brand, "model": format!("X{n}"),
                   "attributes": {"speeds": speeds}})
            .to_string()
        })
        .collect();
    let imported = import(&app, &admin_token, rows.join("\n")).await;
    assert_eq!(imported.status(), StatusCode::OK);
    let expected = |from: std::ops::Range<usize>, keep: fn(usize) -> bool| -> Vec<String> {
        from.filter(|n| keep(*n))
            .take(20)
            .map(|n| format!("C-{n:05}"))
            .collect()
    };
    let every_third = expected(0..2_370, |n| n % 3 == 0);
    assert_eq!(
        skus(&app, token, "category=chain&attr.speeds=12").await,
        every_third
    );
    assert_eq!(skus(&app, token, "attr.speeds=12").await, every_third);
    let rare = expected(2_370..2_400, |_| true);
    assert_eq!(
        skus(&app, token, "category=chain&attr.speeds=13").await,
        rare
    );
    assert_eq!(skus(&app, token, "brand=rare").await, rare);
    let edge: Vec<String> = std::iter::once(1_990)
        .chain(2_300..2_319)
        .map(|n| format!("C-{n:05}"))
        .collect();
    assert_eq!(skus(&app, token, "brand=Edge&category=chain").await, edge);
    assert_eq!(
        skus(&app, token, "brand=RARE&attr.speeds=13&limit=5").await,
        rare[..5]
    );
    assert_eq!(
        skus(&app, token, "category=chain&attr.speeds=14").await,
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn text_matches_come_best_first_and_a_changed_price_or_attribute_is_what_is_found() {
    let app = spawn_uncached().await;
    let admin = app.new_account().await;
    app.make_admin(&admin).await;
    let (admin_token, _) = app.login_ok(&admin.email, &admin.password).await;
    let token = &app.new_account().await.access_token;
    let shoe = |sku: &str, name: &str, price: f64, drop: u32| {
        json!({"partner": "run", "sku": sku, "category": "running_shoes", "brand": "Hoka",
               "model": "Clifton", "name": name,
               "price": {"amount": price, "currency": "EUR"},
               "attributes": {"drop_mm": drop}})
        .to_string()
    };
    // "black" twice in Z-9's words, once in A-1's: Z-9 ranks first although it sorts last.
    let feed = [
        shoe("A-1", "Clifton black", 100.0, 5),
        shoe("Z-9", "Clifton black on black", 120.0, 5),
        shoe("M-5", "Clifton white", 110.0, 5),
    ]
    .join("\n");
    assert_eq!(
        import(&app, &admin_token, feed.clone()).await.status(),
        StatusCode::OK
    );
    assert_eq!(skus(&app, token, "q=black").await, ["Z-9", "A-1"]);
    assert_eq!(
        skus(&app, token, "q=clifton&category=running_shoes").await,
        ["A-1", "M-5", "Z-9"],
        "equal ranks come by partner and SKU"
    );
    // The same feed again changes nothing; then a new price and a new drop for A-1.
    assert_eq!(
        import(&app, &admin_token, feed).await.status(),
        StatusCode::OK
    );
    assert_eq!(skus(&app, token, "q=black").await, ["Z-9", "A-1"]);
    let changed = shoe("A-1", "Clifton black", 80.0, 8);
    assert_eq!(
        import(&app, &admin_token, changed).await.status(),
        StatusCode::OK
    );
    let found: Value = app
        .get_authed("/v1/catalog/search?q=black&attr.drop_mm=8", token)
        .await
        .json()
        .await
        .expect("json");
    let products = found["products"].as_array().expect("products");
    assert_eq!(products.len(), 1, "{found}");
    assert_eq!(products[0]["sku"], "A-1");
    assert_eq!(products[0]["document"]["price"]["amount"], 80.0);
    assert_eq!(skus(&app, token, "attr.drop_mm=5").await, ["M-5", "Z-9"]);
}

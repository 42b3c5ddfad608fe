//! Login throttling: growing delays for guessers, never a lock-out of the owner.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{PASSWORD, assert_problem, spawn_app};

fn retry_after(response: &reqwest::Response) -> u64 {
    response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .expect("a Retry-After in seconds")
}

#[tokio::test]
async fn guessing_from_one_address_gets_growing_delays_and_the_right_password_works_after_them() {
    let app = spawn_app().await;
    let account = app.new_account().await;
    let attacker = "198.51.100.20";
    let wrong = json!({"email": account.email, "password": "not the password 1"});
    let mut delays = Vec::new();
    for _ in 0..9 {
        let response = app.post_json_from("/v1/auth/login", &wrong, attacker).await;
        match response.status() {
            StatusCode::UNAUTHORIZED => {}
            StatusCode::TOO_MANY_REQUESTS => {
                delays.push(retry_after(&response));
                assert_problem(response, StatusCode::TOO_MANY_REQUESTS).await;
                // Wait out the delay so the next guess counts.
                tokio::time::sleep(Duration::from_secs(*delays.last().expect("delay"))).await;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(!delays.is_empty(), "repeated failures are throttled");
    assert!(
        delays.windows(2).all(|pair| pair[1] >= pair[0]),
        "delays grow: {delays:?}"
    );

    // While locked, even the right password is refused for this address...
    let right = json!({"email": account.email, "password": PASSWORD});
    let locked = app.post_json_from("/v1/auth/login", &right, attacker).await;
    let wait = if locked.status() == StatusCode::TOO_MANY_REQUESTS {
        retry_after(&locked)
    } else {
        0
    };
    // ...and accepted once the delay has passed.
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let after = app.post_json_from("/v1/auth/login", &right, attacker).await;
    assert_eq!(after.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_hundred_guesses_from_many_addresses_are_throttled_but_the_owner_still_logs_in() {
    let app = spawn_app().await;
    let account = app.new_account().await;
    let owner_address = "203.0.113.10";
    // The owner has logged in from their address before.
    let first = app
        .post_json_from(
            "/v1/auth/login",
            &json!({"email": account.email, "password": PASSWORD}),
            owner_address,
        )
        .await;
    assert_eq!(first.status(), StatusCode::OK);

    let wrong = json!({"email": account.email, "password": "guess guess guess"});
    let mut throttled = 0;
    let mut rejected = 0;
    for attempt in 0..100u32 {
        let address = format!(
            "10.{}.{}.{}",
            attempt / 65536,
            (attempt / 256) % 256,
            attempt % 256
        );
        let response = app.post_json_from("/v1/auth/login", &wrong, &address).await;
        match response.status() {
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(retry_after(&response) >= 1);
                throttled += 1;
            }
            StatusCode::UNAUTHORIZED => rejected += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(throttled + rejected, 100);
    assert!(
        throttled > 50,
        "a distributed guesser is throttled ({throttled} of 100)"
    );

    // The owner, from their usual address, is not locked out.
    let owner = app
        .post_json_from(
            "/v1/auth/login",
            &json!({"email": account.email, "password": PASSWORD}),
            owner_address,
        )
        .await;
    assert_eq!(owner.status(), StatusCode::OK);
    // A new address of the owner waits at most the account delay, then gets in.
    let new_address = "192.0.2.77";
    let right = json!({"email": account.email, "password": PASSWORD});
    let attempt = app
        .post_json_from("/v1/auth/login", &right, new_address)
        .await;
    if attempt.status() == StatusCode::TOO_MANY_REQUESTS {
        let wait = retry_after(&attempt);
        assert!(wait <= 300, "the account delay is capped");
        tokio::time::sleep(Duration::from_secs(wait)).await;
        let retried = app
            .post_json_from("/v1/auth/login", &right, new_address)
            .await;
        assert_eq!(retried.status(), StatusCode::OK);
    } else {
        assert_eq!(attempt.status(), StatusCode::OK);
    }
}

//! Partner catalog benchmark (issue 6, "Measure"): import rate and search latency with
//! 100,000 products.
//!
//! Starts identity, training and inventory in-process against the local test services (the
//! `STRIDE_TEST_*` variables of stride-testkit), imports generated products through
//! `POST /v1/catalog/import` as NDJSON feeds (new products in 5,000- and 20,000-row feeds, then
//! every product changed, then the same feed again unchanged), then runs a closed-loop search
//! load against
//! `GET /v1/catalog/search` with a mix of full-text, category, brand and attribute filters.
//! Prints a report and one JSON line; the inventory database is kept for `EXPLAIN ANALYZE`.
//!
//! `cargo run --release -p stride-inventory --example catalog_bench [PRODUCTS [SEARCHES [CLIENTS]]]`
//! (defaults: 100000 products, 2000 searches, 4 clients).

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stride_platform::config::Config;
use stride_testkit::{PASSWORD, TestApp, spawn, test_config};

/// A small deterministic generator (splitmix64), so every run imports the same catalog.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn range(&mut self, low: f64, high: f64) -> f64 {
        low + (self.next() as f64 / u64::MAX as f64) * (high - low)
    }
}

/// A category: its share of the catalog, brands, model words and attributes.
struct Category {
    name: &'static str,
    weight: usize,
    noun: &'static str,
    brands: &'static [&'static str],
    models: &'static [&'static str],
    price: (f64, f64),
    attributes: fn(&mut Rng) -> Value,
}

const PARTNERS: &[&str] = &[
    "velo-shop",
    "runners-point",
    "bike-discount",
    "tri-store",
    "outdoor-hub",
    "sport-direct",
    "alpine-gear",
    "wiggle-like",
];

const ADJECTIVES: &[&str] = &[
    "lightweight",
    "durable",
    "pro",
    "race",
    "comfort",
    "all-weather",
    "reflective",
    "carbon",
    "endurance",
    "classic",
    "limited",
    "eco",
];

const COLOURS: &[&str] = &[
    "black", "white", "red", "blue", "green", "yellow", "grey", "orange",
];

fn categories() -> Vec<Category> {
    vec![
        Category {
            name: "running_shoes",
            weight: 20,
            noun: "running shoe",
            brands: &[
                "Asics", "Hoka", "Saucony", "Brooks", "Nike", "Adidas", "On", "Mizuno", "Altra",
                "Salomon",
            ],
            models: &[
                "Novablast",
                "Clifton",
                "Speedgoat",
                "Peregrine",
                "Endorphin",
                "Ghost",
                "Pegasus",
                "Adizero",
                "Cloudmonster",
                "Wave Rider",
                "Torin",
                "Speedcross",
                "Kinvara",
                "Mach",
            ],
            price: (60.0, 260.0),
            attributes: |rng| {
                json!({
                    "drop_mm": *rng.pick(&[0, 4, 5, 6, 8, 10, 12]),
                    "waterproof": rng.below(4) == 0,
                    "surface": *rng.pick(&["road", "trail", "track"]),
                    "weight_g": 180 + rng.below(160),
                    "size_eu": 36 + rng.below(13),
                    "colour": *rng.pick(COLOURS),
                })
            },
        },
        Category {
            name: "chain",
            weight: 10,
            noun: "chain",
            brands: &["Shimano", "SRAM", "KMC", "Campagnolo", "Wippermann"],
            models: &[
                "Ultegra", "Dura-Ace", "105", "Deore", "XT", "GX", "Force", "Rival", "X11", "X12",
                "Record", "Connex",
            ],
            price: (15.0, 90.0),
            attributes: |rng| {
                json!({
                    "speeds": *rng.pick(&[8, 9, 10, 11, 12]),
                    "links": *rng.pick(&[114, 116, 118, 126]),
                    "quick_link": rng.below(2) == 0,
                    "coating": *rng.pick(&["nickel", "titanium", "diamond", "plain"]),
                })
            },
        },
        Category {
            name: "tyre",
            weight: 15,
            noun: "tyre",
            brands: &[
                "Continental",
                "Schwalbe",
                "Pirelli",
                "Vittoria",
                "Michelin",
                "Maxxis",
                "Panaracer",
            ],
            models: &[
                "Grand Prix",
                "Pro One",
                "P Zero",
                "Corsa",
                "Power Cup",
                "Minion",
                "Gravelking",
                "Marathon",
                "Terreno",
                "Race King",
            ],
            price: (25.0, 95.0),
            attributes: |rng| {
                json!({
                    "width_mm": *rng.pick(&[23, 25, 28, 30, 32, 35, 40, 45, 50, 57]),
                    "diameter": *rng.pick(&["700c", "650b", "29", "27.5"]),
                    "tubeless": rng.below(2) == 0,
                    "tpi": *rng.pick(&[60, 120, 180, 320]),
                })
            },
        },
        Category {
            name: "cassette",
            weight: 8,
            noun: "cassette",
            brands: &["Shimano", "SRAM", "Campagnolo", "Sunrace"],
            models: &[
                "Ultegra", "Dura-Ace", "105", "Deore", "XT", "GX Eagle", "Force", "Rival", "Chorus",
            ],
            price: (30.0, 400.0),
            attributes: |rng| {
                json!({
                    "speeds": *rng.pick(&[9, 10, 11, 12]),
                    "range": *rng.pick(&["11-28", "11-30", "11-34", "10-33", "10-52", "11-42"]),
                    "weight_g": 200 + rng.below(300),
                })
            },
        },
        Category {
            name: "brake_pads",
            weight: 8,
            noun: "brake pads",
            brands: &[
                "Shimano",
                "SRAM",
                "SwissStop",
                "Kool-Stop",
                "Galfer",
                "Jagwire",
            ],
            models: &[
                "L05A",
                "G05S",
                "Flash Pro",
                "Disc 34",
                "Road",
                "Standard",
                "Pro",
                "E-Bike",
            ],
            price: (8.0, 45.0),
            attributes: |rng| {
                json!({
                    "compound": *rng.pick(&["resin", "metal", "organic", "ceramic"]),
                    "brake_type": *rng.pick(&["disc", "rim"]),
                    "ebike": rng.below(5) == 0,
                })
            },
        },
        Category {
            name: "helmet",
            weight: 10,
            noun: "helmet",
            brands: &["Giro", "Bell", "POC", "Kask", "MET", "Specialized", "Abus"],
            models: &[
                "Aether",
                "Syntax",
                "Ventral",
                "Protone",
                "Trenta",
                "Prevail",
                "Evade",
                "Gamechanger",
            ],
            price: (40.0, 350.0),
            attributes: |rng| {
                json!({
                    "size": *rng.pick(&["S", "M", "L"]),
                    "mips": rng.below(2) == 0,
                    "weight_g": 200 + rng.below(200),
                    "colour": *rng.pick(COLOURS),
                })
            },
        },
        Category {
            name: "saddle",
            weight: 7,
            noun: "saddle",
            brands: &[
                "Fizik",
                "Selle Italia",
                "Brooks England",
                "Specialized",
                "Prologo",
            ],
            models: &[
                "Antares",
                "Argo",
                "SLR",
                "Power",
                "Dimension",
                "B17",
                "Scratch",
            ],
            price: (40.0, 300.0),
            attributes: |rng| {
                json!({
                    "width_mm": *rng.pick(&[130, 138, 143, 145, 155, 168]),
                    "rails": *rng.pick(&["steel", "titanium", "carbon"]),
                    "cutout": rng.below(2) == 0,
                })
            },
        },
        Category {
            name: "wetsuit",
            weight: 4,
            noun: "wetsuit",
            brands: &["Orca", "Zone3", "HUUB", "Blueseventy", "2XU"],
            models: &["Athlex", "Vanquish", "Aegis", "Helix", "Reaction", "Propel"],
            price: (150.0, 800.0),
            attributes: |rng| {
                json!({
                    "thickness_mm": *rng.pick(&[2, 3, 4, 5]),
                    "sleeves": *rng.pick(&["full", "sleeveless"]),
                    "size": *rng.pick(&["XS", "S", "M", "L", "XL"]),
                })
            },
        },
        Category {
            name: "bike_computer",
            weight: 5,
            noun: "bike computer",
            brands: &["Garmin", "Wahoo", "Hammerhead", "Bryton", "Sigma"],
            models: &[
                "Edge 540",
                "Edge 1040",
                "Elemnt Bolt",
                "Roam",
                "Karoo",
                "Rider 750",
            ],
            price: (120.0, 650.0),
            attributes: |rng| {
                json!({
                    "gps": true,
                    "maps": rng.below(2) == 0,
                    "battery_h": 15 + rng.below(30),
                })
            },
        },
        Category {
            name: "running_socks",
            weight: 13,
            noun: "running socks",
            brands: &["Falke", "Injinji", "Stance", "Balega", "Asics", "Nike"],
            models: &[
                "RU4",
                "Trail",
                "Hidden Comfort",
                "Run Light",
                "Performance",
                "Crew",
            ],
            price: (8.0, 35.0),
            attributes: |rng| {
                json!({
                    "size": *rng.pick(&["S", "M", "L"]),
                    "cushioning": *rng.pick(&["none", "light", "max"]),
                    "merino": rng.below(3) == 0,
                    "colour": *rng.pick(COLOURS),
                })
            },
        },
    ]
}

/// One product row, as a partner would send it.
fn product(rng: &mut Rng, categories: &[Category], total_weight: usize, index: usize) -> Value {
    let mut roll = rng.below(total_weight);
    let category = categories
        .iter()
        .find(|category| {
            if roll < category.weight {
                return true;
            }
            roll -= category.weight;
            false
        })
        .unwrap_or(&categories[0]);
    let partner = PARTNERS[index % PARTNERS.len()];
    let brand = *rng.pick(category.brands);
    let model = format!(
        "{} {}{}",
        rng.pick(category.models),
        1 + rng.below(12),
        if rng.below(4) == 0 { " GTX" } else { "" }
    );
    let adjective = *rng.pick(ADJECTIVES);
    let colour = *rng.pick(COLOURS);
    let sku = format!("{}-{index:07}", &partner[..3].to_uppercase());
    let amount = (rng.range(category.price.0, category.price.1) * 100.0).round() / 100.0;
    json!({
        "partner": partner,
        "sku": sku,
        "category": category.name,
        "brand": brand,
        "model": model,
        "name": format!("{brand} {model} {adjective} {colour} {}", category.noun),
        "attributes": (category.attributes)(rng),
        "price": {"amount": amount, "currency": *rng.pick(&["EUR", "USD", "GBP"])},
        "link": format!("https://{partner}.example.org/p/{sku}"),
        "in_stock": rng.below(5) != 0,
    })
}

fn catalog(products: usize) -> Vec<String> {
    let categories = categories();
    let total_weight = categories.iter().map(|category| category.weight).sum();
    let mut rng = Rng(0x5EED);
    (0..products)
        .map(|index| product(&mut rng, &categories, total_weight, index).to_string())
        .collect()
}

/// Imports `rows` in feeds of `feed_rows`; returns (rows/s overall, each feed's rows/s).
async fn import(app: &TestApp, token: &str, rows: &[String], feed_rows: usize) -> (f64, Vec<f64>) {
    let feeds: Vec<String> = rows.chunks(feed_rows).map(|feed| feed.join("\n")).collect();
    let mut rates = Vec::with_capacity(feeds.len());
    let started = Instant::now();
    for (feed, body) in rows.chunks(feed_rows).zip(feeds) {
        let sent = Instant::now();
        let response = app
            .client
            .post(app.url("/v1/catalog/import"))
            .bearer_auth(token)
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await
            .expect("the import is sent");
        let status = response.status();
        let report: Value = response.json().await.expect("an import report");
        assert!(status.is_success(), "import failed: {status} {report}");
        assert_eq!(report["upserted"], feed.len(), "{report}");
        rates.push(feed.len() as f64 / sent.elapsed().as_secs_f64());
    }
    (rows.len() as f64 / started.elapsed().as_secs_f64(), rates)
}

/// The search mix: (shape, query string). Words of varying frequency, filters alone and
/// combined.
fn search_mix(rng: &mut Rng, count: usize) -> Vec<(&'static str, String)> {
    let categories = categories();
    (0..count)
        .map(|_| {
            let category = rng.pick(&categories);
            let brand = *rng.pick(category.brands);
            let model_word = rng
                .pick(category.models)
                .split(' ')
                .next()
                .unwrap_or("pro")
                .to_lowercase();
            let attribute = (category.attributes)(rng);
            let attributes = attribute.as_object().expect("an object");
            let (name, value) = attributes
                .iter()
                .nth(rng.below(attributes.len()))
                .expect("an attribute");
            let attr = format!("attr.{name}={}", value.to_string().trim_matches('"'));
            let brand_param = brand.replace(' ', "+");
            let category_name = category.name;
            match rng.below(12) {
                0 => {
                    let word = rng.pick(&["shoe", "black", "pro", "tyre", "race", "red"]);
                    ("q frequent", format!("q={word}"))
                }
                1 => ("q brand", format!("q={}", brand_param.to_lowercase())),
                2 => (
                    "q rare",
                    format!("q={}+{model_word}", brand_param.to_lowercase()),
                ),
                3 => ("category", format!("category={category_name}")),
                4 => (
                    "category+q",
                    format!("category={category_name}&q={model_word}"),
                ),
                5 => ("brand", format!("brand={brand_param}")),
                6 => (
                    "brand+category",
                    format!("brand={brand_param}&category={category_name}"),
                ),
                7 => ("attr", attr),
                8 => ("attr+category", format!("{attr}&category={category_name}")),
                9 => (
                    "attr+brand+category",
                    format!("{attr}&brand={brand_param}&category={category_name}"),
                ),
                10 => (
                    "q+attr+category",
                    format!("q={model_word}&{attr}&category={category_name}"),
                ),
                _ => ("unfiltered", String::new()),
            }
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// One search: its shape, latency, products found and whether the cache answered.
type Searched = (&'static str, Duration, usize, bool);

/// Runs `mix` with `clients` closed-loop clients; returns each request's result and the wall
/// time.
async fn search_load(
    app: &TestApp,
    token: &str,
    mix: Vec<(&'static str, String)>,
    clients: usize,
) -> (Vec<Searched>, Duration) {
    let queue = std::sync::Arc::new(std::sync::Mutex::new(mix));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let queue = queue.clone();
        let client = app.client.clone();
        let base = app.url("/v1/catalog/search?");
        let token = token.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut results = Vec::new();
            loop {
                let Some((shape, query)) = queue.lock().expect("queue").pop() else {
                    break;
                };
                let sent = Instant::now();
                let response = client
                    .get(format!("{base}{query}"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .expect("the search is sent");
                let status = response.status();
                let hit = response
                    .headers()
                    .get("x-cache")
                    .is_some_and(|value| value == "hit");
                let body: Value = response.json().await.expect("json");
                let elapsed = sent.elapsed();
                assert!(status.is_success(), "{query}: {status} {body}");
                let found = body["products"].as_array().map_or(0, Vec::len);
                results.push((shape, elapsed, found, hit));
            }
            results
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.extend(task.await.expect("client"));
    }
    (results, started.elapsed())
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>().ok());
    let products = args.next().flatten().unwrap_or(100_000);
    let searches = args.next().flatten().unwrap_or(2_000);
    let clients = args.next().flatten().unwrap_or(4).max(1);
    let services = [
        &stride_identity::SERVICE,
        &stride_training::SERVICE,
        &stride_inventory::SERVICE,
    ];

    let generated = Instant::now();
    let rows = catalog(products);
    let bytes: usize = rows.iter().map(|row| row.len() + 1).sum();
    println!(
        "catalog: {products} products, {:.1} MiB of NDJSON, generated in {:.1} s",
        bytes as f64 / 1048576.0,
        generated.elapsed().as_secs_f64()
    );

    // 20,000-row feeds into a database of their own, so both imports start empty.
    let large = spawn(&services, test_config()).await;
    let large_token = admin_token(&large).await;
    let (large_rate, large_feeds) = import(&large, &large_token, &rows, 20_000).await;
    drop(large);

    let config = test_config();
    let database = config.database_name(stride_inventory::NAME);
    let app = spawn(&services, config.clone()).await;
    let token = admin_token(&app).await;
    let (insert_rate, insert_feeds) = import(&app, &token, &rows, 5_000).await;
    // Every product changed (its stock flag flipped), then the same feed again unchanged, as
    // partners send whole feeds every day.
    let changed: Vec<String> = rows
        .iter()
        .map(|row| {
            row.replace("\"in_stock\":true", "\"in_stock\":TRUE")
                .replace("\"in_stock\":false", "\"in_stock\":true")
                .replace("\"in_stock\":TRUE", "\"in_stock\":false")
        })
        .collect();
    assert!(changed.iter().zip(&rows).all(|(new, old)| new != old));
    let (update_rate, update_feeds) = import(&app, &token, &changed, 5_000).await;
    let (same_rate, same_feeds) = import(&app, &token, &changed, 5_000).await;
    let summary = |rates: &[f64]| {
        let mut sorted = rates.to_vec();
        sorted.sort_by(f64::total_cmp);
        (
            sorted.first().copied().unwrap_or(0.0),
            sorted.get(sorted.len() / 2).copied().unwrap_or(0.0),
            sorted.last().copied().unwrap_or(0.0),
        )
    };
    println!("\nimport (POST /v1/catalog/import, NDJSON, sequential feeds)");
    for (label, rate, feeds) in [
        ("5,000-row feeds, new rows", insert_rate, &insert_feeds),
        ("5,000-row feeds, updates", update_rate, &update_feeds),
        ("5,000-row feeds, unchanged", same_rate, &same_feeds),
        ("20,000-row feeds, new rows", large_rate, &large_feeds),
    ] {
        let (min, median, max) = summary(feeds);
        println!(
            "  {label:<28} {rate:>8.0} rows/s overall; per feed min {min:.0} / median {median:.0} / max {max:.0}"
        );
    }

    // What autovacuum does within a minute of a large import; without statistics the planner
    // guesses filter selectivities and may walk the primary key past every product.
    let db = stride_platform::db::connect(&config, stride_inventory::NAME)
        .await
        .expect("the inventory database");
    let vacuumed = Instant::now();
    sqlx::query("VACUUM ANALYZE catalog_products, catalog_search")
        .execute(&db)
        .await
        .expect("vacuum analyze");
    println!(
        "\nVACUUM ANALYZE catalog_products, catalog_search: {:.1} s",
        vacuumed.elapsed().as_secs_f64()
    );

    // The same mix twice: through a process with the search cache off (every search is
    // computed by PostgreSQL), then through one with the cache on.
    let uncached = spawn(
        &services,
        Config {
            catalog_search_cache_seconds: 0,
            ..config.clone()
        },
    )
    .await;
    let (cold, cold_p99) = searches_report(
        "cache off: every search computed by PostgreSQL",
        &uncached,
        &token,
        searches,
        clients,
    )
    .await;
    let (warm, warm_p99) =
        searches_report("cache on (the default)", &app, &token, searches, clients).await;
    println!("\ninventory database (kept for EXPLAIN ANALYZE): {database}");
    println!(
        "{}",
        json!({
            "bench": "catalog",
            "products": products,
            "import_rows_per_s_5k_feeds": insert_rate.round(),
            "import_rows_per_s_5k_feeds_updates": update_rate.round(),
            "import_rows_per_s_5k_feeds_unchanged": same_rate.round(),
            "import_rows_per_s_20k_feeds": large_rate.round(),
            "search_requests": searches,
            "search_clients": clients,
            "search_cache_off_p99_ms": (cold_p99 * 100.0).round() / 100.0,
            "search_cache_off_per_s": cold.round(),
            "search_cache_on_p99_ms": (warm_p99 * 100.0).round() / 100.0,
            "search_cache_on_per_s": warm.round(),
            "database": database,
        })
    );
}

/// Runs the search mix (after 200 warm-up searches) against `app` and prints its figures;
/// returns the throughput and the p99 in milliseconds.
async fn searches_report(
    label: &str,
    app: &TestApp,
    token: &str,
    searches: usize,
    clients: usize,
) -> (f64, f64) {
    let mut rng = Rng(0xC0FFEE);
    let warmup = search_mix(&mut rng, 200);
    search_load(app, token, warmup, clients).await;
    let mix = search_mix(&mut rng, searches);
    let (results, wall) = search_load(app, token, mix, clients).await;
    let mut latencies: Vec<Duration> = results.iter().map(|(_, latency, _, _)| *latency).collect();
    latencies.sort();
    let throughput = results.len() as f64 / wall.as_secs_f64();
    let hits = results.iter().filter(|(_, _, _, hit)| *hit).count();
    println!(
        "\nsearch, {label} (GET /v1/catalog/search, {} requests, {clients} closed-loop clients, after 200 warm-up; {hits} answered from the cache)",
        results.len()
    );
    println!(
        "  all                  p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>6.2} ms  {throughput:.0} req/s",
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
        ms(latencies.last().copied().unwrap_or_default()),
    );
    let mut shapes: Vec<&str> = results.iter().map(|(shape, _, _, _)| *shape).collect();
    shapes.sort_unstable();
    shapes.dedup();
    for shape in shapes {
        let of_shape: Vec<&Searched> = results.iter().filter(|(s, ..)| *s == shape).collect();
        let mut shape_latencies: Vec<Duration> = of_shape.iter().map(|(_, l, _, _)| *l).collect();
        shape_latencies.sort();
        let found: usize = of_shape.iter().map(|(_, _, found, _)| *found).sum();
        let shape_hits = of_shape.iter().filter(|(_, _, _, hit)| *hit).count();
        println!(
            "  {shape:<20} p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>6.2} ms  n {:>4}  avg hits {:.1}  cached {shape_hits}",
            ms(percentile(&shape_latencies, 50.0)),
            ms(percentile(&shape_latencies, 99.0)),
            ms(shape_latencies.last().copied().unwrap_or_default()),
            shape_latencies.len(),
            found as f64 / shape_latencies.len() as f64,
        );
    }
    (throughput, ms(percentile(&latencies, 99.0)))
}

/// A token with the admin role: the role is read at login, so log in again after granting it.
async fn admin_token(app: &TestApp) -> String {
    let account = app.new_account().await;
    app.make_admin(&account).await;
    app.login_ok(&account.email, PASSWORD).await.0
}

//! `GET /v1/activities/{id}/streams`: an activity's samples as Strava-style streams, full or
//! downsampled with largest-triangle-three-buckets, which keeps the shape of the curve.

use std::collections::BTreeMap;

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use stride_platform::{
    auth::AuthUser,
    error::{ApiError, Problem},
    http::{Json, Path, Query},
};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{Telemetry, influx::Row};

pub fn router() -> OpenApiRouter<Telemetry> {
    OpenApiRouter::new().routes(routes!(streams))
}

/// Every stream type, in response order.
pub const TYPES: [&str; 11] = [
    "time",
    "latlng",
    "distance",
    "altitude",
    "velocity_smooth",
    "heartrate",
    "cadence",
    "watts",
    "temp",
    "moving",
    "grade_smooth",
];

/// Speed below which a sample counts as stopped.
const MOVING_MPS: f64 = 0.5;

/// Query of the streams endpoint.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct StreamQuery {
    /// Comma-separated stream types (default: all that have data).
    pub types: Option<String>,
    /// `low` (100 points), `medium` (1,000), `high` (10,000) or `full` (default).
    pub resolution: Option<String>,
}

/// One stream.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Stream {
    /// The values; `null` where a sample has none.
    #[schema(value_type = Vec<Object>)]
    pub data: Vec<Value>,
    /// Samples before downsampling.
    pub original_size: usize,
    /// The resolution asked for.
    pub resolution: String,
}

fn haversine_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    let radius = 6_371_008.8;
    let (lat1, lat2) = (a.0.to_radians(), b.0.to_radians());
    let dlat = lat2 - lat1;
    let dlon = (b.1 - a.1).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * radius * h.sqrt().asin()
}

/// Indices kept by largest-triangle-three-buckets downsampling of `(x, y)` to `threshold`
/// points. The first and last points are always kept.
pub fn lttb(x: &[f64], y: &[f64], threshold: usize) -> Vec<usize> {
    let n = x.len().min(y.len());
    if threshold >= n || threshold < 3 {
        return (0..n).collect();
    }
    let mut kept = Vec::with_capacity(threshold);
    kept.push(0);
    let bucket = (n - 2) as f64 / (threshold - 2) as f64;
    let mut a = 0usize;
    for i in 0..threshold - 2 {
        let start = (i as f64 * bucket) as usize + 1;
        let end = (((i + 1) as f64 * bucket) as usize + 1).min(n - 1);
        let next_start = end;
        let next_end = (((i + 2) as f64 * bucket) as usize + 1).min(n);
        let count = (next_end - next_start).max(1) as f64;
        let (mut avg_x, mut avg_y) = (0.0, 0.0);
        for j in next_start..next_end.max(next_start + 1).min(n) {
            avg_x += x[j];
            avg_y += y[j];
        }
        avg_x /= count;
        avg_y /= count;
        let mut best = start;
        let mut best_area = -1.0;
        for j in start..end.max(start + 1) {
            let area = ((x[a] - avg_x) * (y[j] - y[a]) - (x[a] - x[j]) * (avg_y - y[a])).abs();
            if area > best_area {
                best_area = area;
                best = j;
            }
        }
        kept.push(best);
        a = best;
    }
    kept.push(n - 1);
    kept
}

/// Builds every stream from rows in time order (full resolution).
pub fn build(rows: &[Row], start_ms: i64) -> BTreeMap<&'static str, Vec<Value>> {
    let column =
        |index: usize| -> Vec<Option<f64>> { rows.iter().map(|row| row.values[index]).collect() };
    let (lat, lon, alt, hr, cad, pwr, spd, dist, temp) = (
        column(0),
        column(1),
        column(2),
        column(3),
        column(4),
        column(5),
        column(6),
        column(7),
        column(8),
    );
    let time: Vec<f64> = rows
        .iter()
        .map(|row| (row.time_ms - start_ms) as f64 / 1000.0)
        .collect();
    // Distance: the device's when it counts, else along the GPS track.
    let distance: Vec<Option<f64>> = if dist.iter().any(Option::is_some) {
        dist.clone()
    } else if lat.iter().any(Option::is_some) {
        let mut total = 0.0;
        let mut last: Option<(f64, f64)> = None;
        lat.iter()
            .zip(&lon)
            .map(|(la, lo)| match (la, lo) {
                (Some(la), Some(lo)) => {
                    if let Some(previous) = last {
                        total += haversine_m(previous, (*la, *lo));
                    }
                    last = Some((*la, *lo));
                    Some(total)
                }
                _ => last.map(|_| total),
            })
            .collect()
    } else {
        vec![None; rows.len()]
    };
    // Speed: the device's, else from distance over time; smoothed over five samples.
    let raw_speed: Vec<Option<f64>> = if spd.iter().any(Option::is_some) {
        spd.clone()
    } else {
        (0..rows.len())
            .map(|i| {
                let j = i.checked_sub(1)?;
                let (d1, d0) = (distance[i]?, distance[j]?);
                let dt = time[i] - time[j];
                (dt > 0.0).then(|| ((d1 - d0) / dt).max(0.0))
            })
            .collect()
    };
    let smooth = |values: &[Option<f64>]| -> Vec<Option<f64>> {
        (0..values.len())
            .map(|i| {
                let window: Vec<f64> = values[i.saturating_sub(2)..(i + 3).min(values.len())]
                    .iter()
                    .flatten()
                    .copied()
                    .collect();
                (!window.is_empty() && values[i].is_some())
                    .then(|| window.iter().sum::<f64>() / window.len() as f64)
            })
            .collect()
    };
    let velocity = smooth(&raw_speed);
    let grade: Vec<Option<f64>> = smooth(
        &(0..rows.len())
            .map(|i| {
                let j = i.checked_sub(1)?;
                let run = distance[i]? - distance[j]?;
                let rise = alt[i]? - alt[j]?;
                (run > 1.0).then(|| (100.0 * rise / run).clamp(-50.0, 50.0))
            })
            .collect::<Vec<_>>(),
    );
    let numbers = |values: &[Option<f64>]| -> Vec<Value> {
        values
            .iter()
            .map(|value| value.map_or(Value::Null, |v| json!(v)))
            .collect()
    };
    let mut streams = BTreeMap::new();
    streams.insert("time", time.iter().map(|t| json!(t)).collect());
    streams.insert(
        "latlng",
        lat.iter()
            .zip(&lon)
            .map(|pair| match pair {
                (Some(la), Some(lo)) => json!([la, lo]),
                _ => Value::Null,
            })
            .collect(),
    );
    streams.insert("distance", numbers(&distance));
    streams.insert("altitude", numbers(&alt));
    streams.insert("velocity_smooth", numbers(&velocity));
    streams.insert("heartrate", numbers(&hr));
    streams.insert("cadence", numbers(&cad));
    streams.insert("watts", numbers(&pwr));
    streams.insert("temp", numbers(&temp));
    streams.insert(
        "moving",
        velocity
            .iter()
            .map(|v| v.map_or(Value::Null, |v| json!(v > MOVING_MPS)))
            .collect(),
    );
    streams.insert("grade_smooth", numbers(&grade));
    streams.retain(|_, values: &mut Vec<Value>| values.iter().any(|value| !value.is_null()));
    streams
}

fn parse_time(value: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(value)
        .ok()
        .map(|at| at.with_timezone(&Utc).timestamp_millis())
}

/// An activity's samples as streams, keyed by type; every array has the same length.
#[utoipa::path(
    get,
    path = "/v1/activities/{id}/streams",
    tag = "telemetry",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Activity id"), StreamQuery),
    responses(
        (status = 200, description = "Streams keyed by type", body = BTreeMap<String, Stream>),
        (status = 400, description = "Unknown type or resolution", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such activity the caller may see", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "InfluxDB or training is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn streams(
    State(telemetry): State<Telemetry>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Query(query): Query<StreamQuery>,
) -> Result<Json<BTreeMap<String, Stream>>, ApiError> {
    let resolution = query.resolution.unwrap_or_else(|| "full".into());
    let threshold = match resolution.as_str() {
        "low" => Some(100),
        "medium" => Some(1_000),
        "high" => Some(10_000),
        "full" => None,
        other => {
            return Err(ApiError::validation(format!(
                "resolution {other:?} is not one of low, medium, high, full"
            )));
        }
    };
    let wanted: Vec<&'static str> = match &query.types {
        None => TYPES.to_vec(),
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(|name| {
                TYPES
                    .iter()
                    .copied()
                    .find(|known| *known == name)
                    .ok_or_else(|| {
                        ApiError::validation(format!(
                            "stream type {name:?} is not one of {}",
                            TYPES.join(", ")
                        ))
                    })
            })
            .collect::<Result<_, _>>()?,
    };
    let activity = telemetry
        .activities
        .get(id)
        .await?
        .filter(|activity| {
            activity.owner_id == user.user_id.to_string() || activity.visibility == "public"
        })
        .ok_or_else(|| ApiError::not_found("no such activity"))?;
    let Some(start_ms) = parse_time(&activity.start_time) else {
        return Ok(Json(BTreeMap::new()));
    };
    let end_ms = parse_time(&activity.end_time).unwrap_or_else(|| Utc::now().timestamp_millis());
    let device =
        crate::grpc::device_tag(&activity.source, &activity.device_id, &activity.activity_id);
    let rows = telemetry
        .influx
        .samples(&activity.owner_id, device.as_deref(), start_ms, end_ms)
        .await
        .map_err(|error| ApiError::unavailable(error, 2))?;
    let original_size = rows.len();
    let mut all = build(&rows, start_ms);
    let indices: Option<Vec<usize>> = threshold.map(|threshold| {
        let x: Vec<f64> = rows.iter().map(|row| row.time_ms as f64).collect();
        let primary = [
            "heartrate",
            "watts",
            "velocity_smooth",
            "altitude",
            "distance",
        ]
        .iter()
        .find_map(|name| all.get(name))
        .map(|values| {
            values
                .iter()
                .map(|v| v.as_f64().unwrap_or(0.0))
                .collect::<Vec<_>>()
        })
        .unwrap_or_else(|| vec![0.0; rows.len()]);
        lttb(&x, &primary, threshold)
    });
    let mut response = BTreeMap::new();
    for name in wanted {
        let Some(values) = all.remove(name) else {
            continue;
        };
        let data = match &indices {
            Some(indices) => indices.iter().map(|&i| values[i].clone()).collect(),
            None => values,
        };
        response.insert(
            name.to_owned(),
            Stream {
                data,
                original_size,
                resolution: resolution.clone(),
            },
        );
    }
    Ok(Json(response))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn distance_along_a_track_follows_the_great_circle() {
        // One degree of latitude is about 111.2 km.
        let d = haversine_m((45.0, 7.0), (46.0, 7.0));
        assert!((d - 111_195.0).abs() < 100.0, "{d}");
    }

    #[test]
    fn streams_have_equal_lengths_and_skip_types_without_data() {
        let rows: Vec<Row> = (0..10)
            .map(|i| Row {
                time_ms: 1_000 * i,
                values: [
                    Some(45.0 + i as f64 * 0.0001),
                    Some(7.0),
                    Some(100.0 + i as f64),
                    Some(140.0),
                    None,
                    None,
                    None,
                    None,
                    None,
                ],
            })
            .collect();
        let streams = build(&rows, 0);
        assert!(streams.contains_key("heartrate") && streams.contains_key("distance"));
        assert!(!streams.contains_key("watts"));
        assert!(streams.values().all(|values| values.len() == 10));
        let distance = streams["distance"]
            .last()
            .and_then(Value::as_f64)
            .expect("distance");
        assert!((distance - 100.0).abs() < 1.0, "{distance}");
    }

    proptest! {
        #[test]
        fn lttb_keeps_the_ends_in_order_and_the_threshold(n in 0usize..2000, threshold in 0usize..300) {
            let x: Vec<f64> = (0..n).map(|i| i as f64).collect();
            let y: Vec<f64> = (0..n).map(|i| ((i * 7919) % 113) as f64).collect();
            let kept = lttb(&x, &y, threshold);
            if threshold >= 3 && threshold < n {
                prop_assert_eq!(kept.len(), threshold);
                prop_assert_eq!(kept[0], 0);
                prop_assert_eq!(*kept.last().expect("last"), n - 1);
            } else {
                prop_assert_eq!(kept.len(), n);
            }
            prop_assert!(kept.windows(2).all(|pair| pair[0] < pair[1]));
        }
    }
}

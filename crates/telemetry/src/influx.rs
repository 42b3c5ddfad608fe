//! InfluxDB through its v1 HTTP API: line-protocol writes and InfluxQL reads, so the same code
//! runs against InfluxDB 1.x and the v1 compatibility endpoints of 2.x and 3.x.

use std::{fmt::Write as _, time::Duration};

use anyhow::Context as _;
use serde::Deserialize;
use stride_proto::telemetry::v1::StoredBatch;

use crate::samples::values;

/// The measurement every sample is written to.
pub const MEASUREMENT: &str = "samples";

/// Field names, in the order they are read back.
pub const FIELDS: [&str; 9] = [
    "lat", "lon", "alt", "hr", "cad", "pwr", "spd", "dist", "temp",
];

/// Appends a batch as line protocol (millisecond precision). Tags are UUIDs, which need no
/// escaping. A point is identified by measurement, tags and time, so writing the same batch
/// twice stores it once.
pub fn write_lines(batch: &StoredBatch, out: &mut String) {
    for sample in &batch.samples {
        let mut first = true;
        let _ = write!(
            out,
            "{MEASUREMENT},user_id={},device_id={} ",
            batch.user_id, batch.device_id
        );
        for (name, value) in FIELDS.iter().zip(values(sample)) {
            if let Some(value) = value {
                if !first {
                    out.push(',');
                }
                first = false;
                let _ = write!(out, "{name}={value}");
            }
        }
        debug_assert!(!first, "validated samples carry a value");
        let _ = writeln!(out, " {}", sample.time_ms);
    }
}

/// A sample read back: time in ms and the values in [`FIELDS`] order.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Unix epoch milliseconds.
    pub time_ms: i64,
    /// Values in [`FIELDS`] order.
    pub values: [Option<f64>; 9],
}

/// A client of one InfluxDB database.
#[derive(Debug, Clone)]
pub struct Influx {
    http: reqwest::Client,
    url: String,
    database: String,
}

#[derive(Deserialize)]
struct QueryResponse {
    #[serde(default)]
    results: Vec<QueryResult>,
}

#[derive(Deserialize)]
struct QueryResult {
    #[serde(default)]
    series: Vec<Series>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct Series {
    columns: Vec<String>,
    values: Vec<Vec<serde_json::Value>>,
}

/// Quotes a string for InfluxQL (tag values in WHERE clauses).
fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

impl Influx {
    /// A client of `database` at `url`.
    pub fn new(url: &str, database: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
            url: url.trim_end_matches('/').to_owned(),
            database: database.to_owned(),
        }
    }

    async fn query_raw(&self, query: &str) -> anyhow::Result<QueryResponse> {
        let response = self
            .http
            .post(format!("{}/query", self.url))
            .form(&[
                ("db", self.database.as_str()),
                ("q", query),
                ("epoch", "ms"),
            ])
            .send()
            .await
            .context("InfluxDB is unreachable")?;
        let status = response.status();
        let body: QueryResponse = response
            .json()
            .await
            .with_context(|| format!("InfluxDB answered {status} with an unreadable body"))?;
        if let Some(error) = body.results.iter().find_map(|result| result.error.clone()) {
            anyhow::bail!("InfluxDB refused the query: {error}");
        }
        Ok(body)
    }

    /// Creates the database unless it exists, and makes `samples` (kept for `retention`,
    /// an InfluxQL duration or `INF`) its default retention policy.
    pub async fn ensure_database(&self, retention: &str) -> anyhow::Result<()> {
        let name = self.database.replace('"', "");
        self.query_raw(&format!("CREATE DATABASE \"{name}\""))
            .await?;
        let create = format!(
            "CREATE RETENTION POLICY \"samples\" ON \"{name}\" DURATION {retention} REPLICATION 1 DEFAULT"
        );
        if self.query_raw(&create).await.is_err() {
            // It exists with other settings: bring it to the configured ones.
            self.query_raw(&format!(
                "ALTER RETENTION POLICY \"samples\" ON \"{name}\" DURATION {retention} DEFAULT"
            ))
            .await?;
        }
        Ok(())
    }

    /// Whether InfluxDB answers.
    pub async fn ping(&self) -> anyhow::Result<()> {
        let response = self
            .http
            .get(format!("{}/ping", self.url))
            .timeout(Duration::from_secs(2))
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "InfluxDB ping answered {}",
            response.status()
        );
        Ok(())
    }

    /// Writes line protocol (millisecond precision). `lines` is anything cheap to hand over, such as
    /// `bytes::Bytes`, which a retry clones without copying.
    pub async fn write(&self, lines: impl Into<reqwest::Body>) -> anyhow::Result<()> {
        let response = self
            .http
            .post(format!("{}/write", self.url))
            .query(&[("db", self.database.as_str()), ("precision", "ms")])
            .body(lines)
            .send()
            .await
            .context("InfluxDB is unreachable")?;
        if !response.status().is_success() {
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            anyhow::bail!("InfluxDB refused the write ({status}): {text}");
        }
        Ok(())
    }

    /// The samples of a user's device (or all of a user's devices) in `[from, to]`, in time
    /// order.
    pub async fn samples(
        &self,
        user_id: &str,
        device_id: Option<&str>,
        from_ms: i64,
        to_ms: i64,
    ) -> anyhow::Result<Vec<Row>> {
        let mut query = format!(
            "SELECT {} FROM {MEASUREMENT} WHERE user_id = {} AND time >= {}ms AND time <= {}ms",
            FIELDS.join(", "),
            quote(user_id),
            from_ms,
            to_ms
        );
        if let Some(device_id) = device_id {
            let _ = write!(query, " AND device_id = {}", quote(device_id));
        }
        let response = self.query_raw(&query).await?;
        let mut rows = Vec::new();
        for series in response
            .results
            .into_iter()
            .flat_map(|result| result.series)
        {
            let positions: Vec<Option<usize>> = FIELDS
                .iter()
                .map(|field| series.columns.iter().position(|column| column == field))
                .collect();
            for value in series.values {
                let Some(time_ms) = value.first().and_then(serde_json::Value::as_i64) else {
                    continue;
                };
                let mut values = [None; 9];
                for (slot, position) in values.iter_mut().zip(&positions) {
                    *slot = position
                        .and_then(|p| value.get(p))
                        .and_then(serde_json::Value::as_f64);
                }
                rows.push(Row { time_ms, values });
            }
        }
        Ok(rows)
    }

    /// Deletes every sample of a user.
    pub async fn delete_user(&self, user_id: &str) -> anyhow::Result<()> {
        self.query_raw(&format!(
            "DELETE FROM {MEASUREMENT} WHERE user_id = {}",
            quote(user_id)
        ))
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use stride_proto::telemetry::v1::Sample;

    use super::*;

    #[test]
    fn line_protocol_holds_only_present_values_with_millisecond_times() {
        let batch = StoredBatch {
            user_id: "u1".into(),
            device_id: "d1".into(),
            activity_id: "a1".into(),
            seq: 1,
            samples: vec![
                Sample {
                    time_ms: 1_000,
                    heart_rate: Some(140.0),
                    power_w: Some(250.5),
                    ..Sample::default()
                },
                Sample {
                    time_ms: 2_000,
                    lat: Some(48.1),
                    lon: Some(11.5),
                    ..Sample::default()
                },
            ],
        };
        let mut out = String::new();
        write_lines(&batch, &mut out);
        assert_eq!(
            out,
            "samples,user_id=u1,device_id=d1 hr=140,pwr=250.5 1000\n\
             samples,user_id=u1,device_id=d1 lat=48.1,lon=11.5 2000\n"
        );
    }

    #[test]
    fn quoted_tag_values_cannot_break_out_of_the_query() {
        assert_eq!(quote("a'b\\"), "'a\\'b\\\\'");
    }
}

//! What training asks telemetry about a workout's samples.

use chrono::{DateTime, Datelike, Utc};
use stride_events::training::ActivitySummary;
use stride_platform::error::ApiError;
use stride_proto::{identity::v1::GetProfilesRequest, telemetry::v1::SummarizeRequest};
use uuid::Uuid;

use crate::{Training, store::ActivityRow};

/// Totals and details computed from stored samples.
#[derive(Debug, Clone, Default)]
pub struct Computed {
    /// How many samples there were.
    pub sample_count: u64,
    /// The summary.
    pub summary: ActivitySummary,
    /// Per-km splits.
    pub splits: serde_json::Value,
    /// Best efforts.
    pub best_efforts: serde_json::Value,
}

/// What summaries need to know about the owner (zones, calories).
#[derive(Debug, Clone, Default)]
pub struct Physiology {
    /// bpm.
    pub max_heart_rate: Option<f64>,
    /// bpm.
    pub resting_heart_rate: Option<f64>,
    /// kg.
    pub weight_kg: Option<f64>,
}

/// The owner's physiology from identity; unknown when identity cannot answer.
pub async fn physiology(training: &Training, owner: Uuid) -> Physiology {
    let mut identity = training.identity.clone();
    match identity
        .get_profiles(GetProfilesRequest {
            user_ids: vec![owner.to_string()],
        })
        .await
    {
        Ok(response) => response
            .into_inner()
            .profiles
            .into_iter()
            .next()
            .map(|profile| Physiology {
                max_heart_rate: profile.max_heart_rate.or_else(|| {
                    // Without a measured maximum, the usual 220 - age estimate.
                    profile
                        .birth_year
                        .map(|year| f64::from(220 - (Utc::now().year() - year)))
                }),
                resting_heart_rate: profile.resting_heart_rate,
                weight_kg: profile.weight_kg,
            })
            .unwrap_or_default(),
        Err(status) => {
            tracing::warn!(%status, "cannot read the owner's physiology");
            Physiology::default()
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ApiError> {
    serde_json::from_str(text).map_err(ApiError::internal)
}

/// Summarises the samples telemetry stored for `row` between its start and `end`. `None` when
/// no telemetry service runs in this installation; 503 when it runs but cannot answer.
pub async fn summarize(
    training: &Training,
    row: &ActivityRow,
    end: DateTime<Utc>,
) -> Result<Option<Computed>, ApiError> {
    let Some(start) = row.start_time else {
        return Ok(None);
    };
    let physiology = physiology(training, row.owner_id).await;
    let mut streams = training.streams.clone();
    let response = match streams
        .summarize(SummarizeRequest {
            activity_id: row.id.to_string(),
            owner_id: row.owner_id.to_string(),
            device_id: row.device_id.map(|id| id.to_string()).unwrap_or_default(),
            source: row.source.clone(),
            start_time_ms: start.timestamp_millis(),
            end_time_ms: end.timestamp_millis(),
            sport: row.sport.clone(),
            max_heart_rate: physiology.max_heart_rate,
            resting_heart_rate: physiology.resting_heart_rate,
            weight_kg: physiology.weight_kg,
        })
        .await
    {
        Ok(response) => response.into_inner(),
        Err(status) if status.code() == tonic::Code::Unimplemented => return Ok(None),
        Err(status) => {
            return Err(ApiError::unavailable(
                anyhow::anyhow!("telemetry: {status}"),
                2,
            ));
        }
    };
    if response.sample_count == 0 {
        return Ok(None);
    }
    Ok(Some(Computed {
        sample_count: response.sample_count,
        summary: parse(&response.summary_json)?,
        splits: parse(&response.splits_json)?,
        best_efforts: parse(&response.best_efforts_json)?,
    }))
}

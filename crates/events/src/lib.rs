//! Stride's events: the envelope every event travels in, and the typed payloads that are the
//! contracts between bounded contexts.
//!
//! An event type is named `<context>.<name>.v<major>` and published on the JetStream subject
//! `events.<type>`. A payload type implements [`EventData`], which ties it to its name, so
//! producers cannot publish a payload under the wrong type and consumers decode by type.
//! Changing the meaning of an event means a new major version next to the old one.
//!
//! - [`Envelope`]: the JSON document on the wire.
//! - [`identity`]: events published by the identity service.
//! - [`training`]: events published by the training service.
//! - [`gamification`]: events published by the gamification service.
//! - [`Sport`]: the sport names every context shares.

pub mod gamification;
pub mod identity;
mod sport;
pub mod training;

pub use sport::Sport;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use uuid::Uuid;

/// The subject prefix under which every event is published.
pub const SUBJECT_PREFIX: &str = "events";

/// A payload with a fixed event type name.
pub trait EventData: Serialize + DeserializeOwned {
    /// `<context>.<name>.v<major>`, e.g. `identity.user_deleted.v1`.
    const TYPE: &'static str;
}

/// The JSON envelope of every event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// UUIDv7, unique per event; also the broker's deduplication id.
    pub id: Uuid,
    /// `<context>.<name>.v<major>`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// When the state change happened (RFC 3339, UTC).
    pub occurred_at: DateTime<Utc>,
    /// The service that produced it, e.g. `identity`.
    pub producer: String,
    /// The id of the aggregate the event is about (a user id, an activity id, ...).
    pub subject: String,
    /// The payload, whose shape is given by `type`.
    pub data: serde_json::Value,
}

/// Why an envelope could not be built or read.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The envelope holds another type than the one asked for.
    #[error("expected an event of type {expected}, found {found}")]
    WrongType {
        /// The type asked for.
        expected: &'static str,
        /// The type in the envelope.
        found: String,
    },
    /// The JSON did not match the expected shape.
    #[error("malformed event: {0}")]
    Malformed(#[from] serde_json::Error),
}

impl Envelope {
    /// Wraps a payload in a new envelope with a fresh UUIDv7 id.
    pub fn new<T: EventData>(
        producer: &str,
        subject: impl Into<String>,
        data: &T,
    ) -> Result<Self, EventError> {
        Ok(Self {
            id: Uuid::now_v7(),
            event_type: T::TYPE.to_owned(),
            occurred_at: Utc::now(),
            producer: producer.to_owned(),
            subject: subject.into(),
            data: serde_json::to_value(data)?,
        })
    }

    /// The JetStream subject this event is published on, under `prefix` (empty in production;
    /// tests use it to keep their streams apart).
    pub fn nats_subject(&self, prefix: &str) -> String {
        subject_for(prefix, &self.event_type)
    }

    /// Decodes the payload as `T`, checking the type name first.
    pub fn decode<T: EventData>(&self) -> Result<T, EventError> {
        if self.event_type != T::TYPE {
            return Err(EventError::WrongType {
                expected: T::TYPE,
                found: self.event_type.clone(),
            });
        }
        Ok(serde_json::from_value(self.data.clone())?)
    }

    /// Whether this envelope carries events of type `T`.
    pub fn is<T: EventData>(&self) -> bool {
        self.event_type == T::TYPE
    }
}

/// The subject of an event type: `<prefix>events.<type>`.
pub fn subject_for(prefix: &str, event_type: &str) -> String {
    format!("{prefix}{SUBJECT_PREFIX}.{event_type}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::UserDeleted;

    #[test]
    fn envelope_round_trips_through_json_and_keeps_the_type_name() {
        let user_id = Uuid::now_v7();
        let envelope = Envelope::new("identity", user_id.to_string(), &UserDeleted { user_id })
            .expect("serialisable");
        let json = serde_json::to_value(&envelope).expect("serialisable");
        assert_eq!(json["type"], "identity.user_deleted.v1");
        assert_eq!(json["producer"], "identity");
        let back: Envelope = serde_json::from_value(json).expect("readable");
        assert_eq!(back, envelope);
        assert_eq!(
            back.decode::<UserDeleted>().expect("typed").user_id,
            user_id
        );
        assert_eq!(back.nats_subject(""), "events.identity.user_deleted.v1");
    }

    #[test]
    fn decoding_as_another_type_is_refused() {
        let user_id = Uuid::now_v7();
        let envelope = Envelope::new("identity", user_id.to_string(), &UserDeleted { user_id })
            .expect("serialisable");
        let error = envelope
            .decode::<crate::identity::UserRegistered>()
            .expect_err("wrong type");
        assert!(matches!(error, EventError::WrongType { .. }));
    }

    proptest::proptest! {
        #[test]
        fn every_envelope_gets_a_new_time_ordered_id(count in 2usize..50) {
            let ids: Vec<Uuid> = (0..count)
                .map(|_| Envelope::new("t", "s", &UserDeleted { user_id: Uuid::nil() }).map(|e| e.id))
                .collect::<Result<_, _>>()
                .expect("serialisable");
            let mut sorted = ids.clone();
            sorted.sort();
            sorted.dedup();
            proptest::prop_assert_eq!(sorted.len(), ids.len());
        }
    }
}

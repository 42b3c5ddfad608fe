//! How an accepted batch is kept in the `TELEMETRY` stream and on the live subjects.
//!
//! The payload is the batch in the [`columns`](crate::columns) layout, about a third of
//! the device's protobuf, and the message headers say whose it is ([`USER_HEADER`],
//! [`DEVICE_HEADER`]) and how it is laid out ([`LAYOUT_HEADER`]). Fewer bytes through the
//! broker cost it less CPU and disk for every batch, and let
//! `STRIDE_TELEMETRY_BUFFER_MAX_BYTES` hold three times the backlog.
//!
//! [`decode`] also reads what earlier versions stored, so a buffer holding a backlog from
//! before an upgrade drains as before: messages with the owner headers and no layout are
//! the device's `SampleBatch`, and messages without headers are `StoredBatch`es. A layout
//! this version does not know is [`Unreadable::Layout`], which a writer leaves in the buffer
//! for a newer one rather than dropping it.

use async_nats::HeaderMap;
use bytes::Bytes;
use prost::Message as _;
use stride_proto::telemetry::v1::{SampleBatch, StoredBatch};

use crate::columns;

/// The header with the id of the user the batch belongs to.
pub const USER_HEADER: &str = "Stride-User";

/// The header with the id of the device that sent the batch.
pub const DEVICE_HEADER: &str = "Stride-Device";

/// The header that names the payload's layout.
pub const LAYOUT_HEADER: &str = "Stride-Layout";

/// The layout this version writes.
pub const LAYOUT: &str = "columns-1";

/// The header with the broker's dedup id of a batch: device and batch number.
const MESSAGE_ID_HEADER: &str = "Nats-Msg-Id";

/// Why a message is not a batch this version can read.
#[derive(Debug, thiserror::Error)]
pub enum Unreadable {
    /// A layout of a newer version.
    #[error("unknown layout {0:?}")]
    Layout(String),
    #[error(transparent)]
    Columns(#[from] columns::ColumnsError),
    #[error(transparent)]
    Protobuf(#[from] prost::DecodeError),
}

/// An accepted batch as a message: its headers (with the dedup id) and its payload.
pub fn message(user_id: &str, device_id: &str, batch: &SampleBatch) -> (HeaderMap, Bytes) {
    let mut headers = payload_headers(user_id, device_id);
    headers.insert(
        MESSAGE_ID_HEADER,
        format!("{device_id}:{}", batch.seq).as_str(),
    );
    (headers, Bytes::from(columns::encode(batch)))
}

/// Whose batch it is and how it is laid out: the headers of a live publish, and of a
/// buffer message with its dedup id added.
pub fn payload_headers(user_id: &str, device_id: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(USER_HEADER, user_id);
    headers.insert(DEVICE_HEADER, device_id);
    headers.insert(LAYOUT_HEADER, LAYOUT);
    headers
}

/// Reads a batch from a buffer or live message, in any layout this or an earlier version
/// wrote.
pub fn decode(headers: Option<&HeaderMap>, payload: &[u8]) -> Result<StoredBatch, Unreadable> {
    let owner = headers.and_then(|headers| {
        Some((
            headers.get(USER_HEADER)?.as_str(),
            headers.get(DEVICE_HEADER)?.as_str(),
        ))
    });
    let Some((user_id, device_id)) = owner else {
        return Ok(StoredBatch::decode(payload)?);
    };
    let layout = headers.and_then(|headers| headers.get(LAYOUT_HEADER));
    let batch = match layout.map(|layout| layout.as_str()) {
        Some(LAYOUT) => columns::decode(payload)?,
        Some(other) => return Err(Unreadable::Layout(other.to_owned())),
        None => SampleBatch::decode(payload)?,
    };
    Ok(StoredBatch {
        user_id: user_id.to_owned(),
        device_id: device_id.to_owned(),
        activity_id: batch.activity_id,
        seq: batch.seq,
        samples: batch.samples,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use stride_proto::telemetry::v1::Sample;

    use super::*;

    fn batch(samples: usize) -> SampleBatch {
        SampleBatch {
            activity_id: "0b6a1d4e-2f7c-4c1e-9a51-0d2f3c4b5a69".into(),
            seq: 42,
            samples: (0..samples as i64)
                .map(|k| Sample {
                    time_ms: 1_700_000_000_000 + k * 1000,
                    lat: Some(46.05 + k as f64 * 1e-5),
                    lon: Some(14.5),
                    heart_rate: Some(140.0),
                    ..Default::default()
                })
                .collect(),
        }
    }

    #[test]
    fn a_batch_is_stored_in_columns_with_its_owner_and_dedup_id() {
        let batch = batch(300);
        let (headers, payload) = message("user", "device", &batch);
        assert_eq!(
            headers.get(MESSAGE_ID_HEADER).unwrap().as_str(),
            "device:42"
        );
        assert_eq!(headers.get(LAYOUT_HEADER).unwrap().as_str(), LAYOUT);
        assert!(
            payload.len() * 3 < batch.encoded_len(),
            "{} bytes, {} in protobuf",
            payload.len(),
            batch.encoded_len()
        );
        let stored = decode(Some(&headers), &payload).unwrap();
        assert_eq!(stored.user_id, "user");
        assert_eq!(stored.device_id, "device");
        assert_eq!(stored.activity_id, batch.activity_id);
        assert_eq!(stored.seq, 42);
        assert_eq!(stored.samples, batch.samples);
    }

    #[test]
    fn device_protobuf_stored_by_the_version_before_still_reads() {
        let batch = batch(2);
        let mut headers = HeaderMap::new();
        headers.insert(USER_HEADER, "user");
        headers.insert(DEVICE_HEADER, "device");
        let stored = decode(Some(&headers), &batch.encode_to_vec()).unwrap();
        assert_eq!((stored.user_id.as_str(), stored.seq), ("user", 42));
        assert_eq!(stored.samples, batch.samples);
    }

    #[test]
    fn a_layout_of_a_newer_version_is_told_apart_from_damage() {
        let (mut headers, payload) = message("user", "device", &batch(2));
        assert!(matches!(
            decode(Some(&headers), &payload[..payload.len() - 1]),
            Err(Unreadable::Columns(_))
        ));
        headers.insert(LAYOUT_HEADER, "columns-2");
        assert!(matches!(
            decode(Some(&headers), &payload),
            Err(Unreadable::Layout(layout)) if layout == "columns-2"
        ));
    }

    #[test]
    fn batches_stored_by_earlier_versions_still_read() {
        let old = StoredBatch {
            user_id: "user".into(),
            device_id: "device".into(),
            activity_id: "activity".into(),
            seq: 7,
            samples: batch(2).samples,
        };
        let mut headers = HeaderMap::new();
        headers.insert(MESSAGE_ID_HEADER, "device:7");
        assert_eq!(decode(Some(&headers), &old.encode_to_vec()).unwrap(), old);
        assert_eq!(decode(None, &old.encode_to_vec()).unwrap(), old);
    }

    proptest! {
        /// Whatever the batch, what is read back is the batch with its owner.
        #[test]
        fn what_is_stored_reads_back_as_the_batch(
            seq in any::<u64>(),
            times in proptest::collection::vec(any::<i64>(), 0..20),
            heart_rate in proptest::option::of(20.0f64..250.0),
        ) {
            let batch = SampleBatch {
                activity_id: "a".into(),
                seq,
                samples: times
                    .into_iter()
                    .map(|time_ms| Sample { time_ms, heart_rate, ..Default::default() })
                    .collect(),
            };
            let (headers, payload) = message("u", "d", &batch);
            let stored = decode(Some(&headers), &payload).unwrap();
            prop_assert_eq!(stored.samples, batch.samples);
            prop_assert_eq!(stored.seq, seq);
            prop_assert_eq!((stored.user_id.as_str(), stored.device_id.as_str()), ("u", "d"));
        }
    }
}

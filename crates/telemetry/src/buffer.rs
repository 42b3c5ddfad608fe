//! How an accepted batch is kept in the `TELEMETRY` stream and on the live subjects.
//!
//! The payload is the device's own `SampleBatch`, and the message headers say whose it is
//! ([`USER_HEADER`], [`DEVICE_HEADER`]). A protobuf body that decodes to exactly its own bytes
//! is stored as it came, so the request path does not encode a thousand samples again just
//! to put two ids next to them; any other body (JSON, or protobuf with unknown fields or in
//! a non-canonical encoding) is encoded afresh, so the buffer never keeps bytes that are not
//! samples.
//!
//! Messages without those headers are `StoredBatch`es, as versions before this one stored
//! them; [`decode`] reads both, so a buffer holding a backlog from before an upgrade drains
//! as before.

use async_nats::HeaderMap;
use bytes::Bytes;
use prost::Message as _;
use stride_proto::telemetry::v1::{SampleBatch, StoredBatch};

/// The header with the id of the user the batch belongs to.
pub const USER_HEADER: &str = "Stride-User";

/// The header with the id of the device that sent the batch.
pub const DEVICE_HEADER: &str = "Stride-Device";

/// The header with the broker's dedup id of a batch: device and batch number.
const MESSAGE_ID_HEADER: &str = "Nats-Msg-Id";

/// An accepted batch as a message: its headers (with the dedup id) and its payload. `body`
/// is the request body the batch was decoded from, when it was protobuf.
pub fn message(
    user_id: &str,
    device_id: &str,
    batch: &SampleBatch,
    body: Option<Bytes>,
) -> (HeaderMap, Bytes) {
    let mut headers = owner_headers(user_id, device_id);
    headers.insert(
        MESSAGE_ID_HEADER,
        format!("{device_id}:{}", batch.seq).as_str(),
    );
    let payload = match body {
        // Decoding and encoding again would give the same bytes, so keep these.
        Some(body) if batch.encoded_len() == body.len() => body,
        _ => Bytes::from(batch.encode_to_vec()),
    };
    (headers, payload)
}

/// Whose batch it is, which also says how to read it: the headers of a live publish, and
/// of a buffer message with its dedup id added.
pub fn owner_headers(user_id: &str, device_id: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(USER_HEADER, user_id);
    headers.insert(DEVICE_HEADER, device_id);
    headers
}

/// Reads a batch from a buffer or live message, in either layout.
pub fn decode(
    headers: Option<&HeaderMap>,
    payload: &[u8],
) -> Result<StoredBatch, prost::DecodeError> {
    let owner = headers.and_then(|headers| {
        Some((
            headers.get(USER_HEADER)?.as_str(),
            headers.get(DEVICE_HEADER)?.as_str(),
        ))
    });
    let Some((user_id, device_id)) = owner else {
        return StoredBatch::decode(payload);
    };
    let batch = SampleBatch::decode(payload)?;
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
    fn a_canonical_protobuf_body_is_stored_as_it_came() {
        let batch = batch(3);
        let body = Bytes::from(batch.encode_to_vec());
        let (headers, payload) = message("user", "device", &batch, Some(body.clone()));
        assert_eq!(
            payload.as_ptr(),
            body.as_ptr(),
            "the body itself, not a copy"
        );
        assert_eq!(
            headers.get(MESSAGE_ID_HEADER).unwrap().as_str(),
            "device:42"
        );
        let stored = decode(Some(&headers), &payload).unwrap();
        assert_eq!(stored.user_id, "user");
        assert_eq!(stored.device_id, "device");
        assert_eq!(stored.activity_id, batch.activity_id);
        assert_eq!(stored.seq, 42);
        assert_eq!(stored.samples, batch.samples);
    }

    #[test]
    fn a_body_with_more_than_the_samples_is_encoded_afresh() {
        let batch = batch(2);
        let mut body = batch.encode_to_vec();
        // An unknown field 15 holding 1,000 bytes.
        body.extend_from_slice(&[0x7a, 0xe8, 0x07]);
        body.extend(std::iter::repeat_n(b'x', 1000));
        assert_eq!(SampleBatch::decode(body.as_slice()).unwrap(), batch);
        let (_, payload) = message("user", "device", &batch, Some(Bytes::from(body)));
        assert_eq!(payload.len(), batch.encoded_len());
        let stored = decode(Some(&owner_headers("user", "device")), &payload).unwrap();
        assert_eq!(stored.samples, batch.samples);
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
        /// Whatever the batch, and whether it came as protobuf or not, what is read back
        /// is the batch with its owner.
        #[test]
        fn what_is_stored_reads_back_as_the_batch(
            seq in any::<u64>(),
            times in proptest::collection::vec(any::<i64>(), 0..20),
            heart_rate in proptest::option::of(20.0f64..250.0),
            from_protobuf in any::<bool>(),
        ) {
            let batch = SampleBatch {
                activity_id: "a".into(),
                seq,
                samples: times
                    .into_iter()
                    .map(|time_ms| Sample { time_ms, heart_rate, ..Default::default() })
                    .collect(),
            };
            let body = from_protobuf.then(|| Bytes::from(batch.encode_to_vec()));
            let (headers, payload) = message("u", "d", &batch, body);
            let stored = decode(Some(&headers), &payload).unwrap();
            prop_assert_eq!(stored.samples, batch.samples);
            prop_assert_eq!(stored.seq, seq);
            prop_assert_eq!((stored.user_id.as_str(), stored.device_id.as_str()), ("u", "d"));
        }
    }
}

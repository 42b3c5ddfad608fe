//! A device's protobuf `SampleBatch`, read straight from the request body.
//!
//! It reads what prost's generated `SampleBatch::decode` reads, with the same result and
//! refusing the same bodies (a property test holds the two together), but for the one
//! message the ingest path reads on every request it does less work:
//!
//! - it counts the samples first (one hop per sample over the body), so their vector is
//!   allocated once at its final size instead of doubling about ten times and copying the
//!   samples each time (a 1,000-sample batch is 152 KB of `Sample`s);
//! - the keys of a `Sample`'s own fields are one byte each and are matched as such; only
//!   other fields go through the general path.
//!
//! It departs from prost in one way, on purpose: a body with more samples than a batch may
//! hold ([`MAX_SAMPLES`]) is refused when they are counted, before anything is allocated.
//! An empty sample is two bytes on the wire and 152 in memory, so a 1 MiB body could
//! otherwise become 80 MB of samples before validation refused it.
//!
//! The protobuf wire format: a message is a sequence of fields, each a varint key
//! (`number << 3 | wire type`) and a value: a varint (type 0), eight bytes (1), a varint
//! length and that many bytes (2) or four bytes (5), or a group (a proto2 relic): fields up
//! to an end key (4) of the start key's (3) number. Fields this version does not know,
//! groups among them, are passed over.

use stride_proto::telemetry::v1::{Sample, SampleBatch};

use crate::columns;
use crate::samples::MAX_SAMPLES;

/// Why a body is not a `SampleBatch`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("it ends in the middle of a field")]
    Truncated,
    #[error("a varint is longer than ten bytes")]
    LongVarint,
    #[error("field {0} has wire type {1}, which it cannot have")]
    WireType(u64, u8),
    #[error("a field has the unknown wire type {0}")]
    UnknownWireType(u8),
    #[error("a field has number 0")]
    FieldZero,
    #[error("a group ends that did not start")]
    GroupEnd,
    #[error("groups are nested too deep")]
    TooDeep,
    #[error("activity_id is not UTF-8")]
    Utf8,
    /// More samples than a batch may hold; the body is refused before they are read.
    #[error("a batch holds at most {MAX_SAMPLES} samples, this one has {0}")]
    TooManySamples(usize),
}

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LENGTH: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const FIXED32: u8 = 5;

/// How deep prost reads nested messages and groups: the batch is at this depth, its samples
/// one below.
const DEPTH: u32 = 100;

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn varint(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for (at, &byte) in self.bytes.iter().enumerate().take(10) {
            // The tenth byte holds the 64th bit only; prost refuses more.
            if at == 9 && byte > 1 {
                return Err(WireError::LongVarint);
            }
            value |= u64::from(byte & 0x7f) << (7 * at);
            if byte < 0x80 {
                self.bytes = &self.bytes[at + 1..];
                return Ok(value);
            }
        }
        Err(if self.bytes.len() >= 10 {
            WireError::LongVarint
        } else {
            WireError::Truncated
        })
    }

    fn take(&mut self, count: usize) -> Result<&'a [u8], WireError> {
        if count > self.bytes.len() {
            return Err(WireError::Truncated);
        }
        let (taken, rest) = self.bytes.split_at(count);
        self.bytes = rest;
        Ok(taken)
    }

    fn fixed64(&mut self) -> Result<u64, WireError> {
        let bytes = self.take(8)?;
        Ok(u64::from_le_bytes(bytes.try_into().expect("eight bytes")))
    }

    fn length_delimited(&mut self) -> Result<&'a [u8], WireError> {
        let length = self.varint()?;
        self.take(usize::try_from(length).map_err(|_| WireError::Truncated)?)
    }

    /// A field's number and wire type.
    fn key(&mut self) -> Result<(u64, u8), WireError> {
        let key = self.varint()?;
        // prost reads keys as 32-bit and refuses larger ones.
        if key > u64::from(u32::MAX) {
            return Err(WireError::LongVarint);
        }
        let (number, wire_type) = (key >> 3, (key & 7) as u8);
        if wire_type > FIXED32 {
            return Err(WireError::UnknownWireType(wire_type));
        }
        if number == 0 {
            return Err(WireError::FieldZero);
        }
        Ok((number, wire_type))
    }

    /// Passes over the value of a field this message does not have, `depth` levels from
    /// the deepest prost reads.
    fn skip(&mut self, number: u64, wire_type: u8, depth: u32) -> Result<(), WireError> {
        if depth == 0 {
            return Err(WireError::TooDeep);
        }
        match wire_type {
            VARINT => self.varint().map(drop),
            FIXED64 => self.take(8).map(drop),
            LENGTH => self.length_delimited().map(drop),
            FIXED32 => self.take(4).map(drop),
            START_GROUP => loop {
                match self.key()? {
                    (inner, END_GROUP) if inner == number => return Ok(()),
                    (_, END_GROUP) => return Err(WireError::GroupEnd),
                    (inner, wire_type) => self.skip(inner, wire_type, depth - 1)?,
                }
            },
            _ => Err(WireError::GroupEnd),
        }
    }
}

/// Refuses a known field sent with another wire type than its own.
fn expect(number: u64, wire_type: u8, expected: u8) -> Result<(), WireError> {
    if wire_type == expected {
        Ok(())
    } else {
        Err(WireError::WireType(number, wire_type))
    }
}

/// The one-byte key of `Sample.time_ms` (field 1, a varint).
const TIME_KEY: u8 = 1 << 3 | VARINT;

/// The position among a `Sample`'s optional doubles (fields 2 to 10, each with wire type 1,
/// in order) of the field with the one-byte `key`, if it is one of them.
fn double_field(key: u8) -> Option<usize> {
    let number = usize::from(key >> 3);
    (key & 7 == FIXED64 && (2..=10).contains(&number)).then(|| number - 2)
}

fn sample(bytes: &[u8]) -> Result<Sample, WireError> {
    let mut reader = Reader { bytes };
    let mut sample = Sample::default();
    while let Some(&key) = reader.bytes.first() {
        if key == TIME_KEY {
            reader.bytes = &reader.bytes[1..];
            // int64: the varint's bits, as prost reads them.
            sample.time_ms = reader.varint()? as i64;
        } else if let Some(index) = double_field(key) {
            reader.bytes = &reader.bytes[1..];
            columns::set_field(&mut sample, index, f64::from_bits(reader.fixed64()?));
        } else {
            let (number, wire_type) = reader.key()?;
            if (1..=10).contains(&number) {
                // Its one-byte key with the right wire type was read above.
                return Err(WireError::WireType(number, wire_type));
            }
            reader.skip(number, wire_type, DEPTH - 1)?;
        }
    }
    Ok(sample)
}

/// Reads a `SampleBatch` from its protobuf encoding, refusing more than [`MAX_SAMPLES`]
/// samples before reading any.
pub fn decode(body: &[u8]) -> Result<SampleBatch, WireError> {
    let mut samples = 0usize;
    let mut counting = Reader { bytes: body };
    while !counting.is_empty() {
        let (number, wire_type) = counting.key()?;
        if number == 3 && wire_type == LENGTH {
            samples += 1;
        }
        counting.skip(number, wire_type, DEPTH)?;
    }
    if samples > MAX_SAMPLES {
        return Err(WireError::TooManySamples(samples));
    }
    let mut batch = SampleBatch {
        samples: Vec::with_capacity(samples),
        ..SampleBatch::default()
    };
    let mut reader = Reader { bytes: body };
    while !reader.is_empty() {
        match reader.key()? {
            (1, wire_type) => {
                expect(1, wire_type, LENGTH)?;
                let text =
                    std::str::from_utf8(reader.length_delimited()?).map_err(|_| WireError::Utf8)?;
                text.clone_into(&mut batch.activity_id);
            }
            (2, wire_type) => {
                expect(2, wire_type, VARINT)?;
                batch.seq = reader.varint()?;
            }
            (3, wire_type) => {
                expect(3, wire_type, LENGTH)?;
                batch.samples.push(sample(reader.length_delimited()?)?);
            }
            (number, wire_type) => reader.skip(number, wire_type, DEPTH)?,
        }
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use prost::Message as _;

    use super::*;

    fn any_value() -> impl Strategy<Value = Option<f64>> {
        proptest::option::of(prop_oneof![any::<f64>(), -200.0f64..400.0])
    }

    prop_compose! {
        fn any_sample()(
            time_ms in any::<i64>(),
            a in any_value(), b in any_value(), c in any_value(),
            d in any_value(), e in any_value(), f in any_value(),
            g in any_value(), h in any_value(), i in any_value(),
        ) -> Sample {
            Sample {
                time_ms,
                lat: a, lon: b, altitude_m: c, heart_rate: d, cadence: e,
                power_w: f, speed_mps: g, distance_m: h, temperature_c: i,
            }
        }
    }

    prop_compose! {
        fn any_batch()(
            activity_id in ".{0,40}",
            seq in any::<u64>(),
            samples in proptest::collection::vec(any_sample(), 0..40),
        ) -> SampleBatch {
            SampleBatch { activity_id, seq, samples }
        }
    }

    /// The same outcome as prost's decoder: the same batch, or a refusal from both. (The
    /// bodies here hold far fewer than [`MAX_SAMPLES`] samples, where the two part.)
    fn agrees_with_prost(body: &[u8]) -> Result<(), TestCaseError> {
        let ours = decode(body);
        let prost = SampleBatch::decode(body);
        match (&ours, &prost) {
            (Ok(ours), Ok(theirs)) => prop_assert_eq!(
                format!("{ours:?}"),
                format!("{theirs:?}"),
                "bits compared through Debug, so NaN equals NaN"
            ),
            (Err(_), Err(_)) => {}
            _ => prop_assert!(false, "ours {ours:?}, prost {prost:?}"),
        }
        Ok(())
    }

    #[test]
    fn a_device_batch_reads_back_whole() {
        let batch = SampleBatch {
            activity_id: "0b6a1d4e-2f7c-4c1e-9a51-0d2f3c4b5a69".into(),
            seq: 9,
            samples: (0..1000)
                .map(|k| Sample {
                    time_ms: 1_795_000_000_000 + k * 1000,
                    lat: Some(46.05 + k as f64 * 1e-5),
                    lon: Some(14.5),
                    heart_rate: Some(140.0),
                    temperature_c: Some(-3.5),
                    ..Default::default()
                })
                .collect(),
        };
        let decoded = decode(&batch.encode_to_vec()).expect("a batch");
        assert_eq!(decoded, batch);
        assert_eq!(decoded.samples.capacity(), 1000, "allocated once");
    }

    #[test]
    fn a_body_of_more_samples_than_a_batch_holds_is_refused_before_they_are_read() {
        // Empty samples, two bytes each: 3,600 are read (validation then says what is wrong
        // with them), one more is refused by count, as is a whole 1 MiB of them.
        let empty = |count: usize| [0x1a, 0x00].repeat(count);
        let read = decode(&empty(MAX_SAMPLES)).expect("3,600 samples");
        assert_eq!(read.samples.len(), MAX_SAMPLES);
        assert_eq!(
            decode(&empty(MAX_SAMPLES + 1)),
            Err(WireError::TooManySamples(MAX_SAMPLES + 1))
        );
        assert_eq!(
            decode(&empty(1 << 19)),
            Err(WireError::TooManySamples(1 << 19))
        );
        // prost reads them all; this is where the two part on purpose.
        assert_eq!(
            SampleBatch::decode(empty(MAX_SAMPLES + 1).as_slice())
                .expect("prost reads it")
                .samples
                .len(),
            MAX_SAMPLES + 1
        );
        // A damaged body is still refused as damaged, whatever it counts.
        let mut cut = empty(MAX_SAMPLES + 1);
        cut.push(0x1a);
        assert_eq!(decode(&cut), Err(WireError::Truncated));
    }

    #[test]
    fn damaged_bodies_are_refused_like_prost_refuses_them() {
        let body = SampleBatch {
            activity_id: "a".into(),
            seq: 1,
            samples: vec![Sample {
                time_ms: 5,
                heart_rate: Some(120.0),
                ..Default::default()
            }],
        }
        .encode_to_vec();
        for end in 0..body.len() {
            let cut = &body[..end];
            assert_eq!(
                decode(cut).is_ok(),
                SampleBatch::decode(cut).is_ok(),
                "cut at {end}"
            );
        }
        // heart_rate (5) as a varint, a group that ends as another, a string that is not
        // UTF-8, an eleven-byte varint.
        for bad in [
            &[0x1a, 0x02, 0x28, 0x01][..],
            &[0x1a, 0x02, 0x5b, 0x64],
            &[0x0a, 0x01, 0xff],
            &[
                0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ],
        ] {
            assert!(decode(bad).is_err(), "{bad:02x?}");
            assert!(SampleBatch::decode(bad).is_err(), "{bad:02x?}");
        }
        // An unknown group in a sample is passed over, as are groups nested 99 deep in it;
        // 100 is deeper than prost reads.
        let nested = |depth: usize| {
            let mut sample = vec![0x5b; depth];
            sample.extend(std::iter::repeat_n(0x5c, depth));
            sample.extend([0x29, 0, 0, 0, 0, 0, 0, 0x5e, 0x40]);
            let mut body = vec![0x1a];
            prost::encoding::encode_varint(sample.len() as u64, &mut body);
            body.extend(sample);
            body
        };
        for depth in [1, 99, 100] {
            let body = nested(depth);
            let decoded = decode(&body);
            assert_eq!(decoded.is_ok(), depth < 100, "{depth}: {decoded:?}");
            assert_eq!(decoded.ok(), SampleBatch::decode(body.as_slice()).ok());
        }
    }

    proptest! {
        #[test]
        fn every_batch_reads_back_as_prost_reads_it(batch in any_batch()) {
            agrees_with_prost(&batch.encode_to_vec())?;
        }

        /// Fields of later versions, repeated fields and fields out of order are read as
        /// prost reads them.
        #[test]
        fn unknown_and_repeated_fields_are_read_as_prost_reads_them(
            batch in any_batch(),
            extra in proptest::collection::vec(
                (1u32..20, prop_oneof![
                    any::<u64>().prop_map(Extra::Varint),
                    any::<u64>().prop_map(Extra::Fixed64),
                    any::<u32>().prop_map(Extra::Fixed32),
                    proptest::collection::vec(any::<u8>(), 0..12).prop_map(Extra::Bytes),
                ], any::<bool>()),
                0..8,
            ),
        ) {
            let mut body = batch.encode_to_vec();
            for (number, value, inside_a_sample) in extra {
                let field = value.field(number);
                if inside_a_sample && !batch.samples.is_empty() {
                    // A sample of its own with the field appended.
                    let mut sample = batch.samples[0].encode_to_vec();
                    sample.extend_from_slice(&field);
                    body.push(3 << 3 | LENGTH);
                    prost::encoding::encode_varint(sample.len() as u64, &mut body);
                    body.extend_from_slice(&sample);
                } else {
                    body.extend_from_slice(&field);
                }
            }
            agrees_with_prost(&body)?;
        }

        #[test]
        fn any_bytes_are_read_or_refused_as_prost_does(
            body in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            agrees_with_prost(&body)?;
        }
    }

    #[derive(Debug, Clone)]
    enum Extra {
        Varint(u64),
        Fixed64(u64),
        Fixed32(u32),
        Bytes(Vec<u8>),
    }

    impl Extra {
        fn field(&self, number: u32) -> Vec<u8> {
            let mut out = Vec::new();
            let key = |wire_type: u8| u64::from(number << 3 | u32::from(wire_type));
            match self {
                Self::Varint(value) => {
                    prost::encoding::encode_varint(key(VARINT), &mut out);
                    prost::encoding::encode_varint(*value, &mut out);
                }
                Self::Fixed64(value) => {
                    prost::encoding::encode_varint(key(FIXED64), &mut out);
                    out.extend_from_slice(&value.to_le_bytes());
                }
                Self::Fixed32(value) => {
                    prost::encoding::encode_varint(key(FIXED32), &mut out);
                    out.extend_from_slice(&value.to_le_bytes());
                }
                Self::Bytes(bytes) => {
                    prost::encoding::encode_varint(key(LENGTH), &mut out);
                    prost::encoding::encode_varint(bytes.len() as u64, &mut out);
                    out.extend_from_slice(bytes);
                }
            }
            out
        }
    }
}

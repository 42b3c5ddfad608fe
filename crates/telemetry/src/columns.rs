//! `columns-1`: a batch laid out by field, the way the buffer keeps it.
//!
//! A device's protobuf spends about 72 bytes on a sample of eight fields: a tag and eight
//! bytes for every double. Consecutive samples differ little, so this layout keeps each field
//! as a column and stores how each value differs from the one before:
//!
//! - the batch's `activity_id` (length and UTF-8), `seq` and number of samples `n`, as
//!   LEB128 varints;
//! - `time_ms`: the change of the step between samples (0 for a steady rate), zigzag varints;
//! - each optional field in the proto's order (`lat`, `lon`, `altitude_m`, `heart_rate`,
//!   `cadence`, `power_w`, `speed_mps`, `distance_m`, `temperature_c`), one tag byte:
//!   [`ABSENT`] when no sample has it; otherwise [`BITMAP`] is set when only some do
//!   (followed by `ceil(n / 8)` bytes, bit `i % 8` of byte `i / 8` for sample `i`), and the
//!   low seven bits say how the present values follow:
//!   - `0..=9` decimal places `p`: every value is exactly `m / 10^p` for an integer `m`
//!     (145, 3.21, 312.4 are; most readings are rounded like that), stored as the zigzag
//!     varint of `m` minus the previous value's `m`;
//!   - [`RAW`]: the value's IEEE 754 bits XOR the previous value's, as a varint, so that
//!     values sharing their sign, exponent and high digits take fewer than eight bytes.
//!
//! It is lossless: a column is stored by decimal places only when every value reads back
//! with the very same bits, and by its bits otherwise. A run sampled every second with
//! eight fields, like the benchmark's, takes about 16 bytes a sample instead of 72.

use stride_proto::telemetry::v1::{Sample, SampleBatch};

use crate::samples::values;

/// A field's tag when no sample has it (never an encoding, with or without [`BITMAP`]).
pub const ABSENT: u8 = 0x7e;
/// Set in a field's tag when a presence bitmap follows.
pub const BITMAP: u8 = 0x80;
/// A field's encoding (low bits of its tag) when its values are kept by their bits.
pub const RAW: u8 = 0x7f;
/// The most decimal places a field is kept by.
const MAX_PLACES: usize = 9;
/// Scales of 0 to [`MAX_PLACES`] decimal places, each exact in an `f64`.
const SCALE: [f64; MAX_PLACES + 1] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];
/// Integers of at most this magnitude are exact in an `f64`.
const EXACT: f64 = 9_007_199_254_740_992.0;
/// The optional fields of a [`Sample`], in the proto's order.
const FIELDS: usize = 9;

/// Why a payload is not a `columns-1` batch.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ColumnsError {
    #[error("the batch ends early")]
    Truncated,
    #[error("a varint is longer than ten bytes")]
    LongVarint,
    #[error("it counts more samples than its bytes can hold")]
    TooManySamples,
    #[error("the activity id is not UTF-8")]
    ActivityId,
    #[error("field {0} has an unknown tag {1:#04x}")]
    Tag(usize, u8),
    #[error("{0} bytes follow the last column")]
    Trailing(usize),
}

fn field(sample: &Sample, index: usize) -> Option<f64> {
    values(sample)[index]
}

/// Sets a sample's optional field `index` (in the proto's order) to `value`.
pub(crate) fn set_field(sample: &mut Sample, index: usize, value: f64) {
    let slot = match index {
        0 => &mut sample.lat,
        1 => &mut sample.lon,
        2 => &mut sample.altitude_m,
        3 => &mut sample.heart_rate,
        4 => &mut sample.cadence,
        5 => &mut sample.power_w,
        6 => &mut sample.speed_mps,
        7 => &mut sample.distance_m,
        _ => &mut sample.temperature_c,
    };
    *slot = Some(value);
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

/// `value` as an integer number of `10^-places`, when that integer reads back as exactly
/// `value`.
#[inline]
fn scaled(value: f64, places: usize) -> Option<i64> {
    let times = value * SCALE[places];
    // NaN is not less than anything either.
    if times.abs().partial_cmp(&EXACT) != Some(std::cmp::Ordering::Less) {
        return None;
    }
    // Rounds half away from zero without a call into libm; the check below decides anyway.
    let scaled = (times + 0.5f64.copysign(times)) as i64;
    ((scaled as f64 / SCALE[places]).to_bits() == value.to_bits()).then_some(scaled)
}

/// The fewest decimal places that keep every value exactly, if any up to [`MAX_PLACES`]
/// do, with the values scaled to them in `scaled`.
fn decimal_column(values: &[f64], scaled_values: &mut Vec<i64>) -> Option<usize> {
    let first = values.first()?;
    let fewest = (0..=MAX_PLACES).find(|&places| scaled(*first, places).is_some())?;
    'places: for places in fewest..=MAX_PLACES {
        scaled_values.clear();
        for &value in values {
            match scaled(value, places) {
                Some(scaled) => scaled_values.push(scaled),
                None => continue 'places,
            }
        }
        return Some(places);
    }
    None
}

#[cfg(test)]
fn decimal_places(values: &[f64]) -> Option<usize> {
    decimal_column(values, &mut Vec::new())
}

/// The batch in the `columns-1` layout.
pub fn encode(batch: &SampleBatch) -> Vec<u8> {
    let samples = &batch.samples;
    let mut out = Vec::with_capacity(24 + batch.activity_id.len() + samples.len() * 24);
    put_varint(&mut out, batch.activity_id.len() as u64);
    out.extend_from_slice(batch.activity_id.as_bytes());
    put_varint(&mut out, batch.seq);
    put_varint(&mut out, samples.len() as u64);
    let (mut time, mut step) = (0i64, 0i64);
    for sample in samples {
        let next_step = sample.time_ms.wrapping_sub(time);
        put_varint(&mut out, zigzag(next_step.wrapping_sub(step)));
        (time, step) = (sample.time_ms, next_step);
    }
    // Every field's present values, gathered in one pass over the samples: field `i`'s
    // are `gathered[i * n..][..present[i]]`.
    let n = samples.len();
    let mut gathered = vec![0f64; FIELDS * n];
    let mut present = [0usize; FIELDS];
    for sample in samples {
        for (index, value) in values(sample).into_iter().enumerate() {
            if let Some(value) = value {
                gathered[index * n + present[index]] = value;
                present[index] += 1;
            }
        }
    }
    let mut scaled_values = Vec::with_capacity(n);
    for index in 0..FIELDS {
        let values = &gathered[index * n..][..present[index]];
        if values.is_empty() {
            out.push(ABSENT);
            continue;
        }
        let places = decimal_column(values, &mut scaled_values);
        let some_absent = values.len() < samples.len();
        out.push(places.map_or(RAW, |places| places as u8) | if some_absent { BITMAP } else { 0 });
        if some_absent {
            let start = out.len();
            out.resize(start + samples.len().div_ceil(8), 0);
            for (at, sample) in samples.iter().enumerate() {
                if field(sample, index).is_some() {
                    out[start + at / 8] |= 1 << (at % 8);
                }
            }
        }
        if places.is_some() {
            let mut previous = 0i64;
            for &scaled in &scaled_values {
                put_varint(&mut out, zigzag(scaled.wrapping_sub(previous)));
                previous = scaled;
            }
        } else {
            let mut previous = 0u64;
            for &value in values {
                put_varint(&mut out, value.to_bits() ^ previous);
                previous = value.to_bits();
            }
        }
    }
    out
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], ColumnsError> {
        if count > self.bytes.len() {
            return Err(ColumnsError::Truncated);
        }
        let (taken, rest) = self.bytes.split_at(count);
        self.bytes = rest;
        Ok(taken)
    }

    fn byte(&mut self) -> Result<u8, ColumnsError> {
        Ok(self.take(1)?[0])
    }

    fn varint(&mut self) -> Result<u64, ColumnsError> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let byte = self.byte()?;
            if shift == 63 && byte > 1 {
                return Err(ColumnsError::LongVarint);
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(ColumnsError::LongVarint)
    }
}

/// Reads a batch in the `columns-1` layout.
pub fn decode(payload: &[u8]) -> Result<SampleBatch, ColumnsError> {
    let mut reader = Reader { bytes: payload };
    let id_length = usize::try_from(reader.varint()?).map_err(|_| ColumnsError::Truncated)?;
    let activity_id = std::str::from_utf8(reader.take(id_length)?)
        .map_err(|_| ColumnsError::ActivityId)?
        .to_owned();
    let seq = reader.varint()?;
    let count = reader.varint()?;
    // Every sample takes at least a byte of the time column.
    if count > reader.bytes.len() as u64 {
        return Err(ColumnsError::TooManySamples);
    }
    let mut samples = Vec::with_capacity(count as usize);
    let (mut time, mut step) = (0i64, 0i64);
    for _ in 0..count {
        step = step.wrapping_add(unzigzag(reader.varint()?));
        time = time.wrapping_add(step);
        samples.push(Sample {
            time_ms: time,
            ..Sample::default()
        });
    }
    for index in 0..FIELDS {
        let tag = reader.byte()?;
        if tag == ABSENT {
            continue;
        }
        let bitmap = if tag & BITMAP != 0 {
            Some(reader.take(samples.len().div_ceil(8))?)
        } else {
            None
        };
        let encoding = tag & !BITMAP;
        if encoding != RAW && usize::from(encoding) > MAX_PLACES {
            return Err(ColumnsError::Tag(index, tag));
        }
        let (mut scaled, mut bits) = (0i64, 0u64);
        for (at, sample) in samples.iter_mut().enumerate() {
            if bitmap.is_some_and(|bitmap| bitmap[at / 8] & (1 << (at % 8)) == 0) {
                continue;
            }
            let value = if encoding == RAW {
                bits ^= reader.varint()?;
                f64::from_bits(bits)
            } else {
                scaled = scaled.wrapping_add(unzigzag(reader.varint()?));
                scaled as f64 / SCALE[usize::from(encoding)]
            };
            set_field(sample, index, value);
        }
    }
    if !reader.bytes.is_empty() {
        return Err(ColumnsError::Trailing(reader.bytes.len()));
    }
    Ok(SampleBatch {
        activity_id,
        seq,
        samples,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use prost::Message as _;

    use super::*;

    /// A minute of a run sampled every second, rounded as devices round.
    fn run(count: usize) -> SampleBatch {
        SampleBatch {
            activity_id: "0b6a1d4e-2f7c-4c1e-9a51-0d2f3c4b5a69".into(),
            seq: 7,
            samples: (0..count)
                .map(|k| {
                    let t = k as f64;
                    Sample {
                        time_ms: 1_764_000_000_000 + k as i64 * 1000,
                        lat: Some(46.05 + (t * 0.0007).sin() * 0.01),
                        lon: Some(14.5 + (t * 0.0005).cos() * 0.01),
                        altitude_m: Some(300.0 + ((t * 0.01).sin() * 400.0).round() / 10.0),
                        heart_rate: Some((140.0 + (t * 0.02).sin() * 15.0).round()),
                        cadence: Some(85.0),
                        power_w: None,
                        speed_mps: Some(((3.2 + (t * 0.03).sin() * 0.4) * 100.0).round() / 100.0),
                        distance_m: Some((t * 32.0).round() / 10.0),
                        temperature_c: (k % 60 == 0).then_some(21.5),
                    }
                })
                .collect(),
        }
    }

    #[test]
    fn a_run_reads_back_exactly_in_under_a_third_of_its_protobuf() {
        let batch = run(1000);
        let encoded = encode(&batch);
        assert_eq!(decode(&encoded), Ok(batch.clone()));
        let protobuf = batch.encoded_len();
        assert!(
            encoded.len() * 3 < protobuf,
            "{} bytes against {protobuf} in protobuf",
            encoded.len()
        );
    }

    #[test]
    fn rounded_readings_go_by_decimal_places_and_others_by_their_bits() {
        assert_eq!(decimal_places(&[145.0, 146.0]), Some(0));
        assert_eq!(decimal_places(&[312.4, 312.0, 3.21]), Some(2));
        assert_eq!(decimal_places(&[0.1 + 0.2]), None, "0.30000000000000004");
        assert_eq!(decimal_places(&[46.050_000_123_456_78]), None);
        assert_eq!(decimal_places(&[-0.0]), None, "-0.0 would read back as 0.0");
        assert_eq!(decimal_places(&[f64::NAN]), None);
        assert_eq!(decimal_places(&[f64::INFINITY]), None);
        assert_eq!(decimal_places(&[1e300]), None);
    }

    #[test]
    fn an_empty_batch_and_fields_nobody_sent_read_back() {
        for batch in [
            SampleBatch::default(),
            SampleBatch {
                activity_id: "a".into(),
                seq: u64::MAX,
                samples: vec![Sample {
                    time_ms: i64::MIN,
                    ..Sample::default()
                }],
            },
        ] {
            assert_eq!(decode(&encode(&batch)), Ok(batch));
        }
    }

    #[test]
    fn damaged_payloads_are_refused_without_panicking() {
        let encoded = encode(&run(50));
        for cut in 0..encoded.len() {
            assert!(decode(&encoded[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = encoded.clone();
        longer.push(0);
        assert_eq!(decode(&longer), Err(ColumnsError::Trailing(1)));
        // A huge count of samples is refused before anything is allocated for them.
        let mut huge = vec![1, b'a', 0];
        put_varint(&mut huge, u64::MAX);
        assert_eq!(decode(&huge), Err(ColumnsError::TooManySamples));
        assert_eq!(
            decode(&[0, 0, 0, 0x0a]),
            Err(ColumnsError::Tag(0, 0x0a)),
            "ten decimal places"
        );
    }

    fn any_value() -> impl Strategy<Value = Option<f64>> {
        prop_oneof![
            Just(None),
            any::<f64>().prop_map(Some),
            (-1_000_000_000i64..1_000_000_000, 0usize..=9)
                .prop_map(|(m, places)| Some(m as f64 / SCALE[places])),
            (0.0f64..250.0).prop_map(|value| Some(value.round())),
        ]
    }

    proptest! {
        /// Whatever the values, bit for bit, NaN, infinities and -0.0 included, a batch
        /// reads back as it was.
        #[test]
        fn any_batch_reads_back_bit_for_bit(
            activity_id in ".{0,40}",
            seq in any::<u64>(),
            rows in proptest::collection::vec(
                (any::<i64>(), proptest::collection::vec(any_value(), FIELDS)),
                0..80,
            ),
        ) {
            let batch = SampleBatch {
                activity_id,
                seq,
                samples: rows
                    .into_iter()
                    .map(|(time_ms, values)| {
                        let mut sample = Sample { time_ms, ..Sample::default() };
                        for (index, value) in values.into_iter().enumerate() {
                            if let Some(value) = value {
                                set_field(&mut sample, index, value);
                            }
                        }
                        sample
                    })
                    .collect(),
            };
            let decoded = decode(&encode(&batch)).expect("reads back");
            prop_assert_eq!(&decoded.activity_id, &batch.activity_id);
            prop_assert_eq!(decoded.seq, batch.seq);
            prop_assert_eq!(decoded.samples.len(), batch.samples.len());
            for (read, sent) in decoded.samples.iter().zip(&batch.samples) {
                prop_assert_eq!(read.time_ms, sent.time_ms);
                for index in 0..FIELDS {
                    prop_assert_eq!(
                        field(read, index).map(f64::to_bits),
                        field(sent, index).map(f64::to_bits)
                    );
                }
            }
        }

        /// Bytes that are not a batch are refused or read as some batch, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
        }
    }
}

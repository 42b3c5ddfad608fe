//! Stride's workout file readers and workout metrics: pure functions over bytes, no I/O, and
//! no panics on any input (fuzzed, and mutation-tested on the real fixtures).
//!
//! How the modules fit:
//!
//! - [`read`] / [`read_with_limits`] are the entry points: they enforce [`Limits`], undo gzip
//!   transparently (with a cap on the decompressed size), detect the format from the content
//!   (FIT: `.FIT` at bytes 8..12; XML: a `gpx` or `TrainingCenterDatabase` root element) and
//!   hand the bytes to one reader.
//! - `fit` decodes FIT files with a decoder written here rather than the `fitparser` crate:
//!   Stride needs only five messages (record, lap, session, sport, hr), and owning the decoder
//!   lets it check both CRCs before trusting the data, walk chained FIT files, expand
//!   compressed-timestamp headers and compressed speed/distance, and merge heart rate stored in
//!   separate `hr` messages exactly like Garmin's SDK does — all without a `catch_unwind` around
//!   a third-party decoder that is known to panic. Every read is bounds-checked.
//! - `gpx` and `tcx` are single-pass `quick-xml` readers that match on local names, so the
//!   namespace prefixes of Garmin's TrackPointExtension / ActivityExtension (or none at all)
//!   do not matter.
//! - [`model`] is the format-independent result: [`Activity`] with its [`Sample`]s, [`Lap`]s,
//!   multisport [`Leg`]s and the device's [`Totals`].
//! - [`summary`] turns an activity into the numbers Stride shows: [`Summary`] (the exact field
//!   names of the API), automatic splits and best efforts. Each metric is a small pure function
//!   that is property-tested.
//!
//! Robustness: `tests/robustness.rs` feeds thousands of seeded mutations of the real fixtures
//! (bit flips, truncations, splices, re-sealed FIT CRCs) through every reader, and
//! `fuzz/` holds cargo-fuzz targets ([`read_fit`], [`read_gpx`], [`read_tcx`], detection);
//! the fuzz crate is its own workspace so the main build never needs nightly.

mod fit;
mod gpx;
pub mod model;
pub mod summary;
mod tcx;
mod xml;

use std::io::Read;

pub use model::{Activity, Format, Lap, Leg, Sample, SourceInfo, Sport, Totals};
pub use summary::{Analysis, Athlete, BestEffort, Sex, Split, Summary, analyze, summarize};

/// Caps that keep a hostile file from exhausting memory or time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Size of the bytes handed to [`read`] (compressed or not).
    pub max_file_bytes: usize,
    /// Size after gzip decompression.
    pub max_decompressed_bytes: usize,
    /// Samples (FIT records, GPX/TCX track points) in one file.
    pub max_samples: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: 50 * 1024 * 1024,
            max_decompressed_bytes: 200 * 1024 * 1024,
            max_samples: 500_000,
        }
    }
}

/// Why a file could not be read, in words a person understands.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FormatError {
    #[error("the file is empty")]
    Empty,
    #[error("not a FIT, GPX or TCX file")]
    UnknownFormat,
    #[error("the file is not a {expected} file (its content looks like {found})")]
    FormatMismatch { expected: Format, found: String },
    #[error("the file is {size} bytes, more than the limit of {limit} bytes")]
    FileTooLarge { size: usize, limit: usize },
    #[error("the file decompresses to more than the limit of {limit} bytes")]
    DecompressedTooLarge { limit: usize },
    #[error("the gzip compression is damaged: {0}")]
    Gzip(String),
    #[error("the file has more than the limit of {limit} samples")]
    TooManySamples { limit: usize },
    #[error("the file is truncated: {0}")]
    Truncated(String),
    #[error(
        "the file's CRC does not match (stored {stored:#06x}, computed {computed:#06x}): the file is damaged"
    )]
    CrcMismatch { stored: u16, computed: u16 },
    #[error("the FIT header's CRC does not match: the file is damaged")]
    HeaderCrcMismatch,
    #[error("the FIT file is corrupt: {0}")]
    CorruptFit(String),
    #[error("the {format} file is not well-formed XML: {reason}")]
    MalformedXml { format: Format, reason: String },
    #[error("the file has no timestamps, so it cannot be imported as a workout")]
    NoTimestamps,
    #[error(
        "only {with_time} of {total} track points have a timestamp, too few to import the workout"
    )]
    MissingTimestamps { with_time: usize, total: usize },
    #[error("the file contains no workout data (no records or track points)")]
    NoData,
}

/// Reads a workout with the default [`Limits`]. `format` = `None` detects it from the content.
pub fn read(bytes: &[u8], format: Option<Format>) -> Result<Activity, FormatError> {
    read_with_limits(bytes, format, &Limits::default())
}

/// Reads a workout (FIT, GPX or TCX, each optionally gzipped).
pub fn read_with_limits(
    bytes: &[u8],
    format: Option<Format>,
    limits: &Limits,
) -> Result<Activity, FormatError> {
    if bytes.len() > limits.max_file_bytes {
        return Err(FormatError::FileTooLarge {
            size: bytes.len(),
            limit: limits.max_file_bytes,
        });
    }
    let decompressed;
    let bytes = if is_gzip(bytes) {
        decompressed = gunzip(bytes, limits.max_decompressed_bytes)?;
        decompressed.as_slice()
    } else {
        bytes
    };
    if bytes.is_empty() {
        return Err(FormatError::Empty);
    }
    let detected = detect(bytes);
    let format = match (format, detected) {
        (Some(wanted), Some(found)) if wanted != found => {
            return Err(FormatError::FormatMismatch {
                expected: wanted,
                found: found.to_string(),
            });
        }
        (Some(wanted), None) => {
            return Err(FormatError::FormatMismatch {
                expected: wanted,
                found: "neither FIT, GPX nor TCX".to_owned(),
            });
        }
        (_, Some(found)) => found,
        (None, None) => return Err(FormatError::UnknownFormat),
    };
    match format {
        Format::Fit => fit::read(bytes, limits),
        Format::Gpx => gpx::read(bytes, limits),
        Format::Tcx => tcx::read(bytes, limits),
    }
}

/// Reads FIT bytes directly (no gzip, no detection): for fuzzing and callers that know.
pub fn read_fit(bytes: &[u8], limits: &Limits) -> Result<Activity, FormatError> {
    fit::read(bytes, limits)
}

/// Reads GPX bytes directly (no gzip, no detection).
pub fn read_gpx(bytes: &[u8], limits: &Limits) -> Result<Activity, FormatError> {
    gpx::read(bytes, limits)
}

/// Reads TCX bytes directly (no gzip, no detection).
pub fn read_tcx(bytes: &[u8], limits: &Limits) -> Result<Activity, FormatError> {
    tcx::read(bytes, limits)
}

/// Detects the format from the content (not from a file name). Gzip is not undone here.
pub fn detect(bytes: &[u8]) -> Option<Format> {
    if bytes.get(8..12) == Some(b".FIT") {
        return Some(Format::Fit);
    }
    match xml::root_element_local_name(bytes)?.as_slice() {
        b"gpx" => Some(Format::Gpx),
        b"TrainingCenterDatabase" => Some(Format::Tcx),
        _ => None,
    }
}

fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

fn gunzip(bytes: &[u8], limit: usize) -> Result<Vec<u8>, FormatError> {
    let decoder = flate2::read::MultiGzDecoder::new(bytes);
    let mut out = Vec::new();
    // Read one byte past the limit to tell "exactly at the limit" from "over it".
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    decoder
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| FormatError::Gzip(e.to_string()))?;
    if out.len() > limit {
        return Err(FormatError::DecompressedTooLarge { limit });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    const GPX: &str = r#"<?xml version="1.0"?><gpx version="1.1" creator="t"><trk><trkseg>
        <trkpt lat="46.0" lon="14.0"><time>2020-01-01T00:00:00Z</time></trkpt>
        <trkpt lat="46.001" lon="14.0"><time>2020-01-01T00:00:10Z</time></trkpt>
        </trkseg></trk></gpx>"#;

    #[test]
    fn detects_formats_by_content() {
        assert_eq!(detect(GPX.as_bytes()), Some(Format::Gpx));
        assert_eq!(
            detect(b"<?xml version=\"1.0\"?>\n<!-- x --><TrainingCenterDatabase xmlns=\"x\"/>"),
            Some(Format::Tcx)
        );
        assert_eq!(detect(b"<html></html>"), None);
        assert_eq!(detect(b"hello"), None);
    }

    #[test]
    fn unknown_content_is_a_clear_error() {
        let err = read(b"just some text", None).unwrap_err();
        assert_eq!(err.to_string(), "not a FIT, GPX or TCX file");
        assert_eq!(read(b"", None).unwrap_err(), FormatError::Empty);
    }

    #[test]
    fn a_file_that_is_not_what_was_announced_is_rejected() {
        let err = read(GPX.as_bytes(), Some(Format::Fit)).unwrap_err();
        assert!(err.to_string().contains("not a FIT file"), "{err}");
    }

    #[test]
    fn gzip_is_undone_transparently() {
        let activity = read(&gzip(GPX.as_bytes()), None).unwrap();
        assert_eq!(activity.samples.len(), 2);
    }

    #[test]
    fn a_gzip_bomb_over_the_limit_is_refused() {
        let bomb = gzip(&vec![b' '; 2_000_000]);
        assert!(bomb.len() < 10_000);
        let limits = Limits {
            max_decompressed_bytes: 1_000_000,
            ..Limits::default()
        };
        let err = read_with_limits(&bomb, None, &limits).unwrap_err();
        assert_eq!(err, FormatError::DecompressedTooLarge { limit: 1_000_000 });
    }

    #[test]
    fn damaged_gzip_is_a_clear_error() {
        let mut data = gzip(GPX.as_bytes());
        let len = data.len();
        data.truncate(len / 2);
        let err = read(&data, None).unwrap_err();
        assert!(matches!(err, FormatError::Gzip(_)), "{err}");
    }

    #[test]
    fn files_over_the_size_limit_are_refused() {
        let limits = Limits {
            max_file_bytes: 10,
            ..Limits::default()
        };
        let err = read_with_limits(GPX.as_bytes(), None, &limits).unwrap_err();
        assert!(matches!(err, FormatError::FileTooLarge { limit: 10, .. }));
    }

    #[test]
    fn sample_count_limit_applies_to_xml() {
        let limits = Limits {
            max_samples: 1,
            ..Limits::default()
        };
        let err = read_with_limits(GPX.as_bytes(), None, &limits).unwrap_err();
        assert_eq!(err, FormatError::TooManySamples { limit: 1 });
    }
}

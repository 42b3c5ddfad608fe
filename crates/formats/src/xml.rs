//! Helpers shared by the GPX and TCX readers.

use chrono::{DateTime, NaiveDateTime, Utc};
use quick_xml::Reader;
use quick_xml::events::Event;

use crate::{Format, FormatError};

/// The local name (namespace prefix stripped) of the document's root element, if the bytes
/// start like an XML document.
pub(crate) fn root_element_local_name(bytes: &[u8]) -> Option<Vec<u8>> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'<' {
        return None;
    }
    let mut reader = Reader::from_reader(bytes);
    // A real document reaches its root within a few events; bail out on junk.
    for _ in 0..256 {
        match reader.read_event() {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => {
                return Some(e.local_name().as_ref().as_bytes().to_vec());
            }
            Ok(Event::Eof) | Err(_) => return None,
            Ok(_) => {}
        }
    }
    None
}

/// A reader configured the same way for both formats.
pub(crate) fn reader(bytes: &[u8]) -> Reader<&[u8]> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = Reader::from_reader(bytes);
    let config = reader.config_mut();
    config.trim_text(true);
    config.check_end_names = true;
    reader
}

pub(crate) fn malformed(
    format: Format,
    reader: &Reader<&[u8]>,
    err: impl std::fmt::Display,
) -> FormatError {
    FormatError::MalformedXml {
        format,
        reason: format!("{err} (near byte {})", reader.error_position()),
    }
}

/// Parses an XML timestamp: RFC 3339 with or without an offset (no offset means UTC), with
/// or without fractional seconds.
pub(crate) fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc());
        }
    }
    // Offsets written without a colon (+0100) or a space before the zone.
    for format in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"] {
        if let Ok(t) = DateTime::parse_from_str(text, format) {
            return Some(t.with_timezone(&Utc));
        }
    }
    None
}

/// Parses a finite number.
pub(crate) fn parse_f64(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_the_common_shapes() {
        let z = parse_time("2012-12-26T21:29:53Z").unwrap();
        assert_eq!(z.to_rfc3339(), "2012-12-26T21:29:53+00:00");
        assert_eq!(parse_time("2012-12-26T21:29:53").unwrap(), z);
        assert_eq!(parse_time("2012-12-26T22:29:53+01:00").unwrap(), z);
        assert_eq!(parse_time("2012-12-26T21:29:53.000Z").unwrap(), z);
        assert!(parse_time("yesterday").is_none());
    }
}

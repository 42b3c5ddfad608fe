//! GPX 1.0 / 1.1 reader: track points with time and elevation, plus the common extensions
//! (Garmin TrackPointExtension `hr`, `cad`, `atemp`; `power`; `speed`), matched by local name
//! so any namespace prefix works. Routes and waypoints are not workout samples and are skipped.

use quick_xml::events::{BytesStart, Event};

use crate::model::{Activity, Format, SourceInfo, Sport, Totals};
use crate::xml::{malformed, parse_f64, parse_time, reader};
use crate::{FormatError, Limits, Sample};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Leaf {
    Elevation,
    Time,
    HeartRate,
    Cadence,
    Power,
    Temperature,
    Speed,
    TrackType,
    Other,
}

fn leaf_of(local: &[u8]) -> Leaf {
    match local {
        b"ele" => Leaf::Elevation,
        b"time" => Leaf::Time,
        b"hr" | b"heartrate" | b"heart_rate" | b"HeartRate" => Leaf::HeartRate,
        b"cad" | b"cadence" | b"Cadence" => Leaf::Cadence,
        b"power" | b"Power" | b"watts" | b"Watts" | b"PowerInWatts" => Leaf::Power,
        b"atemp" | b"temp" | b"temperature" | b"Temperature" => Leaf::Temperature,
        b"speed" | b"Speed" => Leaf::Speed,
        b"type" => Leaf::TrackType,
        _ => Leaf::Other,
    }
}

struct Point {
    lat: Option<f64>,
    lon: Option<f64>,
    sample: Sample,
    time: Option<chrono::DateTime<chrono::Utc>>,
}

fn start_point(e: &BytesStart<'_>) -> Point {
    let attr = |name: &str| {
        e.try_get_attribute(name)
            .ok()
            .flatten()
            .and_then(|a| parse_f64(&a.value))
    };
    Point {
        lat: attr("lat").filter(|v| (-90.0..=90.0).contains(v)),
        lon: attr("lon").filter(|v| (-180.0..=180.0).contains(v)),
        sample: Sample::at(chrono::DateTime::UNIX_EPOCH),
        time: None,
    }
}

#[derive(Default)]
struct State {
    samples: Vec<Sample>,
    segment_starts: Vec<usize>,
    pending_break: bool,
    point: Option<Point>,
    leaf: Option<Leaf>,
    in_track: bool,
    sport_name: Option<String>,
    source: SourceInfo,
}

impl State {
    fn finish_point(&mut self, limits: &Limits) -> Result<(), FormatError> {
        let Some(point) = self.point.take() else {
            return Ok(());
        };
        let Some(time) = point.time else {
            self.source.points_without_time += 1;
            return Ok(());
        };
        if self.samples.len() >= limits.max_samples {
            return Err(FormatError::TooManySamples {
                limit: limits.max_samples,
            });
        }
        if self.pending_break {
            if !self.samples.is_empty() {
                self.segment_starts.push(self.samples.len());
            }
            self.pending_break = false;
        }
        let mut sample = point.sample;
        sample.time = time;
        sample.lat = point.lat;
        sample.lon = point.lon;
        self.samples.push(sample);
        Ok(())
    }

    fn text(&mut self, text: &str) {
        let Some(leaf) = self.leaf else { return };
        if let Some(point) = self.point.as_mut() {
            let s = &mut point.sample;
            match leaf {
                Leaf::Elevation => s.altitude_m = parse_f64(text),
                Leaf::Time => point.time = parse_time(text),
                Leaf::HeartRate => s.heart_rate = parse_f64(text).filter(|v| *v > 0.0),
                Leaf::Cadence => s.cadence = parse_f64(text).filter(|v| *v >= 0.0),
                Leaf::Power => s.power_w = parse_f64(text).filter(|v| *v >= 0.0),
                Leaf::Temperature => s.temperature_c = parse_f64(text),
                Leaf::Speed => s.speed_mps = parse_f64(text).filter(|v| *v >= 0.0),
                Leaf::TrackType | Leaf::Other => {}
            }
        } else if leaf == Leaf::TrackType && self.in_track && self.sport_name.is_none() {
            let name = text.trim();
            if !name.is_empty() {
                self.sport_name = Some(name.chars().take(64).collect());
            }
        }
    }
}

pub(crate) fn read(bytes: &[u8], limits: &Limits) -> Result<Activity, FormatError> {
    let mut reader = reader(bytes);
    let mut st = State::default();
    // Open elements: a document cut short ends with some still open.
    let mut depth = 0usize;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| malformed(Format::Gpx, &reader, e))?;
        match event {
            Event::Start(e) => {
                depth += 1;
                let local = e.local_name();
                let local = local.as_ref().as_bytes();
                match local {
                    b"gpx" => {
                        st.source.creator = e
                            .try_get_attribute("creator")
                            .ok()
                            .flatten()
                            .map(|a| a.value.chars().take(200).collect());
                    }
                    b"trk" => {
                        st.source.tracks += 1;
                        st.in_track = true;
                        st.pending_break = true;
                    }
                    b"trkseg" => {
                        st.source.segments += 1;
                        st.pending_break = true;
                    }
                    b"trkpt" if st.in_track => {
                        st.source.points_in_document += 1;
                        st.point = Some(start_point(&e));
                    }
                    other => st.leaf = Some(leaf_of(other)),
                }
            }
            Event::Empty(e) => match e.local_name().as_ref().as_bytes() {
                b"trkpt" if st.in_track => {
                    st.source.points_in_document += 1;
                    st.source.points_without_time += 1;
                }
                b"trk" => st.source.tracks += 1,
                b"trkseg" => st.source.segments += 1,
                _ => {}
            },
            Event::Text(t) => {
                let text = t.xml10_content();
                st.text(&text);
            }
            Event::CData(t) => {
                let text = t.xml10_content();
                st.text(&text);
            }
            Event::End(e) => {
                depth = depth.saturating_sub(1);
                st.leaf = None;
                match e.local_name().as_ref().as_bytes() {
                    b"trkpt" => st.finish_point(limits)?,
                    b"trk" => st.in_track = false,
                    _ => {}
                }
            }
            Event::Eof if depth > 0 => {
                return Err(FormatError::Truncated(
                    "the document ends before its closing tags".into(),
                ));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    build(st)
}

fn build(mut st: State) -> Result<Activity, FormatError> {
    let total = st.source.points_in_document;
    if st.samples.is_empty() {
        return Err(if total == 0 {
            FormatError::NoData
        } else {
            FormatError::NoTimestamps
        });
    }
    // Points without a time cannot be placed in a workout; a few are dropped, but when most
    // lack one the result would misrepresent the workout.
    if st.samples.len() * 2 < total {
        return Err(FormatError::MissingTimestamps {
            with_time: st.samples.len(),
            total,
        });
    }
    if !st.samples.is_sorted_by_key(|s| s.time) {
        st.samples.sort_by_key(|s| s.time);
        st.segment_starts.clear();
    }
    let sport = st
        .sport_name
        .as_deref()
        .map_or(Sport::Other, Sport::from_name);
    let start_time = st.samples[0].time;
    Ok(Activity {
        format: Format::Gpx,
        sport,
        sport_name: st.sport_name,
        start_time,
        samples: st.samples,
        segment_starts: st.segment_starts,
        laps: Vec::new(),
        legs: Vec::new(),
        totals: Totals::default(),
        source: st.source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_str(s: &str) -> Result<Activity, FormatError> {
        read(s.as_bytes(), &Limits::default())
    }

    #[test]
    fn reads_garmin_extensions_with_any_prefix() {
        let a = read_str(
            r#"<gpx xmlns="http://www.topografix.com/GPX/1/1" xmlns:ns3="http://www.garmin.com/xmlschemas/TrackPointExtension/v1">
            <trk><type>running</type><trkseg>
            <trkpt lat="1.0" lon="2.0"><ele>10.5</ele><time>2020-01-01T00:00:00Z</time>
              <extensions><ns3:TrackPointExtension><ns3:hr>140</ns3:hr><ns3:cad>80</ns3:cad><ns3:atemp>21</ns3:atemp></ns3:TrackPointExtension><power>250</power></extensions></trkpt>
            <trkpt lat="1.0001" lon="2.0"><time>2020-01-01T00:00:01Z</time></trkpt>
            </trkseg></trk></gpx>"#,
        )
        .unwrap();
        assert_eq!(a.sport, Sport::Run);
        let s = &a.samples[0];
        assert_eq!(s.heart_rate, Some(140.0));
        assert_eq!(s.cadence, Some(80.0));
        assert_eq!(s.temperature_c, Some(21.0));
        assert_eq!(s.power_w, Some(250.0));
        assert_eq!(s.altitude_m, Some(10.5));
        assert_eq!(a.samples[1].heart_rate, None);
    }

    #[test]
    fn no_timestamps_is_a_clear_error() {
        let err = read_str(
            r#"<gpx><trk><trkseg><trkpt lat="1" lon="2"/><trkpt lat="1" lon="2"><ele>3</ele></trkpt></trkseg></trk></gpx>"#,
        )
        .unwrap_err();
        assert_eq!(err, FormatError::NoTimestamps);
        assert!(err.to_string().contains("no timestamps"));
    }

    #[test]
    fn malformed_xml_is_a_clear_error() {
        let err = read_str(r#"<gpx><trk><trkseg><trkpt lat="1" lon="2"><time>2020-01-01T00:00:00Z</time></trkseg></gpx>"#)
            .unwrap_err();
        assert!(matches!(err, FormatError::MalformedXml { .. }), "{err}");
    }

    #[test]
    fn segments_are_remembered() {
        let a = read_str(
            r#"<gpx><trk><trkseg><trkpt lat="1" lon="2"><time>2020-01-01T00:00:00Z</time></trkpt></trkseg>
            <trkseg><trkpt lat="1" lon="3"><time>2020-01-01T00:10:00Z</time></trkpt></trkseg></trk></gpx>"#,
        )
        .unwrap();
        assert_eq!(a.segment_starts, vec![1]);
        assert_eq!(a.source.segments, 2);
    }
}

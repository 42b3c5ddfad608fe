//! TCX (Garmin Training Center XML) reader: activities, laps with their totals, and
//! trackpoints with position, altitude, distance, heart rate, cadence and the ActivityExtension
//! (`TPX`) speed, watts and run cadence. Several `<Activity>` elements become multisport legs.
//! Courses and workouts in the same document are not activities and are skipped.

use chrono::{DateTime, Utc};
use quick_xml::events::Event;

use crate::model::{Activity, Format, Lap, Leg, SourceInfo, Sport, Totals};
use crate::xml::{malformed, parse_f64, parse_time, reader};
use crate::{FormatError, Limits, Sample};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Leaf {
    Time,
    Latitude,
    Longitude,
    Altitude,
    Distance,
    Value,
    Cadence,
    Speed,
    Watts,
    RunCadence,
    TotalTime,
    MaximumSpeed,
    Calories,
    AvgSpeed,
    AvgRunCadence,
    MaxRunCadence,
    AvgWatts,
    MaxWatts,
    Other,
}

fn leaf_of(local: &[u8]) -> Leaf {
    match local {
        b"Time" => Leaf::Time,
        b"LatitudeDegrees" => Leaf::Latitude,
        b"LongitudeDegrees" => Leaf::Longitude,
        b"AltitudeMeters" => Leaf::Altitude,
        b"DistanceMeters" => Leaf::Distance,
        b"Value" => Leaf::Value,
        b"Cadence" => Leaf::Cadence,
        b"Speed" => Leaf::Speed,
        b"Watts" => Leaf::Watts,
        b"RunCadence" => Leaf::RunCadence,
        b"TotalTimeSeconds" => Leaf::TotalTime,
        b"MaximumSpeed" => Leaf::MaximumSpeed,
        b"Calories" => Leaf::Calories,
        b"AvgSpeed" => Leaf::AvgSpeed,
        b"AvgRunCadence" => Leaf::AvgRunCadence,
        b"MaxRunCadence" => Leaf::MaxRunCadence,
        b"AvgWatts" => Leaf::AvgWatts,
        b"MaxWatts" => Leaf::MaxWatts,
        _ => Leaf::Other,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum HeartRateParent {
    None,
    Sample,
    LapAverage,
    LapMaximum,
}

struct Point {
    sample: Sample,
    time: Option<DateTime<Utc>>,
    run_cadence: Option<f64>,
}

struct RawLap {
    start: Option<DateTime<Utc>>,
    totals: Totals,
}

struct Part {
    sport_name: Option<String>,
    first_sample: usize,
    laps: Vec<Lap>,
}

#[derive(Default)]
struct State {
    samples: Vec<Sample>,
    segment_starts: Vec<usize>,
    pending_break: bool,
    parts: Vec<Part>,
    in_activity: bool,
    lap: Option<RawLap>,
    point: Option<Point>,
    leaf: Option<Leaf>,
    hr_parent: Option<HeartRateParent>,
    source: SourceInfo,
}

impl State {
    fn text(&mut self, text: &str) {
        let Some(leaf) = self.leaf else { return };
        let value = || parse_f64(text);
        if let Some(point) = self.point.as_mut() {
            let s = &mut point.sample;
            match leaf {
                Leaf::Time => point.time = parse_time(text),
                Leaf::Latitude => s.lat = value().filter(|v| (-90.0..=90.0).contains(v)),
                Leaf::Longitude => s.lon = value().filter(|v| (-180.0..=180.0).contains(v)),
                Leaf::Altitude => s.altitude_m = value(),
                Leaf::Distance => s.distance_m = value().filter(|v| *v >= 0.0),
                Leaf::Value if self.hr_parent == Some(HeartRateParent::Sample) => {
                    s.heart_rate = value().filter(|v| *v > 0.0)
                }
                Leaf::Cadence => s.cadence = value().filter(|v| *v >= 0.0),
                Leaf::Speed => s.speed_mps = value().filter(|v| *v >= 0.0),
                Leaf::Watts => s.power_w = value().filter(|v| *v >= 0.0),
                Leaf::RunCadence => point.run_cadence = value().filter(|v| *v >= 0.0),
                _ => {}
            }
        } else if let Some(lap) = self.lap.as_mut() {
            let t = &mut lap.totals;
            match leaf {
                Leaf::TotalTime => t.timer_time_s = value().filter(|v| *v >= 0.0),
                Leaf::Distance => t.distance_m = value().filter(|v| *v >= 0.0),
                Leaf::MaximumSpeed => t.max_speed_mps = value().filter(|v| *v >= 0.0),
                Leaf::Calories => t.calories_kcal = value().filter(|v| *v >= 0.0),
                Leaf::Value => match self.hr_parent {
                    Some(HeartRateParent::LapAverage) => t.avg_heart_rate = value(),
                    Some(HeartRateParent::LapMaximum) => t.max_heart_rate = value(),
                    _ => {}
                },
                Leaf::Cadence => t.avg_cadence = value(),
                Leaf::AvgSpeed => t.avg_speed_mps = value(),
                Leaf::AvgRunCadence if t.avg_cadence.is_none() => t.avg_cadence = value(),
                Leaf::MaxRunCadence => t.max_cadence = value(),
                Leaf::AvgWatts => t.avg_power_w = value(),
                Leaf::MaxWatts => t.max_power_w = value(),
                _ => {}
            }
        }
    }

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
        if sample.cadence.is_none() {
            sample.cadence = point.run_cadence;
        }
        self.samples.push(sample);
        Ok(())
    }

    fn finish_lap(&mut self) {
        let Some(lap) = self.lap.take() else { return };
        let Some(part) = self.parts.last_mut() else {
            return;
        };
        let start = lap
            .start
            .or_else(|| self.samples.get(part.first_sample).map(|s| s.time));
        if let Some(start_time) = start {
            part.laps.push(Lap {
                start_time,
                elapsed_time_s: None,
                timer_time_s: lap.totals.timer_time_s,
                distance_m: lap.totals.distance_m,
                totals: lap.totals,
            });
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
            .map_err(|e| malformed(Format::Tcx, &reader, e))?;
        match event {
            Event::Start(e) => {
                depth += 1;
                let local = e.local_name();
                let local = local.as_ref().as_bytes();
                match local {
                    b"Activity" => {
                        st.in_activity = true;
                        st.source.tracks += 1;
                        st.pending_break = true;
                        let sport_name = e
                            .try_get_attribute("Sport")
                            .ok()
                            .flatten()
                            .map(|a| a.value.chars().take(64).collect::<String>());
                        st.parts.push(Part {
                            sport_name,
                            first_sample: st.samples.len(),
                            laps: Vec::new(),
                        });
                    }
                    b"Lap" if st.in_activity => {
                        st.finish_lap();
                        let start = e
                            .try_get_attribute("StartTime")
                            .ok()
                            .flatten()
                            .and_then(|a| parse_time(&a.value));
                        st.lap = Some(RawLap {
                            start,
                            totals: Totals::default(),
                        });
                    }
                    b"Track" if st.in_activity => {
                        st.source.segments += 1;
                        st.pending_break = true;
                    }
                    b"Trackpoint" if st.in_activity => {
                        st.source.points_in_document += 1;
                        st.point = Some(Point {
                            sample: Sample::at(DateTime::UNIX_EPOCH),
                            time: None,
                            run_cadence: None,
                        });
                    }
                    b"HeartRateBpm" => st.hr_parent = Some(HeartRateParent::Sample),
                    b"AverageHeartRateBpm" => st.hr_parent = Some(HeartRateParent::LapAverage),
                    b"MaximumHeartRateBpm" => st.hr_parent = Some(HeartRateParent::LapMaximum),
                    other => st.leaf = Some(leaf_of(other)),
                }
            }
            Event::Empty(e)
                if e.local_name().as_ref().as_bytes() == b"Trackpoint" && st.in_activity =>
            {
                st.source.points_in_document += 1;
                st.source.points_without_time += 1;
            }
            Event::Text(t) => {
                let text = t.xml10_content();
                st.text(&text);
            }
            Event::End(e) => {
                depth = depth.saturating_sub(1);
                st.leaf = None;
                match e.local_name().as_ref().as_bytes() {
                    b"Trackpoint" => st.finish_point(limits)?,
                    b"Lap" => st.finish_lap(),
                    b"Activity" => {
                        st.finish_lap();
                        st.in_activity = false;
                    }
                    b"HeartRateBpm" | b"AverageHeartRateBpm" | b"MaximumHeartRateBpm" => {
                        st.hr_parent = Some(HeartRateParent::None)
                    }
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
    if st.samples.len() * 2 < total {
        return Err(FormatError::MissingTimestamps {
            with_time: st.samples.len(),
            total,
        });
    }
    let sorted = st.samples.is_sorted_by_key(|s| s.time);
    if !sorted {
        st.samples.sort_by_key(|s| s.time);
        st.segment_starts.clear();
    }
    let parts: Vec<Part> = st.parts.into_iter().collect();
    let mut legs = Vec::new();
    let mut all_laps = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let end = if sorted {
            parts
                .get(i + 1)
                .map_or(st.samples.len(), |p| p.first_sample)
        } else {
            st.samples.len()
        };
        let start = part.first_sample.min(end);
        let totals = additive_only(Totals::combine(part.laps.iter().map(|l| &l.totals)));
        legs.push(Leg {
            sport: part
                .sport_name
                .as_deref()
                .map_or(Sport::Other, Sport::from_name),
            sport_name: part.sport_name.clone(),
            start_time: st.samples.get(start).map(|s| s.time),
            samples: start..end,
            laps: part.laps.clone(),
            totals,
        });
        all_laps.extend(part.laps.iter().cloned());
    }
    let totals = additive_only(Totals::combine(legs.iter().map(|l| &l.totals)));
    let (sport, sport_name) = match legs.as_slice() {
        [] => (Sport::Other, None),
        [only] => (only.sport, only.sport_name.clone()),
        _ => (Sport::Other, Some("multisport".to_owned())),
    };
    if legs.len() < 2 || !sorted {
        legs.clear();
    }
    let start_time = st.samples[0].time;
    Ok(Activity {
        format: Format::Tcx,
        sport,
        sport_name,
        start_time,
        samples: st.samples,
        segment_starts: st.segment_starts,
        laps: all_laps,
        legs,
        totals,
        source: st.source,
    })
}

/// Activity-level totals keep only what laps add up to (time, distance, calories): the laps'
/// own averages and maxima stay on the laps, and the activity's are computed from every
/// trackpoint, which is what TCX tools report.
fn additive_only(t: Totals) -> Totals {
    Totals {
        elapsed_time_s: t.elapsed_time_s,
        timer_time_s: t.timer_time_s,
        distance_m: t.distance_m,
        calories_kcal: t.calories_kcal,
        ..Totals::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCX: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<TrainingCenterDatabase xmlns="http://www.garmin.com/xmlschemas/TrainingCenterDatabase/v2" xmlns:ns3="http://www.garmin.com/xmlschemas/ActivityExtension/v2">
 <Activities><Activity Sport="Biking"><Id>2020-01-01T00:00:00Z</Id>
  <Lap StartTime="2020-01-01T00:00:00Z"><TotalTimeSeconds>2.0</TotalTimeSeconds><DistanceMeters>12.5</DistanceMeters>
   <Calories>3</Calories><AverageHeartRateBpm><Value>120</Value></AverageHeartRateBpm><MaximumHeartRateBpm><Value>130</Value></MaximumHeartRateBpm>
   <Track>
    <Trackpoint><Time>2020-01-01T00:00:00Z</Time><Position><LatitudeDegrees>46.0</LatitudeDegrees><LongitudeDegrees>14.0</LongitudeDegrees></Position>
     <AltitudeMeters>300</AltitudeMeters><DistanceMeters>0</DistanceMeters><HeartRateBpm><Value>110</Value></HeartRateBpm><Cadence>85</Cadence>
     <Extensions><ns3:TPX><ns3:Speed>6.1</ns3:Speed><ns3:Watts>210</ns3:Watts></ns3:TPX></Extensions></Trackpoint>
    <Trackpoint><Time>2020-01-01T00:00:02Z</Time><DistanceMeters>12.5</DistanceMeters><HeartRateBpm><Value>130</Value></HeartRateBpm></Trackpoint>
   </Track></Lap></Activity></Activities></TrainingCenterDatabase>"#;

    #[test]
    fn reads_trackpoints_laps_and_extensions() {
        let a = read(TCX.as_bytes(), &Limits::default()).unwrap();
        assert_eq!(a.sport, Sport::Ride);
        assert_eq!(a.samples.len(), 2);
        let s = &a.samples[0];
        assert_eq!(s.lat, Some(46.0));
        assert_eq!(s.heart_rate, Some(110.0));
        assert_eq!(s.cadence, Some(85.0));
        assert_eq!(s.speed_mps, Some(6.1));
        assert_eq!(s.power_w, Some(210.0));
        assert_eq!(a.samples[1].lat, None);
        assert_eq!(a.laps.len(), 1);
        assert_eq!(a.laps[0].totals.avg_heart_rate, Some(120.0));
        assert_eq!(a.laps[0].totals.max_heart_rate, Some(130.0));
        assert_eq!(a.totals.distance_m, Some(12.5));
        assert_eq!(a.totals.calories_kcal, Some(3.0));
    }

    #[test]
    fn several_activities_become_legs() {
        let two = TCX.replace(
            "</Activity></Activities>",
            "</Activity><Activity Sport=\"Running\"><Lap StartTime=\"2020-01-01T01:00:00Z\"><Track><Trackpoint><Time>2020-01-01T01:00:00Z</Time></Trackpoint></Track></Lap></Activity></Activities>",
        );
        let a = read(two.as_bytes(), &Limits::default()).unwrap();
        assert!(a.is_multisport());
        assert_eq!(a.legs[0].sport, Sport::Ride);
        assert_eq!(a.legs[1].sport, Sport::Run);
        assert_eq!(a.legs[1].samples, 2..3);
    }
}

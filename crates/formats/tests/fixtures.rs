//! Every workout fixture in `shared/fixtures/workouts/` imports and agrees with
//! `expected.json` within the README's tolerances; every edge file fails with a clear reason
//! or degrades as described.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde_json::Value;
use stride_formats::{Activity, Athlete, Format, FormatError, Sport, Summary, read, summarize};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/workouts")
}

fn expected() -> Value {
    let text = std::fs::read_to_string(fixtures_dir().join("expected.json"))
        .expect("shared/fixtures/workouts/expected.json is readable");
    serde_json::from_str(&text).expect("expected.json is JSON")
}

fn time(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

struct Checker<'a> {
    file: &'a str,
    misses: Vec<String>,
}

impl Checker<'_> {
    fn miss(&mut self, what: impl AsRef<str>) {
        self.misses
            .push(format!("{}: {}", self.file, what.as_ref()));
    }
    fn eq<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, ours: T, theirs: T) {
        if ours != theirs {
            self.miss(format!("{what}: ours {ours:?}, expected {theirs:?}"));
        }
    }
    fn count(&mut self, what: &str, ours: usize, theirs: &Value) {
        match theirs.as_u64() {
            Some(t) => self.eq(what, ours as u64, t),
            None => self.miss(format!("{what}: expected.json has no count ({theirs})")),
        }
    }
    /// Durations and times: exact to the second.
    fn seconds(&mut self, what: &str, ours: Option<f64>, theirs: &Value) {
        let Some(t) = theirs.as_f64() else { return };
        match ours {
            Some(o) if (o - t).abs() < 1.0 => {}
            _ => self.miss(format!(
                "{what}: ours {ours:?}, expected {t} (exact to the second)"
            )),
        }
    }
    fn instant(&mut self, what: &str, ours: Option<DateTime<Utc>>, theirs: &Value) {
        let Some(t) = time(theirs) else { return };
        match ours {
            Some(o) if (o - t).num_milliseconds().abs() < 1000 => {}
            _ => self.miss(format!("{what}: ours {ours:?}, expected {t}")),
        }
    }
    fn relative(&mut self, what: &str, ours: Option<f64>, theirs: &Value, tolerance: f64) {
        let Some(t) = theirs.as_f64() else { return };
        if t == 0.0 {
            // The README: absent values are null, never zero; a measured zero may be either.
            if ours.is_some_and(|o| o.abs() > 1e-6) {
                self.miss(format!("{what}: ours {ours:?}, expected 0"));
            }
            return;
        }
        match ours {
            Some(o) if (o - t).abs() <= tolerance * t.abs() => {}
            _ => self.miss(format!(
                "{what}: ours {ours:?}, expected {t} (±{:.0} %)",
                tolerance * 100.0
            )),
        }
    }
    fn absolute(&mut self, what: &str, ours: Option<f64>, theirs: &Value, tolerance: f64) {
        let Some(t) = theirs.as_f64() else {
            if ours.is_some() && theirs.is_null() {
                self.miss(format!("{what}: ours {ours:?}, expected null"));
            }
            return;
        };
        match ours {
            Some(o) if (o - t).abs() <= tolerance => {}
            _ => self.miss(format!(
                "{what}: ours {ours:?}, expected {t} (±{tolerance})"
            )),
        }
    }
}

fn fit_sport(sport: &Value, sub_sport: &Value) -> Sport {
    match (sport.as_str(), sub_sport.as_str()) {
        (Some("running"), _) => Sport::Run,
        (Some("cycling"), Some("virtual_activity" | "indoor_cycling")) => Sport::IndoorRide,
        (Some("cycling"), _) => Sport::Ride,
        (Some("swimming"), _) => Sport::Swim,
        _ => Sport::Other,
    }
}

fn text_sport(sport: &str) -> Sport {
    match sport {
        "Running" => Sport::Run,
        "Biking" => Sport::Ride,
        _ => Sport::Other,
    }
}

fn check_fit(c: &mut Checker<'_>, a: &Activity, s: &Summary, e: &Value, record_count: &Value) {
    c.eq("format", a.format, Format::Fit);
    c.count("records", a.samples.len(), record_count);
    c.count(
        "chained FIT files",
        a.source.fit_files,
        &e["chained_fit_files"],
    );
    c.count("sessions", a.source.fit_sessions, &e["session_count"]);
    c.eq("sport name", a.sport_name.as_deref(), e["sport"].as_str());
    c.eq("sport", a.sport, fit_sport(&e["sport"], &e["sub_sport"]));
    if e["record_count"].as_u64() == record_count.as_u64() {
        c.instant(
            "first record",
            a.samples.first().map(|s| s.time),
            &e["first_record_timestamp"],
        );
        c.instant(
            "last record",
            a.samples.last().map(|s| s.time),
            &e["last_record_timestamp"],
        );
        let session_hr = e["session"]["avg_heart_rate"].as_f64().unwrap_or(0.0);
        if session_hr > 0.0 {
            let with_hr = a.samples.iter().filter(|s| s.heart_rate.is_some()).count();
            c.count(
                "records with heart rate",
                with_hr,
                &e["records_with"]["heart_rate"],
            );
        }
    }
    let session = &e["session"];
    c.seconds(
        "elapsed time",
        Some(s.elapsed_time_s),
        &session["total_elapsed_time"],
    );
    c.seconds(
        "device timer time",
        a.totals.timer_time_s,
        &session["total_timer_time"],
    );
    c.relative("distance", s.distance_m, &session["total_distance"], 0.01);
    if session["avg_heart_rate"].as_f64().unwrap_or(0.0) > 0.0 {
        c.absolute(
            "average heart rate",
            s.avg_heart_rate,
            &session["avg_heart_rate"],
            1.0,
        );
    }
    c.relative(
        "elevation gain",
        s.elevation_gain_m,
        &session["total_ascent"],
        0.10,
    );
    c.relative(
        "elevation loss",
        s.elevation_loss_m,
        &session["total_descent"],
        0.10,
    );
    if let Some(laps) = session["num_laps"].as_u64() {
        c.eq("laps", a.laps.len() as u64, laps);
    }
}

fn check_gpx(c: &mut Checker<'_>, a: &Activity, s: &Summary, e: &Value) {
    c.eq("format", a.format, Format::Gpx);
    c.count("tracks", a.source.tracks, &e["tracks"]);
    c.count("segments", a.source.segments, &e["segments"]);
    c.count(
        "points in document",
        a.source.points_in_document,
        &e["points"],
    );
    c.count("points", a.samples.len(), &e["points_with_time"]);
    c.instant("start", Some(a.start_time), &e["start_time"]);
    c.instant("end", Some(a.end_time()), &e["end_time"]);
    c.seconds(
        "elapsed time",
        Some(s.elapsed_time_s),
        &e["time_bounds_span_s"],
    );
    c.relative("distance", s.distance_m, &e["length_2d_m"], 0.01);
    c.absolute(
        "average heart rate",
        s.avg_heart_rate,
        &e["heart_rate"]["avg"],
        1.0,
    );
    c.absolute(
        "max heart rate",
        s.max_heart_rate,
        &e["heart_rate"]["max"],
        0.0,
    );
    c.relative("elevation gain", s.elevation_gain_m, &e["uphill_m"], 0.10);
    c.relative("elevation loss", s.elevation_loss_m, &e["downhill_m"], 0.10);
}

fn check_tcx(c: &mut Checker<'_>, a: &Activity, s: &Summary, e: &Value) {
    let all = &e["all_trackpoints"];
    let xml = &e["xml_lap_summary"];
    c.eq("format", a.format, Format::Tcx);
    c.count("trackpoints", a.samples.len(), &all["trackpoints"]);
    c.count(
        "trackpoints in document",
        a.source.points_in_document,
        &xml["trackpoints_in_document"],
    );
    c.count("laps", a.laps.len(), &xml["laps"]);
    c.count("activities", a.source.tracks, &xml["activities"]);
    let sport = all["sport"].as_str().unwrap_or_default();
    c.eq("sport name", a.sport_name.as_deref(), Some(sport));
    c.eq("sport", a.sport, text_sport(sport));
    c.instant("start", Some(a.start_time), &all["first_trackpoint_time"]);
    c.instant("end", Some(a.end_time()), &all["last_trackpoint_time"]);
    c.seconds("elapsed time", Some(s.elapsed_time_s), &all["duration_s"]);
    c.seconds(
        "lap time",
        a.totals.timer_time_s,
        &xml["total_time_seconds_sum"],
    );
    c.relative("distance", s.distance_m, &all["distance_m"], 0.01);
    c.absolute("average heart rate", s.avg_heart_rate, &all["hr_avg"], 1.0);
    c.absolute("max heart rate", s.max_heart_rate, &all["hr_max"], 0.0);
    c.relative("elevation gain", s.elevation_gain_m, &all["ascent_m"], 0.10);
    c.relative(
        "elevation loss",
        s.elevation_loss_m,
        &all["descent_m"],
        0.10,
    );
    c.absolute("calories", s.calories_kcal, &all["calories"], 0.5);
}

fn check_edge(c: &mut Checker<'_>, name: &str, result: &Result<Activity, FormatError>, e: &Value) {
    match (name, result) {
        ("edge/activity-unexpected-eof.fit", Err(err @ FormatError::Truncated(_))) => {
            assert!(err.to_string().contains("truncated"));
        }
        ("edge/activity-filecrc.fit", Err(err @ FormatError::CrcMismatch { .. })) => {
            assert!(err.to_string().contains("CRC does not match"));
        }
        ("edge/compressed-speed-distance.fit", Ok(a)) => {
            // Garmin's decoder gives up at the first compressed-timestamp header; we read
            // every record, as the cross-check decoder does.
            let s = summarize(a, &Athlete::default());
            check_fit(c, a, &s, e, &e["cross_check"]["record_count"]);
            let with_distance = a.samples.iter().filter(|s| s.distance_m.is_some()).count();
            if with_distance + 1 < a.samples.len() {
                c.miss(format!(
                    "only {with_distance} records carry a (compressed) distance"
                ));
            }
        }
        (
            "edge/cerknicko-without-times.gpx",
            Err(err @ FormatError::MissingTimestamps { with_time, total }),
        ) => {
            c.count("points with time", *with_time, &e["points_with_time"]);
            c.count("points", *total, &e["points"]);
            assert!(err.to_string().contains("have a timestamp"));
        }
        ("edge/treadmill_1.tcx", Ok(a)) => {
            let s = summarize(a, &Athlete::default());
            check_tcx(c, a, &s, e);
            c.eq(
                "positions",
                a.samples.iter().filter(|s| s.position().is_some()).count(),
                0,
            );
        }
        (_, other) => c.miss(format!(
            "unexpected outcome {:?}",
            other.as_ref().map(|a| a.samples.len())
        )),
    }
}

#[test]
fn every_fixture_agrees_with_expected_json() {
    let expected = expected();
    let files = expected["files"].as_object().expect("files object");
    let mut misses = Vec::new();
    let mut checked = 0;
    for (name, e) in files {
        let bytes =
            std::fs::read(fixtures_dir().join(name)).unwrap_or_else(|err| panic!("{name}: {err}"));
        let result = read(&bytes, None);
        let mut c = Checker {
            file: name,
            misses: Vec::new(),
        };
        if e["edge_case"].as_bool() == Some(true) {
            check_edge(&mut c, name, &result, e);
        } else {
            match &result {
                Err(err) => c.miss(format!("does not import: {err}")),
                Ok(a) => {
                    let s = summarize(a, &Athlete::default());
                    match e["format"].as_str() {
                        Some("fit") => check_fit(&mut c, a, &s, e, &e["record_count"]),
                        Some("gpx") => check_gpx(&mut c, a, &s, e),
                        Some("tcx") => check_tcx(&mut c, a, &s, e),
                        other => c.miss(format!("unknown format {other:?}")),
                    }
                }
            }
        }
        checked += 1;
        misses.extend(c.misses);
    }
    assert_eq!(checked, 30, "expected.json lists 30 files");
    assert!(
        misses.is_empty(),
        "{} disagreements:\n{}",
        misses.len(),
        misses.join("\n")
    );
}

#[test]
fn every_file_on_disk_is_described_in_expected_json() {
    let expected = expected();
    let files = expected["files"].as_object().expect("files object");
    for dir in ["fit", "gpx", "tcx", "edge"] {
        for entry in std::fs::read_dir(fixtures_dir().join(dir)).expect("fixture dir") {
            let name = format!(
                "{dir}/{}",
                entry.expect("dir entry").file_name().to_string_lossy()
            );
            assert!(files.contains_key(&name), "{name} is not in expected.json");
        }
    }
}

#[test]
fn every_fixture_also_reads_gzipped() {
    use std::io::Write;
    for dir in ["fit", "gpx", "tcx"] {
        for entry in std::fs::read_dir(fixtures_dir().join(dir)).expect("fixture dir") {
            let path = entry.expect("dir entry").path();
            let bytes = std::fs::read(&path).expect("readable");
            let mut enc = flate2_writer();
            enc.write_all(&bytes).expect("gzip");
            let gz = enc.finish().expect("gzip");
            let plain = read(&bytes, None).expect("plain import");
            let zipped = read(&gz, None).expect("gzipped import");
            assert_eq!(plain, zipped, "{}", path.display());
        }
    }
}

fn flate2_writer() -> flate2::write::GzEncoder<Vec<u8>> {
    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast())
}

//! Parse-and-summarise benchmark: reads the longest FIT, GPX and TCX fixture (by duration)
//! N times each and prints the median, min and max wall time.
//!
//! `cargo run --release -p stride-formats --example parse_bench [N]` (default N = 50).

use std::path::Path;
use std::time::{Duration, Instant};

use stride_formats::{Athlete, Format, analyze, read};

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50)
        .max(1);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/workouts");
    let athlete = Athlete {
        max_heart_rate: Some(190.0),
        resting_heart_rate: Some(50.0),
        weight_kg: Some(70.0),
        age_years: Some(40.0),
        sex: None,
    };
    println!("{runs} runs each, parse + analyze (summary, splits, best efforts)");
    for (dir, format) in [
        ("fit", Format::Fit),
        ("gpx", Format::Gpx),
        ("tcx", Format::Tcx),
    ] {
        // The longest workout of the format (by elapsed time).
        let mut longest: Option<(f64, String, Vec<u8>)> = None;
        for entry in std::fs::read_dir(root.join(dir)).expect("fixture dir") {
            let path = entry.expect("entry").path();
            let bytes = std::fs::read(&path).expect("readable");
            let Ok(activity) = read(&bytes, Some(format)) else {
                continue;
            };
            let seconds = (activity.end_time() - activity.start_time).num_seconds() as f64;
            if longest.as_ref().is_none_or(|(s, _, _)| seconds > *s) {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                longest = Some((seconds, name, bytes));
            }
        }
        let Some((seconds, name, bytes)) = longest else {
            continue;
        };
        let mut times: Vec<Duration> = (0..runs)
            .map(|_| {
                let start = Instant::now();
                let activity = read(&bytes, Some(format)).expect("fixture imports");
                let analysis = analyze(&activity, &athlete);
                std::hint::black_box(analysis);
                start.elapsed()
            })
            .collect();
        times.sort();
        let samples = read(&bytes, Some(format))
            .map(|a| a.samples.len())
            .unwrap_or(0);
        println!(
            "{format}: {name} ({:.1} h, {samples} samples, {} KB): median {:.2} ms, min {:.2} ms, max {:.2} ms",
            seconds / 3600.0,
            bytes.len() / 1024,
            times[times.len() / 2].as_secs_f64() * 1000.0,
            times[0].as_secs_f64() * 1000.0,
            times[times.len() - 1].as_secs_f64() * 1000.0,
        );
    }
}

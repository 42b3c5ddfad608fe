#![no_main]

use libfuzzer_sys::fuzz_target;
use stride_formats::{Athlete, Limits, analyze, read_gpx};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_samples: 100_000,
        ..Limits::default()
    };
    if let Ok(activity) = read_gpx(data, &limits) {
        let _ = analyze(&activity, &Athlete::default());
    }
});

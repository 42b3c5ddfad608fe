#![no_main]

use libfuzzer_sys::fuzz_target;
use stride_formats::{Athlete, analyze, read};

// Detection + gzip + whichever reader the content selects.
fuzz_target!(|data: &[u8]| {
    if let Ok(activity) = read(data, None) {
        let _ = analyze(&activity, &Athlete::default());
    }
});

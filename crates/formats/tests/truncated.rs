//! XML documents cut short are refused as truncated, not read as shorter workouts.

use std::path::PathBuf;

use stride_formats::{FormatError, read};

fn fixture(path: &str) -> Vec<u8> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/workouts");
    std::fs::read(root.join(path)).expect("fixture")
}

#[test]
fn a_gpx_or_tcx_cut_in_the_middle_is_truncated() {
    for path in ["gpx/garmin-activity.gpx", "tcx/running_activity_1.tcx"] {
        let whole = fixture(path);
        assert!(read(&whole, None).is_ok(), "{path} reads whole");
        let cut = &whole[..whole.len() / 2];
        match read(cut, None) {
            Err(FormatError::Truncated(reason)) => assert!(reason.contains("closing tags")),
            other => panic!("{path} cut in half gave {other:?}"),
        }
    }
}

//! Cheap, stable-Rust stand-in for fuzzing: every fixture, mutated at random (seeded), must
//! come back as `Ok` or `Err` from the readers and the summaries — never a panic.

use std::path::{Path, PathBuf};

use stride_formats::{Athlete, Limits, analyze, read_fit, read_gpx, read_tcx, read_with_limits};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const CRC_TABLE: [u16; 16] = [
    0x0000, 0xCC01, 0xD801, 0x1400, 0xF001, 0x3C00, 0x2800, 0xE401, 0xA001, 0x6C00, 0x7800, 0xB401,
    0x5000, 0x9C01, 0x8801, 0x4400,
];

fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |mut crc, &byte| {
        let mut tmp = CRC_TABLE[usize::from(crc & 0xF)];
        crc = (crc >> 4) & 0x0FFF;
        crc = crc ^ tmp ^ CRC_TABLE[usize::from(byte & 0xF)];
        tmp = CRC_TABLE[usize::from(crc & 0xF)];
        crc = (crc >> 4) & 0x0FFF;
        crc ^ tmp ^ CRC_TABLE[usize::from((byte >> 4) & 0xF)]
    })
}

/// Re-seals a (single, possibly mutated) FIT file so the decoder gets past the CRC checks
/// and has to cope with the damaged content itself.
fn reseal_fit(data: &mut [u8]) {
    if data.len() < 16 || &data[8..12] != b".FIT" {
        return;
    }
    let header = usize::from(data[0]).clamp(12, 14);
    data[0] = header as u8;
    let size = data.len() - header - 2;
    data[4..8].copy_from_slice(&(size as u32).to_le_bytes());
    if header == 14 {
        data[12] = 0;
        data[13] = 0;
    }
    let n = data.len();
    let crc = crc16(&data[..n - 2]);
    data[n - 2..].copy_from_slice(&crc.to_le_bytes());
}

fn mutate(rng: &mut Rng, original: &[u8]) -> Vec<u8> {
    let mut data = original.to_vec();
    match rng.below(5) {
        0 => {
            for _ in 0..1 + rng.below(8) {
                let i = rng.below(data.len());
                if let Some(b) = data.get_mut(i) {
                    *b ^= 1 << rng.below(8);
                }
            }
        }
        1 => {
            let keep = rng.below(data.len());
            data.truncate(keep);
        }
        2 => {
            for _ in 0..1 + rng.below(16) {
                let i = rng.below(data.len());
                if let Some(b) = data.get_mut(i) {
                    *b = rng.next() as u8;
                }
            }
        }
        3 => {
            let start = rng.below(data.len());
            let len = rng.below(64).min(data.len() - start.min(data.len()));
            let chunk: Vec<u8> = data[start..start + len].to_vec();
            let at = rng.below(data.len());
            data.splice(at..at, chunk);
        }
        _ => {
            let start = rng.below(data.len());
            let end = (start + rng.below(256)).min(data.len());
            data.drain(start..end);
        }
    }
    data
}

fn fixture_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/workouts");
    let mut files = Vec::new();
    for dir in ["fit", "gpx", "tcx", "edge"] {
        for entry in std::fs::read_dir(root.join(dir)).expect("fixture dir") {
            files.push(entry.expect("entry").path());
        }
    }
    files.sort();
    files
}

#[test]
fn mutated_fixtures_never_panic() {
    let limits = Limits::default();
    let athlete = Athlete {
        max_heart_rate: Some(190.0),
        resting_heart_rate: Some(50.0),
        weight_kg: Some(70.0),
        age_years: Some(40.0),
        sex: None,
    };
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let mut outcomes = (0usize, 0usize);
    // STRIDE_MUTATION_ROUNDS=500 for a longer local run.
    let rounds: usize = std::env::var("STRIDE_MUTATION_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    for path in fixture_files() {
        let original = std::fs::read(&path).expect("readable fixture");
        for round in 0..rounds {
            let mut data = mutate(&mut rng, &original);
            if round % 2 == 0 {
                reseal_fit(&mut data);
            }
            let direct = match path.extension().and_then(|e| e.to_str()) {
                Some("fit") => read_fit(&data, &limits),
                Some("gpx") => read_gpx(&data, &limits),
                _ => read_tcx(&data, &limits),
            };
            if let Ok(activity) = direct {
                let _ = analyze(&activity, &athlete);
            }
            match read_with_limits(&data, None, &limits) {
                Ok(activity) => {
                    let _ = analyze(&activity, &athlete);
                    outcomes.0 += 1;
                }
                Err(err) => {
                    assert!(
                        !err.to_string().is_empty(),
                        "{}: empty error",
                        path.display()
                    );
                    outcomes.1 += 1;
                }
            }
        }
    }
    // Both paths are exercised: some mutations still import, many are refused.
    assert!(outcomes.0 > 0 && outcomes.1 > 0, "{outcomes:?}");
}

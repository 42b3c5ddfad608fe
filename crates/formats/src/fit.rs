//! FIT decoder: just the messages a workout needs (file_id is implied; sport, session, lap,
//! record and hr), with both CRCs checked before the data is trusted, chained FIT files,
//! compressed-timestamp headers, developer fields (skipped), compressed speed/distance, and
//! Garmin's merge of heart rate stored in separate `hr` messages into the records.
//!
//! Every byte access is bounds-checked (`get`), so no input can make it panic.

use chrono::{DateTime, TimeZone, Utc};

use crate::model::{Activity, Format, Lap, Leg, SourceInfo, Sport, Totals};
use crate::{FormatError, Limits, Sample};

/// Seconds between the Unix epoch and the FIT epoch (1989-12-31T00:00:00Z).
const FIT_EPOCH_UNIX_S: i64 = 631_065_600;

const MESG_SPORT: u16 = 12;
const MESG_SESSION: u16 = 18;
const MESG_LAP: u16 = 19;
const MESG_RECORD: u16 = 20;
const MESG_HR: u16 = 132;
const FIELD_TIMESTAMP: u8 = 253;

const CRC_TABLE: [u16; 16] = [
    0x0000, 0xCC01, 0xD801, 0x1400, 0xF001, 0x3C00, 0x2800, 0xE401, 0xA001, 0x6C00, 0x7800, 0xB401,
    0x5000, 0x9C01, 0x8801, 0x4400,
];

/// The FIT CRC-16 of `bytes`.
pub(crate) fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |mut crc, &byte| {
        let mut tmp = CRC_TABLE[usize::from(crc & 0xF)];
        crc = (crc >> 4) & 0x0FFF;
        crc = crc ^ tmp ^ CRC_TABLE[usize::from(byte & 0xF)];
        tmp = CRC_TABLE[usize::from(crc & 0xF)];
        crc = (crc >> 4) & 0x0FFF;
        crc ^ tmp ^ CRC_TABLE[usize::from((byte >> 4) & 0xF)]
    })
}

#[derive(Clone, Copy)]
struct FieldDef {
    num: u8,
    size: u8,
    base: u8,
}

struct MessageDef {
    global: u16,
    big_endian: bool,
    fields: Vec<FieldDef>,
    dev_bytes: usize,
}

#[derive(Default)]
struct RawRecord {
    ts: Option<u32>,
    lat: Option<f64>,
    lon: Option<f64>,
    altitude: Option<f64>,
    enhanced_altitude: Option<f64>,
    heart_rate: Option<f64>,
    cadence: Option<f64>,
    distance: Option<f64>,
    speed: Option<f64>,
    enhanced_speed: Option<f64>,
    power: Option<f64>,
    temperature: Option<f64>,
    compressed_speed_distance: Option<[u8; 3]>,
}

#[derive(Default, Clone)]
struct RawSummary {
    ts: Option<u32>,
    start: Option<u32>,
    sport: Option<u8>,
    sub_sport: Option<u8>,
    totals: Totals,
    enhanced_avg_speed: Option<f64>,
    enhanced_max_speed: Option<f64>,
}

#[derive(Default)]
struct RawHr {
    ts: Option<u32>,
    fractional: Option<f64>,
    /// Beat times in 1/1024 s (already accumulated for the packed 12-bit form).
    event_ts: Vec<u64>,
    bpm: Vec<f64>,
}

#[derive(Default)]
struct Decoded {
    files: usize,
    records: Vec<RawRecord>,
    laps: Vec<RawSummary>,
    sessions: Vec<RawSummary>,
    sport: Option<(Option<u8>, Option<u8>)>,
    hrs: Vec<RawHr>,
}

pub(crate) fn read(bytes: &[u8], limits: &Limits) -> Result<Activity, FormatError> {
    let decoded = decode(bytes, limits)?;
    build(decoded, limits)
}

fn u16_le(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn decode(bytes: &[u8], limits: &Limits) -> Result<Decoded, FormatError> {
    let mut out = Decoded::default();
    let mut offset = 0usize;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        if rest.get(8..12) != Some(b".FIT") {
            if out.files == 0 {
                return Err(if rest.len() < 12 {
                    FormatError::Truncated("the FIT header is incomplete".to_owned())
                } else {
                    FormatError::UnknownFormat
                });
            }
            // Padding after the last chained file is harmless; anything else is damage.
            if rest.iter().all(|&b| b == 0) {
                break;
            }
            return Err(FormatError::CorruptFit(format!(
                "unexpected bytes after the FIT data at byte {offset}"
            )));
        }
        let header_size = usize::from(rest[0]);
        if header_size < 12 {
            return Err(FormatError::CorruptFit(format!(
                "the header size {header_size} is too small"
            )));
        }
        let data_size = rest
            .get(4..8)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .unwrap_or(0) as usize;
        if header_size >= 14 {
            let stored = u16_le(rest, 12)
                .ok_or_else(|| FormatError::Truncated("the FIT header is incomplete".to_owned()))?;
            // 0x0000 means "not computed", which the protocol allows.
            if stored != 0 && rest.get(..12).map(crc16) != Some(stored) {
                return Err(FormatError::HeaderCrcMismatch);
            }
        }
        let data_end = header_size.saturating_add(data_size);
        let file_end = data_end.saturating_add(2);
        if rest.len() < file_end {
            return Err(FormatError::Truncated(format!(
                "the header announces {file_end} bytes but only {} are present",
                rest.len()
            )));
        }
        let stored = u16_le(rest, data_end).unwrap_or(0);
        let computed = crc16(&rest[..data_end]);
        // A stored CRC of 0 means the writer did not compute one.
        if stored != 0 && stored != computed {
            return Err(FormatError::CrcMismatch { stored, computed });
        }
        let data = rest.get(header_size..data_end).unwrap_or(&[]);
        decode_messages(data, offset + header_size, limits, &mut out)?;
        out.files += 1;
        offset += file_end;
    }
    if out.files == 0 {
        return Err(FormatError::Empty);
    }
    Ok(out)
}

fn corrupt(at: usize, what: &str) -> FormatError {
    FormatError::CorruptFit(format!("{what} at byte {at}"))
}

fn decode_messages(
    data: &[u8],
    base_offset: usize,
    limits: &Limits,
    out: &mut Decoded,
) -> Result<(), FormatError> {
    let mut defs: [Option<MessageDef>; 16] = Default::default();
    let mut last_ts: Option<u32> = None;
    // Heart-rate event accumulator: (last raw value, accumulated value) in 1/1024 s.
    let mut hr_acc: (u64, u64) = (0, 0);
    let mut pos = 0usize;
    while pos < data.len() {
        let at = base_offset + pos;
        let header = data[pos];
        pos += 1;
        if header & 0x80 != 0 {
            // Compressed-timestamp header: 5-bit offset from the last full timestamp.
            let local = usize::from((header >> 5) & 0x03);
            let time_offset = u32::from(header & 0x1F);
            let ts = last_ts.map(|last| {
                let base = last & !0x1F;
                if time_offset >= (last & 0x1F) {
                    base.wrapping_add(time_offset)
                } else {
                    base.wrapping_add(time_offset).wrapping_add(0x20)
                }
            });
            if ts.is_some() {
                last_ts = ts;
            }
            let def = defs[local]
                .as_ref()
                .ok_or_else(|| corrupt(at, "a data message uses an undefined message type"))?;
            pos = decode_data(
                data,
                pos,
                at,
                def,
                ts,
                &mut last_ts,
                &mut hr_acc,
                limits,
                out,
            )?;
        } else if header & 0x40 != 0 {
            let local = usize::from(header & 0x0F);
            let has_dev = header & 0x20 != 0;
            let (def, next) = decode_definition(data, pos, has_dev).ok_or_else(|| {
                FormatError::Truncated(format!("a definition message is cut off at byte {at}"))
            })?;
            defs[local] = Some(def);
            pos = next;
        } else {
            let local = usize::from(header & 0x0F);
            let def = defs[local]
                .as_ref()
                .ok_or_else(|| corrupt(at, "a data message uses an undefined message type"))?;
            pos = decode_data(
                data,
                pos,
                at,
                def,
                None,
                &mut last_ts,
                &mut hr_acc,
                limits,
                out,
            )?;
        }
    }
    Ok(())
}

fn decode_definition(data: &[u8], pos: usize, has_dev: bool) -> Option<(MessageDef, usize)> {
    let arch = *data.get(pos + 1)?;
    let big_endian = arch == 1;
    let g = [*data.get(pos + 2)?, *data.get(pos + 3)?];
    let global = if big_endian {
        u16::from_be_bytes(g)
    } else {
        u16::from_le_bytes(g)
    };
    let count = usize::from(*data.get(pos + 4)?);
    let mut p = pos + 5;
    let mut fields = Vec::with_capacity(count);
    for _ in 0..count {
        let f = data.get(p..p + 3)?;
        fields.push(FieldDef {
            num: f[0],
            size: f[1],
            base: f[2],
        });
        p += 3;
    }
    let mut dev_bytes = 0usize;
    if has_dev {
        let dev_count = usize::from(*data.get(p)?);
        p += 1;
        for _ in 0..dev_count {
            let f = data.get(p..p + 3)?;
            dev_bytes += usize::from(f[1]);
            p += 3;
        }
    }
    Some((
        MessageDef {
            global,
            big_endian,
            fields,
            dev_bytes,
        },
        p,
    ))
}

/// Size in bytes of one value of a FIT base type.
fn base_size(base: u8) -> usize {
    match base & 0x1F {
        0 | 1 | 2 | 7 | 10 | 13 => 1,
        3 | 4 | 11 => 2,
        5 | 6 | 8 | 12 => 4,
        9 | 14 | 15 | 16 => 8,
        _ => 1,
    }
}

fn uint(bytes: &[u8], big_endian: bool) -> u64 {
    let mut v = 0u64;
    if big_endian {
        for &b in bytes {
            v = (v << 8) | u64::from(b);
        }
    } else {
        for &b in bytes.iter().rev() {
            v = (v << 8) | u64::from(b);
        }
    }
    v
}

/// One value of a base type; `None` for the type's "invalid" marker, strings and NaN.
fn value_of(bytes: &[u8], base: u8, big_endian: bool) -> Option<f64> {
    let raw = uint(bytes, big_endian);
    let v = match base & 0x1F {
        0 | 2 | 13 => (raw != 0xFF).then_some(raw as f64),
        1 => (raw != 0x7F).then_some(raw as u8 as i8 as f64),
        10 | 11 | 12 | 16 => (raw != 0).then_some(raw as f64),
        3 => (raw != 0x7FFF).then_some(raw as u16 as i16 as f64),
        4 => (raw != 0xFFFF).then_some(raw as f64),
        5 => (raw != 0x7FFF_FFFF).then_some(raw as u32 as i32 as f64),
        6 => (raw != 0xFFFF_FFFF).then_some(raw as f64),
        8 => (raw != 0xFFFF_FFFF).then(|| f64::from(f32::from_bits(raw as u32))),
        9 => (raw != u64::MAX).then(|| f64::from_bits(raw)),
        14 => (raw != 0x7FFF_FFFF_FFFF_FFFF).then_some(raw as i64 as f64),
        15 => (raw != u64::MAX).then_some(raw as f64),
        _ => None,
    };
    v.filter(|v| v.is_finite())
}

fn scalar(bytes: &[u8], base: u8, big_endian: bool) -> Option<f64> {
    if bytes.len() != base_size(base) {
        return None;
    }
    value_of(bytes, base, big_endian)
}

fn array(bytes: &[u8], base: u8, big_endian: bool) -> Vec<Option<f64>> {
    let size = base_size(base);
    bytes
        .chunks_exact(size)
        .map(|c| value_of(c, base, big_endian))
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn decode_data(
    data: &[u8],
    pos: usize,
    at: usize,
    def: &MessageDef,
    compressed_ts: Option<u32>,
    last_ts: &mut Option<u32>,
    hr_acc: &mut (u64, u64),
    limits: &Limits,
    out: &mut Decoded,
) -> Result<usize, FormatError> {
    let mut p = pos;
    let truncated = || FormatError::Truncated(format!("a data message is cut off at byte {at}"));
    let mut record = RawRecord {
        ts: compressed_ts,
        ..RawRecord::default()
    };
    let mut summary = RawSummary {
        ts: compressed_ts,
        ..RawSummary::default()
    };
    let mut hr = RawHr {
        ts: None,
        ..RawHr::default()
    };
    let mut sport: (Option<u8>, Option<u8>) = (None, None);
    let be = def.big_endian;
    for field in &def.fields {
        let size = usize::from(field.size);
        let bytes = data.get(p..p + size).ok_or_else(truncated)?;
        p += size;
        let v = || scalar(bytes, field.base, be);
        if field.num == FIELD_TIMESTAMP {
            if let Some(ts) = v() {
                let ts = ts as u32;
                *last_ts = Some(ts);
                record.ts = Some(ts);
                summary.ts = Some(ts);
                hr.ts = Some(ts);
            }
            continue;
        }
        match def.global {
            MESG_RECORD => decode_record_field(&mut record, field, bytes, be),
            MESG_SESSION | MESG_LAP => {
                decode_summary_field(&mut summary, def.global == MESG_LAP, field, bytes, be)
            }
            MESG_SPORT => match field.num {
                0 => sport.0 = v().map(|x| x as u8),
                1 => sport.1 = v().map(|x| x as u8),
                _ => {}
            },
            MESG_HR => match field.num {
                0 => hr.fractional = v().map(|x| x / 32768.0),
                6 => {
                    hr.bpm = array(bytes, field.base, be)
                        .into_iter()
                        .map(|x| x.unwrap_or(0.0))
                        .collect()
                }
                9 => {
                    for raw in array(bytes, field.base, be).into_iter().flatten() {
                        let raw = raw as u64;
                        *hr_acc = (raw, raw);
                        hr.event_ts.push(raw);
                    }
                }
                10 => {
                    // Packed 12-bit beat times, accumulated onto the last full value.
                    let count = bytes.len() * 8 / 12;
                    for k in 0..count {
                        let bit = k * 12;
                        let byte = bit / 8;
                        let lo = u16::from(bytes.get(byte).copied().unwrap_or(0));
                        let hi = u16::from(bytes.get(byte + 1).copied().unwrap_or(0));
                        let word = lo | (hi << 8);
                        let v12 = u64::from((word >> (bit % 8)) & 0x0FFF);
                        let (last, acc) = *hr_acc;
                        let acc = acc.wrapping_add(v12.wrapping_sub(last) & 0x0FFF);
                        *hr_acc = (v12, acc);
                        hr.event_ts.push(acc);
                    }
                }
                _ => {}
            },
            _ => {}
        }
    }
    p = p.checked_add(def.dev_bytes).ok_or_else(truncated)?;
    if p > data.len() {
        return Err(truncated());
    }
    match def.global {
        MESG_RECORD => {
            if out.records.len() >= limits.max_samples {
                return Err(FormatError::TooManySamples {
                    limit: limits.max_samples,
                });
            }
            out.records.push(record);
        }
        MESG_SESSION => push_bounded(&mut out.sessions, summary, limits)?,
        MESG_LAP => push_bounded(&mut out.laps, summary, limits)?,
        MESG_SPORT if out.sport.is_none() => out.sport = Some(sport),
        MESG_HR => push_bounded(&mut out.hrs, hr, limits)?,
        _ => {}
    }
    Ok(p)
}

fn push_bounded<T>(list: &mut Vec<T>, item: T, limits: &Limits) -> Result<(), FormatError> {
    if list.len() >= limits.max_samples {
        return Err(FormatError::TooManySamples {
            limit: limits.max_samples,
        });
    }
    list.push(item);
    Ok(())
}

fn decode_record_field(r: &mut RawRecord, field: &FieldDef, bytes: &[u8], be: bool) {
    let v = || scalar(bytes, field.base, be);
    const SEMICIRCLE_DEG: f64 = 180.0 / 2_147_483_648.0;
    match field.num {
        0 => r.lat = v().map(|x| x * SEMICIRCLE_DEG),
        1 => r.lon = v().map(|x| x * SEMICIRCLE_DEG),
        2 => r.altitude = v().map(|x| x / 5.0 - 500.0),
        3 => r.heart_rate = v(),
        4 => r.cadence = v(),
        5 => r.distance = v().map(|x| x / 100.0),
        6 => r.speed = v().map(|x| x / 1000.0),
        7 => r.power = v(),
        8 => {
            if let [a, b, c] = bytes {
                r.compressed_speed_distance = Some([*a, *b, *c]);
            }
        }
        13 => r.temperature = v(),
        73 => r.enhanced_speed = v().map(|x| x / 1000.0),
        78 => r.enhanced_altitude = v().map(|x| x / 5.0 - 500.0),
        _ => {}
    }
}

fn decode_summary_field(
    s: &mut RawSummary,
    is_lap: bool,
    field: &FieldDef,
    bytes: &[u8],
    be: bool,
) {
    let v = || scalar(bytes, field.base, be);
    let t = &mut s.totals;
    // Lap and session share most fields, but from avg_speed to total_descent the lap numbers
    // are one lower.
    let n = if is_lap && (13..=22).contains(&field.num) {
        field.num + 1
    } else {
        field.num
    };
    match (is_lap, n) {
        (_, 2) => s.start = v().map(|x| x as u32),
        (false, 5) => s.sport = v().map(|x| x as u8),
        (false, 6) => s.sub_sport = v().map(|x| x as u8),
        (true, 25) => s.sport = v().map(|x| x as u8),
        (true, 39) => s.sub_sport = v().map(|x| x as u8),
        (_, 7) => t.elapsed_time_s = v().map(|x| x / 1000.0),
        (_, 8) => t.timer_time_s = v().map(|x| x / 1000.0),
        (_, 9) => t.distance_m = v().map(|x| x / 100.0),
        (_, 11) => t.calories_kcal = v(),
        (_, 14) => t.avg_speed_mps = v().map(|x| x / 1000.0),
        (_, 15) => t.max_speed_mps = v().map(|x| x / 1000.0),
        (_, 16) => t.avg_heart_rate = v(),
        (_, 17) => t.max_heart_rate = v(),
        (_, 18) => t.avg_cadence = v(),
        (_, 19) => t.max_cadence = v(),
        (_, 20) => t.avg_power_w = v(),
        (_, 21) => t.max_power_w = v(),
        (_, 22) => t.elevation_gain_m = v(),
        (_, 23) => t.elevation_loss_m = v(),
        (false, 124) | (true, 110) => s.enhanced_avg_speed = v().map(|x| x / 1000.0),
        (false, 125) | (true, 111) => s.enhanced_max_speed = v().map(|x| x / 1000.0),
        _ => {}
    }
}

fn fit_time(ts: u32) -> Option<DateTime<Utc>> {
    Utc.timestamp_opt(i64::from(ts) + FIT_EPOCH_UNIX_S, 0)
        .single()
}

fn finish_summary(s: &RawSummary) -> Totals {
    let mut t = s.totals.clone();
    t.avg_speed_mps = s.enhanced_avg_speed.or(t.avg_speed_mps);
    t.max_speed_mps = s.enhanced_max_speed.or(t.max_speed_mps);
    // Some writers (e.g. Zwift) put 0 in fields they do not measure.
    for field in [&mut t.avg_heart_rate, &mut t.max_heart_rate] {
        if *field == Some(0.0) {
            *field = None;
        }
    }
    t
}

/// Name of a FIT sport enum value, for the ones Stride maps.
fn fit_sport_name(sport: u8) -> Option<&'static str> {
    Some(match sport {
        0 => "generic",
        1 => "running",
        2 => "cycling",
        3 => "transition",
        4 => "fitness_equipment",
        5 => "swimming",
        10 => "training",
        11 => "walking",
        12 => "cross_country_skiing",
        13 => "alpine_skiing",
        15 => "rowing",
        16 => "mountaineering",
        17 => "hiking",
        18 => "multisport",
        19 => "paddling",
        _ => return None,
    })
}

fn build(decoded: Decoded, limits: &Limits) -> Result<Activity, FormatError> {
    let record_count = decoded.records.len();
    let mut samples = Vec::with_capacity(record_count);
    let mut distance_acc: Option<(u64, u64)> = None;
    for r in &decoded.records {
        let Some(time) = r.ts.and_then(fit_time) else {
            continue;
        };
        let mut s = Sample::at(time);
        if let (Some(lat), Some(lon)) = (r.lat, r.lon)
            && (-90.0..=90.0).contains(&lat)
            && (-180.0..=180.0).contains(&lon)
        {
            s.lat = Some(lat);
            s.lon = Some(lon);
        }
        s.altitude_m = r.enhanced_altitude.or(r.altitude);
        s.heart_rate = r.heart_rate.filter(|v| *v > 0.0);
        s.cadence = r.cadence;
        s.power_w = r.power;
        s.speed_mps = r.enhanced_speed.or(r.speed);
        s.distance_m = r.distance;
        s.temperature_c = r.temperature;
        if let Some([a, b, c]) = r.compressed_speed_distance {
            // 12 bits speed (1/100 m/s), 12 bits rolling distance (1/16 m).
            let speed = u16::from(a) | (u16::from(b & 0x0F) << 8);
            let dist = u64::from(b >> 4) | (u64::from(c) << 4);
            let (last, acc) = distance_acc.unwrap_or((dist, 0));
            let acc = acc + (dist.wrapping_sub(last) & 0x0FFF);
            distance_acc = Some((dist, acc));
            s.speed_mps = s.speed_mps.or(Some(f64::from(speed) / 100.0));
            s.distance_m = s.distance_m.or(Some(acc as f64 / 16.0));
        }
        samples.push(s);
    }
    samples.sort_by_key(|s| s.time);
    merge_heart_rates(&decoded.hrs, &mut samples, limits)?;

    let laps: Vec<Lap> = decoded
        .laps
        .iter()
        .filter_map(|l| {
            let start_time = l.start.or(l.ts).and_then(fit_time)?;
            let totals = finish_summary(l);
            Some(Lap {
                start_time,
                elapsed_time_s: totals.elapsed_time_s,
                timer_time_s: totals.timer_time_s,
                distance_m: totals.distance_m,
                totals,
            })
        })
        .collect();

    let mut sessions: Vec<&RawSummary> = decoded.sessions.iter().collect();
    sessions.sort_by_key(|s| s.start.or(s.ts));
    let start_time = samples
        .first()
        .map(|s| s.time)
        .or_else(|| {
            sessions
                .first()
                .and_then(|s| s.start.or(s.ts))
                .and_then(fit_time)
        })
        .or_else(|| laps.first().map(|l| l.start_time));
    let Some(start_time) = start_time else {
        return Err(
            if decoded.records.is_empty() && decoded.sessions.is_empty() {
                FormatError::NoData
            } else {
                FormatError::NoTimestamps
            },
        );
    };
    if samples.is_empty() && sessions.is_empty() {
        return Err(FormatError::NoData);
    }

    let leg_of = |s: &RawSummary| {
        let sport = Sport::from_fit(s.sport, s.sub_sport);
        let name = s.sport.and_then(fit_sport_name).map(str::to_owned);
        (sport, name)
    };
    let mut legs = Vec::new();
    if sessions.len() > 1 {
        for (i, s) in sessions.iter().enumerate() {
            let begin = s.start.or(s.ts).and_then(fit_time);
            let end = sessions
                .get(i + 1)
                .and_then(|n| n.start.or(n.ts))
                .and_then(fit_time);
            let lo = begin.map_or(0, |b| samples.partition_point(|x| x.time < b));
            let hi = end.map_or(samples.len(), |e| samples.partition_point(|x| x.time < e));
            let hi = if i + 1 == sessions.len() {
                samples.len()
            } else {
                hi
            };
            let leg_laps = laps
                .iter()
                .filter(|l| {
                    begin.is_none_or(|b| l.start_time >= b) && end.is_none_or(|e| l.start_time < e)
                })
                .cloned()
                .collect();
            let (sport, sport_name) = leg_of(s);
            legs.push(Leg {
                sport,
                sport_name,
                start_time: begin,
                samples: lo.min(hi)..hi,
                laps: leg_laps,
                totals: finish_summary(s),
            });
        }
    }
    let (sport, sport_name, totals) = match sessions.as_slice() {
        [only] => {
            let (sport, name) = leg_of(only);
            (sport, name, finish_summary(only))
        }
        [] => {
            let (sport, sub) = decoded.sport.unwrap_or((None, None));
            let lap_totals: Vec<Totals> = laps.iter().map(|l| l.totals.clone()).collect();
            (
                Sport::from_fit(sport, sub),
                sport.and_then(fit_sport_name).map(str::to_owned),
                Totals::combine(&lap_totals),
            )
        }
        _ => (
            Sport::Other,
            Some("multisport".to_owned()),
            Totals::combine(legs.iter().map(|l| &l.totals)),
        ),
    };
    Ok(Activity {
        format: Format::Fit,
        sport,
        sport_name,
        start_time,
        samples,
        segment_starts: Vec::new(),
        laps,
        legs,
        totals,
        source: SourceInfo {
            fit_files: decoded.files,
            fit_records: record_count,
            fit_sessions: decoded.sessions.len(),
            fit_hr_messages: decoded.hrs.len(),
            ..SourceInfo::default()
        },
    })
}

/// Garmin's FIT SDK algorithm (`merge_heart_rates`): beats from `hr` messages are expanded to
/// a 250 ms grid (carrying a value forward across gaps of up to 5 s), and each record gets the
/// rounded mean of the beats since the previous record.
fn merge_heart_rates(
    hrs: &[RawHr],
    samples: &mut [Sample],
    limits: &Limits,
) -> Result<(), FormatError> {
    if hrs.is_empty() || samples.is_empty() {
        return Ok(());
    }
    let max_points = limits.max_samples.saturating_mul(32);
    let mut beats: Vec<(f64, f64)> = Vec::new();
    let mut anchor: Option<(f64, f64)> = None; // (timestamp s, event timestamp s)
    for msg in hrs {
        if let Some(ts) = msg.ts {
            // An anchor message carries exactly one event timestamp.
            if msg.event_ts.len() != 1 {
                return Ok(());
            }
            anchor = Some((
                f64::from(ts) + msg.fractional.unwrap_or(0.0),
                msg.event_ts[0] as f64 / 1024.0,
            ));
        }
        let Some((anchor_ts, anchor_event)) = anchor else {
            return Ok(());
        };
        if msg.event_ts.len() != msg.bpm.len() {
            return Ok(());
        }
        for (event, bpm) in msg.event_ts.iter().zip(&msg.bpm) {
            let mut event = *event as f64 / 1024.0;
            if event < anchor_event {
                if anchor_event - event > f64::from(0x40_0000) {
                    event += f64::from(0x40_0000);
                } else {
                    // Not decodable; leave the records as the device wrote them.
                    return Ok(());
                }
            }
            let current = (anchor_ts + (event - anchor_event), *bpm);
            if let Some(&(prev_ts, prev_hr)) = beats.last() {
                let mut gap_ms = (current.0 - prev_ts).abs() * 1000.0;
                let mut step = 1.0;
                while gap_ms > 250.0 && step <= 20.0 {
                    beats.push((prev_ts + 0.25 * step, prev_hr));
                    gap_ms -= 250.0;
                    step += 1.0;
                }
            }
            beats.push(current);
            if beats.len() > max_points {
                return Err(FormatError::TooManySamples {
                    limit: limits.max_samples,
                });
            }
        }
    }
    let mut index = 0usize;
    let mut range_start: Option<f64> = None;
    for sample in samples.iter_mut() {
        let mut sum = 0.0;
        let mut count = 0u32;
        let end = (sample.time.timestamp() - FIT_EPOCH_UNIX_S) as f64;
        let mut start = range_start.unwrap_or(end);
        if start == end {
            start -= 1.0;
            index = index.saturating_sub(1);
        }
        range_start = Some(start);
        while let Some(&(ts, hr)) = beats.get(index) {
            if ts > start && ts <= end {
                sum += hr;
                count += 1;
            } else if ts > end {
                if count > 0 {
                    sample.heart_rate =
                        Some((sum / f64::from(count) + 0.5).floor()).filter(|v| *v > 0.0);
                }
                range_start = Some(end);
                break;
            }
            index += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A tiny FIT writer for hand-made test files.
    pub(crate) struct FitWriter {
        data: Vec<u8>,
    }

    impl FitWriter {
        pub(crate) fn new() -> Self {
            FitWriter { data: Vec::new() }
        }
        /// Defines `local` as `global` with fields (num, size, base type), little endian.
        pub(crate) fn define(
            &mut self,
            local: u8,
            global: u16,
            fields: &[(u8, u8, u8)],
        ) -> &mut Self {
            self.data.push(0x40 | local);
            self.data.push(0);
            self.data.push(0);
            self.data.extend_from_slice(&global.to_le_bytes());
            self.data.push(fields.len() as u8);
            for (n, s, b) in fields {
                self.data.extend_from_slice(&[*n, *s, *b]);
            }
            self
        }
        pub(crate) fn data(&mut self, local: u8, bytes: &[u8]) -> &mut Self {
            self.data.push(local);
            self.data.extend_from_slice(bytes);
            self
        }
        pub(crate) fn compressed(&mut self, local: u8, offset: u8, bytes: &[u8]) -> &mut Self {
            self.data.push(0x80 | (local << 5) | (offset & 0x1F));
            self.data.extend_from_slice(bytes);
            self
        }
        pub(crate) fn finish(&self) -> Vec<u8> {
            let mut out = vec![14u8, 0x20, 0x08, 0x08];
            out.extend_from_slice(&(self.data.len() as u32).to_le_bytes());
            out.extend_from_slice(b".FIT");
            let header_crc = crc16(&out);
            out.extend_from_slice(&header_crc.to_le_bytes());
            out.extend_from_slice(&self.data);
            let crc = crc16(&out);
            out.extend_from_slice(&crc.to_le_bytes());
            out
        }
    }

    const T0: u32 = 1_000_000_000;

    fn record_def(w: &mut FitWriter) {
        // timestamp, heart_rate, distance, power
        w.define(
            0,
            MESG_RECORD,
            &[(253, 4, 0x86), (3, 1, 0x02), (5, 4, 0x86), (7, 2, 0x84)],
        );
    }

    fn record(w: &mut FitWriter, ts: u32, hr: u8, dist_cm: u32, power: u16) {
        let mut b = ts.to_le_bytes().to_vec();
        b.push(hr);
        b.extend_from_slice(&dist_cm.to_le_bytes());
        b.extend_from_slice(&power.to_le_bytes());
        w.data(0, &b);
    }

    fn session(w: &mut FitWriter, local: u8, start: u32, elapsed_ms: u32, dist_cm: u32, sport: u8) {
        w.define(
            local,
            MESG_SESSION,
            &[
                (2, 4, 0x86),
                (7, 4, 0x86),
                (8, 4, 0x86),
                (9, 4, 0x86),
                (5, 1, 0x00),
                (6, 1, 0x00),
            ],
        );
        let mut b = start.to_le_bytes().to_vec();
        b.extend_from_slice(&elapsed_ms.to_le_bytes());
        b.extend_from_slice(&elapsed_ms.to_le_bytes());
        b.extend_from_slice(&dist_cm.to_le_bytes());
        b.push(sport);
        b.push(0);
        w.data(local, &b);
    }

    pub(crate) fn simple_file() -> Vec<u8> {
        let mut w = FitWriter::new();
        record_def(&mut w);
        for i in 0..10u32 {
            record(&mut w, T0 + i, 120 + i as u8, i * 300, 200);
        }
        session(&mut w, 1, T0, 9_000, 2_700, 1);
        w.finish()
    }

    fn read_fit(bytes: &[u8]) -> Result<Activity, FormatError> {
        read(bytes, &Limits::default())
    }

    #[test]
    fn crc_matches_the_protocol_example() {
        // The SDK's Activity.fit header (12 bytes) has header CRC 0x... ; check a known value:
        assert_eq!(crc16(b""), 0);
        assert_eq!(crc16(b"123456789"), 0xBB3D); // CRC-16/ARC
    }

    #[test]
    fn reads_records_and_session() {
        let a = read_fit(&simple_file()).unwrap();
        assert_eq!(a.samples.len(), 10);
        assert_eq!(a.sport, Sport::Run);
        assert_eq!(a.samples[3].heart_rate, Some(123.0));
        assert_eq!(a.samples[3].distance_m, Some(9.0));
        assert_eq!(a.totals.distance_m, Some(27.0));
        assert_eq!(a.totals.elapsed_time_s, Some(9.0));
        assert_eq!(a.start_time, fit_time(T0).unwrap());
    }

    #[test]
    fn truncated_file_is_reported() {
        let file = simple_file();
        for cut in [1, 5, 13, file.len() / 2, file.len() - 1] {
            let err = read_fit(&file[..cut]).unwrap_err();
            assert!(
                matches!(err, FormatError::Truncated(_) | FormatError::UnknownFormat),
                "cut {cut}: {err}"
            );
        }
        let err = read_fit(&file[..file.len() - 1]).unwrap_err();
        assert!(
            err.to_string().starts_with("the file is truncated"),
            "{err}"
        );
    }

    #[test]
    fn wrong_crc_is_reported() {
        let mut file = simple_file();
        let n = file.len();
        file[n - 5] ^= 0x01;
        let err = read_fit(&file).unwrap_err();
        assert!(matches!(err, FormatError::CrcMismatch { .. }));
        assert!(err.to_string().contains("CRC does not match"));
    }

    #[test]
    fn wrong_header_crc_is_reported() {
        let mut file = simple_file();
        file[12] ^= 0xFF;
        assert_eq!(read_fit(&file).unwrap_err(), FormatError::HeaderCrcMismatch);
    }

    #[test]
    fn no_timestamps_is_reported() {
        let mut w = FitWriter::new();
        w.define(0, MESG_RECORD, &[(3, 1, 0x02)]);
        w.data(0, &[120]).data(0, &[121]);
        assert_eq!(
            read_fit(&w.finish()).unwrap_err(),
            FormatError::NoTimestamps
        );
    }

    #[test]
    fn hostile_sample_counts_are_refused() {
        let limits = Limits {
            max_samples: 5,
            ..Limits::default()
        };
        let err = read(&simple_file(), &limits).unwrap_err();
        assert_eq!(err, FormatError::TooManySamples { limit: 5 });
    }

    #[test]
    fn hostile_data_size_is_truncation_not_allocation() {
        let mut file = simple_file();
        file[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        file[12] = 0;
        file[13] = 0;
        assert!(matches!(read_fit(&file), Err(FormatError::Truncated(_))));
    }

    #[test]
    fn compressed_timestamp_headers() {
        let mut w = FitWriter::new();
        record_def(&mut w);
        record(&mut w, T0, 100, 0, 0); // T0 & 0x1F == 0 assumed below
        let base = T0 & !0x1F;
        w.define(1, MESG_RECORD, &[(3, 1, 0x02)]);
        let off = (T0 & 0x1F) as u8;
        w.compressed(1, off + 3, &[101]);
        w.compressed(1, (off + 31) & 0x1F, &[102]); // wraps when off + 31 >= 32
        let a = read_fit(&w.finish()).unwrap();
        assert_eq!(a.samples.len(), 3);
        let secs: Vec<i64> = a
            .samples
            .iter()
            .map(|s| s.time.timestamp() - FIT_EPOCH_UNIX_S)
            .collect();
        assert_eq!(secs[0], i64::from(T0));
        assert_eq!(secs[1], i64::from(T0) + 3);
        assert_eq!(secs[2], i64::from(T0) + 31);
        assert!(base <= T0);
        assert_eq!(a.samples[2].heart_rate, Some(102.0));
    }

    #[test]
    fn chained_files_and_multisport_legs() {
        let mut w = FitWriter::new();
        record_def(&mut w);
        for i in 0..5u32 {
            record(&mut w, T0 + i, 130, i * 500, 0);
        }
        session(&mut w, 1, T0, 5_000, 2_000, 1);
        let first = w.finish();
        let mut w = FitWriter::new();
        record_def(&mut w);
        for i in 10..20u32 {
            record(&mut w, T0 + i, 140, (i - 10) * 800, 250);
        }
        session(&mut w, 1, T0 + 10, 10_000, 7_200, 2);
        let mut file = first;
        file.extend_from_slice(&w.finish());
        let a = read_fit(&file).unwrap();
        assert_eq!(a.source.fit_files, 2);
        assert_eq!(a.samples.len(), 15);
        assert!(a.is_multisport());
        assert_eq!(a.legs[0].sport, Sport::Run);
        assert_eq!(a.legs[1].sport, Sport::Ride);
        assert_eq!(a.legs[0].samples, 0..5);
        assert_eq!(a.legs[1].samples, 5..15);
        assert_eq!(a.totals.distance_m, Some(92.0));
        assert_eq!(a.totals.elapsed_time_s, Some(15.0));
    }

    #[test]
    fn heart_rate_messages_are_merged_into_records() {
        let mut w = FitWriter::new();
        w.define(0, MESG_RECORD, &[(253, 4, 0x86)]);
        for i in 0..4u32 {
            w.data(0, &(T0 + i).to_le_bytes());
        }
        // anchor: timestamp, event_timestamp (1/1024 s), filtered_bpm
        w.define(1, MESG_HR, &[(253, 4, 0x86), (9, 4, 0x86), (6, 1, 0x02)]);
        let mut b = T0.to_le_bytes().to_vec();
        b.extend_from_slice(&(1024u32 * 100).to_le_bytes());
        b.push(90);
        w.data(1, &b);
        // two packed 12-bit beats at +1 s and +2 s
        w.define(2, MESG_HR, &[(10, 3, 0x0D), (6, 2, 0x02)]);
        let e1 = (1024u32 * 101) & 0xFFF;
        let e2 = (1024u32 * 102) & 0xFFF;
        let packed = e1 | (e2 << 12);
        w.data(
            2,
            &[
                packed as u8,
                (packed >> 8) as u8,
                (packed >> 16) as u8,
                100,
                110,
            ],
        );
        let a = read_fit(&w.finish()).unwrap();
        let hrs: Vec<Option<f64>> = a.samples.iter().map(|s| s.heart_rate).collect();
        assert_eq!(hrs[0], Some(90.0));
        // Like Garmin's SDK, a record gets the mean of the beats since the previous record
        // (90 carried forward on the 250 ms grid, then 100) once a later beat closes its range.
        assert_eq!(hrs[1], Some(93.0), "{hrs:?}");
        assert_eq!(hrs[3], None, "no beats reach the last record");
        assert_eq!(a.source.fit_hr_messages, 2);
    }

    #[test]
    fn undefined_local_message_is_corruption() {
        let mut w = FitWriter::new();
        w.data(3, &[1, 2, 3]);
        assert!(matches!(
            read_fit(&w.finish()),
            Err(FormatError::CorruptFit(_))
        ));
    }
}

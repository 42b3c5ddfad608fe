//! The simulated athlete, course and workout: pure and deterministic for a seed, no I/O.
//!
//! A [`Course`] is a closed loop around a start point: a circle whose radius wobbles with a
//! few harmonics (so the heading drifts like a real road), with rolling hills that are also
//! harmonics of the angle (so every lap climbs the same hills). A [`Workout`] moves an
//! [`Athlete`] along it one second at a time: runners slow down uphill and work harder,
//! riders push more watts uphill and coast on steep descents (speed follows from power,
//! gravity, rolling resistance and drag), and heart rate follows effort with a lag and drifts
//! upwards over a long effort (cardiac drift). Every value stays inside the ranges the
//! telemetry service accepts.

use std::f64::consts::TAU;

use rand::{Rng, SeedableRng, rngs::StdRng, seq::SliceRandom};

/// Metres per degree of latitude (and of longitude at the equator).
const METRES_PER_DEGREE: f64 = 111_320.0;
const GRAVITY: f64 = 9.81;
const AIR_DENSITY: f64 = 1.225;
/// Drag coefficient times frontal area of a rider on the hoods.
const DRAG_AREA_M2: f64 = 0.32;
const ROLLING_RESISTANCE: f64 = 0.005;
const DRIVETRAIN_EFFICIENCY: f64 = 0.97;
const BIKE_MASS_KG: f64 = 9.0;
/// Riders brake on long descents.
const MAX_RIDE_SPEED_MPS: f64 = 18.0;
/// Riders do not stall on the steepest climbs of a simulated course.
const MIN_RIDE_SPEED_MPS: f64 = 1.5;
/// Below this a rider is coasting: no pedalling, no cadence.
const COASTING_POWER_W: f64 = 20.0;
/// How much of the gap to the wanted speed closes each second (inertia).
const RUN_ACCELERATION: f64 = 0.3;
const RIDE_ACCELERATION: f64 = 0.15;
/// Heart rate rises faster than it falls.
const HEART_RATE_RISE_TAU_S: f64 = 30.0;
const HEART_RATE_FALL_TAU_S: f64 = 50.0;

/// The sports the simulator records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sport {
    /// Running.
    Run,
    /// Road cycling, with a power meter.
    Ride,
}

impl Sport {
    /// The name the training API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Sport::Run => "run",
            Sport::Ride => "ride",
        }
    }

    /// The identity API's device kind that records it.
    pub fn device_kind(self) -> &'static str {
        match self {
            Sport::Run => "watch",
            Sport::Ride => "bike_computer",
        }
    }
}

/// Who is exercising: what their heart and legs do.
#[derive(Debug, Clone, PartialEq)]
pub struct Athlete {
    /// Beats per minute at rest.
    pub resting_heart_rate: f64,
    /// Highest beats per minute.
    pub max_heart_rate: f64,
    /// Beats per minute gained per hour of steady effort (cardiac drift).
    pub drift_bpm_per_hour: f64,
    /// Running speed that can be held for about an hour.
    pub threshold_speed_mps: f64,
    /// Running speed of an ordinary steady run on the flat.
    pub easy_speed_mps: f64,
    /// Cycling power that can be held for about an hour.
    pub ftp_w: f64,
    /// Share of `ftp_w` held on the flat in an ordinary ride.
    pub ride_intensity: f64,
    /// Body mass.
    pub mass_kg: f64,
}

impl Athlete {
    /// A plausible recreational athlete.
    pub fn random(rng: &mut impl Rng) -> Self {
        let threshold_speed_mps = rng.gen_range(3.3..4.3);
        Self {
            resting_heart_rate: rng.gen_range(45.0..65.0),
            max_heart_rate: rng.gen_range(175.0..200.0),
            drift_bpm_per_hour: rng.gen_range(6.0..12.0),
            threshold_speed_mps,
            easy_speed_mps: threshold_speed_mps * rng.gen_range(0.74..0.84),
            ftp_w: rng.gen_range(180.0..320.0),
            ride_intensity: rng.gen_range(0.62..0.75),
            mass_kg: rng.gen_range(58.0..88.0),
        }
    }
}

/// One term of a Fourier series in the loop's angle: `amplitude · sin(order·θ + phase)`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Harmonic {
    order: f64,
    amplitude: f64,
    phase: f64,
}

impl Harmonic {
    fn value(&self, theta: f64) -> f64 {
        self.amplitude * (self.order * theta + self.phase).sin()
    }

    fn slope(&self, theta: f64) -> f64 {
        self.amplitude * self.order * (self.order * theta + self.phase).cos()
    }
}

/// Start areas: (name, latitude, longitude, altitude of the valley floor in metres).
const PLACES: [(&str, f64, f64, f64); 6] = [
    ("Zurich", 47.3769, 8.5417, 408.0),
    ("Boulder", 40.0150, -105.2705, 1655.0),
    ("Girona", 41.9794, 2.8214, 75.0),
    ("Kyoto", 35.0116, 135.7681, 50.0),
    ("Annecy", 45.8992, 6.1294, 448.0),
    ("Stellenbosch", -33.9321, 18.8602, 120.0),
];

/// A closed loop around a start point, with rolling hills.
#[derive(Debug, Clone, PartialEq)]
pub struct Course {
    /// Where the loop is, for people reading the report.
    pub place: &'static str,
    /// Latitude of the start, degrees.
    pub origin_lat: f64,
    /// Longitude of the start, degrees.
    pub origin_lon: f64,
    /// Altitude of the lowest possible point of the hills, metres.
    pub base_altitude_m: f64,
    radius_m: f64,
    /// Direction from the loop's centre to the start, radians from east.
    rotation: f64,
    /// Relative wobble of the radius; the sum of amplitudes stays well below 1.
    shape: Vec<Harmonic>,
    /// Hills in metres; altitude is `base + Σ amplitude · (1 + sin(order·θ + phase))`.
    hills: Vec<Harmonic>,
}

impl Course {
    /// A loop near one of a few real places, sized for the sport: 4–9 km runs, 18–36 km rides,
    /// hills no steeper than 6 % (runs) or 7 % (rides).
    pub fn random(sport: Sport, rng: &mut impl Rng) -> Self {
        let (place, lat, lon, altitude) = PLACES[rng.gen_range(0..PLACES.len())];
        let (loop_length_m, hill_m, max_grade) = match sport {
            Sport::Run => (rng.gen_range(4_000.0..9_000.0), 4.0..35.0, 0.06),
            Sport::Ride => (rng.gen_range(18_000.0..36_000.0), 8.0..60.0, 0.07),
        };
        let radius_m = loop_length_m / TAU;
        let mut shape_orders = [2.0, 3.0, 4.0, 5.0];
        shape_orders.shuffle(rng);
        let shape: Vec<Harmonic> = shape_orders[..3]
            .iter()
            .map(|&order| Harmonic {
                order,
                amplitude: rng.gen_range(0.0..0.07),
                phase: rng.gen_range(0.0..TAU),
            })
            .collect();
        let mut hill_orders = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0];
        hill_orders.shuffle(rng);
        let mut hills: Vec<Harmonic> = hill_orders[..3]
            .iter()
            .map(|&order| Harmonic {
                order,
                amplitude: rng.gen_range(hill_m.clone()),
                phase: rng.gen_range(0.0..TAU),
            })
            .collect();
        // The steepest the hills can add up to, over the shortest metres per radian.
        let wobble: f64 = shape.iter().map(|h| h.amplitude).sum();
        let steepest: f64 =
            hills.iter().map(|h| h.amplitude * h.order).sum::<f64>() / (radius_m * (1.0 - wobble));
        if steepest > max_grade {
            for hill in &mut hills {
                hill.amplitude *= max_grade / steepest;
            }
        }
        Self {
            place,
            origin_lat: lat + rng.gen_range(-0.02..0.02),
            origin_lon: lon + rng.gen_range(-0.02..0.02),
            base_altitude_m: altitude,
            radius_m,
            rotation: rng.gen_range(0.0..TAU),
            shape,
            hills,
        }
    }

    /// A flat circle of `loop_length_m`: a track to calibrate against.
    pub fn flat(origin_lat: f64, origin_lon: f64, altitude_m: f64, loop_length_m: f64) -> Self {
        Self {
            place: "a flat loop",
            origin_lat,
            origin_lon,
            base_altitude_m: altitude_m,
            radius_m: loop_length_m / TAU,
            rotation: 0.0,
            shape: Vec::new(),
            hills: Vec::new(),
        }
    }

    fn radius(&self, theta: f64) -> f64 {
        self.radius_m * (1.0 + self.shape.iter().map(|h| h.value(theta)).sum::<f64>())
    }

    fn radius_slope(&self, theta: f64) -> f64 {
        self.radius_m * self.shape.iter().map(|h| h.slope(theta)).sum::<f64>()
    }

    /// Metres of track per radian of the loop's angle at `theta`.
    fn metres_per_radian(&self, theta: f64) -> f64 {
        self.radius(theta).hypot(self.radius_slope(theta))
    }

    /// Length of one lap, metres.
    pub fn loop_length_m(&self) -> f64 {
        const STEPS: usize = 3600;
        let step = TAU / STEPS as f64;
        (0..STEPS)
            .map(|i| self.metres_per_radian((i as f64 + 0.5) * step) * step)
            .sum()
    }

    /// The angle reached after `metres` more along the track from `theta`.
    pub fn advance(&self, theta: f64, metres: f64) -> f64 {
        let midpoint = theta + metres / (2.0 * self.metres_per_radian(theta));
        theta + metres / self.metres_per_radian(midpoint)
    }

    /// Metres east and north of the start at `theta`.
    pub fn offset_m(&self, theta: f64) -> (f64, f64) {
        let angle = theta + self.rotation;
        let start = self.radius(0.0);
        let radius = self.radius(theta);
        (
            radius * angle.cos() - start * self.rotation.cos(),
            radius * angle.sin() - start * self.rotation.sin(),
        )
    }

    /// Altitude at `theta`, metres.
    pub fn altitude_m(&self, theta: f64) -> f64 {
        self.base_altitude_m
            + self
                .hills
                .iter()
                .map(|h| h.amplitude + h.value(theta))
                .sum::<f64>()
    }

    /// Rise over run at `theta` (0.05 = 5 % uphill).
    pub fn grade(&self, theta: f64) -> f64 {
        self.hills.iter().map(|h| h.slope(theta)).sum::<f64>() / self.metres_per_radian(theta)
    }

    /// Latitude and longitude of a point `east` and `north` metres from the start.
    pub fn lat_lon(&self, east: f64, north: f64) -> (f64, f64) {
        let lat = self.origin_lat + north / METRES_PER_DEGREE;
        let lon = self.origin_lon + east / (METRES_PER_DEGREE * self.origin_lat.to_radians().cos());
        (lat.clamp(-90.0, 90.0), lon.clamp(-180.0, 180.0))
    }
}

/// Running speed on `grade` for someone who runs `flat_speed_mps` on the flat: about 3.5 %
/// slower per percent uphill, 1.5 % faster per percent downhill.
pub fn run_speed(flat_speed_mps: f64, grade: f64) -> f64 {
    let factor = if grade > 0.0 {
        1.0 - 3.5 * grade
    } else {
        1.0 - 1.5 * grade
    };
    flat_speed_mps * factor.clamp(0.5, 1.2)
}

/// Effort of running at `speed_mps` on `grade`, as a share of threshold effort: climbing
/// costs much more than the speed shows, descending a little less.
pub fn run_effort(speed_mps: f64, threshold_speed_mps: f64, grade: f64) -> f64 {
    let climb_cost = if grade > 0.0 {
        1.0 + 6.0 * grade
    } else {
        (1.0 + 2.0 * grade).max(0.6)
    };
    (speed_mps / threshold_speed_mps * climb_cost).max(0.0)
}

/// Steps per minute at `speed_mps`: about 174 at 3 m/s, a little quicker when faster.
pub fn run_cadence(speed_mps: f64) -> f64 {
    (150.0 + 8.0 * speed_mps).clamp(140.0, 200.0)
}

/// Watts a rider holding `intensity` of `ftp_w` on the flat pushes on `grade`: harder uphill
/// (up to 125 % of FTP), less downhill, nothing on descents steeper than about 8 %.
pub fn ride_power(ftp_w: f64, intensity: f64, grade: f64) -> f64 {
    let flat = ftp_w * intensity;
    if grade >= 0.0 {
        (flat * (1.0 + 4.0 * grade)).min(1.25 * ftp_w)
    } else {
        (flat * (1.0 + 12.0 * grade)).max(0.0)
    }
}

/// Steady speed of a rider and bike of `mass_kg` pushing `power_w` on `grade`: where power at
/// the wheel equals climbing, rolling and air resistance. Bounded by braking and stalling.
pub fn ride_speed(power_w: f64, grade: f64, mass_kg: f64) -> f64 {
    let drag = 0.5 * AIR_DENSITY * DRAG_AREA_M2;
    let slope_force = mass_kg * GRAVITY * (grade + ROLLING_RESISTANCE);
    let wheel_power = power_w.max(0.0) * DRIVETRAIN_EFFICIENCY;
    // drag·v³ + slope_force·v − wheel_power is ≤ 0 at v = 0 and grows without bound, and
    // crosses zero once for v > 0: bisect for it.
    let excess = |speed: f64| drag * speed.powi(3) + slope_force * speed - wheel_power;
    let (mut low, mut high) = (0.0_f64, 40.0_f64);
    for _ in 0..50 {
        let middle = 0.5 * (low + high);
        if excess(middle) > 0.0 {
            high = middle;
        } else {
            low = middle;
        }
    }
    (0.5 * (low + high)).clamp(MIN_RIDE_SPEED_MPS, MAX_RIDE_SPEED_MPS)
}

/// Pedal revolutions per minute: about 90, slower on steep climbs, none when coasting.
pub fn ride_cadence(power_w: f64, grade: f64) -> f64 {
    if power_w < COASTING_POWER_W {
        return 0.0;
    }
    (90.0 - 150.0 * (grade - 0.02).max(0.0)).clamp(65.0, 105.0)
}

/// The heart rate an `effort` (share of threshold effort) settles at after `elapsed_s` of
/// exercise: a share of the heart-rate reserve, plus cardiac drift that grows with time and
/// effort, never above the maximum.
pub fn heart_rate_target(athlete: &Athlete, effort: f64, elapsed_s: f64) -> f64 {
    let reserve = athlete.max_heart_rate - athlete.resting_heart_rate;
    let intensity = (0.2 + 0.65 * effort).clamp(0.2, 0.97);
    let drift = athlete.drift_bpm_per_hour * (elapsed_s / 3600.0) * effort.clamp(0.3, 1.2);
    (athlete.resting_heart_rate + reserve * intensity + drift).min(athlete.max_heart_rate)
}

/// Heart rate `dt_s` seconds later, moving towards `target` with a lag (faster up than down):
/// the heart answers a hill half a minute after the legs.
pub fn heart_rate_step(heart_rate: f64, target: f64, dt_s: f64) -> f64 {
    let tau = if target > heart_rate {
        HEART_RATE_RISE_TAU_S
    } else {
        HEART_RATE_FALL_TAU_S
    };
    heart_rate + (target - heart_rate) * (1.0 - (-dt_s / tau).exp())
}

fn round_to(value: f64, decimals: i32) -> f64 {
    let scale = 10_f64.powi(decimals);
    (value * scale).round() / scale
}

/// One second of a workout as the device records it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// Seconds since the workout started.
    pub offset_s: u32,
    /// Degrees.
    pub lat: f64,
    /// Degrees.
    pub lon: f64,
    /// Metres above sea level.
    pub altitude_m: f64,
    /// Beats per minute.
    pub heart_rate: f64,
    /// Steps (runs) or pedal revolutions (rides) per minute.
    pub cadence: f64,
    /// Watts; rides only.
    pub power_w: Option<f64>,
    /// Metres per second.
    pub speed_mps: f64,
    /// Metres since the start.
    pub distance_m: f64,
}

/// A workout in progress: an endless iterator of one-second [`Reading`]s.
#[derive(Debug, Clone)]
pub struct Workout {
    sport: Sport,
    athlete: Athlete,
    course: Course,
    rng: StdRng,
    elapsed_s: u32,
    theta: f64,
    distance_m: f64,
    speed_mps: f64,
    heart_rate: f64,
    /// Pace wanders slowly around the athlete's usual one.
    pace_period_s: f64,
    pace_phase: f64,
}

impl Workout {
    /// A random athlete on a random course; the same `seed` gives the same workout.
    pub fn new(sport: Sport, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let athlete = Athlete::random(&mut rng);
        let course = Course::random(sport, &mut rng);
        Self::start(sport, athlete, course, rng)
    }

    /// `athlete` on `course`, with noise from `seed`.
    pub fn with(sport: Sport, athlete: Athlete, course: Course, seed: u64) -> Self {
        Self::start(sport, athlete, course, StdRng::seed_from_u64(seed))
    }

    fn start(sport: Sport, athlete: Athlete, course: Course, mut rng: StdRng) -> Self {
        let cruising = match sport {
            Sport::Run => athlete.easy_speed_mps,
            Sport::Ride => ride_speed(
                athlete.ftp_w * athlete.ride_intensity,
                0.0,
                athlete.mass_kg + BIKE_MASS_KG,
            ),
        };
        // Warmed up a little before pressing start.
        let heart_rate = athlete.resting_heart_rate
            + 0.25 * (athlete.max_heart_rate - athlete.resting_heart_rate);
        Self {
            sport,
            speed_mps: 0.5 * cruising,
            heart_rate,
            pace_period_s: rng.gen_range(240.0..600.0),
            pace_phase: rng.gen_range(0.0..TAU),
            athlete,
            course,
            rng,
            elapsed_s: 0,
            theta: 0.0,
            distance_m: 0.0,
        }
    }

    /// The sport.
    pub fn sport(&self) -> Sport {
        self.sport
    }

    /// Who is exercising.
    pub fn athlete(&self) -> &Athlete {
        &self.athlete
    }

    /// Where.
    pub fn course(&self) -> &Course {
        &self.course
    }

    fn noise(&mut self, spread: f64) -> f64 {
        self.rng.gen_range(-spread..=spread)
    }

    /// The reading of the current second, then one second further.
    fn step(&mut self) -> Reading {
        let elapsed = f64::from(self.elapsed_s);
        let grade = self.course.grade(self.theta);
        let pace = 1.0 + 0.04 * (TAU * elapsed / self.pace_period_s + self.pace_phase).sin();
        let (power_w, effort, cadence) = match self.sport {
            Sport::Run => {
                let wanted =
                    run_speed(self.athlete.easy_speed_mps * pace, grade) * (1.0 + self.noise(0.02));
                self.speed_mps += (wanted - self.speed_mps) * RUN_ACCELERATION;
                let effort = run_effort(self.speed_mps, self.athlete.threshold_speed_mps, grade);
                let cadence = run_cadence(self.speed_mps) + self.noise(2.0);
                (None, effort, cadence)
            }
            Sport::Ride => {
                let power = (ride_power(
                    self.athlete.ftp_w,
                    self.athlete.ride_intensity * pace,
                    grade,
                ) * (1.0 + self.noise(0.05)))
                .max(0.0);
                let wanted = ride_speed(power, grade, self.athlete.mass_kg + BIKE_MASS_KG);
                self.speed_mps += (wanted - self.speed_mps) * RIDE_ACCELERATION;
                let pedalling = ride_cadence(power, grade);
                let cadence = if pedalling > 0.0 {
                    pedalling + self.noise(3.0)
                } else {
                    0.0
                };
                (Some(power), power / self.athlete.ftp_w, cadence)
            }
        };
        let (east, north) = self.course.offset_m(self.theta);
        let (gps_east, gps_north) = (self.noise(1.5), self.noise(1.5));
        let (lat, lon) = self.course.lat_lon(east + gps_east, north + gps_north);
        let altitude = self.course.altitude_m(self.theta) + self.noise(0.3);
        let heart_rate = self.heart_rate + self.noise(0.6);
        let reading = Reading {
            offset_s: self.elapsed_s,
            lat: round_to(lat, 7),
            lon: round_to(lon, 7),
            altitude_m: round_to(altitude.clamp(-400.0, 8800.0), 1),
            heart_rate: heart_rate
                .clamp(30.0, self.athlete.max_heart_rate.min(240.0))
                .round(),
            cadence: cadence.clamp(0.0, 250.0).round(),
            power_w: power_w.map(|power| power.clamp(0.0, 2500.0).round()),
            speed_mps: round_to(self.speed_mps.clamp(0.0, 50.0), 2),
            distance_m: round_to(self.distance_m, 1),
        };
        self.distance_m += self.speed_mps;
        self.theta = self.course.advance(self.theta, self.speed_mps);
        let target = heart_rate_target(&self.athlete, effort, elapsed);
        self.heart_rate = heart_rate_step(self.heart_rate, target, 1.0);
        self.elapsed_s += 1;
        debug_assert!(reading.distance_m <= self.distance_m);
        reading
    }
}

impl Iterator for Workout {
    type Item = Reading;

    fn next(&mut self) -> Option<Reading> {
        Some(self.step())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn steady_runner() -> Athlete {
        Athlete {
            resting_heart_rate: 55.0,
            max_heart_rate: 190.0,
            drift_bpm_per_hour: 8.0,
            threshold_speed_mps: 3.8,
            easy_speed_mps: 3.0,
            ftp_w: 250.0,
            ride_intensity: 0.68,
            mass_kg: 70.0,
        }
    }

    fn mean_heart_rate(readings: &[Reading]) -> f64 {
        readings.iter().map(|r| r.heart_rate).sum::<f64>() / readings.len() as f64
    }

    /// Great-circle metres between two readings.
    fn metres_between(a: &Reading, b: &Reading) -> f64 {
        let (lat1, lat2) = (a.lat.to_radians(), b.lat.to_radians());
        let dlat = lat2 - lat1;
        let dlon = (b.lon - a.lon).to_radians();
        let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
        2.0 * 6_371_000.0 * h.sqrt().asin()
    }

    fn sport() -> impl Strategy<Value = Sport> {
        prop_oneof![Just(Sport::Run), Just(Sport::Ride)]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Two hours of any workout stay inside what the telemetry service accepts, and
        /// inside what a body can do.
        #[test]
        fn every_value_stays_in_range(seed in any::<u64>(), sport in sport()) {
            let workout = Workout::new(sport, seed);
            let max_heart_rate = workout.athlete().max_heart_rate;
            let mut previous: Option<Reading> = None;
            for reading in workout.take(2 * 3600) {
                prop_assert!((-90.0..=90.0).contains(&reading.lat), "{reading:?}");
                prop_assert!((-180.0..=180.0).contains(&reading.lon), "{reading:?}");
                prop_assert!((-500.0..=9000.0).contains(&reading.altitude_m), "{reading:?}");
                prop_assert!((20.0..=250.0).contains(&reading.heart_rate), "{reading:?}");
                prop_assert!(reading.heart_rate <= max_heart_rate.round(), "{reading:?}");
                prop_assert!((0.0..=300.0).contains(&reading.cadence), "{reading:?}");
                prop_assert!((0.0..=100.0).contains(&reading.speed_mps), "{reading:?}");
                prop_assert!((0.0..=10_000_000.0).contains(&reading.distance_m), "{reading:?}");
                match sport {
                    Sport::Run => {
                        prop_assert!(reading.power_w.is_none());
                        prop_assert!((140.0..=205.0).contains(&reading.cadence), "{reading:?}");
                        prop_assert!((1.0..=6.0).contains(&reading.speed_mps), "{reading:?}");
                    }
                    Sport::Ride => {
                        let power = reading.power_w.unwrap_or(-1.0);
                        prop_assert!((0.0..=3000.0).contains(&power), "{reading:?}");
                        prop_assert!((1.0..=20.0).contains(&reading.speed_mps), "{reading:?}");
                    }
                }
                if let Some(previous) = previous {
                    prop_assert_eq!(reading.offset_s, previous.offset_s + 1);
                    prop_assert!(reading.distance_m >= previous.distance_m);
                }
                previous = Some(reading);
            }
        }

        /// On a steady effort, heart rate keeps creeping up (cardiac drift), whoever runs.
        #[test]
        fn heart_rate_drifts_up_over_a_long_steady_run(seed in any::<u64>()) {
            let athlete = Athlete::random(&mut StdRng::seed_from_u64(seed));
            let course = Course::flat(47.0, 8.0, 400.0, 5_000.0);
            let readings: Vec<Reading> =
                Workout::with(Sport::Run, athlete, course, seed).take(2 * 3600).collect();
            let early = mean_heart_rate(&readings[600..1800]);
            let late = mean_heart_rate(&readings[6000..7200]);
            prop_assert!(late > early + 4.0, "early {early}, late {late}");
        }

        /// Any course is a closed loop: a lap ends where it started, at the same altitude,
        /// and its hills stay runnable.
        #[test]
        fn courses_are_closed_loops(seed in any::<u64>(), sport in sport()) {
            let course = Course::random(sport, &mut StdRng::seed_from_u64(seed));
            let (east, north) = course.offset_m(TAU);
            prop_assert!(east.hypot(north) < 0.01);
            prop_assert!(course.offset_m(0.0).0.abs() < 1e-9);
            prop_assert!((course.altitude_m(TAU) - course.altitude_m(0.0)).abs() < 1e-6);
            for i in 0..720 {
                let theta = TAU * f64::from(i) / 720.0;
                prop_assert!(course.grade(theta).abs() <= 0.0701, "{}", course.grade(theta));
                prop_assert!(course.altitude_m(theta) >= course.base_altitude_m);
            }
        }
    }

    #[test]
    fn a_steady_effort_raises_heart_rate_for_an_hour_and_more() {
        let athlete = steady_runner();
        let effort = 0.8;
        let mut heart_rate = 90.0;
        let mut at_minute = Vec::new();
        for second in 0..(90 * 60) {
            let target = heart_rate_target(&athlete, effort, f64::from(second));
            heart_rate = heart_rate_step(heart_rate, target, 1.0);
            if second % 60 == 59 {
                at_minute.push(heart_rate);
            }
        }
        // Settled after a few minutes, then creeping up minute after minute.
        assert!(
            at_minute[9] > 140.0 && at_minute[9] < 165.0,
            "{}",
            at_minute[9]
        );
        assert!(at_minute[20..].windows(2).all(|pair| pair[1] > pair[0]));
        assert!(at_minute[89] - at_minute[9] > 8.0, "{at_minute:?}");
        assert!(at_minute[89] <= athlete.max_heart_rate);
    }

    #[test]
    fn heart_rate_answers_a_hill_with_a_lag() {
        let athlete = steady_runner();
        let flat = run_effort(run_speed(3.0, 0.0), 3.8, 0.0);
        let climb = run_effort(run_speed(3.0, 0.06), 3.8, 0.06);
        assert!(run_speed(3.0, 0.06) < run_speed(3.0, 0.0));
        assert!(climb > flat, "climbing is harder even at a lower speed");
        let settled = heart_rate_target(&athlete, flat, 1200.0);
        let uphill = heart_rate_target(&athlete, climb, 1200.0);
        let mut heart_rate = settled;
        let mut trace = Vec::new();
        for _ in 0..180 {
            heart_rate = heart_rate_step(heart_rate, uphill, 1.0);
            trace.push(heart_rate);
        }
        let gap = uphill - settled;
        assert!(trace[9] - settled < 0.4 * gap, "barely moved after 10 s");
        assert!(
            trace[59] - settled > 0.8 * gap,
            "mostly there after a minute"
        );
        assert!(trace.windows(2).all(|pair| pair[1] >= pair[0]));
        assert!(trace[179] <= uphill);
    }

    #[test]
    fn riders_push_harder_uphill_and_coast_down_steep_descents() {
        let mass = 80.0;
        assert!(ride_power(250.0, 0.7, 0.05) > ride_power(250.0, 0.7, 0.0));
        assert_eq!(ride_power(250.0, 0.9, 0.10), 1.25 * 250.0);
        assert_eq!(ride_power(250.0, 0.7, -0.09), 0.0);
        assert_eq!(ride_cadence(0.0, -0.09), 0.0);
        assert!((85.0..=95.0).contains(&ride_cadence(175.0, 0.0)));
        let flat = ride_speed(175.0, 0.0, mass);
        assert!(
            (8.0..=10.5).contains(&flat),
            "{flat} m/s at 175 W on the flat"
        );
        let climbing = ride_speed(300.0, 0.07, mass);
        assert!(
            (3.0..=5.5).contains(&climbing),
            "{climbing} m/s at 300 W up 7 %"
        );
        assert_eq!(ride_speed(0.0, -0.09, mass), MAX_RIDE_SPEED_MPS);
        assert_eq!(ride_speed(0.0, 0.0, mass), MIN_RIDE_SPEED_MPS);
    }

    #[test]
    fn runners_keep_a_running_cadence() {
        assert!((170.0..=180.0).contains(&run_cadence(3.0)));
        assert!(run_cadence(4.0) > run_cadence(3.0));
    }

    #[test]
    fn a_workout_moves_along_its_track_at_the_sport_speed() {
        for (sport, speeds) in [(Sport::Run, 2.0..4.5), (Sport::Ride, 5.0..12.0)] {
            let readings: Vec<Reading> = Workout::new(sport, 7).take(1800).collect();
            let last = readings.last().expect("readings");
            let mean_speed = last.distance_m / 1799.0;
            assert!(speeds.contains(&mean_speed), "{sport:?}: {mean_speed} m/s");
            // The GPS track (every 30 s, so jitter barely counts) is as long as the distance.
            let track: f64 = readings
                .iter()
                .step_by(30)
                .collect::<Vec<_>>()
                .windows(2)
                .map(|pair| metres_between(pair[0], pair[1]))
                .sum();
            let counted = readings[readings.len() - 1 - (readings.len() - 1) % 30].distance_m;
            assert!(
                (track / counted - 1.0).abs() < 0.05,
                "{sport:?}: track {track} m, distance {counted} m"
            );
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_workout() {
        let first: Vec<Reading> = Workout::new(Sport::Ride, 42).take(600).collect();
        let again: Vec<Reading> = Workout::new(Sport::Ride, 42).take(600).collect();
        let other: Vec<Reading> = Workout::new(Sport::Ride, 43).take(600).collect();
        assert_eq!(first, again);
        assert_ne!(first, other);
    }

    #[test]
    fn a_lap_is_as_long_as_the_course_says() {
        let course = Course::random(Sport::Run, &mut StdRng::seed_from_u64(3));
        let lap = course.loop_length_m();
        assert!((4_000.0..10_500.0).contains(&lap), "{lap}");
        let mut theta = 0.0;
        let steps = (lap / 3.0).round() as usize;
        for _ in 0..steps {
            theta = course.advance(theta, lap / steps as f64);
        }
        assert!((theta - TAU).abs() < 1e-3, "{theta}");
    }
}

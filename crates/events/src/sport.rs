//! The sports every context names the same way (`run`, `trail_run`, `ride`, ...): events
//! carry them by these names, and the services parse them with this one type.

use serde::{Deserialize, Serialize};

/// What kind of workout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Sport {
    /// Running on roads or tracks.
    Run,
    /// Running off road.
    TrailRun,
    /// Road cycling.
    Ride,
    /// Off-road cycling.
    MountainBike,
    /// Cycling on a trainer.
    IndoorRide,
    /// Swimming.
    Swim,
    /// Walking.
    Walk,
    /// Hiking.
    Hike,
    /// Rowing.
    Row,
    /// Skiing.
    Ski,
    /// Strength training.
    Strength,
    /// Yoga.
    Yoga,
    /// Anything else.
    Other,
    /// Several sports in one (triathlon, duathlon); each leg keeps its own sport.
    Multisport,
}

impl Sport {
    /// Every sport.
    pub const ALL: [Sport; 14] = [
        Sport::Run,
        Sport::TrailRun,
        Sport::Ride,
        Sport::MountainBike,
        Sport::IndoorRide,
        Sport::Swim,
        Sport::Walk,
        Sport::Hike,
        Sport::Row,
        Sport::Ski,
        Sport::Strength,
        Sport::Yoga,
        Sport::Other,
        Sport::Multisport,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Sport::Run => "run",
            Sport::TrailRun => "trail_run",
            Sport::Ride => "ride",
            Sport::MountainBike => "mountain_bike",
            Sport::IndoorRide => "indoor_ride",
            Sport::Swim => "swim",
            Sport::Walk => "walk",
            Sport::Hike => "hike",
            Sport::Row => "row",
            Sport::Ski => "ski",
            Sport::Strength => "strength",
            Sport::Yoga => "yoga",
            Sport::Other => "other",
            Sport::Multisport => "multisport",
        }
    }

    /// Parses a stored name.
    pub fn from_stored(stored: &str) -> Option<Self> {
        Sport::ALL
            .into_iter()
            .find(|sport| sport.as_str() == stored)
    }

    /// The word used in default names ("Morning Run").
    pub fn title(self) -> &'static str {
        match self {
            Sport::Run => "Run",
            Sport::TrailRun => "Trail Run",
            Sport::Ride => "Ride",
            Sport::MountainBike => "Mountain Bike Ride",
            Sport::IndoorRide => "Indoor Ride",
            Sport::Swim => "Swim",
            Sport::Walk => "Walk",
            Sport::Hike => "Hike",
            Sport::Row => "Row",
            Sport::Ski => "Ski",
            Sport::Strength => "Strength Training",
            Sport::Yoga => "Yoga",
            Sport::Other => "Workout",
            Sport::Multisport => "Multisport",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sport_round_trips_through_its_stored_name_and_json() {
        for sport in Sport::ALL {
            assert_eq!(Sport::from_stored(sport.as_str()), Some(sport));
            let json = serde_json::to_value(sport).expect("serialisable");
            assert_eq!(json, sport.as_str());
        }
        assert_eq!(Sport::from_stored("quidditch"), None);
    }
}

use std::str::FromStr;

use chrono::Datelike;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Invalid;

/// A public name: 1 to 64 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    /// Parses a name.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let name = raw.trim();
        let length = name.chars().count();
        if length == 0 || length > 64 || name.chars().any(char::is_control) {
            return Err(Invalid(
                "display_name must have 1 to 64 characters and no control characters".into(),
            ));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Preferred units for display (storage is always SI).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Units {
    /// Kilometres, kilograms.
    Metric,
    /// Miles, pounds.
    Imperial,
}

impl Units {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Units::Metric => "metric",
            Units::Imperial => "imperial",
        }
    }
}

/// Who may see an activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// Everyone.
    Public,
    /// The owner's followers.
    Followers,
    /// Only the owner.
    Private,
}

impl Visibility {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Followers => "followers",
            Visibility::Private => "private",
        }
    }
}

/// An account's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// An athlete.
    User,
    /// A shop or brand that publishes products to the catalog.
    Partner,
    /// An operator of the installation.
    Admin,
}

impl Role {
    /// Parses the stored name.
    pub fn from_stored(stored: &str) -> Self {
        match stored {
            "admin" => Role::Admin,
            "partner" => Role::Partner,
            _ => Role::User,
        }
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Partner => "partner",
            Role::Admin => "admin",
        }
    }
}

/// An IANA time zone name such as `Europe/Paris`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeZone(String);

impl TimeZone {
    /// Parses a zone name.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        chrono_tz::Tz::from_str(raw.trim())
            .map(|zone| Self(zone.name().to_owned()))
            .map_err(|_| {
                Invalid(format!(
                    "time_zone {raw:?} is not an IANA time zone name such as Europe/Paris"
                ))
            })
    }

    /// The canonical name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A checked change to a profile: `None` leaves a field alone, `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProfilePatch {
    /// New public name.
    pub display_name: Option<DisplayName>,
    /// New avatar (media id) or none.
    pub avatar_id: Option<Option<Uuid>>,
    /// New units.
    pub units: Option<Units>,
    /// New time zone.
    pub time_zone: Option<TimeZone>,
    /// New birth year or none.
    pub birth_year: Option<Option<i32>>,
    /// New weight or none.
    pub weight_kg: Option<Option<f64>>,
    /// New maximum heart rate or none.
    pub max_heart_rate: Option<Option<i32>>,
    /// New resting heart rate or none.
    pub resting_heart_rate: Option<Option<i32>>,
    /// New default visibility of activities.
    pub default_visibility: Option<Visibility>,
}

/// Raw ranges, also shown in the OpenAPI document.
pub const BIRTH_YEAR_MIN: i32 = 1900;
/// Lightest accepted body weight.
pub const WEIGHT_KG_MIN: f64 = 20.0;
/// Heaviest accepted body weight.
pub const WEIGHT_KG_MAX: f64 = 400.0;

impl ProfilePatch {
    /// Checks ranges that do not depend on the stored profile.
    pub fn check_ranges(&self) -> Result<(), Invalid> {
        if let Some(Some(year)) = self.birth_year {
            let this_year = chrono::Utc::now().year();
            if !(BIRTH_YEAR_MIN..=this_year - 5).contains(&year) {
                return Err(Invalid(format!(
                    "birth_year must be between {BIRTH_YEAR_MIN} and {}",
                    this_year - 5
                )));
            }
        }
        if let Some(Some(weight)) = self.weight_kg
            && !(weight.is_finite() && (WEIGHT_KG_MIN..=WEIGHT_KG_MAX).contains(&weight))
        {
            return Err(Invalid(format!(
                "weight_kg must be between {WEIGHT_KG_MIN} and {WEIGHT_KG_MAX}"
            )));
        }
        if let Some(Some(max)) = self.max_heart_rate
            && !(100..=250).contains(&max)
        {
            return Err(Invalid(
                "max_heart_rate must be between 100 and 250 bpm".into(),
            ));
        }
        if let Some(Some(resting)) = self.resting_heart_rate
            && !(25..=120).contains(&resting)
        {
            return Err(Invalid(
                "resting_heart_rate must be between 25 and 120 bpm".into(),
            ));
        }
        Ok(())
    }
}

/// Checks that a resting heart rate stays below the maximum, once both are known.
pub fn check_heart_rates(max: Option<i32>, resting: Option<i32>) -> Result<(), Invalid> {
    match (max, resting) {
        (Some(max), Some(resting)) if resting >= max => Err(Invalid(
            "resting_heart_rate must be below max_heart_rate".into(),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn time_zones_are_canonical_iana_names() {
        assert_eq!(
            TimeZone::parse("Europe/Paris").expect("valid").as_str(),
            "Europe/Paris"
        );
        assert!(TimeZone::parse("Mars/Olympus").is_err());
        assert!(TimeZone::parse("").is_err());
    }

    #[test]
    fn resting_heart_rate_must_stay_below_max() {
        assert!(check_heart_rates(Some(180), Some(50)).is_ok());
        assert!(check_heart_rates(Some(120), Some(120)).is_err());
        assert!(check_heart_rates(None, Some(60)).is_ok());
    }

    proptest! {
        #[test]
        fn weights_outside_the_range_are_refused(weight in proptest::num::f64::ANY) {
            let patch = ProfilePatch { weight_kg: Some(Some(weight)), ..ProfilePatch::default() };
            let accepted = patch.check_ranges().is_ok();
            prop_assert_eq!(accepted, weight.is_finite() && (WEIGHT_KG_MIN..=WEIGHT_KG_MAX).contains(&weight));
        }

        #[test]
        fn display_names_are_trimmed_and_bounded(raw in "\\PC{0,100}") {
            match DisplayName::parse(&raw) {
                Ok(name) => {
                    prop_assert_eq!(name.as_str(), raw.trim());
                    prop_assert!((1..=64).contains(&name.as_str().chars().count()));
                }
                Err(_) => {
                    let count = raw.trim().chars().count();
                    prop_assert!(count == 0 || count > 64 || raw.trim().chars().any(char::is_control));
                }
            }
        }
    }
}

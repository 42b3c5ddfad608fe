use serde::{Deserialize, Serialize};

use super::Invalid;

/// What kind of device records or streams workouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    /// A sports watch.
    Watch,
    /// A bike computer.
    BikeComputer,
    /// A heart-rate strap.
    HrStrap,
    /// A phone app.
    Phone,
    /// Anything else.
    Other,
}

impl DeviceKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Watch => "watch",
            DeviceKind::BikeComputer => "bike_computer",
            DeviceKind::HrStrap => "hr_strap",
            DeviceKind::Phone => "phone",
            DeviceKind::Other => "other",
        }
    }
}

/// A device's name: 1 to 64 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceName(String);

impl DeviceName {
    /// Parses a name.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let name = raw.trim();
        let length = name.chars().count();
        if length == 0 || length > 64 || name.chars().any(char::is_control) {
            return Err(Invalid(
                "device name must have 1 to 64 characters and no control characters".into(),
            ));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

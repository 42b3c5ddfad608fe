//! Validated values. Raw input becomes one of these at the HTTP edge; the rest of the service
//! never re-checks strings.

mod device;
mod email;
mod password;
mod profile;

pub use device::{DeviceKind, DeviceName};
pub use email::Email;
pub use password::{NewPassword, PASSWORD_MAX_CHARS, PASSWORD_MIN_CHARS};
pub use profile::{
    DisplayName, ProfilePatch, Role, TimeZone, Units, Visibility, check_heart_rates,
};

/// Why a value was refused; the message is shown to the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl From<Invalid> for stride_platform::error::ApiError {
    fn from(invalid: Invalid) -> Self {
        stride_platform::error::ApiError::validation(invalid.0)
    }
}

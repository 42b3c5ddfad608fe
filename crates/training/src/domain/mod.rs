//! Validated values and the workout lifecycle: pure, no I/O.

mod lifecycle;
mod manual;
mod sport;

pub use lifecycle::{Action, Status, TransitionError, transition};
pub use manual::{check_summary, moving_time_s};
pub use sport::{Source, Sport, Visibility};

/// Why a value was refused; the message is shown to the person who sent it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl From<Invalid> for stride_platform::error::ApiError {
    fn from(invalid: Invalid) -> Self {
        stride_platform::error::ApiError::validation(invalid.0)
    }
}

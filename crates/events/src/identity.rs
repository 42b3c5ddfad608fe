//! Events of the identity service (`identity.*`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::EventData;

/// A new account exists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRegistered {
    /// The new user's id.
    pub user_id: Uuid,
    /// The public name.
    pub display_name: String,
    /// IANA time zone name.
    pub time_zone: String,
    /// When the account was created.
    pub registered_at: DateTime<Utc>,
}

impl EventData for UserRegistered {
    const TYPE: &'static str = "identity.user_registered.v1";
}

/// A user's public profile or training-relevant settings changed; carries the new values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserUpdated {
    /// The user.
    pub user_id: Uuid,
    /// The public name.
    pub display_name: String,
    /// The avatar's media id, if any.
    pub avatar_id: Option<Uuid>,
    /// IANA time zone name.
    pub time_zone: String,
    /// `public`, `followers` or `private`.
    pub default_visibility: String,
    /// Body weight in kilograms, if known.
    pub weight_kg: Option<f64>,
    /// Maximum heart rate in bpm, if known.
    pub max_heart_rate: Option<i32>,
    /// Resting heart rate in bpm, if known.
    pub resting_heart_rate: Option<i32>,
    /// Whether an administrator disabled the account.
    pub disabled: bool,
}

impl EventData for UserUpdated {
    const TYPE: &'static str = "identity.user_updated.v1";
}

/// An account was deleted: every service erases the data it holds about this user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserDeleted {
    /// The deleted user.
    pub user_id: Uuid,
}

impl EventData for UserDeleted {
    const TYPE: &'static str = "identity.user_deleted.v1";
}

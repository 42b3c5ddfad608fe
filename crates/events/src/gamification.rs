//! Events of the gamification service (`gamification.*`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::EventData;

/// Points were added to a user's balance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointsAwarded {
    /// The user.
    pub user_id: Uuid,
    /// Points added.
    pub amount: i64,
    /// Why, for a person.
    pub reason: String,
    /// The workout that earned them, if any.
    pub activity_id: Option<Uuid>,
}

impl EventData for PointsAwarded {
    const TYPE: &'static str = "gamification.points_awarded.v1";
}

/// A user unlocked an achievement (once, forever).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AchievementUnlocked {
    /// The user.
    pub user_id: Uuid,
    /// The achievement's stable id, e.g. `everest`.
    pub achievement_id: String,
    /// Its name, e.g. "Everest".
    pub name: String,
    /// When.
    pub unlocked_at: DateTime<Utc>,
    /// The workout that unlocked it, if any.
    pub activity_id: Option<Uuid>,
}

impl EventData for AchievementUnlocked {
    const TYPE: &'static str = "gamification.achievement_unlocked.v1";
}

use serde::{Deserialize, Serialize};

pub use stride_events::Sport;

/// Who may see an activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// Everyone.
    Public,
    /// The owner's followers (treated as private until the social service exists).
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

    /// Parses a stored name; anything unknown is the most restrictive.
    pub fn from_stored(stored: &str) -> Self {
        match stored {
            "public" => Visibility::Public,
            "followers" => Visibility::Followers,
            _ => Visibility::Private,
        }
    }
}

/// How the workout reached Stride.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Recorded live through the API.
    Live,
    /// Imported from a file.
    Upload,
    /// Entered by hand.
    Manual,
}

impl Source {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Live => "live",
            Source::Upload => "upload",
            Source::Manual => "manual",
        }
    }
}

//! Gear kinds, component types and sports (parsed at the edge), and the pure wear model.

pub mod wear;

use serde::{Deserialize, Serialize};

/// What an item of gear is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Running, trail or walking shoes.
    Shoes,
    /// A bike; its components wear with it.
    Bike,
    /// A bike component (see [`ComponentType`]), attached to a bike or lying in a drawer.
    Component,
    /// A swimming wetsuit.
    Wetsuit,
    /// Skis.
    Skis,
    /// Anything else.
    Other,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 6] = [
        Kind::Shoes,
        Kind::Bike,
        Kind::Component,
        Kind::Wetsuit,
        Kind::Skis,
        Kind::Other,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Shoes => "shoes",
            Kind::Bike => "bike",
            Kind::Component => "component",
            Kind::Wetsuit => "wetsuit",
            Kind::Skis => "skis",
            Kind::Other => "other",
        }
    }

    /// Parses a stored name.
    pub fn from_stored(stored: &str) -> Option<Self> {
        Kind::ALL.into_iter().find(|kind| kind.as_str() == stored)
    }
}

/// What part of a bike a component is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ComponentType {
    /// Chain.
    Chain,
    /// Cassette.
    Cassette,
    /// Tyre.
    Tyre,
    /// Brake pads.
    BrakePads,
    /// Chainring.
    Chainring,
    /// Anything else.
    Other,
}

impl ComponentType {
    /// Every component type.
    pub const ALL: [ComponentType; 6] = [
        ComponentType::Chain,
        ComponentType::Cassette,
        ComponentType::Tyre,
        ComponentType::BrakePads,
        ComponentType::Chainring,
        ComponentType::Other,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentType::Chain => "chain",
            ComponentType::Cassette => "cassette",
            ComponentType::Tyre => "tyre",
            ComponentType::BrakePads => "brake_pads",
            ComponentType::Chainring => "chainring",
            ComponentType::Other => "other",
        }
    }

    /// Parses a stored name.
    pub fn from_stored(stored: &str) -> Option<Self> {
        ComponentType::ALL
            .into_iter()
            .find(|component| component.as_str() == stored)
    }
}

/// A training sport, as every context names it.
pub use stride_events::Sport;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_round_trip_and_match_serde() {
        for kind in Kind::ALL {
            assert_eq!(Kind::from_stored(kind.as_str()), Some(kind));
            assert_eq!(
                serde_json::to_value(kind).expect("json"),
                serde_json::json!(kind.as_str())
            );
        }
        for component in ComponentType::ALL {
            assert_eq!(
                ComponentType::from_stored(component.as_str()),
                Some(component)
            );
            assert_eq!(
                serde_json::to_value(component).expect("json"),
                serde_json::json!(component.as_str())
            );
        }
        for sport in Sport::ALL {
            assert_eq!(Sport::from_stored(sport.as_str()), Some(sport));
            assert_eq!(
                serde_json::to_value(sport).expect("json"),
                serde_json::json!(sport.as_str())
            );
        }
        assert_eq!(Kind::from_stored("surfboard"), None);
    }
}

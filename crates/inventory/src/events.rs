//! Wear from training events, exactly once each (the platform's idempotent consumer), the
//! erasure of deleted users, and the payload of the event inventory publishes.
//!
//! Events may arrive out of order: an update before the finish applies the workout as it is
//! now and the late finish changes nothing; a deletion is remembered, so a finish or update
//! that arrives after it changes nothing either.

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use stride_events::{
    Envelope, EventData,
    identity::UserDeleted,
    training::{ActivityDeleted, ActivityFinished, ActivityUpdated},
};
use stride_platform::consumer::EventHandler;
use uuid::Uuid;

use crate::store;

/// An item of gear crossed 80 or 100 percent of its service limit (published once per item
/// and threshold). To move into `stride-events` as `inventory::GearWearThresholdReached`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GearWearThresholdReached {
    /// The alert it opened.
    pub alert_id: Uuid,
    /// The item.
    pub gear_id: Uuid,
    /// Its owner.
    pub owner_id: Uuid,
    /// Its name, for a notification.
    pub gear_name: String,
    /// `shoes`, `bike`, `component`, ...
    pub kind: String,
    /// For components: `chain`, `tyre`, ...
    pub component_type: Option<String>,
    /// 80 or 100.
    pub threshold_percent: i32,
    /// Its distance when the threshold was reached, metres.
    pub distance_m: f64,
    /// Its service limit, metres.
    pub limit_m: f64,
}

impl EventData for GearWearThresholdReached {
    const TYPE: &'static str = "inventory.gear_wear_threshold_reached.v1";
}

/// The inventory consumer.
#[derive(Debug, Clone, Copy, Default)]
pub struct WearEvents;

impl WearEvents {
    async fn apply(&self, connection: &mut PgConnection, event: &Envelope) -> anyhow::Result<()> {
        if event.is::<ActivityFinished>() {
            let activity = event.decode::<ActivityFinished>()?.activity;
            // Applied already (an update came first) or deleted: nothing to do.
            if store::known_activity(connection, activity.activity_id).await? {
                return Ok(());
            }
            store::apply_activity(connection, &activity).await?;
        } else if event.is::<ActivityUpdated>() {
            let activity = event.decode::<ActivityUpdated>()?.activity;
            if store::deleted_activity(connection, activity.activity_id).await? {
                return Ok(());
            }
            store::apply_activity(connection, &activity).await?;
        } else if event.is::<ActivityDeleted>() {
            let activity = event.decode::<ActivityDeleted>()?.activity;
            store::delete_activity(connection, &activity).await?;
        } else if event.is::<UserDeleted>() {
            let user = event.decode::<UserDeleted>()?;
            store::erase_user(connection, user.user_id).await?;
        }
        Ok(())
    }
}

impl EventHandler for WearEvents {
    fn handle<'a>(
        &'a self,
        connection: &'a mut PgConnection,
        event: &'a Envelope,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.apply(connection, event))
    }

    fn wants(&self, event_type: &str) -> bool {
        [
            <ActivityFinished as EventData>::TYPE,
            <ActivityUpdated as EventData>::TYPE,
            <ActivityDeleted as EventData>::TYPE,
            <UserDeleted as EventData>::TYPE,
        ]
        .contains(&event_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_threshold_event_has_its_versioned_name_and_round_trips() {
        let data = GearWearThresholdReached {
            alert_id: Uuid::now_v7(),
            gear_id: Uuid::now_v7(),
            owner_id: Uuid::now_v7(),
            gear_name: "Daily trainers".into(),
            kind: "shoes".into(),
            component_type: None,
            threshold_percent: 80,
            distance_m: 560_000.0,
            limit_m: 700_000.0,
        };
        let envelope = Envelope::new("inventory", data.gear_id.to_string(), &data).expect("json");
        assert_eq!(
            envelope.event_type,
            "inventory.gear_wear_threshold_reached.v1"
        );
        assert_eq!(
            envelope
                .decode::<GearWearThresholdReached>()
                .expect("typed"),
            data
        );
    }
}

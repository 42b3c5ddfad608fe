//! What training does with other services' events.

use futures_util::future::BoxFuture;
use sqlx::PgConnection;
use stride_events::{Envelope, EventData, identity::UserDeleted};
use stride_platform::consumer::EventHandler;

/// Erases a deleted user's workouts and settings (`identity.user_deleted.v1`).
#[derive(Debug, Clone, Copy)]
pub struct IdentityEvents;

impl EventHandler for IdentityEvents {
    fn handle<'a>(
        &'a self,
        connection: &'a mut PgConnection,
        event: &'a Envelope,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            if !event.is::<UserDeleted>() {
                return Ok(());
            }
            let deleted: UserDeleted = event.decode()?;
            let activities = sqlx::query("DELETE FROM activities WHERE owner_id = $1")
                .bind(deleted.user_id)
                .execute(&mut *connection)
                .await?
                .rows_affected();
            sqlx::query("DELETE FROM training_settings WHERE user_id = $1")
                .bind(deleted.user_id)
                .execute(&mut *connection)
                .await?;
            sqlx::query("DELETE FROM activity_requests WHERE owner_id = $1")
                .bind(deleted.user_id)
                .execute(&mut *connection)
                .await?;
            tracing::info!(user_id = %deleted.user_id, activities, "erased a deleted user's workouts");
            Ok(())
        })
    }
    fn wants(&self, event_type: &str) -> bool {
        event_type == <UserDeleted as EventData>::TYPE
    }
}

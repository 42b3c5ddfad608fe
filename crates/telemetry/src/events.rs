//! What telemetry does with other services' events.

use futures_util::future::BoxFuture;
use sqlx::PgConnection;
use stride_events::{Envelope, EventData, identity::UserDeleted};
use stride_platform::consumer::EventHandler;

use crate::influx::Influx;

/// Deletes a deleted user's samples (`identity.user_deleted.v1`). Deleting is idempotent, so
/// doing it again after a crash before the commit is harmless.
#[derive(Debug, Clone)]
pub struct UserErasure {
    /// Where the samples are.
    pub influx: Influx,
}

impl EventHandler for UserErasure {
    fn handle<'a>(
        &'a self,
        _connection: &'a mut PgConnection,
        event: &'a Envelope,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            if !event.is::<UserDeleted>() {
                return Ok(());
            }
            let deleted: UserDeleted = event.decode()?;
            self.influx
                .delete_user(&deleted.user_id.to_string())
                .await?;
            tracing::info!(user_id = %deleted.user_id, "erased a deleted user's samples");
            Ok(())
        })
    }
    fn wants(&self, event_type: &str) -> bool {
        event_type == <UserDeleted as EventData>::TYPE
    }
}

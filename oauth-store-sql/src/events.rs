//! Flow events on SQL.

use async_trait::async_trait;
use oauth_core::UnixTime;
use oauth_core::{ClientId, UserId};
use oauth_core::{EventQuery, FlowEvent};
use oauth_core::{EventStore, StoreResult};

use crate::SqlStore;
use crate::error::db;
use crate::rows::EventRow;
use crate::write::BeginWrite;

#[async_trait]
impl EventStore for SqlStore {
    async fn record_event(&self, event: &FlowEvent) -> StoreResult<()> {
        self.record_events(std::slice::from_ref(event)).await
    }

    async fn record_events(&self, events: &[FlowEvent]) -> StoreResult<()> {
        // One transaction for the lot: one commit (and on SQLite one turn at the write lock)
        // instead of one per event.
        with_pool!(self, pool => async {
            let mut tx = pool.begin_write(&self.writes).await?;
            for event in events {
                sqlx::query(
                    "INSERT INTO flow_events (occurred_at, step, client_id, user_id, reason, detail) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(event.at.as_secs())
                .bind(event.step.as_str())
                .bind(event.client_id.as_ref().map(ClientId::as_str))
                .bind(event.user.as_ref().map(UserId::as_str))
                .bind(event.reason.map(|r| r.as_str()))
                .bind(&event.detail)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await
        }
        .await)
        .map_err(db("record_events"))
    }

    async fn events(&self, query: &EventQuery) -> StoreResult<Vec<FlowEvent>> {
        const OP: &str = "events";
        let limit = i64::try_from(query.effective_limit()).unwrap_or(i64::MAX);
        // The newest `limit` matching events, returned oldest first.
        let rows: Vec<EventRow> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT occurred_at, step, client_id, user_id, reason, detail FROM ( \
                     SELECT seq, occurred_at, step, client_id, user_id, reason, detail FROM flow_events \
                     WHERE ($1 IS NULL OR client_id = $1) AND ($2 IS NULL OR occurred_at >= $2) \
                     ORDER BY seq DESC LIMIT $3 \
                 ) AS newest ORDER BY seq",
            )
            .bind(query.client_id.as_ref().map(ClientId::as_str))
            .bind(query.since.map(UnixTime::as_secs))
            .bind(limit)
            .fetch_all(pool)
            .await
        })
        .map_err(db(OP))?;
        rows.into_iter().map(|r| r.into_event(OP)).collect()
    }

    async fn sweep_events(&self, before: UnixTime) -> StoreResult<u64> {
        with_pool!(self, pool => {
            sqlx::query("DELETE FROM flow_events WHERE occurred_at < $1")
                .bind(before.as_secs())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(db("sweep_events"))
    }
}

//! Flow events written off the request path: a request queues its event and goes on; one
//! writer task per server stores what has queued, many events to a transaction.
//!
//! The queue is bounded and never drops: when the database falls behind, requests wait for a
//! place in the queue (back-pressure) rather than lose their events. Reads through the same
//! store ([`EventStore::events`], and so `diagnose` in this process) first wait until every
//! event queued before them is stored. A clean stop flushes: [`flush_event_writers`], which
//! `oauth-axum`'s `serve` calls once the last request has been answered.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use crate::clock::UnixTime;
use crate::events::{EventQuery, FlowEvent};
use crate::store::{EventStore, StoreResult};

/// Events waiting to be stored, at most; a burst beyond it waits for the writer.
const QUEUE: usize = 1024;
/// Events stored in one transaction, at most.
const BATCH: usize = 256;

enum Command {
    Event(FlowEvent),
    /// Answered once every event queued before it is stored (or failed to be).
    Flush(oneshot::Sender<()>),
}

/// An [`EventStore`] whose writes are queued for a writer task.
pub(crate) struct BatchedEvents {
    inner: Arc<dyn EventStore>,
    queue: Arc<mpsc::Sender<Command>>,
}

impl fmt::Debug for BatchedEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchedEvents").field("inner", &self.inner).field("queued", &self.queued()).finish()
    }
}

/// Every live writer of this process, for [`flush_event_writers`].
static WRITERS: Mutex<Vec<Weak<mpsc::Sender<Command>>>> = Mutex::new(Vec::new());

impl BatchedEvents {
    /// `inner` behind a writer task on the current Tokio runtime; `inner` itself, written at
    /// each request as before, when there is no runtime to run the task on.
    pub(crate) fn wrap(inner: Arc<dyn EventStore>) -> Arc<dyn EventStore> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return inner;
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        runtime.spawn(write_batches(inner.clone(), rx));
        let queue = Arc::new(tx);
        let mut writers = WRITERS.lock().unwrap_or_else(PoisonError::into_inner);
        writers.retain(|w| w.strong_count() > 0);
        writers.push(Arc::downgrade(&queue));
        Arc::new(Self { inner, queue })
    }

    fn queued(&self) -> usize {
        QUEUE - self.queue.capacity()
    }

    /// Waits until every event queued so far is stored.
    async fn flush(&self) {
        flush_queue(&self.queue).await;
    }
}

async fn flush_queue(queue: &mpsc::Sender<Command>) {
    let (done, stored) = oneshot::channel();
    if queue.send(Command::Flush(done)).await.is_ok() {
        // A writer that stopped (its runtime ended) drops the sender: nothing more to wait for.
        let _ = stored.await;
    }
}

/// Stores every flow event queued so far by every server of this process. Call it after the
/// last request has been answered when you serve without `oauth-axum`'s `serve`, so that a
/// clean stop loses no event.
pub async fn flush_event_writers() {
    let writers: Vec<_> =
        WRITERS.lock().unwrap_or_else(PoisonError::into_inner).iter().filter_map(Weak::upgrade).collect();
    for queue in writers {
        flush_queue(&queue).await;
    }
}

#[async_trait]
impl EventStore for BatchedEvents {
    async fn record_event(&self, event: &FlowEvent) -> StoreResult<()> {
        match self.queue.send(Command::Event(event.clone())).await {
            Ok(()) => Ok(()),
            // The writer is gone (its runtime ended): store it here, as without a queue.
            Err(mpsc::error::SendError(_)) => self.inner.record_event(event).await,
        }
    }

    async fn record_events(&self, events: &[FlowEvent]) -> StoreResult<()> {
        for event in events {
            self.record_event(event).await?;
        }
        Ok(())
    }

    async fn events(&self, query: &EventQuery) -> StoreResult<Vec<FlowEvent>> {
        self.flush().await;
        self.inner.events(query).await
    }

    async fn sweep_events(&self, before: UnixTime) -> StoreResult<u64> {
        self.flush().await;
        self.inner.sweep_events(before).await
    }
}

/// The writer: takes what has queued, up to [`BATCH`], stores it in one call, and answers the
/// flushes among it. Ends when every sender is gone and the queue is empty.
async fn write_batches(store: Arc<dyn EventStore>, mut rx: mpsc::Receiver<Command>) {
    let mut events = Vec::with_capacity(BATCH);
    let mut flushes = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(command) = next.take() {
            match command {
                Command::Event(e) => events.push(e),
                Command::Flush(done) => flushes.push(done),
            }
            if events.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !events.is_empty() {
            if let Err(e) = store.record_events(&events).await {
                // Each event was traced when it was recorded; the operator still has those.
                tracing::error!(error = %e, events = events.len(), "could not store flow events");
            }
            events.clear();
        }
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::error::StoreError;
    use crate::events::{FlowStep, Reason};

    /// Events in a vector, with a count of the calls that stored them and failures on demand.
    #[derive(Debug, Default)]
    struct Recorded {
        events: Mutex<Vec<FlowEvent>>,
        calls: AtomicUsize,
        fail: AtomicUsize,
    }

    #[async_trait]
    impl EventStore for Recorded {
        async fn record_event(&self, event: &FlowEvent) -> StoreResult<()> {
            self.record_events(std::slice::from_ref(event)).await
        }

        async fn record_events(&self, events: &[FlowEvent]) -> StoreResult<()> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.fail.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
                return Err(StoreError::Corrupt("the database is away".into()));
            }
            self.events.lock().unwrap().extend_from_slice(events);
            Ok(())
        }

        async fn events(&self, _: &EventQuery) -> StoreResult<Vec<FlowEvent>> {
            Ok(self.events.lock().unwrap().clone())
        }

        async fn sweep_events(&self, _: UnixTime) -> StoreResult<u64> {
            Ok(0)
        }
    }

    fn event(i: i64) -> FlowEvent {
        FlowEvent::failure(UnixTime::from_secs(i), FlowStep::CodeExchange, Reason::InvalidRequest, format!("event {i}"))
    }

    fn details(events: &[FlowEvent]) -> Vec<String> {
        events.iter().map(|e| e.detail.clone()).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_queued_event_is_stored_in_order_and_read_after_a_flush() {
        let inner = Arc::new(Recorded::default());
        let store = BatchedEvents::wrap(inner.clone());
        for i in 0..3000 {
            store.record_event(&event(i)).await.unwrap();
        }
        // A read waits for what was queued before it: nothing missing, nothing out of order.
        let stored = store.events(&EventQuery::all()).await.unwrap();
        assert_eq!(details(&stored), (0..3000).map(|i| format!("event {i}")).collect::<Vec<_>>());
        let calls = inner.calls.load(Ordering::SeqCst);
        assert!(calls < 3000, "events were stored in batches, not one by one: {calls} calls");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flush_of_every_writer_stores_what_was_queued() {
        let inner = Arc::new(Recorded::default());
        let store = BatchedEvents::wrap(inner.clone());
        for i in 0..10 {
            store.record_event(&event(i)).await.unwrap();
        }
        flush_event_writers().await;
        assert_eq!(inner.events.lock().unwrap().len(), 10, "a clean stop loses nothing");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_failure_is_logged_and_the_writer_goes_on() {
        let inner = Arc::new(Recorded::default());
        let store = BatchedEvents::wrap(inner.clone());
        inner.fail.store(1, Ordering::SeqCst);
        store.record_event(&event(1)).await.unwrap();
        flush_event_writers().await;
        store.record_event(&event(2)).await.unwrap();
        assert_eq!(details(&store.events(&EventQuery::all()).await.unwrap()), ["event 2"]);
    }

    #[test]
    fn without_a_runtime_events_are_written_in_place() {
        let inner: Arc<dyn EventStore> = Arc::new(Recorded::default());
        let store = BatchedEvents::wrap(inner.clone());
        assert!(Arc::ptr_eq(&store, &inner));
    }
}

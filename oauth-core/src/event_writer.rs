//! Flow events stored in groups: concurrent requests hand their events to one writer task,
//! which stores what has gathered, many events to a transaction, and then answers each of
//! them (a group commit).
//!
//! A request still waits until its event is stored, so that `diagnose`, from any process,
//! shows a step the moment the client has its answer, and a stopped or killed process loses
//! nothing it answered; but under load the database sees one write for many events instead of
//! one each (on SQLite, one turn at the single write lock). The queue is bounded and never
//! drops: when the database falls behind, requests wait for a place in it.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use crate::clock::UnixTime;
use crate::error::StoreError;
use crate::events::{EventQuery, FlowEvent};
use crate::store::{EventStore, StoreResult};

/// Events waiting to be stored, at most; a burst beyond it waits for the writer.
const QUEUE: usize = 1024;
/// Events stored in one transaction, at most.
const BATCH: usize = 256;

/// The store's error, for each caller of a group whose write failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("storing a group of flow events failed: {0}")]
struct GroupWriteFailed(String);

/// An event and who waits for it to be stored.
type Queued = (FlowEvent, oneshot::Sender<StoreResult<()>>);

/// An [`EventStore`] whose writes go through a writer task, in groups.
pub(crate) struct BatchedEvents {
    inner: Arc<dyn EventStore>,
    queue: mpsc::Sender<Queued>,
}

impl fmt::Debug for BatchedEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let queued = QUEUE - self.queue.capacity();
        f.debug_struct("BatchedEvents").field("inner", &self.inner).field("queued", &queued).finish()
    }
}

impl BatchedEvents {
    /// `inner` behind a writer task on the current Tokio runtime; `inner` itself, written by
    /// each request alone, when there is no runtime to run the task on.
    pub(crate) fn wrap(inner: Arc<dyn EventStore>) -> Arc<dyn EventStore> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return inner;
        };
        let (queue, rx) = mpsc::channel(QUEUE);
        runtime.spawn(write_groups(inner.clone(), rx));
        Arc::new(Self { inner, queue })
    }
}

#[async_trait]
impl EventStore for BatchedEvents {
    async fn record_event(&self, event: &FlowEvent) -> StoreResult<()> {
        let (done, stored) = oneshot::channel();
        if self.queue.send((event.clone(), done)).await.is_ok()
            && let Ok(result) = stored.await
        {
            return result;
        }
        // The writer is gone (its runtime ended): store it here, as without a writer.
        self.inner.record_event(event).await
    }

    async fn events(&self, query: &EventQuery) -> StoreResult<Vec<FlowEvent>> {
        self.inner.events(query).await
    }

    async fn sweep_events(&self, before: UnixTime) -> StoreResult<u64> {
        self.inner.sweep_events(before).await
    }
}

/// The writer: takes what has gathered, up to [`BATCH`], stores it in one call and answers
/// everyone in it with the outcome. Ends when every sender is gone and the queue is empty.
async fn write_groups(store: Arc<dyn EventStore>, mut rx: mpsc::Receiver<Queued>) {
    let mut events = Vec::with_capacity(BATCH);
    let mut waiting = Vec::with_capacity(BATCH);
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some((event, done)) = next.take() {
            events.push(event);
            waiting.push(done);
            if events.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        let result = store.record_events(&events).await;
        let failure = result.err().map(|e| GroupWriteFailed(e.to_string()));
        for done in waiting.drain(..) {
            let _ = done.send(failure.clone().map_or(Ok(()), |f| Err(StoreError::backend(f))));
        }
        events.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::events::FlowStep;

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
            // Slow enough that concurrent events gather behind a write in progress.
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
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

    fn event(i: usize) -> FlowEvent {
        FlowEvent::success(UnixTime::from_secs(0), FlowStep::CodeExchange, format!("event {i}"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_events_are_stored_in_groups_and_each_before_its_call_returns() {
        let inner = Arc::new(Recorded::default());
        let store = BatchedEvents::wrap(inner.clone());
        let tasks: Vec<_> = (0..2000)
            .map(|i| {
                let (store, inner) = (store.clone(), inner.clone());
                tokio::spawn(async move {
                    store.record_event(&event(i)).await.unwrap();
                    // Stored when the call returns, as another process reading would see it.
                    let detail = format!("event {i}");
                    assert!(inner.events.lock().unwrap().iter().any(|e| e.detail == detail), "{detail} not stored");
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(inner.events.lock().unwrap().len(), 2000, "nothing lost");
        let calls = inner.calls.load(Ordering::SeqCst);
        assert!(calls < 1000, "2000 concurrent events took {calls} writes: not grouped");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_callers_events_keep_their_order() {
        let inner = Arc::new(Recorded::default());
        let store = BatchedEvents::wrap(inner.clone());
        for i in 0..50 {
            store.record_event(&event(i)).await.unwrap();
        }
        let details: Vec<_> = inner.events.lock().unwrap().iter().map(|e| e.detail.clone()).collect();
        assert_eq!(details, (0..50).map(|i| format!("event {i}")).collect::<Vec<_>>());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_write_is_reported_to_its_callers_and_the_writer_goes_on() {
        let inner = Arc::new(Recorded::default());
        let store = BatchedEvents::wrap(inner.clone());
        inner.fail.store(1, Ordering::SeqCst);
        assert!(store.record_event(&event(1)).await.is_err(), "the caller hears of the failure");
        store.record_event(&event(2)).await.unwrap();
        let details: Vec<_> = store.events(&EventQuery::all()).await.unwrap().into_iter().map(|e| e.detail).collect();
        assert_eq!(details, ["event 2"]);
    }

    #[test]
    fn without_a_runtime_events_are_written_in_place() {
        let inner: Arc<dyn EventStore> = Arc::new(Recorded::default());
        let store = BatchedEvents::wrap(inner.clone());
        assert!(Arc::ptr_eq(&store, &inner));
    }
}

//! The thread that owns the store: group commit of ingests, flushes that
//! answer commits once durable, and the pool of read connections beside it.

use axum::http::StatusCode;
use leadscore_store::{Incoming, IngestReport, Store, StoreError};
use std::sync::mpsc;
use std::thread::JoinHandle;
use tokio::sync::oneshot;

use crate::error::{store_error, ApiError};
use crate::Reopen;

/// What answers a commit once its durability is known: `Err` when the
/// flush failed (the commit is then visible but not known to be on disk).
type Ack = Box<dyn FnOnce(Result<(), String>) + Send>;

/// A job on the store; it returns how to answer once its commit is durable.
pub(crate) type Job = Box<dyn FnOnce(&mut dyn Store) -> Ack + Send>;

/// One group commit on the worker, with its metrics.
pub(crate) fn commit(
    store: &mut dyn Store,
    messages: Vec<Incoming>,
) -> Result<IngestReport, String> {
    let count = messages.len() as u64;
    let started = std::time::Instant::now();
    metrics::histogram!("leadscore_ingest_batch_messages").record(count as f64);
    let result = store.ingest(messages).map_err(|e| e.to_string());
    metrics::histogram!("leadscore_ingest_commit_seconds").record(started.elapsed().as_secs_f64());
    metrics::counter!("leadscore_ingest_transactions_total").increment(1);
    match &result {
        Ok(report) => {
            tracing::debug!(
                accepted = report.accepted,
                duplicates = report.duplicates,
                "ingest committed"
            );
            metrics::counter!("leadscore_score_updates_total")
                .increment(report.changes.len() as u64);
            metrics::counter!("leadscore_messages_total", "outcome" => "accepted")
                .increment(report.accepted);
            metrics::counter!("leadscore_messages_total", "outcome" => "duplicate")
                .increment(report.duplicates);
            for (trigger, n) in &report.firings_by_trigger {
                metrics::counter!("leadscore_trigger_firings_total", "trigger" => trigger.clone())
                    .increment(*n);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "ingest failed");
            metrics::counter!("leadscore_messages_total", "outcome" => "failed").increment(count);
        }
    }
    result
}

/// A flush at least this long is logged (debug level, with the commits it
/// answers): every request waits for one, so at 50k events/s the flushes
/// of 5 ms and more make most of the `/v1/batch` latency tail
/// (docs/performance.md, session 45).
const SLOW_FLUSH: std::time::Duration = std::time::Duration::from_millis(5);

/// The thread that flushes commits and then answers them, in commit order.
struct Acks {
    queue: std::sync::mpsc::Sender<Ack>,
    thread: JoinHandle<()>,
}

impl Acks {
    fn start(mut flush: Box<dyn leadscore_store::Flush>) -> Acks {
        let (queue, waiting) = std::sync::mpsc::channel::<Ack>();
        let thread = std::thread::Builder::new()
            .name("leadscore-flush".into())
            .spawn(move || {
                while let Ok(first) = waiting.recv() {
                    // One flush for every commit made since the last one.
                    let acks: Vec<Ack> = std::iter::once(first).chain(waiting.try_iter()).collect();
                    let started = std::time::Instant::now();
                    let durable = flush
                        .flush()
                        .map_err(|e| format!("the commit is not confirmed durable: {e}"));
                    let took = started.elapsed();
                    metrics::histogram!("leadscore_ingest_flush_seconds")
                        .record(took.as_secs_f64());
                    if took >= SLOW_FLUSH {
                        tracing::debug!(
                            ms = took.as_secs_f64() * 1e3,
                            commits = acks.len(),
                            "slow flush"
                        );
                    }
                    if let Err(e) = &durable {
                        tracing::error!(error = %e, "flush failed");
                    }
                    for ack in acks {
                        ack(durable.clone());
                    }
                }
            })
            .expect("the OS starts the flush thread");
        Acks { queue, thread }
    }

    fn push(&self, ack: Ack) {
        // The thread lives until `finish`; were it gone, answer unflushed
        // rather than never.
        if let Err(std::sync::mpsc::SendError(ack)) = self.queue.send(ack) {
            ack(Err("the flush thread stopped".into()));
        }
    }

    /// Flushes and answers what is queued, then stops the thread.
    fn finish(self) {
        drop(self.queue);
        let _ = self.thread.join();
    }
}

enum Work {
    Ingest(Vec<Incoming>, oneshot::Sender<Result<IngestReport, String>>),
    Run(Job),
}

/// The next work for the writer, once any is sent; meanwhile the writer
/// writes what the store keeps in memory and is due
/// ([`Store::write_idle`]), so that the transactions requests wait for
/// need not. `None` once every sender is gone.
fn next_work(store: &mut dyn Store, queue: &mpsc::Receiver<Work>) -> Option<Work> {
    loop {
        match queue.try_recv() {
            Ok(work) => return Some(work),
            Err(mpsc::TryRecvError::Disconnected) => return None,
            Err(mpsc::TryRecvError::Empty) => {}
        }
        let wait = store.write_idle().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "writing kept rows while idle failed: the next transactions write them");
            None
        });
        match wait {
            Some(wait) if wait.is_zero() => {}
            Some(wait) => match queue.recv_timeout(wait) {
                Ok(work) => return Some(work),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
            },
            None => return queue.recv().ok(),
        }
    }
}

/// Sends work to the thread that owns the store. Cloned for every
/// request (axum hands each handler its own): one shared count, not one
/// for each of the fields, which the two cores would otherwise pass back
/// and forth on every request.
#[derive(Clone)]
pub struct StoreHandle(std::sync::Arc<Shared>);

/// What every clone of a [`StoreHandle`] shares.
#[derive(Clone)]
pub struct Shared {
    work: mpsc::Sender<Work>,
    /// Signalled when a commit recorded trigger firings (wakes delivery).
    fired: std::sync::Arc<tokio::sync::Notify>,
    /// Score changes of each commit (for `GET /stream/scores`).
    changes: tokio::sync::broadcast::Sender<std::sync::Arc<Vec<leadscore_store::LedgerEntry>>>,
    /// Connections for reads (see [`StoreHandle::with_readers`]).
    readers: Option<std::sync::Arc<ReadPool>>,
    /// API keys read recently (see [`StoreHandle::with_key_cache`]).
    pub(crate) keys: std::sync::Arc<crate::auth::KeyCache>,
    /// Listings of the past kept for their next pages.
    pub(crate) past: std::sync::Arc<crate::past::PastListings>,
    /// Messages handed to the worker and not yet committed (see
    /// [`StoreHandle::with_queue_limit`]).
    queued: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Beyond this many queued messages, SDK routes shed load.
    max_queued: usize,
}

/// Messages queued for the writer and not yet committed.
fn set_queued_gauge(queued: usize) {
    metrics::gauge!("leadscore_ingest_queued_messages").set(queued as f64);
}

/// Connections for reads beside the worker's, opened on demand up to a
/// limit and kept.
struct ReadPool {
    open: Reopen,
    idle: std::sync::Mutex<Vec<Box<dyn Store>>>,
    permits: std::sync::Arc<tokio::sync::Semaphore>,
    /// Reads that may take seconds ([`read_heavy`]): one fewer than the
    /// connections (at least one).
    heavy: std::sync::Arc<tokio::sync::Semaphore>,
}

impl std::ops::Deref for StoreHandle {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl StoreHandle {
    /// Starts the worker thread that owns `store`.
    ///
    /// When the store can defer durability ([`Store::defer_durability`]),
    /// the worker commits and goes on with the next transaction while a
    /// second thread flushes the commits to disk and only then answers
    /// them: the wait for the disk overlaps the next transaction instead of
    /// stalling the writer, and one flush covers every commit before it.
    pub fn start(store: Box<dyn Store>) -> (StoreHandle, JoinHandle<()>) {
        StoreHandle::start_caching(store, leadscore_store::DEFAULT_LIVE_CONTACTS)
    }

    /// [`StoreHandle::start`], with the live states of at least the last
    /// `live_contacts` contacts written kept by the writer (see
    /// [`Store::defer_durability`]).
    pub fn start_caching(
        mut store: Box<dyn Store>,
        live_contacts: usize,
    ) -> (StoreHandle, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel::<Work>();
        let queued = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let committed = queued.clone();
        let fired = std::sync::Arc::new(tokio::sync::Notify::new());
        let notify = fired.clone();
        let (changes, _) = tokio::sync::broadcast::channel(1_024);
        let publish = changes.clone();
        // Named so a profiler or `top -H` shows the writer's share.
        let worker = std::thread::Builder::new()
            .name("leadscore-writer".into())
            .spawn(move || {
                let flush = store.defer_durability(live_contacts).unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "commits wait for the disk one by one");
                    None
                });
                let acks = flush.map(Acks::start);
                let answer = |ack: Ack| match &acks {
                    Some(acks) => acks.push(ack),
                    None => ack(Ok(())),
                };
                let mut next = next_work(store.as_mut(), &rx);
                while let Some(work) = next.take() {
                    match work {
                        Work::Run(job) => answer(job(store.as_mut())),
                        Work::Ingest(messages, reply) => {
                            // Group commit: every ingest already waiting joins
                            // this transaction.
                            let mut messages = messages;
                            let mut replies = vec![reply];
                            loop {
                                match rx.try_recv() {
                                    Ok(Work::Ingest(more, reply)) => {
                                        messages.extend(more);
                                        replies.push(reply);
                                    }
                                    Ok(other) => {
                                        next = Some(other);
                                        break;
                                    }
                                    Err(_) => break,
                                }
                            }
                            let count = messages.len();
                            let result = commit(store.as_mut(), messages);
                            // The messages are written (or failed): they
                            // no longer take memory in the queue.
                            let left = committed
                                .fetch_sub(count, std::sync::atomic::Ordering::AcqRel)
                                - count;
                            set_queued_gauge(left);
                            let (publish, notify) = (publish.clone(), notify.clone());
                            answer(Box::new(move |durable| {
                                let result = durable.and(result).map(|mut report| {
                                    let changes = std::mem::take(&mut report.changes);
                                    if !changes.is_empty() && publish.receiver_count() > 0 {
                                        let _ = publish.send(std::sync::Arc::new(changes));
                                    }
                                    if report.firings > 0 {
                                        notify.notify_one();
                                    }
                                    report
                                });
                                for reply in replies {
                                    let _ = reply.send(result.clone());
                                }
                            }));
                        }
                    }
                    if next.is_none() {
                        next = next_work(store.as_mut(), &rx);
                    }
                }
                // Every commit is answered before the worker ends.
                if let Some(acks) = acks {
                    acks.finish();
                }
            })
            .expect("the OS starts the writer thread");
        (
            StoreHandle(std::sync::Arc::new(Shared {
                work: tx,
                fired,
                changes,
                readers: None,
                keys: std::sync::Arc::new(crate::auth::KeyCache::new(std::time::Duration::ZERO)),
                past: std::sync::Arc::default(),
                queued,
                max_queued: usize::MAX,
            })),
            worker,
        )
    }

    /// The fields, to set them up before the handle is shared (a copy of
    /// them if it already is).
    fn shared_mut(&mut self) -> &mut Shared {
        std::sync::Arc::make_mut(&mut self.0)
    }

    /// Serves reads from up to `connections` more connections opened with
    /// `open` (0: reads run on the worker, between writes).
    pub fn with_readers(mut self, open: Reopen, connections: usize) -> StoreHandle {
        self.shared_mut().readers = (connections > 0).then(|| {
            std::sync::Arc::new(ReadPool {
                open,
                idle: std::sync::Mutex::new(Vec::new()),
                permits: std::sync::Arc::new(tokio::sync::Semaphore::new(connections)),
                heavy: std::sync::Arc::new(tokio::sync::Semaphore::new(
                    connections.saturating_sub(1).max(1),
                )),
            })
        });
        self
    }

    /// Keeps each API key's scope and revocation for `ttl` after reading it,
    /// so requests do not each wait for a read (zero: every request reads).
    pub fn with_key_cache(mut self, ttl: std::time::Duration) -> StoreHandle {
        self.shared_mut().keys = std::sync::Arc::new(crate::auth::KeyCache::new(ttl));
        self
    }

    /// Sheds load beyond `max` queued messages: the Segment routes then
    /// refuse a request whose messages would take the queue past it with a
    /// 503 (unless the queue is empty, so that no request is refused
    /// forever); the tracking links never refuse.
    pub fn with_queue_limit(mut self, max: usize) -> StoreHandle {
        self.shared_mut().max_queued = max;
        self
    }

    /// Score changes of every commit from now on.
    pub fn subscribe(
        &self,
    ) -> tokio::sync::broadcast::Receiver<std::sync::Arc<Vec<leadscore_store::LedgerEntry>>> {
        self.changes.subscribe()
    }

    /// Completes when a commit has recorded trigger firings since the last
    /// time it completed.
    pub async fn fired(&self) {
        self.fired.notified().await
    }

    /// Runs `f` on the store (in the worker thread) and returns its result.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Store) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |store| {
            let value = f(store);
            Box::new(move |durable: Result<(), String>| {
                let _ = reply.send(durable.map(|()| value));
            })
        });
        self.work
            .send(Work::Run(job))
            .map_err(|_| ApiError::unavailable())?;
        answer
            .await
            .map_err(|_| ApiError::unavailable())?
            .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e))
    }

    /// [`StoreHandle::ingest`] for clients that retry: refuses the messages
    /// with a 503 and `Retry-After` when the writer is this far behind
    /// ([`StoreHandle::with_queue_limit`]), instead of queueing without
    /// bound (memory, and every later request's wait, would grow as long
    /// as the overload lasts).
    pub(crate) async fn ingest_or_shed(
        &self,
        messages: Vec<Incoming>,
    ) -> Result<IngestReport, ApiError> {
        self.shed_beyond(messages.len())?;
        self.ingest(messages).await
    }

    /// Refuses a request at once when the queue is already full, before
    /// its body is read and parsed (which, during an overload, would take
    /// CPU from the writer for messages that are then refused).
    pub(crate) fn shed_when_full(&self) -> Result<(), ApiError> {
        self.shed_beyond(0)
    }

    /// Refuses `count` more messages when the queue holds some and they
    /// would take it past its limit (at its limit, for `count` 0).
    fn shed_beyond(&self, count: usize) -> Result<(), ApiError> {
        let queued = self.queued.load(std::sync::atomic::Ordering::Acquire);
        if queued > 0 && queued.saturating_add(count.max(1)) > self.max_queued {
            metrics::counter!("leadscore_ingest_shed_requests_total").increment(1);
            return Err(ApiError::overloaded(queued));
        }
        Ok(())
    }

    /// Commits messages (with whatever else is waiting) and returns once
    /// they are durable.
    pub(crate) async fn ingest(&self, messages: Vec<Incoming>) -> Result<IngestReport, ApiError> {
        let count = messages.len();
        set_queued_gauge(
            self.queued
                .fetch_add(count, std::sync::atomic::Ordering::AcqRel)
                + count,
        );
        let (reply, answer) = oneshot::channel();
        if self.work.send(Work::Ingest(messages, reply)).is_err() {
            // The worker is gone: nothing will take these off the queue.
            self.queued
                .fetch_sub(count, std::sync::atomic::Ordering::AcqRel);
            return Err(ApiError::unavailable());
        }
        answer
            .await
            .map_err(|_| ApiError::unavailable())?
            .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e))
    }
}

/// Runs a store call whose own errors become 503s (a 404 is the caller's).
pub(crate) async fn stored<T: Send + 'static>(
    handle: &StoreHandle,
    f: impl FnOnce(&mut dyn Store) -> leadscore_store::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    handle.call(f).await?.map_err(store_error)
}

/// Runs a read on a connection of the read pool (beside the worker, so
/// reads neither wait for nor delay ingestion), or on the worker when the
/// server has no pool. Every committed write is visible to it: SQLite WAL
/// readers and PostgreSQL connections see what was committed before the
/// read began.
pub(crate) async fn read<T: Send + 'static>(
    handle: &StoreHandle,
    f: impl FnOnce(&mut dyn Store) -> leadscore_store::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    read_on_pool(handle, Weight::Short, f).await
}

/// [`read`] for a point read that takes tens of microseconds (a contact's
/// row, decoded and scored now): run on the HTTP worker's own thread
/// instead of the blocking pool. Handing each read to a pool thread and
/// back cost two thread switches, more than the read itself: in a profile
/// of `GET /contacts/{id}` under wrk the switches took 27 % of the
/// server's time; inline, 17–18k requests/s with p99 1.0–1.7 ms against
/// 13–16k and 1.2–3.5 ms (docs/performance.md, session 47). Nothing that
/// reads more than one contact's row may use it: it holds the worker.
pub(crate) async fn read_point<T: Send + 'static>(
    handle: &StoreHandle,
    f: impl FnOnce(&mut dyn Store) -> leadscore_store::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    read_on_pool(handle, Weight::Point, f).await
}

/// [`read`] for a call that may take seconds: a listing or summary that
/// scores contacts again (as of a past time, or under a model whose scores
/// move with time), a comparison of models. At most all the read
/// connections but one run such calls at once, so point reads
/// (`GET /contacts/{id}`) always find a connection after at most one short
/// read instead of waiting behind several listings.
pub(crate) async fn read_heavy<T: Send + 'static>(
    handle: &StoreHandle,
    f: impl FnOnce(&mut dyn Store) -> leadscore_store::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    read_on_pool(handle, Weight::Heavy, f).await
}

/// How long a read on the pool may take, which says where it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Weight {
    /// Tens of microseconds: on the calling thread ([`read_point`]).
    Point,
    /// Up to milliseconds: on the blocking pool ([`read`]).
    Short,
    /// Up to seconds: on the blocking pool, leaving a connection for the
    /// others ([`read_heavy`]).
    Heavy,
}

async fn read_on_pool<T: Send + 'static>(
    handle: &StoreHandle,
    weight: Weight,
    f: impl FnOnce(&mut dyn Store) -> leadscore_store::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    let Some(pool) = handle.readers.clone() else {
        return stored(handle, f).await;
    };
    let unavailable = |_| ApiError::unavailable();
    // Both permits move into the read (on the pool, a request dropped
    // meanwhile still counts until its read ends).
    let heavy = match weight == Weight::Heavy {
        true => Some(
            pool.heavy
                .clone()
                .acquire_owned()
                .await
                .map_err(unavailable)?,
        ),
        false => None,
    };
    let permit = pool
        .permits
        .clone()
        .acquire_owned()
        .await
        .map_err(unavailable)?;
    let work = move || {
        let _permits = (permit, heavy);
        let idle = pool.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut conn = match idle {
            Some(conn) => conn,
            None => {
                let mut conn = (pool.open)()?;
                conn.serve_reads()?;
                conn
            }
        };
        let result = f(conn.as_mut());
        // A connection whose database failed is dropped, not reused.
        if !matches!(result, Err(StoreError::Database(_))) {
            if let Ok(mut idle) = pool.idle.lock() {
                idle.push(conn);
            }
        }
        result
    };
    let result = match weight {
        Weight::Point => work(),
        Weight::Short | Weight::Heavy => tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?,
    };
    result.map_err(store_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadscore_store::{Admin as _, Scope, SqliteStore};

    /// A flush that counts its calls, failing when told to.
    struct Counted(std::sync::Arc<std::sync::atomic::AtomicUsize>, bool);

    impl leadscore_store::Flush for Counted {
        fn flush(&mut self) -> leadscore_store::Result<()> {
            std::thread::sleep(std::time::Duration::from_millis(20));
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if self.1 {
                return Err(leadscore_store::StoreError::Database("disk gone".into()));
            }
            Ok(())
        }
    }

    /// Each commit is answered only after a flush that began after it, in
    /// commit order, with the flush's error when it fails; stopping answers
    /// everything queued.
    #[test]
    fn commits_are_answered_after_their_flush() {
        for fails in [false, true] {
            let flushes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let acks = Acks::start(Box::new(Counted(flushes.clone(), fails)));
            let (answered, answers) = std::sync::mpsc::channel();
            for i in 0..5 {
                let (flushes, answered) = (flushes.clone(), answered.clone());
                let flushed_before = flushes.load(std::sync::atomic::Ordering::SeqCst);
                acks.push(Box::new(move |durable| {
                    let now = flushes.load(std::sync::atomic::Ordering::SeqCst);
                    let _ = answered.send((i, now > flushed_before, durable));
                }));
            }
            acks.finish();
            let got: Vec<_> = answers.try_iter().collect();
            assert_eq!(got.len(), 5);
            for (n, (i, flushed, durable)) in got.into_iter().enumerate() {
                assert_eq!(i, n, "answered in commit order");
                assert!(flushed, "answer {i} came before a flush after its commit");
                match durable {
                    Ok(()) => assert!(!fails),
                    Err(e) => assert!(fails && e.contains("not confirmed durable"), "{e}"),
                }
            }
        }
    }

    /// Holds the writer in a job until the returned sender sends (or is
    /// dropped); the job has started when this returns.
    async fn hold_writer(
        handle: &StoreHandle,
    ) -> (
        std::sync::mpsc::Sender<()>,
        tokio::task::JoinHandle<Result<Option<()>, ApiError>>,
    ) {
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started, running) = tokio::sync::oneshot::channel();
        let handle = handle.clone();
        let busy = tokio::spawn(async move {
            handle
                .call(move |_| {
                    let _ = started.send(());
                    held.recv().ok()
                })
                .await
        });
        running.await.unwrap();
        (release, busy)
    }

    /// `count` track messages with distinct ids.
    fn tracks(first: usize, count: usize) -> Vec<Incoming> {
        (first..first + count)
            .map(|n| {
                let value = serde_json::json!({"type": "track", "event": "Visited",
                    "userId": "u1", "messageId": format!("m{n}"),
                    "timestamp": "2026-01-01T00:00:00Z"});
                Incoming::new(leadscore_core::event::Message::from_json(value, None, None).unwrap())
            })
            .collect()
    }

    /// With the writer busy, a request that would take the queue past its
    /// limit is refused at once with a 503 and `Retry-After`, while one the
    /// queue has room for (or one on a route that never sheds) waits and
    /// is committed; once the queue drains, requests are taken again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_sheds_load_until_it_drains() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("t.db")).unwrap();
        let (handle, worker) = StoreHandle::start(Box::new(store));
        let handle = handle.with_queue_limit(150);
        let (release, busy) = hold_writer(&handle).await;
        let spawn = |messages: Vec<Incoming>, shed: bool| {
            let handle = handle.clone();
            tokio::spawn(async move {
                match shed {
                    true => handle.ingest_or_shed(messages).await,
                    false => handle.ingest(messages).await,
                }
            })
        };
        // An empty queue takes any request, even one over the limit.
        let first = spawn(tracks(0, 200), true);
        while handle.queued.load(std::sync::atomic::Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        let refused = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            handle.ingest_or_shed(tracks(200, 1)),
        )
        .await
        .expect("the request waited behind the full queue")
        .unwrap_err();
        assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.retry_after, Some(1));
        assert!(
            refused.body["error"]
                .as_str()
                .unwrap()
                .contains("overloaded: 200 messages"),
            "{}",
            refused.body
        );
        let response = axum::response::IntoResponse::into_response(refused);
        assert_eq!(response.headers()["retry-after"], "1");
        // The routes ask before reading a body, too.
        assert!(handle.shed_when_full().is_err());
        // A link route's message is taken whatever the queue holds.
        let link = spawn(tracks(300, 1), false);
        release.send(()).unwrap();
        busy.await.unwrap().unwrap();
        first.await.unwrap().unwrap();
        link.await.unwrap().unwrap();
        assert_eq!(handle.queued.load(std::sync::atomic::Ordering::Acquire), 0);
        handle.shed_when_full().unwrap();
        handle.ingest_or_shed(tracks(400, 100)).await.unwrap();
        // Everything taken is stored, nothing refused is.
        let stats = handle.call(|store| store.stats()).await.unwrap().unwrap();
        assert_eq!(stats.events, 301);
        drop(handle);
        worker.join().unwrap();
    }

    /// With no request waiting, the writer writes what its store keeps in
    /// memory once it is due, without a request to carry it: nothing is
    /// left recorded as kept.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idle_writer_writes_what_is_due() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut store = SqliteStore::open(&path).unwrap();
        let source = include_str!("../../../examples/b2b.toml");
        let version = store.add_model("b2b.toml", source).unwrap().version;
        store.activate(version, &mut |_, _| {}).unwrap();
        store.set_write_after(std::time::Duration::from_secs(2));
        let (handle, worker) = StoreHandle::start(Box::new(store));
        handle.ingest(tracks(0, 1)).await.unwrap();
        handle.ingest(tracks(1, 1)).await.unwrap();
        let kept = || -> i64 {
            rusqlite::Connection::open(&path)
                .unwrap()
                .query_row("SELECT count(*) FROM deferred_rows", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(kept(), 1, "kept in memory, recorded");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while kept() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "still kept a minute later"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        drop(handle);
        worker.join().unwrap();
    }

    /// A worker on a temporary SQLite store holding a read key (its hash is
    /// returned), with a pool of two read connections.
    fn with_two_readers() -> (tempfile::TempDir, StoreHandle, JoinHandle<()>, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut store = SqliteStore::open(&path).unwrap();
        let hash = leadscore_store::key_hash("k");
        store.add_key(&hash, Scope::Read, "test").unwrap();
        let open: Reopen =
            std::sync::Arc::new(move || Ok(Box::new(SqliteStore::open(&path)?) as Box<dyn Store>));
        let (handle, worker) = StoreHandle::start(Box::new(store));
        (dir, handle.with_readers(open, 2), worker, hash)
    }

    /// A read is answered by the pool while the worker is busy (here:
    /// blocked until the read has returned, which would deadlock if the
    /// read queued behind it), and sees what the worker committed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_do_not_queue_behind_the_worker() {
        let (_dir, handle, worker, hash) = with_two_readers();
        let (release, busy) = hold_writer(&handle).await;
        let found = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            read(&handle, move |store| store.key_by_hash(&hash)),
        )
        .await
        .expect("the read waited for the busy worker");
        assert_eq!(found.unwrap().unwrap().scope, Scope::Read);
        release.send(()).unwrap();
        busy.await.unwrap().unwrap();
        drop(handle);
        worker.join().unwrap();
    }

    /// A point read runs on the calling thread (here the test's only
    /// runtime thread; the blocking pool's are others), on a connection of
    /// the pool, not the busy worker, and sees what it committed.
    #[tokio::test(flavor = "current_thread")]
    async fn point_reads_run_on_the_calling_thread() {
        let (_dir, handle, worker, hash) = with_two_readers();
        let here = std::thread::current().id();
        let (release, busy) = hold_writer(&handle).await;
        let (found, ran_on) = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            read_point(&handle, move |store| {
                Ok((store.key_by_hash(&hash)?, std::thread::current().id()))
            }),
        )
        .await
        .expect("the point read waited for the busy worker")
        .unwrap();
        assert_eq!(found.unwrap().scope, Scope::Read);
        assert_eq!(ran_on, here);
        let elsewhere = read(&handle, |_| Ok(std::thread::current().id()))
            .await
            .unwrap();
        assert_ne!(elsewhere, here, "other reads go to the blocking pool");
        release.send(()).unwrap();
        busy.await.unwrap().unwrap();
        drop(handle);
        worker.join().unwrap();
    }

    /// With two read connections, one long read (a listing as of last
    /// quarter) runs at a time: a second waits for it, while a point read
    /// takes the other connection at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn long_reads_leave_a_connection_for_point_reads() {
        let (_dir, handle, worker, hash) = with_two_readers();
        let (release, blocked) = std::sync::mpsc::channel::<()>();
        let (started, running) = tokio::sync::oneshot::channel();
        let first = tokio::spawn({
            let handle = handle.clone();
            async move {
                read_heavy(&handle, move |_| {
                    let _ = started.send(());
                    Ok(blocked.recv().is_ok())
                })
                .await
            }
        });
        running.await.unwrap();
        let mut second = tokio::spawn({
            let handle = handle.clone();
            async move { read_heavy(&handle, |_| Ok(())).await }
        });
        let point = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            read(&handle, move |store| store.key_by_hash(&hash)),
        )
        .await
        .expect("the point read waited for a long read");
        assert_eq!(point.unwrap().unwrap().scope, Scope::Read);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(500), &mut second)
                .await
                .is_err(),
            "a second long read ran beside the first"
        );
        release.send(()).unwrap();
        assert!(first.await.unwrap().unwrap());
        second.await.unwrap().unwrap();
        drop(handle);
        worker.join().unwrap();
    }
}

//! The outbox write side and the relay, checked once per database backend: each case is written
//! once in `cases` and instantiated for SQLite and PostgreSQL by `per_backend!`.

macro_rules! per_backend {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $case() { super::cases::$case(crate::common::Backend::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test] async fn $case() { super::cases::$case(crate::common::Backend::Postgres).await })*
        }
    };
}

per_backend!(
    rolled_back_events_never_go_out_and_committed_ones_go_out_once_in_order,
    a_failing_bus_leaves_rows_waiting_until_it_recovers,
    a_stream_nobody_reads_yet_does_not_hold_up_the_others,
    mark_processed_is_idempotent_per_consumer,
    an_envelope_without_event_id_is_refused,
);

/// Several replicas relaying one PostgreSQL outbox (SQLite has one process per file).
#[tokio::test]
async fn postgres_replicas_share_the_outbox_without_double_publishing() {
    use std::collections::HashSet;
    use std::sync::Arc;
    use std::time::Duration;

    use crate::common::*;
    use detour_events::{EventMetrics, Relay};
    use tokio_util::sync::CancellationToken;

    let (db, _dir) = fresh_db(Backend::Postgres).await;
    let bus = Arc::new(RecordingBus::default());
    let shutdown = CancellationToken::new();
    let settings = cases::relay_settings();
    let relays: Vec<_> = (0..3)
        .map(|_| {
            Relay::spawn(db.clone(), bus.clone(), EventMetrics::default(), settings.clone(), shutdown.clone())
        })
        .collect();
    let ids: Vec<String> = (0..60).map(|i| format!("e{i:02}")).collect();
    for chunk in ids.chunks(10) {
        let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
        cases::enqueue(&db, "s", &chunk, true).await;
        for (handle, _) in &relays {
            handle.notify();
        }
    }
    eventually(Duration::from_secs(10), "all published", || async {
        (bus.published().len() >= 60).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let published = bus.event_ids();
    let distinct: HashSet<_> = published.iter().collect();
    assert_eq!(published.len(), 60, "some event was published twice");
    assert_eq!(distinct.len(), 60);
    shutdown.cancel();
    for (_, task) in relays {
        task.await.unwrap();
    }
}

pub mod cases {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use detour_events::bus::EventBus;
    use detour_events::outbox::{enqueue_pg, enqueue_sqlite, mark_processed_pg, mark_processed_sqlite};
    use detour_events::{EventMetrics, InProcBus, Relay, RelaySettings};
    use detour_storage::Db;
    use prometheus_client::registry::Registry;
    use tokio_util::sync::CancellationToken;

    use crate::common::*;

    pub fn relay_settings() -> RelaySettings {
        RelaySettings {
            batch_size: 100,
            poll_interval: Duration::from_millis(50),
            min_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
        }
    }

    /// Enqueues `ids` on `stream` in one transaction, then commits or rolls back.
    pub async fn enqueue(db: &Db, stream: &str, ids: &[&str], commit: bool) {
        match db {
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await.unwrap();
                for id in ids {
                    enqueue_pg(&mut tx, stream, &envelope(id)).await.unwrap();
                }
                if commit { tx.commit().await.unwrap() } else { tx.rollback().await.unwrap() }
            }
            Db::Sqlite(pool) => {
                let mut tx = pool.begin().await.unwrap();
                for id in ids {
                    enqueue_sqlite(&mut tx, stream, &envelope(id)).await.unwrap();
                }
                if commit { tx.commit().await.unwrap() } else { tx.rollback().await.unwrap() }
            }
        }
    }

    /// Calls mark_processed twice in one transaction, then commits or rolls back.
    async fn mark_twice(db: &Db, consumer: &str, event_id: &str, commit: bool) -> (bool, bool) {
        match db {
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await.unwrap();
                let first = mark_processed_pg(&mut tx, consumer, event_id).await.unwrap();
                let second = mark_processed_pg(&mut tx, consumer, event_id).await.unwrap();
                if commit {
                    tx.commit().await.unwrap()
                } else {
                    tx.rollback().await.unwrap()
                }
                (first, second)
            }
            Db::Sqlite(pool) => {
                let mut tx = pool.begin().await.unwrap();
                let first = mark_processed_sqlite(&mut tx, consumer, event_id).await.unwrap();
                let second = mark_processed_sqlite(&mut tx, consumer, event_id).await.unwrap();
                if commit {
                    tx.commit().await.unwrap()
                } else {
                    tx.rollback().await.unwrap()
                }
                (first, second)
            }
        }
    }

    /// (event_id, published, attempts) of every outbox row, in seq order.
    async fn outbox(db: &Db) -> Vec<(String, bool, i64)> {
        const SQL: &str = "SELECT event_id, published_at, CAST(attempts AS BIGINT) FROM outbox ORDER BY seq";
        let rows: Vec<(String, Option<i64>, i64)> = match db {
            Db::Postgres(pool) => sqlx::query_as(SQL).fetch_all(pool).await.unwrap(),
            Db::Sqlite(pool) => sqlx::query_as(SQL).fetch_all(pool).await.unwrap(),
        };
        rows.into_iter().map(|(id, published, attempts)| (id, published.is_some(), attempts)).collect()
    }

    pub async fn rolled_back_events_never_go_out_and_committed_ones_go_out_once_in_order(backend: Backend) {
        let (db, _dir) = fresh_db(backend).await;
        let bus = Arc::new(RecordingBus::default());
        let shutdown = CancellationToken::new();
        let (relay, task) = Relay::spawn(
            db.clone(),
            bus.clone(),
            EventMetrics::default(),
            relay_settings(),
            shutdown.clone(),
        );

        enqueue(&db, "cases", &["rolled-back-1", "rolled-back-2"], false).await;
        enqueue(&db, "cases", &["e1", "e2"], true).await;
        enqueue(&db, "offers", &["e3"], true).await;
        relay.notify();

        eventually(Duration::from_secs(5), "3 events published", || async {
            (bus.published().len() >= 3).then_some(())
        })
        .await;
        // Several more polls: nothing may go out again.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let expected = [("cases", "e1"), ("cases", "e2"), ("offers", "e3")];
        let expected: Vec<(String, String)> =
            expected.iter().map(|(s, e)| ((*s).into(), (*e).into())).collect();
        assert_eq!(bus.published(), expected);
        let rows = outbox(&db).await;
        assert_eq!(rows, [("e1".into(), true, 0), ("e2".into(), true, 0), ("e3".into(), true, 0)]);

        shutdown.cancel();
        task.await.unwrap();
    }

    pub async fn a_failing_bus_leaves_rows_waiting_until_it_recovers(backend: Backend) {
        let (db, _dir) = fresh_db(backend).await;
        let bus = Arc::new(RecordingBus::default());
        bus.failing.store(true, Ordering::SeqCst);
        let mut registry = Registry::default();
        let metrics = EventMetrics::register(&mut registry);
        let shutdown = CancellationToken::new();
        let (relay, task) =
            Relay::spawn(db.clone(), bus.clone(), metrics, relay_settings(), shutdown.clone());

        enqueue(&db, "s", &["e1", "e2"], true).await;
        relay.notify();
        eventually(Duration::from_secs(5), "retries of e1", || async {
            (outbox(&db).await[0].2 >= 3).then_some(())
        })
        .await;
        let rows = outbox(&db).await;
        assert!(rows.iter().all(|(_, published, _)| !published), "{rows:?}");
        // e2 waits behind e1 rather than overtaking it.
        assert_eq!(rows[1].2, 0, "{rows:?}");
        assert!(bus.published().is_empty());
        let failures = metric(&registry, "events_publish_failures_total{stream=\"s\",outcome=\"transport\"}");
        assert!(failures.is_some_and(|n| n >= 3.0), "{failures:?}");
        assert_eq!(metric(&registry, "events_outbox_backlog{stream=\"s\"}"), Some(2.0));

        bus.failing.store(false, Ordering::SeqCst);
        eventually(Duration::from_secs(5), "published after recovery", || async {
            (bus.published().len() >= 2).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(bus.event_ids(), ["e1", "e2"]);
        assert!(outbox(&db).await.iter().all(|(_, published, _)| *published));
        assert_eq!(metric(&registry, "events_published_total{stream=\"s\"}"), Some(2.0));
        eventually(Duration::from_secs(2), "backlog drained", || async {
            (metric(&registry, "events_outbox_backlog{stream=\"s\"}") == Some(0.0)).then_some(())
        })
        .await;

        shutdown.cancel();
        task.await.unwrap();
    }

    pub async fn a_stream_nobody_reads_yet_does_not_hold_up_the_others(backend: Backend) {
        let (db, _dir) = fresh_db(backend).await;
        let bus: Arc<dyn EventBus> = Arc::new(InProcBus::default());
        let mut orders = bus.subscribe("orders", "billing", "c").await.unwrap();
        let shutdown = CancellationToken::new();
        let (relay, task) = Relay::spawn(
            db.clone(),
            bus.clone(),
            EventMetrics::default(),
            relay_settings(),
            shutdown.clone(),
        );

        enqueue(&db, "surveys", &["s1"], true).await;
        enqueue(&db, "orders", &["o1"], true).await;
        relay.notify();
        let got = read_n(&mut orders, 1).await;
        assert_eq!(got.len(), 1, "orders waited behind a stream with no consumer");
        assert_eq!(got[0].event_id, "o1");
        orders.ack(&got[0]).await.unwrap();
        eventually(Duration::from_secs(5), "o1 marked", || async {
            outbox(&db).await.iter().any(|(id, published, _)| id == "o1" && *published).then_some(())
        })
        .await;
        let s1 = outbox(&db).await.into_iter().find(|(id, _, _)| id == "s1").unwrap();
        assert!(!s1.1 && s1.2 >= 1, "{s1:?}");

        // The consumer of surveys arrives: the waiting event goes out.
        let mut surveys = bus.subscribe("surveys", "feedback", "c").await.unwrap();
        let got = read_n(&mut surveys, 1).await;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].event_id, "s1");
        surveys.ack(&got[0]).await.unwrap();
        eventually(Duration::from_secs(5), "s1 marked", || async {
            outbox(&db).await.iter().all(|(_, published, _)| *published).then_some(())
        })
        .await;

        shutdown.cancel();
        task.await.unwrap();
    }

    pub async fn mark_processed_is_idempotent_per_consumer(backend: Backend) {
        let (db, _dir) = fresh_db(backend).await;
        assert_eq!(mark_twice(&db, "triage", "e1", true).await, (true, false));
        assert_eq!(mark_twice(&db, "triage", "e1", true).await, (false, false), "a later transaction");
        assert_eq!(mark_twice(&db, "supplier", "e1", true).await, (true, false), "another consumer");
        // Rolled back with the change it guarded: the event counts as not processed.
        assert_eq!(mark_twice(&db, "triage", "e2", false).await, (true, false));
        assert_eq!(mark_twice(&db, "triage", "e2", true).await, (true, false));
    }

    pub async fn an_envelope_without_event_id_is_refused(backend: Backend) {
        let (db, _dir) = fresh_db(backend).await;
        let mut no_id = envelope("x");
        no_id.event_id = None;
        let err = match &db {
            Db::Postgres(pool) => {
                enqueue_pg(&mut pool.acquire().await.unwrap(), "s", &no_id).await.unwrap_err()
            }
            Db::Sqlite(pool) => {
                enqueue_sqlite(&mut pool.acquire().await.unwrap(), "s", &no_id).await.unwrap_err()
            }
        };
        assert!(err.to_string().contains("no event_id"), "{err}");
        assert!(outbox(&db).await.is_empty());
    }
}

//! The behaviour every EventBus promises, checked once per transport: each case is written once
//! in `cases` and instantiated for the in-process bus and for Redis by `contract!`.

macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod inproc {
            $(#[tokio::test] async fn $case() { super::cases::$case(crate::common::Transport::InProc).await })*
        }
        mod redis {
            $(#[tokio::test] async fn $case() { super::cases::$case(crate::common::Transport::Redis).await })*
        }
    };
}

contract!(
    every_group_gets_every_event_in_order,
    consumers_of_one_group_share_the_work,
    retry_later_redelivers_with_the_next_attempt,
    dead_letter_keeps_the_event_for_operators,
    a_crashed_consumers_delivery_goes_to_another,
    a_busy_consumer_keeps_the_rest_of_its_batch,
    runner_retries_then_succeeds,
    runner_dead_letters_after_max_attempts,
    runner_dead_letters_permanent_failures_and_garbage_at_once,
    runner_stops_promptly_on_shutdown,
    outbox_to_handler_end_to_end_with_trace_context,
);

mod cases {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use async_trait::async_trait;
    use bytes::Bytes;
    use detour_events::outbox::enqueue_sqlite;
    use detour_events::{
        ConsumerSettings, EventHandler, EventMetrics, HandlerError, Relay, RelaySettings, spawn_consumer,
    };
    use detour_proto::events::v1::Envelope;
    use detour_storage::Db;
    use opentelemetry::trace::{TraceContextExt, TraceId, TracerProvider};
    use prometheus_client::registry::Registry;
    use tokio_util::sync::CancellationToken;
    use tracing::Instrument;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    use tracing_subscriber::layer::SubscriberExt;

    use crate::common::*;

    const BLOCK: Duration = Duration::from_millis(200);

    pub async fn every_group_gets_every_event_in_order(t: Transport) {
        let bus = t.bus();
        let stream = unique("orders");
        let mut billing = bus.subscribe(&stream, "billing", "b-1").await.unwrap();
        let mut audit = bus.subscribe(&stream, "audit", "a-1").await.unwrap();
        let publishing = publish_bg(&bus, &stream, &["e1", "e2"]);

        // Event by event: the in-process publisher sends e2 only once both groups settled e1.
        for expected in ["e1", "e2"] {
            for sub in [&mut billing, &mut audit] {
                let got = read_n(sub, 1).await;
                assert_eq!(got.len(), 1, "{expected} not delivered");
                assert_eq!(got[0].event_id, expected);
                assert_eq!(got[0].attempt, 1);
                assert_eq!(got[0].payload, payload(expected));
                sub.ack(&got[0]).await.unwrap();
            }
        }
        publishing.await.unwrap().unwrap();
        for sub in [&mut billing, &mut audit] {
            assert!(sub.next_batch(10, BLOCK).await.unwrap().is_empty(), "acked events came back");
        }
    }

    pub async fn consumers_of_one_group_share_the_work(t: Transport) {
        let bus = t.bus();
        let stream = unique("share");
        let mut first = bus.subscribe(&stream, "triage", "replica-1").await.unwrap();
        let mut second = bus.subscribe(&stream, "triage", "replica-2").await.unwrap();
        let ids = ["e1", "e2", "e3", "e4", "e5", "e6"];
        // Concurrent publishes: the in-process bus holds each until it is acked.
        let publishing: Vec<_> = ids.iter().map(|id| publish_bg(&bus, &stream, &[id])).collect();

        // Neither acks before it holds three, so the two must have split the six.
        let got_first = read_n(&mut first, 3).await;
        let got_second = read_n(&mut second, 3).await;
        let firsts: HashSet<_> = got_first.iter().map(|d| d.event_id.clone()).collect();
        let seconds: HashSet<_> = got_second.iter().map(|d| d.event_id.clone()).collect();
        assert_eq!(firsts.len(), 3, "{got_first:?}");
        assert_eq!(seconds.len(), 3, "{got_second:?}");
        assert!(firsts.is_disjoint(&seconds), "both replicas got {:?}", firsts.intersection(&seconds));
        for d in &got_first {
            first.ack(d).await.unwrap();
        }
        for d in &got_second {
            second.ack(d).await.unwrap();
        }
        for p in publishing {
            p.await.unwrap().unwrap();
        }
        assert!(first.next_batch(10, BLOCK).await.unwrap().is_empty());
        assert!(second.next_batch(10, BLOCK).await.unwrap().is_empty());
    }

    pub async fn retry_later_redelivers_with_the_next_attempt(t: Transport) {
        let bus = t.bus();
        let stream = unique("retry");
        let mut sub = bus.subscribe(&stream, "g", "c").await.unwrap();
        let publishing = publish_bg(&bus, &stream, &["e1"]);

        for attempt in 1..=3 {
            let got = read_n(&mut sub, 1).await;
            assert_eq!(got.len(), 1, "attempt {attempt} not delivered");
            assert_eq!((got[0].event_id.as_str(), got[0].attempt), ("e1", attempt));
            if attempt < 3 {
                sub.retry_later(&got[0]).await.unwrap();
            } else {
                sub.ack(&got[0]).await.unwrap();
            }
        }
        publishing.await.unwrap().unwrap();
        tokio::time::sleep(RETRY_DELAY * 2).await;
        assert!(sub.next_batch(10, BLOCK).await.unwrap().is_empty(), "acked event came back");
    }

    pub async fn dead_letter_keeps_the_event_for_operators(t: Transport) {
        let bus = t.bus();
        let stream = unique("dlq");
        let mut sub = bus.subscribe(&stream, "g", "c").await.unwrap();
        let publishing = publish_bg(&bus, &stream, &["e1"]);
        let got = read_n(&mut sub, 1).await;
        sub.dead_letter(&got[0], "cannot apply").await.unwrap();
        publishing.await.unwrap().unwrap();

        let dead = bus.dead_letters(&stream).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].event_id, "e1");
        assert_eq!(dead[0].group, "g");
        assert_eq!(dead[0].reason, "cannot apply");
        assert_eq!(dead[0].payload, payload("e1"));
        tokio::time::sleep(RETRY_DELAY * 2).await;
        assert!(sub.next_batch(10, BLOCK).await.unwrap().is_empty(), "dead-lettered event came back");
    }

    pub async fn a_crashed_consumers_delivery_goes_to_another(t: Transport) {
        let bus = t.bus();
        let stream = unique("crash");
        let mut doomed = bus.subscribe(&stream, "g", "replica-1").await.unwrap();
        let mut survivor = bus.subscribe(&stream, "g", "replica-2").await.unwrap();
        let publishing = publish_bg(&bus, &stream, &["e1"]);
        let got = read_n(&mut doomed, 1).await;
        assert_eq!(got.len(), 1);
        drop(doomed); // crashes holding e1, never acked

        let again = read_n(&mut survivor, 1).await;
        assert_eq!(again.len(), 1, "the crashed consumer's delivery was not redelivered");
        assert_eq!((again[0].event_id.as_str(), again[0].attempt), ("e1", 2));
        survivor.ack(&again[0]).await.unwrap();
        publishing.await.unwrap().unwrap();
    }

    pub async fn a_busy_consumer_keeps_the_rest_of_its_batch(t: Transport) {
        let bus = t.bus();
        let stream = unique("busy");
        let mut busy = bus.subscribe(&stream, "g", "replica-1").await.unwrap();
        let mut idle = bus.subscribe(&stream, "g", "replica-2").await.unwrap();
        let publishing: Vec<_> =
            ["e1", "e2", "e3"].iter().map(|id| publish_bg(&bus, &stream, &[id])).collect();
        let batch = read_n(&mut busy, 3).await;
        assert_eq!(batch.len(), 3);

        // Each delivery takes two thirds of the retry delay: the batch as a whole outlasts it,
        // yet the consumer is alive and progressing, so nothing may move to the other replica.
        for delivery in &batch {
            tokio::time::sleep(RETRY_DELAY * 2 / 3).await;
            let stolen = idle.next_batch(10, Duration::from_millis(10)).await.unwrap();
            assert!(stolen.is_empty(), "{stolen:?} taken from a live consumer");
            busy.ack(delivery).await.unwrap();
        }
        for p in publishing {
            p.await.unwrap().unwrap();
        }
    }

    /// Fails the first `failures` calls with the error `fail` makes, then succeeds.
    struct ScriptedHandler {
        failures: usize,
        fail: fn() -> HandlerError,
        calls: AtomicUsize,
        handled: Mutex<Vec<String>>,
        trace_ids: Mutex<Vec<TraceId>>,
        contexts: Mutex<Vec<Envelope>>,
    }

    impl ScriptedHandler {
        fn new(failures: usize, fail: fn() -> HandlerError) -> Arc<Self> {
            Arc::new(Self {
                failures,
                fail,
                calls: AtomicUsize::new(0),
                handled: Mutex::default(),
                trace_ids: Mutex::default(),
                contexts: Mutex::default(),
            })
        }

        fn handled(&self) -> Vec<String> {
            self.handled.lock().unwrap().clone()
        }
    }

    #[async_trait]
    impl EventHandler for ScriptedHandler {
        async fn handle(&self, event_id: &str, envelope: Envelope) -> Result<(), HandlerError> {
            self.trace_ids
                .lock()
                .unwrap()
                .push(tracing::Span::current().context().span().span_context().trace_id());
            self.contexts.lock().unwrap().push(envelope);
            if self.calls.fetch_add(1, Ordering::SeqCst) < self.failures {
                return Err((self.fail)());
            }
            self.handled.lock().unwrap().push(event_id.to_owned());
            Ok(())
        }
    }

    fn settings(stream: &str, max_attempts: u32) -> ConsumerSettings {
        ConsumerSettings { max_attempts, block: BLOCK, ..ConsumerSettings::new(stream, "g", "c-1") }
    }

    pub async fn runner_retries_then_succeeds(t: Transport) {
        let bus = t.bus();
        let stream = unique("runner-retry");
        let mut registry = Registry::default();
        let metrics = EventMetrics::register(&mut registry);
        let handler = ScriptedHandler::new(2, || HandlerError::transient("database busy"));
        let shutdown = CancellationToken::new();
        let task =
            spawn_consumer(bus.clone(), settings(&stream, 5), handler.clone(), metrics, shutdown.clone());

        publish_bg(&bus, &stream, &["e1"]).await.unwrap().unwrap();
        eventually(Duration::from_secs(5), "e1 handled", || async {
            (handler.handled() == ["e1"]).then_some(())
        })
        .await;
        assert_eq!(handler.calls.load(Ordering::SeqCst), 3);
        let series = |outcome: &str| {
            format!("events_consumed_total{{stream=\"{stream}\",group=\"g\",outcome=\"{outcome}\"}}")
        };
        eventually(Duration::from_secs(2), "ack counted", || async { metric(&registry, &series("ok")) })
            .await;
        assert_eq!(metric(&registry, &series("retry")), Some(2.0));
        assert!(bus.dead_letters(&stream).await.unwrap().is_empty());
        shutdown.cancel();
        task.await.unwrap();
    }

    pub async fn runner_dead_letters_after_max_attempts(t: Transport) {
        let bus = t.bus();
        let stream = unique("runner-dlq");
        let mut registry = Registry::default();
        let metrics = EventMetrics::register(&mut registry);
        let handler = ScriptedHandler::new(usize::MAX, || HandlerError::transient("supplier unreachable"));
        let shutdown = CancellationToken::new();
        let task =
            spawn_consumer(bus.clone(), settings(&stream, 3), handler.clone(), metrics, shutdown.clone());

        publish_bg(&bus, &stream, &["e1"]).await.unwrap().unwrap();
        let dead = eventually(Duration::from_secs(5), "e1 dead-lettered", || async {
            Some(bus.dead_letters(&stream).await.unwrap()).filter(|d| !d.is_empty())
        })
        .await;
        assert_eq!(dead.len(), 1);
        assert_eq!((dead[0].event_id.as_str(), dead[0].group.as_str()), ("e1", "g"));
        assert!(dead[0].reason.contains("after 3 attempts"), "{}", dead[0].reason);
        assert!(dead[0].reason.contains("supplier unreachable"), "{}", dead[0].reason);
        let series = format!("events_dead_lettered_total{{stream=\"{stream}\",group=\"g\"}}");
        eventually(Duration::from_secs(2), "dead letter counted", || async { metric(&registry, &series) })
            .await;
        assert_eq!(metric(&registry, &series), Some(1.0));

        tokio::time::sleep(RETRY_DELAY * 3).await;
        assert_eq!(handler.calls.load(Ordering::SeqCst), 3, "handled again after dead-lettering");
        shutdown.cancel();
        task.await.unwrap();
    }

    pub async fn runner_dead_letters_permanent_failures_and_garbage_at_once(t: Transport) {
        let bus = t.bus();
        let stream = unique("runner-permanent");
        let mut registry = Registry::default();
        let metrics = EventMetrics::register(&mut registry);
        let handler = ScriptedHandler::new(1, || HandlerError::permanent("unknown case"));
        let shutdown = CancellationToken::new();
        let task =
            spawn_consumer(bus.clone(), settings(&stream, 5), handler.clone(), metrics, shutdown.clone());

        let garbage = {
            let bus = bus.clone();
            let stream = stream.clone();
            // Not a protobuf Envelope: field 1 with wire type 7 does not exist.
            tokio::spawn(async move { bus.publish(&stream, "junk", Bytes::from_static(&[0x0f, 0xff])).await })
        };
        garbage.await.unwrap().unwrap();
        publish_bg(&bus, &stream, &["e1", "e2"]).await.unwrap().unwrap();

        eventually(Duration::from_secs(5), "e2 handled", || async {
            (handler.handled() == ["e2"]).then_some(())
        })
        .await;
        let dead = bus.dead_letters(&stream).await.unwrap();
        let mut reasons: Vec<_> = dead.iter().map(|d| (d.event_id.as_str(), d.reason.as_str())).collect();
        reasons.sort();
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert_eq!(reasons[0], ("e1", "unknown case"));
        assert_eq!(reasons[1].0, "junk");
        assert!(reasons[1].1.starts_with("undecodable envelope"), "{}", reasons[1].1);
        assert_eq!(handler.calls.load(Ordering::SeqCst), 2, "a permanent failure was retried");
        let series = format!("events_dead_lettered_total{{stream=\"{stream}\",group=\"g\"}}");
        assert_eq!(metric(&registry, &series), Some(2.0));
        shutdown.cancel();
        task.await.unwrap();
    }

    pub async fn runner_stops_promptly_on_shutdown(t: Transport) {
        let bus = t.bus();
        let stream = unique("runner-stop");
        let handler = ScriptedHandler::new(0, || HandlerError::transient("unused"));
        let shutdown = CancellationToken::new();
        let settings = ConsumerSettings { block: Duration::from_secs(30), ..settings(&stream, 5) };
        let task = spawn_consumer(bus, settings, handler, EventMetrics::default(), shutdown.clone());
        tokio::time::sleep(Duration::from_millis(300)).await; // now blocked in a read
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(2), task).await.expect("consumer ignored shutdown").unwrap();
    }

    /// A service writes an event in its transaction inside a traced request; the relay publishes
    /// it; the consumer's handler runs in a span of the same trace.
    pub async fn outbox_to_handler_end_to_end_with_trace_context(t: Transport) {
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("detour-events-test")));
        // A current-thread test runtime: the relay, consumer and handler tasks all see it.
        let _guard = tracing::subscriber::set_default(subscriber);

        let (db, _dir) = fresh_db(Backend::Sqlite).await;
        let Db::Sqlite(pool) = &db else { unreachable!() };
        let bus = t.bus();
        let stream = unique("e2e");
        let shutdown = CancellationToken::new();
        let handler = ScriptedHandler::new(0, || HandlerError::transient("unused"));
        let consumer = spawn_consumer(
            bus.clone(),
            settings(&stream, 5),
            handler.clone(),
            EventMetrics::default(),
            shutdown.clone(),
        );
        let relay_settings = RelaySettings { min_backoff: Duration::from_millis(50), ..Default::default() };
        let (relay, relay_task) =
            Relay::spawn(db.clone(), bus.clone(), EventMetrics::default(), relay_settings, shutdown.clone());

        let request = tracing::info_span!("open case");
        let producer_trace = async {
            let mut tx = pool.begin().await.unwrap();
            enqueue_sqlite(&mut tx, &stream, &envelope("e1")).await.unwrap();
            tx.commit().await.unwrap();
            tracing::Span::current().context().span().span_context().trace_id()
        }
        .instrument(request)
        .await;
        relay.notify();
        assert_ne!(producer_trace, TraceId::INVALID);

        eventually(Duration::from_secs(5), "e1 handled", || async {
            (handler.handled() == ["e1"]).then_some(())
        })
        .await;
        assert_eq!(handler.trace_ids.lock().unwrap().as_slice(), [producer_trace]);
        let received = handler.contexts.lock().unwrap()[0].clone();
        let traceparent = received.trace_context.get("traceparent").expect("traceparent carried");
        assert!(traceparent.contains(&producer_trace.to_string()), "{traceparent}");

        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(2), async {
            consumer.await.unwrap();
            relay_task.await.unwrap();
        })
        .await
        .expect("tasks stop on shutdown");
    }
}

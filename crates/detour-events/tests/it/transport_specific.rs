//! Behaviour where the transports differ by design.

mod inproc {
    use std::sync::Arc;
    use std::time::Duration;

    use detour_events::bus::{BusError, EventBus};
    use detour_events::{InProcBus, InProcSettings};

    use crate::common::*;

    fn bus_with_timeout(publish_timeout: Duration) -> Arc<dyn EventBus> {
        Arc::new(InProcBus::new(InProcSettings { publish_timeout, ..Default::default() }))
    }

    #[tokio::test]
    async fn publish_without_any_group_is_refused() {
        let bus = bus_with_timeout(Duration::from_secs(1));
        let err = bus.publish("nobody-reads", "e1", payload("e1")).await.unwrap_err();
        assert!(matches!(err, BusError::NoSubscribers), "{err}");
    }

    #[tokio::test]
    async fn publish_returns_only_once_every_group_settled_the_event() {
        let bus = bus_with_timeout(Duration::from_secs(5));
        let mut acks = bus.subscribe("s", "acks", "c").await.unwrap();
        let mut rejects = bus.subscribe("s", "rejects", "c").await.unwrap();
        let publishing = publish_bg(&bus, "s", &["e1"]);

        let got = read_n(&mut acks, 1).await;
        acks.ack(&got[0]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!publishing.is_finished(), "publish returned before the second group settled");

        let got = read_n(&mut rejects, 1).await;
        rejects.dead_letter(&got[0], "no").await.unwrap();
        tokio::time::timeout(Duration::from_secs(1), publishing).await.unwrap().unwrap().unwrap();
    }

    #[tokio::test]
    async fn publish_times_out_and_a_repeat_does_not_duplicate() {
        let bus = bus_with_timeout(Duration::from_millis(300));
        let mut fast = bus.subscribe("s", "fast", "c").await.unwrap();
        let mut slow = bus.subscribe("s", "slow", "c").await.unwrap();

        let publishing = publish_bg(&bus, "s", &["e1"]);
        let got = read_n(&mut fast, 1).await;
        fast.ack(&got[0]).await.unwrap();
        let err = publishing.await.unwrap().unwrap_err();
        assert!(matches!(err, BusError::Timeout), "{err}");

        // The relay retries the same row: still timed out (slow has not read), nothing queued twice.
        let err = bus.publish("s", "e1", payload("e1")).await.unwrap_err();
        assert!(matches!(err, BusError::Timeout), "{err}");
        let slow_got = slow.next_batch(10, Duration::from_millis(100)).await.unwrap();
        assert_eq!(slow_got.len(), 1, "{slow_got:?}");
        assert!(
            fast.next_batch(10, Duration::from_millis(100)).await.unwrap().is_empty(),
            "fast got e1 twice"
        );

        // A retry while slow holds the delivery waits for that same delivery.
        let retrying = publish_bg(&bus, "s", &["e1"]);
        tokio::time::sleep(Duration::from_millis(50)).await;
        slow.ack(&slow_got[0]).await.unwrap();
        retrying.await.unwrap().unwrap();

        // Once settled everywhere, a late repeat returns at once and delivers nothing.
        bus.publish("s", "e1", payload("e1")).await.unwrap();
        assert!(fast.next_batch(10, Duration::from_millis(100)).await.unwrap().is_empty());
        assert!(slow.next_batch(10, Duration::from_millis(100)).await.unwrap().is_empty());
    }
}

mod redis {
    use std::time::Duration;

    use detour_events::bus::EventBus;
    use detour_events::{RedisBus, RedisSettings};

    use crate::common::*;

    #[tokio::test]
    async fn a_group_created_after_publishing_still_gets_earlier_events() {
        let bus = Transport::Redis.bus();
        let stream = unique("late-group");
        bus.publish(&stream, "e1", payload("e1")).await.unwrap();
        let mut sub = bus.subscribe(&stream, "late", "c").await.unwrap();
        let got = read_n(&mut sub, 1).await;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].event_id, "e1");
        sub.ack(&got[0]).await.unwrap();
    }

    #[tokio::test]
    async fn a_foreign_entry_is_dead_lettered_not_redelivered() {
        let bus = Transport::Redis.bus();
        let stream = unique("foreign");
        let mut sub = bus.subscribe(&stream, "g", "c").await.unwrap();
        let client = redis::Client::open(detour_storage::testing::redis_url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let _: String = redis::cmd("XADD")
            .arg(&stream)
            .arg("*")
            .arg("hello")
            .arg("world")
            .query_async(&mut conn)
            .await
            .unwrap();

        assert!(sub.next_batch(10, Duration::from_millis(200)).await.unwrap().is_empty());
        let dead = bus.dead_letters(&stream).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert!(dead[0].reason.contains("malformed"), "{}", dead[0].reason);
        tokio::time::sleep(RETRY_DELAY * 2).await;
        assert!(sub.next_batch(10, Duration::from_millis(100)).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_deleted_stream_gets_its_group_back() {
        let bus = Transport::Redis.bus();
        let stream = unique("deleted");
        let mut sub = bus.subscribe(&stream, "g", "c").await.unwrap();
        let client = redis::Client::open(detour_storage::testing::redis_url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let _: i64 = redis::cmd("DEL").arg(&stream).query_async(&mut conn).await.unwrap();

        assert!(sub.next_batch(10, Duration::from_millis(50)).await.is_err(), "the group is gone");
        bus.publish(&stream, "e1", payload("e1")).await.unwrap();
        let got = read_n(&mut sub, 1).await;
        assert_eq!(got.len(), 1, "the consumer did not recover");
        sub.ack(&got[0]).await.unwrap();
    }

    #[tokio::test]
    async fn an_unreachable_server_fails_fast_instead_of_hanging() {
        let settings = RedisSettings {
            connect_timeout: Duration::from_millis(200),
            reconnect_retries: 0,
            ..Default::default()
        };
        // Port 1 on loopback: nothing listens there.
        let bus = RedisBus::new("redis://127.0.0.1:1", settings).unwrap();
        let started = std::time::Instant::now();
        assert!(bus.ping().await.is_err());
        assert!(bus.publish("s", "e1", payload("e1")).await.is_err());
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
        Transport::Redis.bus().ping().await.unwrap();
    }

    struct NeverCalled;

    #[async_trait::async_trait]
    impl detour_events::EventHandler for NeverCalled {
        async fn handle(
            &self,
            _: &str,
            _: detour_proto::events::v1::Envelope,
        ) -> Result<(), detour_events::HandlerError> {
            panic!("no event can arrive from an unreachable server");
        }
    }

    #[tokio::test]
    async fn a_consumer_keeps_going_while_the_server_is_unreachable() {
        let settings = RedisSettings {
            connect_timeout: Duration::from_millis(100),
            reconnect_retries: 0,
            ..Default::default()
        };
        let bus = std::sync::Arc::new(RedisBus::new("redis://127.0.0.1:1", settings).unwrap());
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = detour_events::EventMetrics::register(&mut registry);
        let shutdown = tokio_util::sync::CancellationToken::new();
        let consumer = detour_events::spawn_consumer(
            bus,
            detour_events::ConsumerSettings::new("s", "g", "c"),
            std::sync::Arc::new(NeverCalled),
            metrics,
            shutdown.clone(),
        );
        let series = "events_consumer_transport_errors_total{stream=\"s\",group=\"g\"}";
        eventually(Duration::from_secs(5), "repeated transport errors", || async {
            metric(&registry, series).filter(|n| *n >= 2.0)
        })
        .await;
        assert!(!consumer.is_finished(), "the consumer gave up");
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(2), consumer).await.unwrap().unwrap();
    }
}

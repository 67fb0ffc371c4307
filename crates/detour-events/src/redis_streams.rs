//! The production event bus: Redis Streams with consumer groups.
//!
//! Each event is one stream entry with the fields `event_id` and `payload`. Each consuming
//! service is a consumer group; its replicas are the group's consumers and share the work.
//! An entry a consumer has read but not acked stays in the group's pending list; once it has
//! been idle for [`RedisSettings::retry_delay`], any consumer of the group claims it again.
//! That one mechanism serves both `retry_later` and a consumer that crashed mid-delivery.
//!
//! Dead letters go to the stream `{stream}.dlq` with the fields `event_id`, `group`, `reason`
//! and `payload`.
//!
//! Durability is the Redis server's: a publish is acknowledged once the entry is in memory, so a
//! production server needs AOF persistence (or replication) for "Ok means every group will get
//! it" to survive a Redis restart.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::streams::{
    StreamClaimReply, StreamId, StreamPendingCountReply, StreamRangeReply, StreamReadReply,
};
use redis::{AsyncConnectionConfig, Client, RedisError};
use tokio::sync::OnceCell;

use crate::bus::{BusError, DeadLetter, Delivery, EventBus, Subscription};

#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// How long an un-acked entry stays with the consumer that read it before another consumer
    /// of the group may claim it: the delay before a retry, and how soon a crashed consumer's
    /// entries move on. A handler that runs longer than this may see its event handled a second
    /// time by another replica, which the idempotency record absorbs.
    pub retry_delay: Duration,
    /// Timeout of one connection attempt.
    pub connect_timeout: Duration,
    /// Timeout of one non-blocking command (blocking reads get their block time on top).
    pub command_timeout: Duration,
    /// How many times the shared connection retries connecting before a command fails.
    pub reconnect_retries: usize,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            retry_delay: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(2),
            command_timeout: Duration::from_secs(2),
            reconnect_retries: 2,
        }
    }
}

/// Redis Streams transport. Cloning shares the connection.
#[derive(Clone)]
pub struct RedisBus {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    settings: RedisSettings,
    /// Shared by publishes and by every subscription's non-blocking commands. Created on first
    /// use, so a bus can be built synchronously, before Redis is reachable.
    commands: OnceCell<ConnectionManager>,
}

impl fmt::Debug for RedisBus {
    // The URL may carry a password: show the settings only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBus").field("settings", &self.inner.settings).finish_non_exhaustive()
    }
}

impl RedisBus {
    /// Checks the URL; connects on first use.
    pub fn new(url: &str, settings: RedisSettings) -> Result<Self, BusError> {
        let client = Client::open(url).map_err(|e| BusError::InvalidUrl(e.to_string()))?;
        Ok(Self { inner: Arc::new(Inner { client, settings, commands: OnceCell::new() }) })
    }
}

fn dlq_stream(stream: &str) -> String {
    format!("{stream}.dlq")
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Inner {
    /// The shared command connection. The manager reconnects by itself after a failure.
    async fn commands(&self) -> Result<ConnectionManager, BusError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.settings.connect_timeout))
            .set_response_timeout(Some(self.settings.command_timeout))
            .set_number_of_retries(self.settings.reconnect_retries);
        let manager = self
            .commands
            .get_or_try_init(|| ConnectionManager::new_with_config(self.client.clone(), config))
            .await?;
        Ok(manager.clone())
    }

    /// A connection of its own for one subscription's blocking reads, which would otherwise
    /// hold up every command queued behind them on the shared connection.
    async fn blocking_connection(&self) -> Result<MultiplexedConnection, BusError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.settings.connect_timeout))
            .set_response_timeout(None);
        Ok(self.client.get_multiplexed_async_connection_with_config(&config).await?)
    }

    /// Creates the group reading from the start of the stream, so nothing published before the
    /// group's first consumer started is missed.
    async fn ensure_group(&self, stream: &str, group: &str) -> Result<(), BusError> {
        let mut conn = self.commands().await?;
        let created: Result<(), RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(stream)
            .arg(group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match created {
            Err(e) if e.code() != Some("BUSYGROUP") => Err(e.into()),
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl EventBus for RedisBus {
    async fn publish(&self, stream: &str, event_id: &str, payload: Bytes) -> Result<(), BusError> {
        let mut conn = self.inner.commands().await?;
        let _id: String = redis::cmd("XADD")
            .arg(stream)
            .arg("*")
            .arg("event_id")
            .arg(event_id)
            .arg("payload")
            .arg(payload.as_ref())
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn subscribe(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
    ) -> Result<Box<dyn Subscription>, BusError> {
        self.inner.ensure_group(stream, group).await?;
        Ok(Box::new(RedisSubscription {
            inner: self.inner.clone(),
            stream: stream.to_owned(),
            group: group.to_owned(),
            consumer: consumer.to_owned(),
            reader: None,
            held: Vec::new(),
            touched: Instant::now(),
        }))
    }

    async fn ping(&self) -> Result<(), BusError> {
        let mut conn = self.inner.commands().await?;
        let _pong: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }

    async fn dead_letters(&self, stream: &str) -> Result<Vec<DeadLetter>, BusError> {
        let mut conn = self.inner.commands().await?;
        let reply: StreamRangeReply =
            redis::cmd("XRANGE").arg(dlq_stream(stream)).arg("-").arg("+").query_async(&mut conn).await?;
        Ok(reply
            .ids
            .iter()
            .map(|entry| DeadLetter {
                event_id: entry.get("event_id").unwrap_or_default(),
                group: entry.get("group").unwrap_or_default(),
                reason: entry.get("reason").unwrap_or_default(),
                payload: entry.get::<Vec<u8>>("payload").map(Bytes::from).unwrap_or_default(),
            })
            .collect())
    }
}

struct RedisSubscription {
    inner: Arc<Inner>,
    stream: String,
    group: String,
    consumer: String,
    /// Dropped after any error, and opened again on the next read.
    reader: Option<MultiplexedConnection>,
    /// Entries of the last batch not yet settled, and when their idle time was last reset.
    /// While the consumer works through a batch, the entries still waiting their turn are
    /// touched now and then, so that the other replicas do not take them for abandoned just
    /// because the entries before them took a while; a consumer that stops making progress stops
    /// touching them, and they move on after the retry delay as intended.
    held: Vec<String>,
    touched: Instant,
}

impl RedisSubscription {
    /// Forgets a settled delivery and, when half the retry delay has passed since the last
    /// touch, resets the idle time of the batch's remaining entries. The delivery itself is
    /// settled already, so a failed touch is only logged: at worst another replica handles one
    /// of the remaining entries too.
    async fn settled(&mut self, delivery: &Delivery) {
        self.held.retain(|id| *id != delivery.transport_id);
        if self.held.is_empty() || self.touched.elapsed() < self.inner.settings.retry_delay / 2 {
            return;
        }
        let mut touch = redis::cmd("XCLAIM");
        touch.arg(&self.stream).arg(&self.group).arg(&self.consumer).arg(0);
        for id in &self.held {
            touch.arg(id);
        }
        touch.arg("JUSTID");
        let touched: Result<Vec<String>, BusError> = match self.inner.commands().await {
            Ok(mut conn) => touch.query_async(&mut conn).await.map_err(BusError::from),
            Err(e) => Err(e),
        };
        match touched {
            Ok(_) => self.touched = Instant::now(),
            Err(e) => tracing::debug!(
                stream = %self.stream, group = %self.group, error = %e,
                "could not reset the idle time of held deliveries"
            ),
        }
    }

    /// Claims entries of this group that have waited longer than the retry delay, whoever read
    /// them (a consumer that asked to retry, or one that died holding them).
    async fn reclaim(&mut self, max: usize) -> Result<Vec<Delivery>, BusError> {
        let mut conn = self.inner.commands().await?;
        let idle = millis(self.inner.settings.retry_delay);
        let pending: StreamPendingCountReply = redis::cmd("XPENDING")
            .arg(&self.stream)
            .arg(&self.group)
            .arg("IDLE")
            .arg(idle)
            .arg("-")
            .arg("+")
            .arg(max)
            .query_async(&mut conn)
            .await?;
        if pending.ids.is_empty() {
            return Ok(Vec::new());
        }
        // XCLAIM checks the idle time again, so of two consumers racing for an entry only one
        // gets it.
        let mut claim = redis::cmd("XCLAIM");
        claim.arg(&self.stream).arg(&self.group).arg(&self.consumer).arg(idle);
        for entry in &pending.ids {
            claim.arg(&entry.id);
        }
        let claimed: StreamClaimReply = claim.query_async(&mut conn).await?;
        let mut deliveries = Vec::with_capacity(claimed.ids.len());
        for entry in claimed.ids {
            // XPENDING counted deliveries before this claim, which is one more.
            let delivered = pending.ids.iter().find(|p| p.id == entry.id).map_or(1, |p| p.times_delivered);
            let attempt = u32::try_from(delivered.saturating_add(1)).unwrap_or(u32::MAX);
            if let Some(delivery) = self.delivery_or_dead_letter(entry, attempt).await? {
                deliveries.push(delivery);
            }
        }
        Ok(deliveries)
    }

    async fn read_new(&mut self, max: usize, block: Duration) -> Result<Vec<Delivery>, BusError> {
        let mut read = redis::cmd("XREADGROUP");
        read.arg("GROUP").arg(&self.group).arg(&self.consumer).arg("COUNT").arg(max);
        // BLOCK 0 would mean forever.
        let block_ms = millis(block);
        if block_ms > 0 {
            read.arg("BLOCK").arg(block_ms);
        }
        read.arg("STREAMS").arg(&self.stream).arg(">");

        let mut reader = match self.reader.take() {
            Some(reader) => reader,
            None => self.inner.blocking_connection().await?,
        };
        // The reader has no response timeout of its own (reads block on purpose), so bound the
        // wait here: a connection that silently died must not hang the consumer.
        let limit = block + self.inner.settings.command_timeout;
        let reply: Option<StreamReadReply> =
            match tokio::time::timeout(limit, read.query_async(&mut reader)).await {
                Ok(Ok(reply)) => reply,
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => {
                    return Err(RedisError::from(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "XREADGROUP did not answer in time",
                    ))
                    .into());
                }
            };
        self.reader = Some(reader);

        let mut deliveries = Vec::new();
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            for entry in key.ids {
                if let Some(delivery) = self.delivery_or_dead_letter(entry, 1).await? {
                    deliveries.push(delivery);
                }
            }
        }
        Ok(deliveries)
    }

    /// An entry without our two fields was not written by this crate and can never be handled:
    /// it goes to the dead-letter stream at once instead of being redelivered forever.
    async fn delivery_or_dead_letter(
        &self,
        entry: StreamId,
        attempt: u32,
    ) -> Result<Option<Delivery>, BusError> {
        let event_id: Option<String> = entry.get("event_id");
        let payload: Option<Vec<u8>> = entry.get("payload");
        match (event_id, payload) {
            (Some(event_id), Some(payload)) => Ok(Some(Delivery {
                transport_id: entry.id,
                event_id,
                payload: Bytes::from(payload),
                attempt,
            })),
            (event_id, payload) => {
                tracing::warn!(
                    stream = %self.stream, group = %self.group, entry = %entry.id,
                    "stream entry lacks event_id or payload; dead-lettering it"
                );
                let delivery = Delivery {
                    event_id: event_id.unwrap_or_else(|| entry.id.clone()),
                    transport_id: entry.id,
                    payload: payload.map(Bytes::from).unwrap_or_default(),
                    attempt,
                };
                self.move_to_dead_letters(&delivery, "malformed stream entry: missing event_id or payload")
                    .await?;
                Ok(None)
            }
        }
    }

    /// Adds to the dead-letter stream and acks in one MULTI/EXEC, so an entry is never both
    /// dead-lettered and redelivered, nor acked and lost.
    async fn move_to_dead_letters(&self, delivery: &Delivery, reason: &str) -> Result<(), BusError> {
        let mut conn = self.inner.commands().await?;
        redis::pipe()
            .atomic()
            .cmd("XADD")
            .arg(dlq_stream(&self.stream))
            .arg("*")
            .arg("event_id")
            .arg(&delivery.event_id)
            .arg("group")
            .arg(&self.group)
            .arg("reason")
            .arg(reason)
            .arg("payload")
            .arg(delivery.payload.as_ref())
            .ignore()
            .cmd("XACK")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(&delivery.transport_id)
            .ignore()
            .exec_async(&mut conn)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Subscription for RedisSubscription {
    async fn next_batch(&mut self, max: usize, block: Duration) -> Result<Vec<Delivery>, BusError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        self.held.clear();
        let mut batch = self.reclaim(max).await;
        if batch.as_ref().is_ok_and(Vec::is_empty) {
            batch = self.read_new(max, block).await;
        }
        let batch = match batch {
            Err(BusError::Redis(e)) if e.code() == Some("NOGROUP") => {
                // The stream key was deleted (or Redis flushed): make the group again so that
                // the next read works. Whatever the key held is gone.
                self.inner.ensure_group(&self.stream, &self.group).await?;
                return Err(e.into());
            }
            other => other?,
        };
        self.held = batch.iter().map(|d| d.transport_id.clone()).collect();
        self.touched = Instant::now();
        Ok(batch)
    }

    async fn ack(&mut self, delivery: &Delivery) -> Result<(), BusError> {
        let mut conn = self.inner.commands().await?;
        let _acked: i64 = redis::cmd("XACK")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(&delivery.transport_id)
            .query_async(&mut conn)
            .await?;
        self.settled(delivery).await;
        Ok(())
    }

    async fn retry_later(&mut self, delivery: &Delivery) -> Result<(), BusError> {
        // The entry stays pending. Claiming it again with min-idle 0 and JUSTID resets its idle
        // time without counting a delivery, so the retry delay runs from now rather than from
        // when the entry was read.
        let mut conn = self.inner.commands().await?;
        let _ids: Vec<String> = redis::cmd("XCLAIM")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(&self.consumer)
            .arg(0)
            .arg(&delivery.transport_id)
            .arg("JUSTID")
            .query_async(&mut conn)
            .await?;
        self.settled(delivery).await;
        Ok(())
    }

    async fn dead_letter(&mut self, delivery: &Delivery, reason: &str) -> Result<(), BusError> {
        self.move_to_dead_letters(delivery, reason).await?;
        self.settled(delivery).await;
        Ok(())
    }
}

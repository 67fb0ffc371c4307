//! Starts the suite in-process through the same entry points the binaries use, and drives it
//! only through its public gRPC interfaces.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod lifecycle;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use detour_events::EventBus;
use detour_server::{HostError, ServiceModule, Settings};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// A running host (one or several services) that stops when asked.
pub struct Server {
    pub url: String,
    stop: CancellationToken,
    task: JoinHandle<Result<(), HostError>>,
}

impl Server {
    /// Binds port 0 and serves `modules` with `bus`, waiting until every module is SERVING.
    pub async fn start(settings: &Settings, modules: &[ServiceModule], bus: Arc<dyn EventBus>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        let task = {
            let settings = settings.clone();
            let modules = modules.to_vec();
            let stop = stop.clone();
            tokio::spawn(async move {
                detour_server::host::serve(&settings, &modules, bus, listener, None, stop.cancelled_owned())
                    .await
            })
        };
        let server = Server { url, stop, task };
        for m in modules {
            server.wait_serving(m.grpc_service).await;
        }
        server
    }

    pub async fn wait_serving(&self, service: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(channel) = Channel::from_shared(self.url.clone()).unwrap().connect().await {
                let status = HealthClient::new(channel)
                    .check(HealthCheckRequest { service: service.to_owned() })
                    .await
                    .map(|r| r.into_inner().status);
                if matches!(status, Ok(s) if s == ServingStatus::Serving as i32) {
                    return;
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "{service} at {} never became SERVING", self.url);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url.clone()).unwrap().connect().await.unwrap()
    }

    /// SIGTERM-equivalent: the host's full shutdown sequence.
    pub async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// Polls `f` until it returns `Some`, failing the test after `within`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Settings for tests: quiet, quick to drain.
pub fn test_settings() -> Settings {
    Settings { drain_timeout_secs: 5, log: "warn".into(), ..Settings::default() }
}

/// A Redis logical database to itself, emptied, so parallel test binaries never share streams.
pub async fn fresh_redis(db: u8) -> String {
    let base = detour_storage::testing::redis_url();
    let url = format!("{}/{db}", base.trim_end_matches('/'));
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("FLUSHDB").query_async(&mut conn).await.unwrap();
    url
}

//! Ceiling A: a bare tonic unary echo server in this process, driven by the same generator
//! with the same connections and concurrency as intake. What intake reaches is stated as a
//! share of this, which carries across machines where absolute rates do not.

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use crate::client::{Authed, pick};
use crate::error::StormError;
use crate::load::Target;
use crate::stats::Outcome;

#[allow(clippy::all, clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs, unreachable_pub)]
pub mod pb {
    tonic::include_proto!("detour.bench.v1");
}

use pb::echo_client::EchoClient;
use pb::echo_server::{Echo, EchoServer as EchoService};

#[derive(Debug, Default, Clone, Copy)]
struct Echoer;

#[tonic::async_trait]
impl Echo for Echoer {
    async fn echo(&self, request: Request<pb::EchoRequest>) -> Result<Response<pb::EchoResponse>, Status> {
        Ok(Response::new(pb::EchoResponse { payload: request.into_inner().payload }))
    }
}

/// The running echo server.
#[derive(Debug)]
pub struct EchoServer {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl EchoServer {
    /// Serves on `addr` (`127.0.0.1:0` for any free port).
    pub async fn start(addr: SocketAddr) -> Result<Self, StormError> {
        let listener =
            TcpListener::bind(addr).await.map_err(|e| StormError::io(format!("echo server on {addr}"), e))?;
        let addr = listener.local_addr().map_err(|e| StormError::io("echo server address", e))?;
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let (tx, rx) = oneshot::channel::<()>();
        let serve = tonic::transport::Server::builder()
            // The suite's default streams per connection, so both servers take the same load.
            .max_concurrent_streams(200)
            .add_service(EchoService::new(Echoer))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = rx.await;
            });
        Ok(Self { addr, shutdown: Some(tx), task: tokio::spawn(serve) })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn stop(mut self) -> Result<(), StormError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match (&mut self.task).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StormError::Scenario(format!("echo server: {e}"))),
            Err(e) => Err(StormError::Scenario(format!("echo server task: {e}"))),
        }
    }
}

/// Calls Echo with a fixed payload.
#[derive(Debug, Clone)]
pub struct EchoTarget {
    pool: Vec<Authed>,
    payload: Vec<u8>,
}

impl EchoTarget {
    pub fn new(pool: Vec<Authed>, payload: Vec<u8>) -> Self {
        Self { pool, payload }
    }
}

impl Target for EchoTarget {
    fn call(&self, seq: u64) -> impl Future<Output = Outcome> + Send {
        let channel = pick(&self.pool, seq);
        let payload = self.payload.clone();
        async move {
            let Some(channel) = channel else { return Outcome::error("NO_CONNECTION") };
            match EchoClient::new(channel).echo(pb::EchoRequest { payload }).await {
                Ok(_) => Outcome::ok(None),
                Err(status) => Outcome::from_status(&status),
            }
        }
    }
}

//! The notification sink speaks the provider contract the suite's notifier uses.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn post(addr: std::net::SocketAddr, key: Option<&str>, body: &str) -> (u16, serde_json::Value) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let key = key.map(|k| format!("Idempotency-Key: {k}\r\n")).unwrap_or_default();
    let request = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: sink\r\nContent-Type: application/json\r\n{key}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answer)).await.unwrap().unwrap();
    let status: u16 = answer.split(' ').nth(1).unwrap().parse().unwrap();
    let json = answer.split("\r\n\r\n").nth(1).unwrap_or("null");
    (status, serde_json::from_str(json).unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
async fn messages_are_accepted_counted_and_replayed_by_idempotency_key() {
    let sink = detour_storm::sink::serve(TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    let addr = sink.addr();
    let sms = r#"{"channel":"sms","to":"+8613900000001","language":"zh","subject":"","body":"航班取消"}"#;
    let mail = r#"{"channel":"email","to":"t0000001@storm.invalid","language":"en","subject":"Flight","body":"Cancelled"}"#;

    let (status, first) = post(addr, Some("n-1"), sms).await;
    assert_eq!(status, 200);
    let id = first["id"].as_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok());
    let (_, again) = post(addr, Some("n-1"), sms).await;
    assert_eq!(again["id"].as_str(), Some(id.as_str()), "same key, same id");
    let (status, other) = post(addr, Some("n-2"), mail).await;
    assert_eq!(status, 200);
    assert_ne!(other["id"], first["id"]);
    let (status, _) = post(addr, None, mail).await;
    assert_eq!(status, 200);
    let (status, _) = post(addr, Some("n-3"), r#"{"channel":"sms"}"#).await;
    assert_eq!(status, 400);
    let (status, _) = post(addr, Some("n-4"), r#"{"channel":"","to":"x"}"#).await;
    assert_eq!(status, 422);

    let s = sink.snapshot();
    assert_eq!((s.accepted, s.replayed, s.refused), (3, 1, 2));
    assert_eq!(s.by_channel.get("sms"), Some(&1));
    assert_eq!(s.by_channel.get("email"), Some(&2));
    assert_eq!(s.by_language.get("en"), Some(&2));
    assert!(s.first_at.is_some() && s.last_at.is_some());
    assert!(s.first_instant <= s.last_instant);
    let s = sink.stop().await.unwrap();
    assert_eq!(s.accepted, 3);
}

#[tokio::test]
async fn the_sink_publishes_a_key_set_when_given_one() {
    let jwks = r#"{"keys":[{"kty":"EC","crv":"P-256","x":"a","y":"b","kid":"k"}]}"#;
    let sink = detour_storm::sink::serve_with_jwks(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        Some(jwks.into()),
    )
    .unwrap();
    let mut stream = TcpStream::connect(sink.addr()).await.unwrap();
    stream.write_all(b"GET /jwks.json HTTP/1.1\r\nHost: sink\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with(jwks), "{answer}");
    sink.stop().await.unwrap();

    // Without one there is nothing there.
    let sink = detour_storm::sink::serve(TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    let mut stream = TcpStream::connect(sink.addr()).await.unwrap();
    stream.write_all(b"GET /jwks.json HTTP/1.1\r\nHost: sink\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
}

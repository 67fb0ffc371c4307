//! SMS, push and WeChat against a local provider that records what it is sent.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/message.rs"]
mod message;
#[path = "support/provider.rs"]
mod provider;

use std::time::{Duration, Instant};

use detour_notify::{Language, Notifiers, NotifyChannel, NotifySettings, SendError};
use serde_json::json;

use message::{PHONE, message};
use provider::{Provider, Reply};

fn notifiers(url: &str, token: Option<&str>, timeout_ms: u64) -> Notifiers {
    let settings = NotifySettings {
        http_url: Some(url.to_owned()),
        http_token: token.map(str::to_owned),
        timeout_ms,
        ..NotifySettings::default()
    };
    Notifiers::from_settings(&settings).unwrap()
}

#[tokio::test]
async fn the_request_follows_the_contract() {
    let provider = Provider::start(Reply::Accept("prov-123")).await;
    let outgoing = message("ntf-0100", NotifyChannel::Sms, PHONE, Language::Zh);
    let receipt = notifiers(&provider.url, Some("t0k3n"), 0).send(&outgoing).await.unwrap();
    assert_eq!(receipt.provider_message_id, "prov-123");

    let requests = provider.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(
        request.json,
        json!({
            "channel": "sms",
            "to": PHONE,
            "language": "zh",
            "subject": outgoing.rendered.subject,
            "body": outgoing.rendered.body,
        })
    );
    assert!(outgoing.rendered.body.contains("CA981 航班已取消"), "{}", outgoing.rendered.body);
    assert_eq!(request.idempotency_key.as_deref(), Some("ntf-0100"));
    assert_eq!(request.authorization.as_deref(), Some("Bearer t0k3n"));
    assert_eq!(request.content_type.as_deref(), Some("application/json"));
}

#[tokio::test]
async fn without_a_token_there_is_no_authorization() {
    let provider = Provider::start(Reply::Accept("prov-1")).await;
    let outgoing = message("ntf-0101", NotifyChannel::Push, "trv_01J9", Language::En);
    notifiers(&provider.url, None, 0).send(&outgoing).await.unwrap();
    let request = &provider.requests()[0];
    assert_eq!(request.authorization, None);
    assert_eq!(request.json["channel"], "push");
    assert_eq!(request.json["to"], "trv_01J9");
}

#[tokio::test]
async fn statuses_decide_between_retry_and_next_channel() {
    let cases = [
        (500, true),
        (503, true),
        (429, true),
        (408, true),
        (400, false),
        (401, false),
        (404, false),
        (422, false),
    ];
    for (status, transient) in cases {
        let provider =
            Provider::start(Reply::Status(status, r#"{"error":"refused","message":"because"}"#)).await;
        let outgoing = message("ntf-0102", NotifyChannel::Wechat, "trv_01J9", Language::Zh);
        let err = notifiers(&provider.url, None, 0).send(&outgoing).await.unwrap_err();
        let expected = format!("provider {status}: refused: because");
        match (&err, transient) {
            (SendError::Transient { reason }, true) | (SendError::Permanent { reason }, false) => {
                assert_eq!(reason, &expected);
            }
            _ => panic!("{status}: {err:?}"),
        }
    }
}

#[tokio::test]
async fn a_receipt_without_an_id_is_retried() {
    let provider = Provider::start(Reply::Status(200, "{}")).await;
    let outgoing = message("ntf-0103", NotifyChannel::Sms, PHONE, Language::En);
    let err = notifiers(&provider.url, None, 0).send(&outgoing).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
}

#[tokio::test]
async fn a_slow_provider_times_out_as_transient() {
    let provider = Provider::start(Reply::Slow(Duration::from_secs(5))).await;
    let outgoing = message("ntf-0104", NotifyChannel::Sms, PHONE, Language::En);
    let started = Instant::now();
    let err = notifiers(&provider.url, None, 200).send(&outgoing).await.unwrap_err();
    assert_eq!(err, SendError::Transient { reason: "provider timed out".to_owned() });
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}

#[tokio::test]
async fn an_unreachable_provider_is_transient() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let outgoing = message("ntf-0105", NotifyChannel::Sms, PHONE, Language::En);
    let err = notifiers(&url, None, 0).send(&outgoing).await.unwrap_err();
    assert_eq!(err, SendError::Transient { reason: "provider unreachable".to_owned() });
}

//! Routing by channel, and the promise that no error carries personal data.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/message.rs"]
mod message;
#[path = "support/provider.rs"]
mod provider;
#[path = "support/smtp_server.rs"]
mod smtp_server;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use detour_notify::{
    Language, Notifiers, NotifyChannel, NotifySettings, OutgoingMessage, Receipt, SendError, Sender,
};

use message::{EMAIL, PERSONAL, PHONE, message};
use provider::{Provider, Reply};
use smtp_server::{SmtpServer, closed_port};

fn settings(smtp: Option<String>, http: Option<String>) -> NotifySettings {
    // Generous: the local servers answer at once unless the machine is busy with other tests.
    NotifySettings { smtp_url: smtp, http_url: http, timeout_ms: 5000, ..NotifySettings::default() }
}

#[tokio::test]
async fn email_goes_to_smtp_and_the_rest_to_the_provider() {
    let smtp = SmtpServer::start();
    let provider = Provider::start(Reply::Accept("prov-9")).await;
    let notifiers =
        Notifiers::from_settings(&settings(Some(smtp.url()), Some(provider.url.clone()))).unwrap();
    assert!(NotifyChannel::ALL.iter().all(|c| notifiers.supports(*c)));

    let receipt = notifiers.send(&message("ntf-1", NotifyChannel::Email, EMAIL, Language::En)).await.unwrap();
    assert_eq!(receipt.provider_message_id, "<ntf-1@detour.invalid>");
    assert_eq!(smtp.received().len(), 1);
    assert!(provider.requests().is_empty());

    for channel in [NotifyChannel::Sms, NotifyChannel::Push, NotifyChannel::Wechat] {
        let to = if channel == NotifyChannel::Sms { PHONE } else { "trv_01J9" };
        let receipt = notifiers.send(&message("ntf-2", channel, to, Language::Zh)).await.unwrap();
        assert_eq!(receipt.provider_message_id, "prov-9");
    }
    let channels: Vec<_> = provider.requests().iter().map(|r| r.json["channel"].clone()).collect();
    assert_eq!(channels, ["sms", "push", "wechat"]);
    assert_eq!(smtp.received().len(), 1);
}

#[tokio::test]
async fn a_channel_without_a_sender_is_not_configured() {
    let provider = Provider::start(Reply::Accept("prov-9")).await;
    let http_only = Notifiers::from_settings(&settings(None, Some(provider.url.clone()))).unwrap();
    assert!(!http_only.supports(NotifyChannel::Email));
    let err = http_only.send(&message("ntf-3", NotifyChannel::Email, EMAIL, Language::En)).await.unwrap_err();
    assert_eq!(err, SendError::NotConfigured { channel: NotifyChannel::Email });
    assert_eq!(err.to_string(), "no sender is configured for email");

    let smtp = SmtpServer::start();
    let smtp_only = Notifiers::from_settings(&settings(Some(smtp.url()), None)).unwrap();
    for channel in [NotifyChannel::Sms, NotifyChannel::Push, NotifyChannel::Wechat] {
        assert!(!smtp_only.supports(channel));
        let err = smtp_only.send(&message("ntf-4", channel, PHONE, Language::En)).await.unwrap_err();
        assert_eq!(err, SendError::NotConfigured { channel });
    }
}

struct Recording(Mutex<Vec<String>>);

#[async_trait]
impl Sender for Recording {
    async fn send(&self, message: &OutgoingMessage) -> Result<Receipt, SendError> {
        self.0.lock().unwrap().push(message.notification_id.clone());
        Ok(Receipt { provider_message_id: "recorded".to_owned() })
    }
}

#[tokio::test]
async fn another_sender_can_take_a_channel_and_ids_are_checked_first() {
    let recording = Arc::new(Recording(Mutex::new(Vec::new())));
    let notifiers = Notifiers::default().with_sender(NotifyChannel::Wechat, recording.clone());
    assert!(notifiers.supports(NotifyChannel::Wechat) && !notifiers.supports(NotifyChannel::Sms));
    notifiers.send(&message("ntf-5", NotifyChannel::Wechat, "trv_1", Language::Zh)).await.unwrap();
    let err = notifiers.send(&message("ntf 6\r\nBcc: x", NotifyChannel::Wechat, "trv_1", Language::Zh)).await;
    assert!(matches!(err, Err(SendError::Permanent { .. })), "{err:?}");
    assert_eq!(*recording.0.lock().unwrap(), ["ntf-5"]);
}

/// Every failure this crate produces, with servers that echo what they were sent the way real
/// ones do.
#[tokio::test]
async fn no_error_carries_personal_data() {
    let mut errors = Vec::new();
    let mut send = async |notifiers: &Notifiers, channel: NotifyChannel, to: &str| {
        for language in [Language::En, Language::Zh] {
            let outgoing = message("ntf-7", channel, to, language);
            errors.push(notifiers.send(&outgoing).await.expect_err("a failure"));
        }
    };

    let refusing =
        SmtpServer::refusing_recipients(550, &format!("5.1.1 <{EMAIL}>: Recipient address rejected"));
    let n = Notifiers::from_settings(&settings(Some(refusing.url()), None)).unwrap();
    send(&n, NotifyChannel::Email, EMAIL).await;
    let busy =
        SmtpServer::refusing_recipients(451, &format!("4.3.0 {EMAIL} greylisted, call +86 138 0013 8000"));
    let n = Notifiers::from_settings(&settings(Some(busy.url()), None)).unwrap();
    send(&n, NotifyChannel::Email, EMAIL).await;
    let n = Notifiers::from_settings(&settings(Some(format!("smtp://{}", closed_port())), None)).unwrap();
    send(&n, NotifyChannel::Email, EMAIL).await;
    send(&n, NotifyChannel::Email, "Li Wei <li.wei@@example.com>").await;

    let bodies = [
        (400, r#"{"error":"invalid_recipient","message":"+8613800138000 (li.wei@example.com) unknown"}"#),
        (500, "upstream failed for 8613800138000"),
    ];
    for (status, body) in bodies {
        let provider = Provider::start(Reply::Status(status, body)).await;
        let n = Notifiers::from_settings(&settings(None, Some(provider.url.clone()))).unwrap();
        send(&n, NotifyChannel::Sms, PHONE).await;
    }
    let echo = Provider::start(Reply::Echo(422)).await;
    let n = Notifiers::from_settings(&settings(None, Some(echo.url.clone()))).unwrap();
    send(&n, NotifyChannel::Sms, PHONE).await;
    send(&n, NotifyChannel::Wechat, PHONE).await;
    let slow = Provider::start(Reply::Slow(std::time::Duration::from_secs(3))).await;
    let n = Notifiers::from_settings(&NotifySettings {
        timeout_ms: 300,
        ..settings(None, Some(slow.url.clone()))
    })
    .unwrap();
    send(&n, NotifyChannel::Sms, PHONE).await;
    send(&Notifiers::default(), NotifyChannel::Sms, PHONE).await;

    assert_eq!(errors.len(), 20);
    for err in &errors {
        let shown = format!("{err:?} | {err}");
        for personal in PERSONAL {
            assert!(!shown.contains(personal), "{personal} in {shown}");
        }
    }
    assert!(shown_has(&errors, "provider 422: [provider text withheld: it quotes the message]"));
    // The provider's own words survive where they carry no personal data.
    assert!(shown_has(&errors, "smtp 550: 5.1.1 <[redacted]>: Recipient address rejected"));
    assert!(shown_has(&errors, "smtp 451: 4.3.0 [redacted] greylisted, call [redacted]"));
    assert!(shown_has(&errors, "provider 400: invalid_recipient: [redacted] [redacted] unknown"));
    assert!(shown_has(&errors, "provider 500: upstream failed for [redacted]"));
}

fn shown_has(errors: &[SendError], text: &str) -> bool {
    let found = errors.iter().any(|e| e.to_string().contains(text));
    if !found {
        eprintln!("{text:?} not among {errors:#?}");
    }
    found
}

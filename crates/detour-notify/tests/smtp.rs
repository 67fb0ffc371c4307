//! E-mail against a real SMTP server started in the test (see `support/smtp_server.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/message.rs"]
mod message;
#[path = "support/smtp_server.rs"]
mod smtp_server;

use detour_notify::{Language, Notifiers, NotifyChannel, NotifySettings, Rendered, SendError};
use mail_parser::{MessageParser, MimeHeaders};

use message::{EMAIL, message};
use smtp_server::{SmtpServer, closed_port};

fn notifiers(url: String) -> Notifiers {
    let settings = NotifySettings {
        smtp_url: Some(url),
        smtp_from: "Detour 客服 <care@detour.test>".to_owned(),
        timeout_ms: 2000,
        ..NotifySettings::default()
    };
    Notifiers::from_settings(&settings).unwrap()
}

fn lf(text: &str) -> String {
    text.replace("\r\n", "\n")
}

#[tokio::test]
async fn a_chinese_email_arrives_intact() {
    let server = SmtpServer::start();
    let outgoing = message("ntf-0001", NotifyChannel::Email, EMAIL, Language::Zh);
    let receipt = notifiers(server.url()).send(&outgoing).await.unwrap();
    assert_eq!(receipt.provider_message_id, "<ntf-0001@detour.test>");

    let received = server.received();
    assert_eq!(received.len(), 1);
    let mail = &received[0];
    assert!(mail.mail_from.contains("care@detour.test"), "{}", mail.mail_from);
    assert_eq!(mail.rcpt_to.len(), 1);
    assert!(mail.rcpt_to[0].contains(EMAIL), "{:?}", mail.rcpt_to);

    let parsed = MessageParser::default().parse(&mail.data).expect("a MIME message");
    let from = parsed.from().and_then(|a| a.first()).unwrap();
    assert_eq!(from.address(), Some("care@detour.test"));
    assert_eq!(from.name(), Some("Detour 客服"));
    assert_eq!(parsed.to().and_then(|a| a.first()).and_then(|a| a.address()), Some(EMAIL));
    assert_eq!(parsed.subject(), Some(outgoing.rendered.subject.as_str()));
    assert!(outgoing.rendered.subject.contains("航班取消"), "{}", outgoing.rendered.subject);
    assert_eq!(parsed.message_id(), Some("ntf-0001@detour.test"));
    assert_eq!(parsed.header_raw("X-Detour-Notification").map(str::trim), Some("ntf-0001"));
    let content_type = parsed.content_type().unwrap();
    assert_eq!((content_type.ctype(), content_type.subtype()), ("text", Some("plain")));
    assert_eq!(content_type.attribute("charset").map(str::to_ascii_lowercase).as_deref(), Some("utf-8"));
    let body = parsed.body_text(0).unwrap();
    assert_eq!(lf(body.trim_end()), lf(&outgoing.rendered.body));
    assert!(body.contains("尊敬的李伟，您好") && body.contains("大雪"), "{body}");
}

#[tokio::test]
async fn lines_starting_with_a_dot_survive_the_data_phase() {
    let server = SmtpServer::start();
    let mut outgoing = message("ntf-dots", NotifyChannel::Email, EMAIL, Language::En);
    outgoing.rendered =
        Rendered { subject: "Dots".to_owned(), body: "first\n.\n..two\n.three\nlast".to_owned() };
    notifiers(server.url()).send(&outgoing).await.unwrap();
    let received = server.received();
    let parsed = MessageParser::default().parse(&received[0].data).unwrap();
    assert_eq!(lf(parsed.body_text(0).unwrap().trim_end()), outgoing.rendered.body);
}

#[tokio::test]
async fn an_unknown_mailbox_is_permanent() {
    let server = SmtpServer::refusing_recipients(550, "5.1.1 Mailbox unavailable");
    let outgoing = message("ntf-0002", NotifyChannel::Email, EMAIL, Language::En);
    let err = notifiers(server.url()).send(&outgoing).await.unwrap_err();
    let SendError::Permanent { reason } = &err else { panic!("{err:?}") };
    assert_eq!(reason, "smtp 550: 5.1.1 Mailbox unavailable");
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn a_full_mailbox_is_transient() {
    let server = SmtpServer::refusing_recipients(452, "4.2.2 Mailbox full, try later");
    let outgoing = message("ntf-0003", NotifyChannel::Email, EMAIL, Language::En);
    let err = notifiers(server.url()).send(&outgoing).await.unwrap_err();
    assert!(matches!(&err, SendError::Transient { reason } if reason.starts_with("smtp 452")), "{err:?}");
}

#[tokio::test]
async fn nothing_listening_is_transient() {
    let outgoing = message("ntf-0004", NotifyChannel::Email, EMAIL, Language::En);
    let err = notifiers(format!("smtp://{}", closed_port())).send(&outgoing).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
}

#[tokio::test]
async fn an_invalid_address_is_permanent_without_a_connection() {
    let outgoing = message("ntf-0005", NotifyChannel::Email, "not an address", Language::En);
    let err = notifiers(format!("smtp://{}", closed_port())).send(&outgoing).await.unwrap_err();
    assert_eq!(err, SendError::Permanent { reason: "recipient is not a valid e-mail address".to_owned() });
}

#[tokio::test]
async fn messages_one_after_another_share_one_connection() {
    let server = SmtpServer::start();
    let notifiers = notifiers(server.url());
    for i in 0..5 {
        let outgoing = message(&format!("ntf-pool-{i}"), NotifyChannel::Email, EMAIL, Language::En);
        notifiers.send(&outgoing).await.unwrap();
        // lettre parks a connection from a task of its own once the send is done; a message
        // that starts before that opens a second connection, which is right but not this test.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(server.received().len(), 5);
    assert_eq!(server.connections(), 1, "each message after the first reuses the parked connection");
}

#[tokio::test]
async fn a_connection_the_relay_dropped_is_replaced_without_losing_the_message() {
    let server = SmtpServer::one_message_per_connection();
    let notifiers = notifiers(server.url());
    for i in 0..3 {
        let outgoing = message(&format!("ntf-hangup-{i}"), NotifyChannel::Email, EMAIL, Language::En);
        notifiers.send(&outgoing).await.unwrap();
    }
    let ids: Vec<String> = server
        .received()
        .iter()
        .map(|m| MessageParser::default().parse(&m.data).unwrap().message_id().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["ntf-hangup-0@detour.test", "ntf-hangup-1@detour.test", "ntf-hangup-2@detour.test"]);
    assert_eq!(server.connections(), 3);
}

#[tokio::test]
async fn a_refused_message_leaves_the_next_one_a_clean_session() {
    let refusing = SmtpServer::refusing_recipients(550, "5.1.1 Mailbox unavailable");
    let notifiers = notifiers(refusing.url());
    let outgoing = message("ntf-refused", NotifyChannel::Email, EMAIL, Language::En);
    assert!(matches!(notifiers.send(&outgoing).await, Err(SendError::Permanent { .. })));
    assert!(matches!(notifiers.send(&outgoing).await, Err(SendError::Permanent { .. })));
    // The session that saw the refusal is not parked: the second message starts afresh.
    assert_eq!(refusing.connections(), 2);
}

/// Settings are validated, and senders built, before the runtime starts, and a process may drop
/// them after it stopped: neither may panic once the sender has pooled a connection.
#[test]
fn a_sender_outlives_the_runtime_it_sent_on() {
    let server = SmtpServer::start();
    let notifiers = notifiers(server.url());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let outgoing = message("ntf-outlives", NotifyChannel::Email, EMAIL, Language::En);
    runtime.block_on(notifiers.send(&outgoing)).unwrap();
    drop(runtime);
    drop(notifiers);
    assert_eq!(server.received().len(), 1);
}

//! E-mail through an SMTP relay (lettre on tokio, rustls with ring).

use std::error::Error as _;
use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::Mailbox;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::{AsyncSmtpTransportBuilder, PoolConfig};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use percent_encoding::percent_decode_str;

use crate::redact::provider_text;
use crate::settings::ConfigError;
use crate::{OutgoingMessage, Receipt, SendError, Sender};

const NOTIFICATION_HEADER: &str = "X-Detour-Notification";

/// Connections a sender keeps open between messages. More than this may be open while many
/// messages go at once; those are closed after their message instead of parked.
const PARKED_CONNECTIONS: u32 = 16;

/// Sends over pooled connections: a storm sends thousands of acknowledgements, and a new
/// connection costs a TCP handshake, the greeting, EHLO and often STARTTLS and AUTH, where a
/// parked one costs a NOOP to check it is still alive. A connection that saw any error is
/// dropped, not parked.
pub(crate) struct SmtpSender {
    builder: AsyncSmtpTransportBuilder,
    /// Built on the first send, inside the runtime: lettre's pool starts its cleanup task when
    /// built, and settings are validated (and senders built) before any runtime exists.
    transport: OnceLock<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
}

impl SmtpSender {
    pub(crate) fn new(url: &str, from: &str, timeout: Duration) -> Result<Self, ConfigError> {
        let bad_url = |problem: &str| ConfigError::new("smtp_url", problem);
        // Parse errors are not repeated: they may quote the password.
        let parsed = reqwest::Url::parse(url)
            .map_err(|_| bad_url("not a URL; expected smtp://, smtp+starttls:// or smtps://host:port"))?;
        let host = parsed.host_str().filter(|h| !h.is_empty()).ok_or_else(|| bad_url("has no host"))?;
        let tls_failed = |_| bad_url("TLS could not be set up for this host");
        let builder = match parsed.scheme() {
            "smtp" => {
                if !parsed.username().is_empty() || parsed.password().is_some() {
                    return Err(bad_url(
                        "credentials need smtp+starttls:// or smtps://; plain smtp:// would send them in clear",
                    ));
                }
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                    .port(parsed.port().unwrap_or(25))
            }
            "smtp+starttls" => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                .map_err(tls_failed)?
                .port(parsed.port().unwrap_or(587)),
            "smtps" => AsyncSmtpTransport::<Tokio1Executor>::relay(host)
                .map_err(tls_failed)?
                .port(parsed.port().unwrap_or(465)),
            _ => return Err(bad_url("scheme must be smtp, smtp+starttls or smtps")),
        };
        let builder = match (parsed.username(), parsed.password()) {
            ("", None) => builder,
            (user, password) => {
                let decode = |part: &str| {
                    percent_decode_str(part)
                        .decode_utf8()
                        .map(|s| s.into_owned())
                        .map_err(|_| bad_url("user or password is not UTF-8 once percent-decoded"))
                };
                builder.credentials(Credentials::new(decode(user)?, decode(password.unwrap_or_default())?))
            }
        };
        let from = from.parse::<Mailbox>().map_err(|_| {
            ConfigError::new("smtp_from", "not a mailbox; expected \"Name <address@domain>\"")
        })?;
        let pool = PoolConfig::new().max_size(PARKED_CONNECTIONS).idle_timeout(Duration::from_secs(30));
        Ok(Self {
            builder: builder.timeout(Some(timeout)).pool_config(pool),
            transport: OnceLock::new(),
            from,
        })
    }

    fn transport(&self) -> &AsyncSmtpTransport<Tokio1Executor> {
        self.transport.get_or_init(|| self.builder.clone().build())
    }

    fn build(&self, message: &OutgoingMessage, message_id: &str) -> Result<Message, SendError> {
        let to = message.to.expose().trim().parse::<Address>().map_err(|_| SendError::Permanent {
            reason: "recipient is not a valid e-mail address".to_owned(),
        })?;
        Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, to))
            .subject(message.rendered.subject.clone())
            .message_id(Some(message_id.to_owned()))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str(NOTIFICATION_HEADER),
                message.notification_id.clone(),
            ))
            .header(ContentType::TEXT_PLAIN)
            .body(message.rendered.body.clone())
            .map_err(|_| SendError::Permanent { reason: "e-mail could not be composed".to_owned() })
    }
}

#[async_trait]
impl Sender for SmtpSender {
    async fn send(&self, message: &OutgoingMessage) -> Result<Receipt, SendError> {
        // The same notification keeps the same Message-ID on every retry, so the receiving side
        // can recognise a duplicate when a reply was lost after the relay had accepted the mail.
        let message_id = format!("<{}@{}>", message.notification_id, self.from.email.domain());
        let email = self.build(message, &message_id)?;
        match self.transport().send(email).await {
            Ok(_) => Ok(Receipt { provider_message_id: message_id }),
            Err(error) => Err(classify(&error, message)),
        }
    }
}

impl Drop for SmtpSender {
    fn drop(&mut self) {
        // Dropping lettre's pool spawns its shutdown on the runtime. With no runtime left (a
        // process exiting after its runtime stopped), spawning would panic; the process is
        // ending, so the operating system closes the parked connections instead.
        if tokio::runtime::Handle::try_current().is_err()
            && let Some(transport) = self.transport.take()
        {
            std::mem::forget(transport);
        }
    }
}

fn classify(error: &lettre::transport::smtp::Error, message: &OutgoingMessage) -> SendError {
    let transient = |reason: &str| SendError::Transient { reason: reason.to_owned() };
    let permanent = |reason: &str| SendError::Permanent { reason: reason.to_owned() };
    if let Some(code) = error.status() {
        // The source of a reply error is the server's text, which often repeats the address.
        let text = error.source().map(|text| provider_text(&text.to_string(), message)).unwrap_or_default();
        let reason = format!("smtp {code}: {text}");
        return if error.is_permanent() { permanent(&reason) } else { transient(&reason) };
    }
    if error.is_timeout() {
        transient("smtp server timed out")
    } else if error.is_tls() {
        // A relay's certificate does not heal in minutes; the traveler should hear through the
        // next channel now rather than after every retry has run out.
        permanent("smtp TLS handshake failed")
    } else if error.is_client() {
        permanent("smtp client refused the message")
    } else if error.is_response() {
        transient("smtp server sent an unreadable reply")
    } else {
        transient("smtp server unreachable or connection lost")
    }
}

//! Which senders a deployment has, and the router that picks one per channel.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::http::HttpSender;
use crate::smtp::SmtpSender;
use crate::{NotifyChannel, OutgoingMessage, Receipt, SendError, Sender};

const DEFAULT_FROM: &str = "Detour <no-reply@detour.invalid>";
const DEFAULT_TIMEOUT_MS: u64 = 5000;

/// How to reach the e-mail relay and the SMS/push/WeChat provider. A channel whose sender is
/// not set up is reported as [`SendError::NotConfigured`], so a deployment may run with
/// e-mail only, the provider only, or neither. Empty strings count as unset, since that is what
/// an empty environment variable gives.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NotifySettings {
    /// `smtp://host:port` (plain, for a relay on the same host or network),
    /// `smtp+starttls://host:port` (port 587 by default) or `smtps://host:port` (465);
    /// `user:password@` is allowed with the two encrypted forms.
    pub smtp_url: Option<String>,
    /// The `From` of every e-mail; `Detour <no-reply@detour.invalid>` when empty.
    pub smtp_from: String,
    /// Base URL of the SMS, push and WeChat provider (see the crate documentation for its
    /// contract).
    pub http_url: Option<String>,
    /// Bearer token for the provider.
    pub http_token: Option<String>,
    /// Per request (HTTP) and per command (SMTP); 5000 when zero.
    pub timeout_ms: u64,
}

impl NotifySettings {
    fn timeout(&self) -> Duration {
        Duration::from_millis(if self.timeout_ms == 0 { DEFAULT_TIMEOUT_MS } else { self.timeout_ms })
    }
}

/// The password and the token stay out of logs; everything else is printed as configured.
impl fmt::Debug for NotifySettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotifySettings")
            .field("smtp_url", &self.smtp_url.as_deref().map(without_password))
            .field("smtp_from", &self.smtp_from)
            .field("http_url", &self.http_url)
            .field("http_token", &self.http_token.as_ref().map(|_| "<redacted>"))
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

fn without_password(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => match parsed.set_password(Some("redacted")) {
            Ok(()) => parsed.to_string(),
            Err(()) => "<redacted>".to_owned(),
        },
        Ok(_) => url.to_owned(),
        Err(_) => "<not a URL>".to_owned(),
    }
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// A setting that is wrong, and what is wrong with it. Never repeats a password or a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {problem}")]
pub struct ConfigError {
    /// `smtp_url`, `smtp_from`, `http_url` or `http_token`.
    pub setting: &'static str,
    pub problem: String,
}

impl ConfigError {
    pub(crate) fn new(setting: &'static str, problem: impl Into<String>) -> Self {
        Self { setting, problem: problem.into() }
    }
}

/// Routes each message to the sender of its channel: e-mail to SMTP; SMS, push and WeChat to
/// the HTTP provider.
#[derive(Clone, Default)]
pub struct Notifiers {
    email: Option<Arc<dyn Sender>>,
    sms: Option<Arc<dyn Sender>>,
    push: Option<Arc<dyn Sender>>,
    wechat: Option<Arc<dyn Sender>>,
}

impl Notifiers {
    /// The senders `settings` describe, checked once at start-up.
    pub fn from_settings(settings: &NotifySettings) -> Result<Self, ConfigError> {
        let timeout = settings.timeout();
        let mut notifiers = Self::default();
        if let Some(url) = non_empty(&settings.smtp_url) {
            let from = match settings.smtp_from.trim() {
                "" => DEFAULT_FROM,
                from => from,
            };
            notifiers.email = Some(Arc::new(SmtpSender::new(url, from, timeout)?));
        }
        let token = non_empty(&settings.http_token);
        match non_empty(&settings.http_url) {
            Some(url) => {
                let http: Arc<dyn Sender> = Arc::new(HttpSender::new(url, token, timeout)?);
                notifiers.sms = Some(Arc::clone(&http));
                notifiers.push = Some(Arc::clone(&http));
                notifiers.wechat = Some(http);
            }
            None if token.is_some() => {
                return Err(ConfigError::new(
                    "http_token",
                    "set without http_url, so it would never be used",
                ));
            }
            None => {}
        }
        Ok(notifiers)
    }

    /// `sender` for `channel` instead of whatever was there: another provider's adapter, or a
    /// recording sender in a dispatcher's tests.
    pub fn with_sender(mut self, channel: NotifyChannel, sender: Arc<dyn Sender>) -> Self {
        *self.slot(channel) = Some(sender);
        self
    }

    /// Whether `channel` has a sender, so a dispatcher can skip channels this deployment lacks.
    pub fn supports(&self, channel: NotifyChannel) -> bool {
        self.sender(channel).is_some()
    }

    /// Hands `message` to the sender of its channel.
    #[tracing::instrument(
        name = "notify.send",
        skip_all,
        fields(notification_id = %message.notification_id, channel = message.channel.as_str())
    )]
    pub async fn send(&self, message: &OutgoingMessage) -> Result<Receipt, SendError> {
        let result = self.route(message).await;
        match &result {
            Ok(_) => tracing::debug!("accepted"),
            // Reasons are scrubbed where they are made, so they are safe to log.
            Err(error) => tracing::debug!(%error, "not accepted"),
        }
        result
    }

    async fn route(&self, message: &OutgoingMessage) -> Result<Receipt, SendError> {
        let Some(sender) = self.sender(message.channel) else {
            return Err(SendError::NotConfigured { channel: message.channel });
        };
        if !valid_id(&message.notification_id) {
            return Err(SendError::Permanent {
                reason: "notification id must be 1 to 128 letters, digits, '.', '_' or '-'".to_owned(),
            });
        }
        sender.send(message).await
    }

    fn sender(&self, channel: NotifyChannel) -> Option<&Arc<dyn Sender>> {
        match channel {
            NotifyChannel::Email => self.email.as_ref(),
            NotifyChannel::Sms => self.sms.as_ref(),
            NotifyChannel::Push => self.push.as_ref(),
            NotifyChannel::Wechat => self.wechat.as_ref(),
        }
    }

    fn slot(&mut self, channel: NotifyChannel) -> &mut Option<Arc<dyn Sender>> {
        match channel {
            NotifyChannel::Email => &mut self.email,
            NotifyChannel::Sms => &mut self.sms,
            NotifyChannel::Push => &mut self.push,
            NotifyChannel::Wechat => &mut self.wechat,
        }
    }
}

impl fmt::Debug for Notifiers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let channels: Vec<&str> =
            NotifyChannel::ALL.into_iter().filter(|c| self.supports(*c)).map(NotifyChannel::as_str).collect();
        f.debug_struct("Notifiers").field("channels", &channels).finish()
    }
}

/// The id goes into a `Message-ID` and an HTTP header, where other characters break or inject.
fn valid_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn settings() -> NotifySettings {
        NotifySettings::default()
    }

    #[test]
    fn nothing_configured_supports_nothing() {
        let notifiers = Notifiers::from_settings(&settings()).unwrap();
        assert!(NotifyChannel::ALL.iter().all(|c| !notifiers.supports(*c)));
        let blank =
            NotifySettings { smtp_url: Some(" ".into()), http_url: Some(String::new()), ..settings() };
        let notifiers = Notifiers::from_settings(&blank).unwrap();
        assert_eq!(format!("{notifiers:?}"), "Notifiers { channels: [] }");
    }

    #[test]
    fn each_url_form_is_accepted() {
        for url in [
            "smtp://127.0.0.1:2525",
            "smtp://relay.internal",
            "smtp+starttls://user:p%40ss@smtp.example.com",
            "smtps://user:secret@smtp.example.com:465",
        ] {
            let s = NotifySettings { smtp_url: Some(url.into()), ..settings() };
            let notifiers = Notifiers::from_settings(&s).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert!(notifiers.supports(NotifyChannel::Email));
            assert!(!notifiers.supports(NotifyChannel::Sms));
        }
        let s = NotifySettings {
            http_url: Some("https://provider.example/api/".into()),
            http_token: Some("t0k3n".into()),
            ..settings()
        };
        let notifiers = Notifiers::from_settings(&s).unwrap();
        assert_eq!(format!("{notifiers:?}"), r#"Notifiers { channels: ["sms", "push", "wechat"] }"#);
    }

    #[test]
    fn mistakes_name_the_setting_and_keep_secrets() {
        let cases = [
            (NotifySettings { smtp_url: Some("http://mail.example".into()), ..settings() }, "smtp_url"),
            (NotifySettings { smtp_url: Some("not a url s3cret".into()), ..settings() }, "smtp_url"),
            (
                NotifySettings { smtp_url: Some("smtp://user:s3cret@relay.example".into()), ..settings() },
                "smtp_url",
            ),
            (NotifySettings { smtp_url: Some("smtps://:s3cret@".into()), ..settings() }, "smtp_url"),
            (
                NotifySettings {
                    smtp_url: Some("smtp://relay".into()),
                    smtp_from: "no address".into(),
                    ..settings()
                },
                "smtp_from",
            ),
            (NotifySettings { http_url: Some("ftp://provider.example".into()), ..settings() }, "http_url"),
            (
                NotifySettings { http_url: Some("https://u:s3cret@provider.example".into()), ..settings() },
                "http_url",
            ),
            (NotifySettings { http_token: Some("s3cret".into()), ..settings() }, "http_token"),
        ];
        for (s, setting) in cases {
            let err = Notifiers::from_settings(&s).expect_err(setting);
            assert_eq!(err.setting, setting, "{err}");
            assert!(!format!("{err} {err:?}").contains("s3cret"), "{err:?}");
        }
    }

    #[test]
    fn debug_hides_the_password_and_the_token() {
        let s = NotifySettings {
            smtp_url: Some("smtps://mailer:s3cret@smtp.example.com".into()),
            http_token: Some("t0k3n".into()),
            ..settings()
        };
        let debug = format!("{s:?}");
        assert!(!debug.contains("s3cret") && !debug.contains("t0k3n"), "{debug}");
        assert!(debug.contains("smtps://mailer:redacted@smtp.example.com"), "{debug}");
    }

    #[test]
    fn ids_are_checked_before_any_sender_sees_them() {
        assert!(valid_id("ntf_01J9Z.x-1"));
        for bad in ["", "a b", "a\r\nBcc: x", "<id>", &"x".repeat(129)] {
            assert!(!valid_id(bad), "{bad:?}");
        }
    }
}

//! Telling travelers what is happening: message templates in Chinese and English, and the
//! senders that deliver them by e-mail (SMTP) and by SMS, push or WeChat (one HTTP provider).
//!
//! A dispatcher renders a message with [`render`], wraps it in an [`OutgoingMessage`] and hands
//! it to [`Notifiers::send`], which routes it by channel. Failures say what to do next:
//! [`SendError::Transient`] means try this channel again later, [`SendError::Permanent`] means
//! move on to the next channel, [`SendError::NotConfigured`] means this deployment has no sender
//! for the channel at all.
//!
//! # Personal data
//!
//! The recipient travels as a [`detour_vault::Secret`], the rendered text has a [`Debug`] that
//! prints only its length, and every error carries a reason class, a status code and provider
//! text from which addresses, phone numbers and quotations of the message have been removed.
//! Nothing here logs a recipient or a message body.
//!
//! # The provider contract (SMS, push, WeChat)
//!
//! SMS, push and WeChat go through one HTTP interface, so a real provider (a Twilio-like SMS
//! gateway, a push service, the WeChat template-message API) sits behind a small adapter that
//! speaks it. `http_url` in [`NotifySettings`] is the adapter's base URL.
//!
//! **Request.** `POST {http_url}/v1/messages` with
//!
//! - `Content-Type: application/json`
//! - `Idempotency-Key: <notification id>`: the same notification is sent with the same key on
//!   every retry; the provider must deliver it at most once per key and answer a repeated key
//!   with the original result.
//! - `Authorization: Bearer <http_token>` when a token is configured.
//!
//! ```json
//! {"channel": "sms", "to": "+8613800138000", "language": "zh", "subject": "…", "body": "…"}
//! ```
//!
//! `channel` is `sms`, `push` or `wechat`; `to` is an E.164 phone number for SMS and Detour's
//! traveler id for push and WeChat (the adapter maps it to a device token or an OpenID);
//! `language` is `zh` or `en`; `subject` is a title (push shows it, SMS ignores it); `body` is the
//! text, at most 300 characters for SMS.
//!
//! **Response.**
//!
//! - `2xx` with `{"id": "<provider message id>"}`: accepted; the id comes back in [`Receipt`].
//! - `408`, `429`, `5xx`, a timeout or a failed connection: transient, retried later with the
//!   same idempotency key.
//! - any other status: permanent for this message on this channel (unknown number, traveler
//!   without the app, text refused). An error body `{"error": "<code>", "message": "<text>"}`
//!   is carried into the error, scrubbed; it should not quote the recipient or the message.
//!
//! Redirects are not followed: a redirected POST would lose its body.

mod http;
mod redact;
mod settings;
mod smtp;
mod templates;

use async_trait::async_trait;
use detour_vault::SecretString;

pub use settings::{ConfigError, Notifiers, NotifySettings};
pub use templates::{
    Affected, DisruptionFacts, DisruptionKind, Purpose, Rendered, SMS_MAX_CHARS, TemplateVars, render,
};

/// How a traveler is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotifyChannel {
    Email,
    Sms,
    Push,
    Wechat,
}

impl NotifyChannel {
    pub const ALL: [NotifyChannel; 4] = [Self::Email, Self::Sms, Self::Push, Self::Wechat];

    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Sms => "sms",
            Self::Push => "push",
            Self::Wechat => "wechat",
        }
    }

    /// The channel with this name; `None` for anything else.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|channel| channel.as_str() == name)
    }
}

/// The language a traveler reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Language {
    Zh,
    En,
}

impl Language {
    /// From a BCP 47 tag: any `zh` tag (`zh`, `zh-CN`, `zh-Hant-TW`) is Chinese; every other
    /// tag, and an empty one, is English, the language every traveler is assumed to manage.
    pub fn from_tag(tag: &str) -> Self {
        let primary = tag.split(['-', '_']).next().unwrap_or_default();
        if primary.eq_ignore_ascii_case("zh") { Self::Zh } else { Self::En }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Zh => "zh",
            Self::En => "en",
        }
    }
}

/// One message to one traveler on one channel.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    /// Also the idempotency key given to providers, so a retry never reaches the traveler twice.
    /// Letters, digits, `.`, `_` and `-` only, since it travels in mail and HTTP headers.
    pub notification_id: String,
    pub channel: NotifyChannel,
    /// An e-mail address, an E.164 phone number, or the traveler id for push and WeChat.
    pub to: SecretString,
    pub language: Language,
    pub rendered: Rendered,
}

/// What a provider said when it accepted a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The provider's id for the message (for SMTP, the `Message-ID` header that was sent).
    pub provider_message_id: String,
}

/// Why a message was not accepted. The reason never holds personal data: a class, a status
/// code and scrubbed provider text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth retrying on the same channel later (timeouts, 429, 5xx, SMTP 4xx).
    #[error("transient failure: {reason}")]
    Transient { reason: String },
    /// Will not succeed on this channel (bad address, 4xx, SMTP 5xx): try the next channel.
    #[error("permanent failure: {reason}")]
    Permanent { reason: String },
    /// No adapter configured for this channel.
    #[error("no sender is configured for {}", channel.as_str())]
    NotConfigured { channel: NotifyChannel },
}

impl SendError {
    /// Whether the same channel may succeed later.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient { .. })
    }
}

/// Delivers messages on one or more channels.
#[async_trait]
pub trait Sender: Send + Sync {
    async fn send(&self, message: &OutgoingMessage) -> Result<Receipt, SendError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_follow_the_primary_subtag() {
        for tag in ["zh", "zh-CN", "ZH-hant-TW", "zh_HK"] {
            assert_eq!(Language::from_tag(tag), Language::Zh, "{tag}");
        }
        // Zhuang (`zha`) is not Chinese.
        for tag in ["en", "en-GB", "de", "zha", "", "x"] {
            assert_eq!(Language::from_tag(tag), Language::En, "{tag}");
        }
    }

    #[test]
    fn channel_names_round_trip() {
        for channel in NotifyChannel::ALL {
            assert_eq!(NotifyChannel::from_name(channel.as_str()), Some(channel));
        }
        assert_eq!(NotifyChannel::from_name("fax"), None);
    }
}

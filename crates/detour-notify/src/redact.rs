//! Provider text made fit for an error message.
//!
//! Mail servers and SMS gateways like to echo what they refused ("550 5.1.1 <li.wei@example.com>:
//! Recipient address rejected"). Their words are worth keeping for whoever reads the failure,
//! the recipient and the message are not.

use crate::OutgoingMessage;

const REDACTED: &str = "[redacted]";
/// Longest provider text kept in an error.
const MAX_CHARS: usize = 200;
/// Provider text that shares this many consecutive characters with the message quotes it, and
/// the message may hold the traveler's name.
const QUOTE_CHARS: usize = 12;
/// Digits in a run of digits, spaces and `+-().` that make it a phone number, not a status code.
const PHONE_DIGITS: usize = 7;

/// `raw` without the recipient, anything that looks like an e-mail address or a phone number,
/// and not at all when it quotes the message.
pub(crate) fn provider_text(raw: &str, message: &OutgoingMessage) -> String {
    let text: String = raw.chars().take(1000).map(|c| if c.is_control() { ' ' } else { c }).collect();
    if quotes(&text, &message.rendered.body) || quotes(&text, &message.rendered.subject) {
        return "[provider text withheld: it quotes the message]".to_owned();
    }
    let recipient = message.to.expose().trim();
    let text = if recipient.is_empty() { text } else { text.replace(recipient, REDACTED) };
    let words: Vec<&str> =
        text.split_whitespace().map(|word| if word.contains('@') { REDACTED } else { word }).collect();
    clip(&redact_numbers(&words.join(" ")))
}

fn quotes(text: &str, message: &str) -> bool {
    let chars: Vec<char> = text.chars().collect();
    chars.windows(QUOTE_CHARS).any(|window| {
        let window: String = window.iter().collect();
        // Padding and punctuation echoed from a template are not a quotation.
        window.chars().filter(|c| c.is_alphanumeric()).count() >= QUOTE_CHARS / 2 && message.contains(&window)
    })
}

fn redact_numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let mut digits = 0;
    let flush = |run: &mut String, digits: &mut usize, out: &mut String| {
        if *digits >= PHONE_DIGITS {
            let kept = run.trim_end();
            let tail = &run[kept.len()..];
            out.push_str(REDACTED);
            out.push_str(tail);
        } else {
            out.push_str(run);
        }
        run.clear();
        *digits = 0;
    };
    for c in text.chars() {
        let starts = c.is_ascii_digit() || c == '+' || c == '(';
        let continues = matches!(c, ' ' | '-' | '.' | ')') || starts;
        if starts || (!run.is_empty() && continues) {
            if c.is_ascii_digit() {
                digits += 1;
            }
            run.push(c);
        } else {
            flush(&mut run, &mut digits, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut digits, &mut out);
    out
}

fn clip(text: &str) -> String {
    if text.chars().count() <= MAX_CHARS {
        return text.to_owned();
    }
    let mut clipped: String = text.chars().take(MAX_CHARS - 1).collect();
    clipped.push('…');
    clipped
}

#[cfg(test)]
mod tests {
    use detour_vault::SecretString;

    use super::*;
    use crate::{Language, NotifyChannel, Rendered};

    fn message(to: &str) -> OutgoingMessage {
        OutgoingMessage {
            notification_id: "ntf-1".to_owned(),
            channel: NotifyChannel::Sms,
            to: SecretString::new(to.to_owned()),
            language: Language::En,
            rendered: Rendered {
                subject: "Cancelled: flight CA981".to_owned(),
                body: "Dear Li Wei, your flight CA981 has been cancelled.".to_owned(),
            },
        }
    }

    #[test]
    fn addresses_and_numbers_go_status_words_stay() {
        let m = message("li.wei@example.com");
        assert_eq!(
            provider_text("5.1.1 <li.wei@example.com>: Recipient address rejected", &m),
            "5.1.1 <[redacted]>: Recipient address rejected"
        );
        assert_eq!(provider_text("user <other@example.org> unknown", &m), "user [redacted] unknown");
        let m = message("+8613800138000");
        assert_eq!(provider_text("invalid number +8613800138000", &m), "invalid number [redacted]");
        assert_eq!(provider_text("number +86 138 0013 8000 is blocked", &m), "number [redacted] is blocked");
        assert_eq!(provider_text("error 21211 (see docs)", &m), "error 21211 (see docs)");
        assert_eq!(provider_text("line\r\nbreaks\tgone", &m), "line breaks gone");
    }

    #[test]
    fn quoting_the_message_withholds_the_text() {
        let m = message("+8613800138000");
        let echoed = "body too long: Dear Li Wei, your flight";
        assert_eq!(provider_text(echoed, &m), "[provider text withheld: it quotes the message]");
        assert_eq!(provider_text("flight not allowed", &m), "flight not allowed");
    }

    #[test]
    fn long_text_is_clipped() {
        let text = provider_text(&"word ".repeat(200), &message("x"));
        assert_eq!(text.chars().count(), MAX_CHARS);
        assert!(text.ends_with('…'));
    }
}

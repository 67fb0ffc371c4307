//! The words travelers read, in Chinese and English.
//!
//! E-mail and WeChat get a full letter with a greeting; SMS and push get one short paragraph
//! without the traveler's name, since both show up on lock screens, and SMS stays within
//! [`SMS_MAX_CHARS`]. Times are written in UTC and say so: a traveler stuck abroad must not
//! have to guess which clock is meant.

use std::fmt;

use detour_domain::time::Instant;
use detour_vault::SecretString;

use crate::{Language, NotifyChannel};

/// The longest SMS body, in characters (a few concatenated segments, even in UCS-2).
pub const SMS_MAX_CHARS: usize = 300;
/// Free text (names, places, reasons) longer than this is clipped in SMS and push.
const SHORT_FIELD_CHARS: usize = 40;

/// Why a traveler is being told something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// "We received your case DT-…; first answer by …".
    Acknowledgement,
    /// "Your flight … is cancelled; here is what happens next".
    Disruption,
    /// The disruption changed (a delay became a cancellation).
    DisruptionUpdate,
}

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisruptionKind {
    Cancelled,
    Delayed,
    Diverted,
    AirportClosed,
    HotelClosed,
    OperatorFailure,
    Weather,
    Security,
}

impl DisruptionKind {
    pub const ALL: [DisruptionKind; 8] = [
        Self::Cancelled,
        Self::Delayed,
        Self::Diverted,
        Self::AirportClosed,
        Self::HotelClosed,
        Self::OperatorFailure,
        Self::Weather,
        Self::Security,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cancelled => "cancelled",
            Self::Delayed => "delayed",
            Self::Diverted => "diverted",
            Self::AirportClosed => "airport_closed",
            Self::HotelClosed => "hotel_closed",
            Self::OperatorFailure => "operator_failure",
            Self::Weather => "weather",
            Self::Security => "security",
        }
    }

    /// The kind with this name; `None` for anything else.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// What the disruption hits, kept apart from the sentence so each language can word it
/// naturally ("flight CA981 on 2026-12-03" / "2026年12月3日 CA981 航班").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Affected {
    /// A flight by number, carrier included ("CA981"), and local departure date (`YYYY-MM-DD`).
    Flight { number: String, local_date: String },
    /// An airport code ("PEK").
    Airport { code: String },
    /// A hotel, by the name travelers know it by.
    Property { name: String },
    /// A ground transport or tour operator.
    Operator { name: String },
    /// Airport or city codes ("PEK", "TSN").
    Area { locations: Vec<String> },
}

/// The facts of a disruption as travelers are told them. No personal data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisruptionFacts {
    pub kind: DisruptionKind,
    pub affected: Affected,
    /// Told to travelers as given ("heavy snow at PEK").
    pub reason: Option<String>,
    /// For a delay: the expected delay.
    pub delay_minutes: Option<u32>,
    /// For a diversion: the airport the flight lands at instead.
    pub diverted_to: Option<String>,
}

/// Everything a template may say. No personal data except what the traveler must read.
#[derive(Debug, Clone)]
pub struct TemplateVars {
    /// "DT-0000042".
    pub case_number: String,
    pub first_response_due: Option<Instant>,
    /// For the greeting of e-mail and WeChat; never put in SMS or push.
    pub traveler_name: Option<SecretString>,
    /// Required by the disruption purposes; a generic sentence stands in when it is missing.
    pub disruption: Option<DisruptionFacts>,
}

/// A message ready to send. E-mail uses both parts; SMS uses the body; push shows the subject
/// as its title.
#[derive(Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub body: String,
}

/// Only the sizes: the text holds the traveler's name.
impl fmt::Debug for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rendered")
            .field("subject_chars", &self.subject.chars().count())
            .field("body_chars", &self.body.chars().count())
            .finish()
    }
}

/// The message for `purpose` in `language`, shaped for `channel`.
pub fn render(purpose: Purpose, language: Language, channel: NotifyChannel, vars: &TemplateVars) -> Rendered {
    let ctx = Ctx { channel, vars, short: matches!(channel, NotifyChannel::Sms | NotifyChannel::Push) };
    let mut rendered = match language {
        Language::En => en::render(purpose, &ctx),
        Language::Zh => zh::render(purpose, &ctx),
    };
    if channel == NotifyChannel::Sms {
        // The wording is built to fit; this only guards against fields nobody anticipated.
        rendered.body = clip(&rendered.body, SMS_MAX_CHARS);
    }
    rendered
}

struct Ctx<'a> {
    channel: NotifyChannel,
    vars: &'a TemplateVars,
    short: bool,
}

impl Ctx<'_> {
    /// Free text as the channel can carry it.
    fn field(&self, text: &str) -> String {
        let text = text.trim();
        if self.short { clip(text, SHORT_FIELD_CHARS) } else { text.to_owned() }
    }

    fn case(&self) -> &str {
        &self.vars.case_number
    }

    fn name(&self) -> Option<String> {
        let name = self.vars.traveler_name.as_ref()?.expose().trim();
        (!name.is_empty()).then(|| name.to_owned())
    }

    fn reason(&self) -> Option<String> {
        let facts = self.vars.disruption.as_ref()?;
        let reason = facts.reason.as_deref()?.trim();
        (!reason.is_empty()).then(|| self.field(reason))
    }

    fn diverted_to(&self) -> Option<String> {
        let to = self.vars.disruption.as_ref()?.diverted_to.as_deref()?.trim();
        (!to.is_empty()).then(|| self.field(to))
    }

    fn delay(&self) -> Option<u32> {
        self.vars.disruption.as_ref()?.delay_minutes.filter(|m| *m > 0)
    }
}

/// At most `max` characters, with an ellipsis when something was cut.
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut clipped: String = text.chars().take(max.saturating_sub(1)).collect();
    clipped.push('…');
    clipped
}

/// `2026-12-03` as `(2026, 12, 3)`, when it is that shape.
fn ymd(date: &str) -> Option<(u32, u32, u32)> {
    let mut parts = date.trim().splitn(3, '-').map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??, parts.next()??))
}

mod en {
    use super::*;

    pub(super) fn render(purpose: Purpose, ctx: &Ctx<'_>) -> Rendered {
        match purpose {
            Purpose::Acknowledgement => acknowledgement(ctx),
            Purpose::Disruption => disruption(ctx, false),
            Purpose::DisruptionUpdate => disruption(ctx, true),
        }
    }

    fn time(t: Instant) -> String {
        t.format("%Y-%m-%d %H:%M UTC").to_string()
    }

    fn letter(ctx: &Ctx<'_>, paragraphs: &[String]) -> String {
        let greeting = match ctx.name() {
            Some(name) => format!("Dear {name},"),
            None => "Dear traveler,".to_owned(),
        };
        let mut body = greeting;
        for paragraph in paragraphs {
            body.push_str("\n\n");
            body.push_str(paragraph);
        }
        body.push_str("\n\nKind regards,\nYour travel support team");
        body
    }

    fn acknowledgement(ctx: &Ctx<'_>) -> Rendered {
        let case = ctx.case();
        let subject = format!("We received your request – case {case}");
        let due = ctx.vars.first_response_due.map(time);
        let body = if ctx.short {
            let when = match due {
                Some(due) => format!("First answer by {due}."),
                None => "We will answer as soon as we can.".to_owned(),
            };
            format!(
                "Detour: we received your request and opened case {case}. {when} Please quote {case} if you contact us."
            )
        } else {
            let when = match due {
                Some(due) => format!("An agent will give you a first answer by {due}."),
                None => "An agent will get back to you as soon as possible.".to_owned(),
            };
            letter(
                ctx,
                &[
                    format!(
                        "Thank you for contacting us. We have received your request and opened case {case} for it."
                    ),
                    when,
                    format!(
                        "If you write to us about this again, please quote {case}; you do not need to send your booking details again."
                    ),
                ],
            )
        };
        Rendered { subject, body }
    }

    /// "flight CA981 on 2026-12-03", "PEK airport".
    fn place(ctx: &Ctx<'_>, affected: &Affected) -> String {
        match affected {
            Affected::Flight { number, local_date } => {
                format!("flight {} on {}", ctx.field(number), ctx.field(local_date))
            }
            Affected::Airport { code } => format!("{} airport", ctx.field(code)),
            Affected::Property { name } | Affected::Operator { name } => ctx.field(name),
            Affected::Area { locations } => ctx.field(&locations.join(", ")),
        }
    }

    /// "your flight CA981 on 2026-12-03", the grammatical subject of the situation sentence.
    fn your(ctx: &Ctx<'_>, affected: &Affected) -> String {
        match affected {
            Affected::Flight { .. } => format!("your {}", place(ctx, affected)),
            Affected::Airport { code } => format!("your flight at {}", ctx.field(code)),
            Affected::Property { name } => format!("your stay at {}", ctx.field(name)),
            Affected::Operator { name } => format!("your booking with {}", ctx.field(name)),
            Affected::Area { .. } => format!("your trip through {}", place(ctx, affected)),
        }
    }

    fn duration(minutes: u32) -> String {
        match (minutes / 60, minutes % 60) {
            (0, m) => format!("{m} min"),
            (h, 0) => format!("{h} h"),
            (h, m) => format!("{h} h {m} min"),
        }
    }

    fn situation(ctx: &Ctx<'_>, facts: &DisruptionFacts) -> String {
        let because = ctx.reason().map(|r| format!(" because of {r}")).unwrap_or_default();
        let your = capitalise(&your(ctx, &facts.affected));
        let place = place(ctx, &facts.affected);
        match facts.kind {
            DisruptionKind::Cancelled => format!("{your} has been cancelled{because}."),
            DisruptionKind::Delayed => {
                let by = ctx.delay().map(|m| format!(" by about {}", duration(m))).unwrap_or_default();
                format!("{your} is delayed{by}{because}.")
            }
            DisruptionKind::Diverted => {
                let to = ctx.diverted_to().map(|to| format!(" to {to}")).unwrap_or_default();
                format!("{your} has been diverted{to}{because}.")
            }
            DisruptionKind::AirportClosed => {
                format!("{} is closed{because}, and this affects your trip.", capitalise(&place))
            }
            DisruptionKind::HotelClosed => match &facts.affected {
                Affected::Property { .. } => format!("Your hotel, {place}, cannot receive guests{because}."),
                _ => format!("Your hotel cannot receive guests{because}."),
            },
            DisruptionKind::OperatorFailure => match &facts.affected {
                Affected::Operator { .. } => {
                    format!("{place}, which provides part of your trip, cannot run its service{because}.")
                }
                _ => format!("{your} cannot go ahead as planned{because}."),
            },
            DisruptionKind::Weather => format!(
                "Severe weather is disrupting travel at {place}{because}, and this affects your trip."
            ),
            DisruptionKind::Security => {
                format!(
                    "A security incident is disrupting travel at {place}{because}, and this affects your trip."
                )
            }
        }
    }

    fn next_step(ctx: &Ctx<'_>, kind: Option<DisruptionKind>) -> &'static str {
        use DisruptionKind as K;
        match (kind, ctx.short) {
            (Some(K::Cancelled | K::AirportClosed), false) => {
                "We are looking for rebooking options and, if you need one, a hotel for tonight."
            }
            (Some(K::Cancelled | K::AirportClosed), true) => "We will send rebooking options.",
            (Some(K::Delayed), false) => {
                "If the delay makes you miss a connection or a night at your hotel, we will arrange alternatives."
            }
            (Some(K::Delayed), true) => "We will help if you miss a connection.",
            (Some(K::Diverted), false) => "We are arranging onward travel to your destination.",
            (Some(K::Diverted), true) => "We are arranging onward travel.",
            (Some(K::HotelClosed), false) => "We are finding you another hotel.",
            (Some(K::HotelClosed), true) => "We are finding you another hotel.",
            (Some(K::OperatorFailure), false) => "We are arranging a replacement service.",
            (Some(K::OperatorFailure), true) => "We are arranging a replacement.",
            (Some(K::Weather | K::Security) | None, false) => {
                "We are checking your trip and will propose rebooking options or a hotel where needed."
            }
            (Some(K::Weather | K::Security) | None, true) => "We are checking your trip.",
        }
    }

    fn confirm(channel: NotifyChannel) -> &'static str {
        match channel {
            NotifyChannel::Email => "Please reply to this e-mail to confirm that you have received it.",
            NotifyChannel::Sms => "Reply 1 to confirm you got this.",
            NotifyChannel::Push => "Tap to confirm you got this.",
            NotifyChannel::Wechat => "Please reply 1 to confirm that you have received this message.",
        }
    }

    fn headline(ctx: &Ctx<'_>, facts: Option<&DisruptionFacts>) -> String {
        let Some(facts) = facts else { return "Change to your trip".to_owned() };
        let what = match facts.kind {
            DisruptionKind::Cancelled => "Cancelled",
            DisruptionKind::Delayed => "Delayed",
            DisruptionKind::Diverted => "Diverted",
            DisruptionKind::AirportClosed => "Airport closed",
            DisruptionKind::HotelClosed => "Hotel closed",
            DisruptionKind::OperatorFailure => "Service cancelled",
            DisruptionKind::Weather => "Weather disruption",
            DisruptionKind::Security => "Security disruption",
        };
        format!("{what}: {}", place(ctx, &facts.affected))
    }

    fn disruption(ctx: &Ctx<'_>, update: bool) -> Rendered {
        let case = ctx.case();
        let facts = ctx.vars.disruption.as_ref();
        let situation = match facts {
            Some(facts) => situation(ctx, facts),
            None => "A disruption is affecting your trip.".to_owned(),
        };
        let next = next_step(ctx, facts.map(|f| f.kind));
        let confirm = confirm(ctx.channel);
        let headline = headline(ctx, facts);
        let subject = if update {
            format!("Update – {headline} – case {case}")
        } else {
            format!("{headline} – case {case}")
        };
        let body = if ctx.short {
            if update {
                format!("Detour update: {situation} Your case {case} stays open. {next} {confirm}")
            } else {
                format!(
                    "Detour: {situation} No need to call: we opened case {case} for you. {next} {confirm}"
                )
            }
        } else {
            let by = ctx
                .vars
                .first_response_due
                .map(|due| format!(", by {} at the latest", time(due)))
                .unwrap_or_default();
            let (opening, case_line) = if update {
                (
                    format!(
                        "There is news about your trip, and this message replaces our earlier one. {situation}"
                    ),
                    format!(
                        "Your case {case} stays open. {next} We will send you the options as soon as we have them{by}."
                    ),
                )
            } else {
                (
                    situation,
                    format!(
                        "You do not need to call us: we have opened case {case} for you. {next} We will send you the options as soon as we have them{by}."
                    ),
                )
            };
            letter(ctx, &[opening, case_line, confirm.to_owned()])
        };
        Rendered { subject, body }
    }

    fn capitalise(text: &str) -> String {
        let mut chars = text.chars();
        match chars.next() {
            Some(first) => first.to_uppercase().chain(chars).collect(),
            None => String::new(),
        }
    }
}

mod zh {
    use super::*;

    pub(super) fn render(purpose: Purpose, ctx: &Ctx<'_>) -> Rendered {
        match purpose {
            Purpose::Acknowledgement => acknowledgement(ctx),
            Purpose::Disruption => disruption(ctx, false),
            Purpose::DisruptionUpdate => disruption(ctx, true),
        }
    }

    fn time(t: Instant) -> String {
        t.format("UTC 时间 %Y年%-m月%-d日 %H:%M").to_string()
    }

    fn date(ctx: &Ctx<'_>, local_date: &str) -> String {
        match ymd(local_date) {
            Some((y, m, d)) => format!("{y}年{m}月{d}日"),
            None => ctx.field(local_date),
        }
    }

    /// A space between Chinese and a Latin name at either end ("的 Great Wall Tours 目前"), as
    /// Chinese typesetting does; none beside Chinese text.
    fn latin_gaps(text: &str) -> String {
        let latin = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
        let left = if latin(text.chars().next()) { " " } else { "" };
        let right = if latin(text.chars().last()) { " " } else { "" };
        format!("{left}{text}{right}")
    }

    fn letter(ctx: &Ctx<'_>, paragraphs: &[String]) -> String {
        let mut body = match ctx.name() {
            Some(name) => format!("尊敬的{name}，您好："),
            None => "尊敬的旅客，您好：".to_owned(),
        };
        for paragraph in paragraphs {
            body.push_str("\n\n");
            body.push_str(paragraph);
        }
        body.push_str("\n\n祝您旅途顺利！\n出行服务团队");
        body
    }

    fn acknowledgement(ctx: &Ctx<'_>) -> Rendered {
        let case = ctx.case();
        let subject = format!("我们已收到您的反馈（案件号 {case}）");
        let due = ctx.vars.first_response_due.map(time);
        let body = if ctx.short {
            let when = match due {
                Some(due) => format!("我们将于 {due} 前首次答复。"),
                None => "我们会尽快答复。".to_owned(),
            };
            format!("【Detour】我们已收到您的反馈，案件号 {case}。{when}联系我们时请提供案件号。")
        } else {
            let when = match due {
                Some(due) => format!("客服专员将于 {due} 前给您首次答复。"),
                None => "客服专员会尽快与您联系。".to_owned(),
            };
            letter(
                ctx,
                &[
                    format!("感谢您联系我们。我们已收到您的反馈，并为您创建了案件 {case}。"),
                    when,
                    format!("如需再次就此事联系我们，请提供案件号 {case}，无需重复提交预订信息。"),
                ],
            )
        };
        Rendered { subject, body }
    }

    /// "2026年12月3日 CA981 航班", "PEK 机场".
    fn place(ctx: &Ctx<'_>, affected: &Affected) -> String {
        match affected {
            Affected::Flight { number, local_date } => {
                format!("{} {} 航班", date(ctx, local_date), ctx.field(number))
            }
            Affected::Airport { code } => format!("{} 机场", ctx.field(code)),
            Affected::Property { name } | Affected::Operator { name } => ctx.field(name),
            Affected::Area { locations } => ctx.field(&locations.join("、")),
        }
    }

    /// "您乘坐的 2026年12月3日 CA981 航班", the subject of the situation sentence.
    fn your(ctx: &Ctx<'_>, affected: &Affected) -> String {
        match affected {
            Affected::Flight { .. } => format!("您乘坐的 {}", place(ctx, affected)),
            Affected::Airport { code } => format!("您在 {} 机场的航班", ctx.field(code)),
            Affected::Property { name } => format!("您在{}的住宿", latin_gaps(&ctx.field(name))),
            Affected::Operator { name } => format!("您在{}预订的服务", latin_gaps(&ctx.field(name))),
            Affected::Area { .. } => format!("您途经{}的行程", latin_gaps(&place(ctx, affected))),
        }
    }

    fn duration(minutes: u32) -> String {
        match (minutes / 60, minutes % 60) {
            (0, m) => format!("{m} 分钟"),
            (h, 0) => format!("{h} 小时"),
            (h, m) => format!("{h} 小时 {m} 分钟"),
        }
    }

    fn situation(ctx: &Ctx<'_>, facts: &DisruptionFacts) -> String {
        let your = your(ctx, &facts.affected);
        let place = place(ctx, &facts.affected);
        let sentence = match facts.kind {
            DisruptionKind::Cancelled => format!("{your}已取消。"),
            DisruptionKind::Delayed => match ctx.delay() {
                Some(m) => format!("{your}预计延误约 {}。", duration(m)),
                None => format!("{your}已延误。"),
            },
            DisruptionKind::Diverted => match ctx.diverted_to() {
                Some(to) => format!("{your}已备降至 {to}。"),
                None => format!("{your}已备降其他机场。"),
            },
            DisruptionKind::AirportClosed => format!("{place}已关闭，您的行程因此受到影响。"),
            DisruptionKind::HotelClosed => match &facts.affected {
                Affected::Property { .. } => format!("您预订的酒店（{place}）暂时无法接待客人。"),
                _ => "您预订的酒店暂时无法接待客人。".to_owned(),
            },
            DisruptionKind::OperatorFailure => match &facts.affected {
                Affected::Operator { .. } => {
                    format!("为您提供服务的{}目前无法按计划提供服务。", latin_gaps(&place))
                }
                _ => format!("{your}无法按计划进行。"),
            },
            DisruptionKind::Weather => format!(
                "受恶劣天气影响，{}的出行受到干扰，您的行程也受到影响。",
                latin_gaps(&place).trim_start()
            ),
            DisruptionKind::Security => {
                format!(
                    "受安全事件影响，{}的出行受到干扰，您的行程也受到影响。",
                    latin_gaps(&place).trim_start()
                )
            }
        };
        // A separate sentence, because the reason is told as the operator wrote it, possibly
        // in English, and "因 heavy snow 取消" does not read.
        match ctx.reason() {
            Some(reason) => format!("{sentence}原因：{reason}。"),
            None => sentence,
        }
    }

    fn next_step(ctx: &Ctx<'_>, kind: Option<DisruptionKind>) -> &'static str {
        use DisruptionKind as K;
        match (kind, ctx.short) {
            (Some(K::Cancelled | K::AirportClosed), false) => {
                "我们正在为您查找改签方案，如有需要也会为您安排今晚的酒店。"
            }
            (Some(K::Cancelled | K::AirportClosed), true) => "我们将为您发送改签方案。",
            (Some(K::Delayed), false) => "如延误导致您错过转机或酒店入住，我们会为您安排替代方案。",
            (Some(K::Delayed), true) => "如因此错过转机，我们会协助您。",
            (Some(K::Diverted), false) => "我们正在为您安排前往目的地的后续交通。",
            (Some(K::Diverted), true) => "我们正在安排后续交通。",
            (Some(K::HotelClosed), _) => "我们正在为您另行安排酒店。",
            (Some(K::OperatorFailure), false) => "我们正在为您安排替代服务。",
            (Some(K::OperatorFailure), true) => "我们正在安排替代服务。",
            (Some(K::Weather | K::Security) | None, false) => {
                "我们正在核查您的行程，如有需要将为您提供改签方案或安排酒店。"
            }
            (Some(K::Weather | K::Security) | None, true) => "我们正在核查您的行程。",
        }
    }

    fn confirm(channel: NotifyChannel) -> &'static str {
        match channel {
            NotifyChannel::Email => "请回复本邮件，确认您已收到此通知。",
            NotifyChannel::Sms => "收到请回复1。",
            NotifyChannel::Push => "请点击确认已收到。",
            NotifyChannel::Wechat => "请回复1，确认您已收到此通知。",
        }
    }

    fn headline(ctx: &Ctx<'_>, facts: Option<&DisruptionFacts>) -> String {
        let Some(facts) = facts else { return "行程变动通知".to_owned() };
        let what = match facts.kind {
            DisruptionKind::Cancelled => "取消通知",
            DisruptionKind::Delayed => "延误通知",
            DisruptionKind::Diverted => "备降通知",
            DisruptionKind::AirportClosed => "关闭通知",
            DisruptionKind::HotelClosed => "酒店暂停接待通知",
            DisruptionKind::OperatorFailure => "服务中断通知",
            DisruptionKind::Weather => "天气影响通知",
            DisruptionKind::Security => "安全事件通知",
        };
        let place = place(ctx, &facts.affected);
        match facts.affected {
            // "… CA981 航班取消通知", "PEK 机场关闭通知": the place ends in its own noun.
            Affected::Flight { .. } | Affected::Airport { .. } => format!("{place}{what}"),
            Affected::Property { .. } | Affected::Operator { .. } | Affected::Area { .. } => {
                format!("{what}：{place}")
            }
        }
    }

    fn disruption(ctx: &Ctx<'_>, update: bool) -> Rendered {
        let case = ctx.case();
        let facts = ctx.vars.disruption.as_ref();
        let situation = match facts {
            Some(facts) => situation(ctx, facts),
            None => "您的行程受到突发情况影响。".to_owned(),
        };
        let next = next_step(ctx, facts.map(|f| f.kind));
        let confirm = confirm(ctx.channel);
        let headline = headline(ctx, facts);
        let subject = if update {
            format!("【更新】{headline}（案件号 {case}）")
        } else {
            format!("{headline}（案件号 {case}）")
        };
        let body = if ctx.short {
            if update {
                format!("【Detour】行程更新：{situation}您的案件 {case} 仍在处理中。{next}{confirm}")
            } else {
                format!("【Detour】{situation}您无需致电，我们已为您创建案件 {case}。{next}{confirm}")
            }
        } else {
            let by = ctx
                .vars
                .first_response_due
                .map(|due| format!("，最迟于 {} 前", time(due)))
                .unwrap_or_default();
            let (opening, case_line) = if update {
                (
                    format!("您的行程有新的变化，本通知取代此前的通知。{situation}"),
                    format!("您的案件 {case} 仍在处理中。{next}方案确定后我们会第一时间通知您{by}。"),
                )
            } else {
                (
                    situation,
                    format!(
                        "您无需致电：我们已为您创建案件 {case}。{next}方案确定后我们会第一时间通知您{by}。"
                    ),
                )
            };
            letter(ctx, &[opening, case_line, confirm.to_owned()])
        };
        Rendered { subject, body }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    const PURPOSES: [Purpose; 3] = [Purpose::Acknowledgement, Purpose::Disruption, Purpose::DisruptionUpdate];
    const LANGUAGES: [Language; 2] = [Language::Zh, Language::En];

    fn due() -> Instant {
        "2026-12-03T14:00:00Z".parse().unwrap()
    }

    fn vars(kind: DisruptionKind, affected: Affected) -> TemplateVars {
        TemplateVars {
            case_number: "DT-0000042".to_owned(),
            first_response_due: Some(due()),
            traveler_name: Some(SecretString::new("Li Wei".to_owned())),
            disruption: Some(DisruptionFacts {
                kind,
                affected,
                reason: Some("heavy snow at PEK".to_owned()),
                delay_minutes: Some(200),
                diverted_to: Some("TSN".to_owned()),
            }),
        }
    }

    fn flight() -> Affected {
        Affected::Flight { number: "CA981".to_owned(), local_date: "2026-12-03".to_owned() }
    }

    fn affected_for(kind: DisruptionKind) -> Affected {
        match kind {
            DisruptionKind::AirportClosed => Affected::Airport { code: "PEK".to_owned() },
            DisruptionKind::HotelClosed => Affected::Property { name: "Grand Hotel Beijing".to_owned() },
            DisruptionKind::OperatorFailure => Affected::Operator { name: "Great Wall Tours".to_owned() },
            DisruptionKind::Weather | DisruptionKind::Security => {
                Affected::Area { locations: vec!["PEK".to_owned(), "TSN".to_owned()] }
            }
            _ => flight(),
        }
    }

    fn has_cjk(text: &str) -> bool {
        text.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
    }

    #[test]
    fn every_purpose_language_and_channel_renders() {
        for kind in DisruptionKind::ALL {
            let vars = vars(kind, affected_for(kind));
            for purpose in PURPOSES {
                for language in LANGUAGES {
                    for channel in NotifyChannel::ALL {
                        let r = render(purpose, language, channel, &vars);
                        let at = format!("{purpose:?}/{language:?}/{channel:?}/{kind:?}");
                        assert!(r.body.contains("DT-0000042"), "{at}: {}", r.body);
                        assert!(r.subject.contains("DT-0000042"), "{at}: {}", r.subject);
                        assert_eq!(has_cjk(&r.body), language == Language::Zh, "{at}: {}", r.body);
                        assert_eq!(has_cjk(&r.subject), language == Language::Zh, "{at}: {}", r.subject);
                        if channel == NotifyChannel::Sms {
                            assert!(r.body.chars().count() <= SMS_MAX_CHARS, "{at}: {}", r.body);
                        }
                        // Lock screens show SMS and push to anyone nearby.
                        let short = matches!(channel, NotifyChannel::Sms | NotifyChannel::Push);
                        assert_eq!(r.body.contains("Li Wei"), !short, "{at}: {}", r.body);
                    }
                }
            }
        }
    }

    #[test]
    fn the_cancellation_reads_as_a_travel_company_would_write_it() {
        let vars = vars(DisruptionKind::Cancelled, flight());
        let en = render(Purpose::Disruption, Language::En, NotifyChannel::Email, &vars);
        assert_eq!(en.subject, "Cancelled: flight CA981 on 2026-12-03 – case DT-0000042");
        assert!(en.body.starts_with("Dear Li Wei,\n\n"), "{}", en.body);
        assert!(
            en.body
                .contains("Your flight CA981 on 2026-12-03 has been cancelled because of heavy snow at PEK."),
            "{}",
            en.body
        );
        assert!(en.body.contains("You do not need to call us: we have opened case DT-0000042 for you."));
        assert!(en.body.contains("by 2026-12-03 14:00 UTC at the latest"));
        assert!(en.body.contains("reply to this e-mail to confirm"));

        let zh = render(Purpose::Disruption, Language::Zh, NotifyChannel::Email, &vars);
        assert_eq!(zh.subject, "2026年12月3日 CA981 航班取消通知（案件号 DT-0000042）");
        assert!(zh.body.starts_with("尊敬的Li Wei，您好："), "{}", zh.body);
        assert!(
            zh.body.contains("您乘坐的 2026年12月3日 CA981 航班已取消。原因：heavy snow at PEK。"),
            "{}",
            zh.body
        );
        assert!(zh.body.contains("我们已为您创建案件 DT-0000042"));
        assert!(zh.body.contains("最迟于 UTC 时间 2026年12月3日 14:00 前"), "{}", zh.body);

        let sms = render(Purpose::Disruption, Language::Zh, NotifyChannel::Sms, &vars);
        assert_eq!(
            sms.body,
            "【Detour】您乘坐的 2026年12月3日 CA981 航班已取消。原因：heavy snow at PEK。您无需致电，我们已为您创建案件 DT-0000042。我们将为您发送改签方案。收到请回复1。"
        );
    }

    #[test]
    fn delays_and_diversions_carry_their_numbers() {
        let delayed = vars(DisruptionKind::Delayed, flight());
        let en = render(Purpose::Disruption, Language::En, NotifyChannel::Sms, &delayed);
        assert!(en.body.contains("is delayed by about 3 h 20 min because of heavy snow"), "{}", en.body);
        let zh = render(Purpose::Disruption, Language::Zh, NotifyChannel::Push, &delayed);
        assert!(zh.body.contains("预计延误约 3 小时 20 分钟"), "{}", zh.body);

        let diverted = vars(DisruptionKind::Diverted, flight());
        let en = render(Purpose::DisruptionUpdate, Language::En, NotifyChannel::Wechat, &diverted);
        assert!(en.body.contains("has been diverted to TSN"), "{}", en.body);
        assert!(en.subject.starts_with("Update – Diverted: flight CA981"), "{}", en.subject);
        let zh = render(Purpose::DisruptionUpdate, Language::Zh, NotifyChannel::Email, &diverted);
        assert!(zh.body.contains("已备降至 TSN"), "{}", zh.body);
        assert!(zh.body.contains("本通知取代此前的通知"), "{}", zh.body);
    }

    #[test]
    fn chinese_sets_latin_names_apart() {
        let operator = Affected::Operator { name: "Great Wall Tours".to_owned() };
        let zh = render(
            Purpose::Disruption,
            Language::Zh,
            NotifyChannel::Email,
            &vars(DisruptionKind::OperatorFailure, operator),
        );
        assert_eq!(zh.subject, "服务中断通知：Great Wall Tours（案件号 DT-0000042）");
        assert!(zh.body.contains("为您提供服务的 Great Wall Tours 目前无法按计划提供服务。"), "{}", zh.body);

        let hotel = Affected::Property { name: "北京饭店".to_owned() };
        let zh = render(
            Purpose::Disruption,
            Language::Zh,
            NotifyChannel::Sms,
            &vars(DisruptionKind::Cancelled, hotel),
        );
        assert!(zh.body.contains("您在北京饭店的住宿已取消。"), "{}", zh.body);

        let area = Affected::Area { locations: vec!["PEK".to_owned(), "TSN".to_owned()] };
        let zh = render(
            Purpose::Disruption,
            Language::Zh,
            NotifyChannel::Push,
            &vars(DisruptionKind::Weather, area),
        );
        assert!(zh.body.contains("受恶劣天气影响，PEK、TSN 的出行受到干扰"), "{}", zh.body);
    }

    #[test]
    fn acknowledgement_states_the_first_answer_in_utc() {
        let vars = vars(DisruptionKind::Cancelled, flight());
        let en = render(Purpose::Acknowledgement, Language::En, NotifyChannel::Email, &vars);
        assert_eq!(en.subject, "We received your request – case DT-0000042");
        assert!(en.body.contains("first answer by 2026-12-03 14:00 UTC."), "{}", en.body);
        let zh = render(Purpose::Acknowledgement, Language::Zh, NotifyChannel::Sms, &vars);
        assert_eq!(
            zh.body,
            "【Detour】我们已收到您的反馈，案件号 DT-0000042。我们将于 UTC 时间 2026年12月3日 14:00 前首次答复。联系我们时请提供案件号。"
        );

        let bare = TemplateVars { first_response_due: None, traveler_name: None, disruption: None, ..vars };
        let en = render(Purpose::Acknowledgement, Language::En, NotifyChannel::Email, &bare);
        assert!(en.body.starts_with("Dear traveler,"), "{}", en.body);
        assert!(en.body.contains("as soon as possible"), "{}", en.body);
        let zh = render(Purpose::Disruption, Language::Zh, NotifyChannel::Wechat, &bare);
        assert!(zh.body.starts_with("尊敬的旅客，您好："), "{}", zh.body);
        assert!(zh.body.contains("DT-0000042"));
    }

    #[test]
    fn sms_stays_short_whatever_the_fields_hold() {
        let mut long = vars(
            DisruptionKind::Weather,
            Affected::Area { locations: (0..60).map(|i| format!("X{i:02}")).collect() },
        );
        if let Some(facts) = long.disruption.as_mut() {
            facts.reason = Some("a very long explanation ".repeat(40));
            facts.delay_minutes = Some(u32::MAX);
        }
        long.traveler_name = Some(SecretString::new("N".repeat(500)));
        long.case_number = "DT-0000000042".to_owned();
        for kind in DisruptionKind::ALL {
            if let Some(facts) = long.disruption.as_mut() {
                facts.kind = kind;
            }
            for purpose in PURPOSES {
                for language in LANGUAGES {
                    let r = render(purpose, language, NotifyChannel::Sms, &long);
                    let chars = r.body.chars().count();
                    assert!(chars <= SMS_MAX_CHARS, "{kind:?}/{purpose:?}/{language:?}: {chars}");
                    // Clipping the fields, not the message, keeps the case number and the ask.
                    assert!(r.body.contains("DT-0000000042"), "{}", r.body);
                    assert!(!r.body.ends_with('…'), "{}", r.body);
                }
            }
        }
    }

    #[test]
    fn rendered_debug_shows_no_text() {
        let vars = vars(DisruptionKind::Cancelled, flight());
        let r = render(Purpose::Disruption, Language::En, NotifyChannel::Email, &vars);
        let debug = format!("{r:?} {vars:?}");
        assert!(!debug.contains("Li Wei"), "{debug}");
        assert!(!debug.contains("cancelled"), "{debug}");
    }

    #[test]
    fn kinds_round_trip_and_dates_parse() {
        for kind in DisruptionKind::ALL {
            assert_eq!(DisruptionKind::from_name(kind.as_str()), Some(kind));
        }
        assert_eq!(DisruptionKind::from_name("flood"), None);
        assert_eq!(ymd("2026-12-03"), Some((2026, 12, 3)));
        assert_eq!(ymd("03/12/2026"), None);
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abc", 4), "abc");
    }
}

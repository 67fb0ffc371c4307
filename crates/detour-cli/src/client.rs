//! The terminal client: calls the suite over gRPC and prints for people (text) or programs
//! (`--json`).

use std::str::FromStr;

use clap::Args;
use detour_auth::Bearer;
use detour_domain::{
    CaseCategory, CaseStatus, Channel, Currency, RequestedOutcome, SegmentKind, Severity, time,
};
use detour_proto::common::v1 as common;
use detour_proto::intake::v1 as pb;
use detour_proto::intake::v1::intake_service_client::IntakeServiceClient;
use serde_json::{Value, json};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel as GrpcChannel;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct OpenArgs {
    /// The traveler's full name.
    #[arg(long)]
    pub name: String,
    #[arg(long)]
    pub email: Option<String>,
    /// International format, e.g. +8613800138000.
    #[arg(long)]
    pub phone: Option<String>,
    #[arg(long)]
    pub language: Option<String>,
    /// Passport or national identity document number.
    #[arg(long)]
    pub document_number: Option<String>,
    /// The traveler's id when they have cases already (so export and erasure find them all).
    #[arg(long)]
    pub traveler_id: Option<String>,
    /// phone, chat, email, app, web, sms, wechat or partner_feed.
    #[arg(long, default_value = "phone")]
    pub channel: String,
    /// flight, hotel, ground_transport or tour.
    #[arg(long, default_value = "flight")]
    pub segment: String,
    /// Airline, hotel or operator code.
    #[arg(long)]
    pub supplier: String,
    /// Flight number, room booking or tour code.
    #[arg(long)]
    pub reference: String,
    #[arg(long)]
    pub from: Option<String>,
    #[arg(long)]
    pub to: Option<String>,
    /// When the segment starts, RFC 3339 (2026-12-03T10:00:00Z).
    #[arg(long)]
    pub starts: String,
    /// The booking (PNR or order number) the segment belongs to.
    #[arg(long)]
    pub booking: String,
    /// What the segment cost, in minor units (cents).
    #[arg(long)]
    pub price_minor: Option<i64>,
    #[arg(long, default_value = "EUR")]
    pub currency: String,
    /// What the traveler said.
    #[arg(long)]
    pub text: String,
    /// Comma-separated: refund, rebooking, hotel, apology, compensation, help.
    #[arg(long, value_delimiter = ',')]
    pub wants: Vec<String>,
    #[arg(long)]
    pub idempotency_key: Option<String>,
}

/// Where the suite answers, and the token to call it with.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub token: Option<String>,
}

type Authed = InterceptedService<GrpcChannel, Bearer>;
type Client = IntakeServiceClient<Authed>;

pub(crate) async fn connect(target: &Target) -> Result<Client, String> {
    Ok(IntakeServiceClient::new(channel(target).await?))
}

async fn channel(target: &Target) -> Result<Authed, String> {
    let bearer = match &target.token {
        Some(t) => Bearer::new(t).map_err(|e| e.to_string())?,
        None => Bearer::none(),
    };
    let channel = GrpcChannel::from_shared(target.url.clone())
        .map_err(|e| format!("bad server address {}: {e}", target.url))?
        .connect()
        .await
        .map_err(|e| format!("cannot reach {}: {e}", target.url))?;
    Ok(InterceptedService::new(channel, bearer))
}

pub(crate) fn describe(status: tonic::Status) -> String {
    let mut out = format!("{:?}: {}", status.code(), status.message());
    if status.code() == tonic::Code::Unauthenticated {
        out.push_str(
            "\n  (pass --token or set DETOUR_TOKEN; `detour token --role agent` mints one for detour dev)",
        );
    }
    for v in detour_errors::field_violations_of(&status) {
        out.push_str(&format!("\n  {}: {}", v.field, v.description));
    }
    out
}

fn named<T: FromStr>(what: &str, raw: &str) -> Result<T, String> {
    raw.parse().map_err(|_| format!("unknown {what} `{raw}`"))
}

pub fn open_request(args: OpenArgs) -> Result<pb::OpenCaseRequest, String> {
    let channel: Channel = named("channel", &args.channel)?;
    let kind: SegmentKind = named("segment kind", &args.segment)?;
    let starts = chrono::DateTime::parse_from_rfc3339(&args.starts)
        .map_err(|e| format!("--starts: {e}"))?
        .with_timezone(&chrono::Utc);
    let wants = args
        .wants
        .iter()
        .filter(|w| !w.is_empty())
        .map(|w| named::<RequestedOutcome>("outcome", w).map(|o| o.to_proto()))
        .collect::<Result<Vec<_>, _>>()?;
    let price = match args.price_minor {
        Some(amount) => {
            let currency: Currency = args.currency.parse().map_err(|e| format!("--currency: {e}"))?;
            Some(common::Money { amount_minor: amount, currency: currency.code().to_owned() })
        }
        None => None,
    };
    Ok(pb::OpenCaseRequest {
        traveler: Some(common::Traveler {
            id: args.traveler_id.map(|value| common::TravelerId { value }),
            full_name: args.name,
            email: args.email.unwrap_or_default(),
            phone: args.phone.unwrap_or_default(),
            preferred_language: args.language.unwrap_or_default(),
            document_number: args.document_number.unwrap_or_default(),
        }),
        segment: Some(common::Segment {
            kind: kind.to_proto(),
            supplier_code: args.supplier,
            service_reference: args.reference,
            origin: args.from.unwrap_or_default(),
            destination: args.to.unwrap_or_default(),
            starts_at: Some(time::to_proto(starts)),
            ends_at: None,
            booking_reference: args.booking,
            price,
        }),
        channel: channel.to_proto(),
        description: args.text,
        requested_outcomes: wants,
        idempotency_key: args.idempotency_key.unwrap_or_default(),
    })
}

fn ts(t: Option<&prost_types::Timestamp>) -> String {
    t.and_then(time::from_proto)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

fn name_of<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn case_json(c: &pb::Case) -> Value {
    json!({
        "case_id": c.case_id.as_ref().map(|i| i.value.clone()),
        "traveler_id": c.traveler.as_ref().and_then(|t| t.id.as_ref()).map(|i| i.value.clone()),
        "personal_data_erased_at": c.personal_data_erased_at.as_ref().map(|t| ts(Some(t))),
        "case_number": c.case_number,
        "status": name_of(CaseStatus::from_proto(c.status)),
        "category": name_of(CaseCategory::from_proto(c.category)),
        "severity": name_of(Severity::from_proto(c.severity)),
        "queue": c.queue,
        "channel": name_of(Channel::from_proto(c.channel)),
        "description": c.description,
        "opened_at": ts(c.opened_at.as_ref()),
        "first_response_due": ts(c.first_response_due.as_ref()),
        "resolution_due": ts(c.resolution_due.as_ref()),
        "resolved_at": ts(c.resolved_at.as_ref()),
        "resolution": c.resolution,
        "segment": c.segment.as_ref().map(|s| json!({
            "supplier_code": s.supplier_code,
            "service_reference": s.service_reference,
            "origin": s.origin,
            "destination": s.destination,
            "starts_at": ts(s.starts_at.as_ref()),
        })),
        "timeline": c.timeline.iter().map(|t| json!({
            "at": ts(t.at.as_ref()), "kind": t.kind, "actor": t.actor, "summary": t.summary,
        })).collect::<Vec<_>>(),
    })
}

fn case_text(c: &pb::Case) -> String {
    let mut out = format!(
        "{}  {}  [{}]\n  category: {}  severity: {}  queue: {}\n  opened: {}  first response due: {}\n",
        c.case_number,
        c.case_id.as_ref().map(|i| i.value.as_str()).unwrap_or_default(),
        name_of(CaseStatus::from_proto(c.status)),
        name_of(CaseCategory::from_proto(c.category)),
        name_of(Severity::from_proto(c.severity)),
        if c.queue.is_empty() { "-" } else { &c.queue },
        ts(c.opened_at.as_ref()),
        ts(c.first_response_due.as_ref()),
    );
    out.push_str(&format!("  said: {}\n", c.description));
    if !c.resolution.is_empty() {
        out.push_str(&format!("  resolved {}: {}\n", ts(c.resolved_at.as_ref()), c.resolution));
    }
    if !c.timeline.is_empty() {
        out.push_str("  timeline:\n");
        for t in &c.timeline {
            out.push_str(&format!(
                "    {}  {:<20} {:<13} {}\n",
                ts(t.at.as_ref()),
                t.kind,
                t.actor,
                t.summary
            ));
        }
    }
    out.trim_end().to_owned()
}

pub async fn open(server: &Target, args: OpenArgs, output: Output) -> Result<String, String> {
    let request = open_request(args)?;
    let mut client = connect(server).await?;
    let ack = client.open_case(request).await.map_err(describe)?.into_inner();
    let id = ack.case_id.as_ref().map(|i| i.value.clone()).unwrap_or_default();
    Ok(match output {
        Output::Json => json!({
            "case_id": id,
            "case_number": ack.case_number,
            "first_response_due": ts(ack.first_response_due.as_ref()),
            "replayed": ack.replayed,
        })
        .to_string(),
        Output::Text => format!(
            "{} {} ({id}); first response due {}",
            if ack.replayed { "Already open:" } else { "Opened" },
            ack.case_number,
            ts(ack.first_response_due.as_ref())
        ),
    })
}

fn optional_enum<T: FromStr>(what: &str, raw: Option<String>, to: impl Fn(T) -> i32) -> Result<i32, String> {
    raw.map(|r| named::<T>(what, &r).map(to)).transpose().map(|v| v.unwrap_or(0))
}

pub async fn list(
    server: &Target,
    status: Option<String>,
    category: Option<String>,
    channel: Option<String>,
    limit: i32,
    page_token: Option<String>,
    output: Output,
) -> Result<String, String> {
    let request = pb::ListCasesRequest {
        status: optional_enum::<CaseStatus>("status", status, CaseStatus::to_proto)?,
        category: optional_enum::<CaseCategory>("category", category, CaseCategory::to_proto)?,
        channel: optional_enum::<Channel>("channel", channel, Channel::to_proto)?,
        opened_after: None,
        opened_before: None,
        page_size: limit,
        page_token: page_token.unwrap_or_default(),
    };
    let mut client = connect(server).await?;
    let page = client.list_cases(request).await.map_err(describe)?.into_inner();
    Ok(match output {
        Output::Json => json!({
            "cases": page.cases.iter().map(case_json).collect::<Vec<_>>(),
            "next_page_token": page.next_page_token,
        })
        .to_string(),
        Output::Text => {
            let mut out = format!(
                "{:<12} {:<17} {:<20} {:<9} {:<20} {}\n",
                "NUMBER", "STATUS", "CATEGORY", "SEVERITY", "OPENED", "SAID"
            );
            for c in &page.cases {
                let said: String = c.description.chars().take(48).collect();
                out.push_str(&format!(
                    "{:<12} {:<17} {:<20} {:<9} {:<20} {}\n",
                    c.case_number,
                    name_of(CaseStatus::from_proto(c.status)),
                    name_of(CaseCategory::from_proto(c.category)),
                    name_of(Severity::from_proto(c.severity)),
                    ts(c.opened_at.as_ref()),
                    said.replace('\n', " "),
                ));
            }
            if page.cases.is_empty() {
                out.push_str("(no cases)\n");
            }
            if !page.next_page_token.is_empty() {
                out.push_str(&format!("more: --page-token {}\n", page.next_page_token));
            }
            out.trim_end().to_owned()
        }
    })
}

pub async fn show(server: &Target, case_id: &str, output: Output) -> Result<String, String> {
    let mut client = connect(server).await?;
    let request = pb::GetCaseRequest { case_id: Some(common::CaseId { value: case_id.to_owned() }) };
    let case = client.get_case(request).await.map_err(describe)?.into_inner().case.ok_or("empty answer")?;
    Ok(match output {
        Output::Json => case_json(&case).to_string(),
        Output::Text => case_text(&case),
    })
}

pub async fn resolve(
    server: &Target,
    case_id: &str,
    resolution: &str,
    output: Output,
) -> Result<String, String> {
    let mut client = connect(server).await?;
    let request = pb::ResolveCaseRequest {
        case_id: Some(common::CaseId { value: case_id.to_owned() }),
        resolution: resolution.to_owned(),
    };
    let case =
        client.resolve_case(request).await.map_err(describe)?.into_inner().case.ok_or("empty answer")?;
    Ok(match output {
        Output::Json => case_json(&case).to_string(),
        Output::Text => case_text(&case),
    })
}

fn traveler_ref(id: &str) -> Option<common::TravelerId> {
    Some(common::TravelerId { value: id.to_owned() })
}

/// Everything intake holds about a traveler, always as JSON (the export's own format).
pub async fn export(server: &Target, traveler_id: &str) -> Result<String, String> {
    let mut client = connect(server).await?;
    let request = pb::ExportTravelerRequest { traveler_id: traveler_ref(traveler_id) };
    Ok(client.export_traveler(request).await.map_err(describe)?.into_inner().json)
}

pub async fn erase(
    server: &Target,
    traveler_id: &str,
    reason: &str,
    output: Output,
) -> Result<String, String> {
    let mut client = connect(server).await?;
    let request =
        pb::EraseTravelerRequest { traveler_id: traveler_ref(traveler_id), reason: reason.to_owned() };
    let done = client.erase_traveler(request).await.map_err(describe)?.into_inner();
    Ok(match output {
        Output::Json => json!({
            "cases_erased": done.cases_erased,
            "erased_at": ts(done.erased_at.as_ref()),
        })
        .to_string(),
        Output::Text => format!(
            "Erased the personal data of traveler {traveler_id} on {} case(s) at {}",
            done.cases_erased,
            ts(done.erased_at.as_ref())
        ),
    })
}

/// The audit trail of the services behind `server`, newest first.
pub async fn audit(
    server: &Target,
    case_id: Option<String>,
    actor: Option<String>,
    limit: i32,
    page_token: Option<String>,
    output: Output,
) -> Result<String, String> {
    use detour_proto::audit::v1 as audit;
    let mut client = audit::audit_service_client::AuditServiceClient::new(channel(server).await?);
    let request = audit::ListAuditRecordsRequest {
        case_id: case_id.map(|value| common::CaseId { value }),
        actor_id: actor.unwrap_or_default(),
        page_size: limit,
        page_token: page_token.unwrap_or_default(),
        ..Default::default()
    };
    let page = client.list_audit_records(request).await.map_err(describe)?.into_inner();
    let who = |r: &audit::AuditRecord| {
        r.actor.as_ref().map_or_else(String::new, |a| match a.on_behalf_of.as_str() {
            "" => a.id.clone(),
            user => format!("{} for {user}", a.id),
        })
    };
    Ok(match output {
        Output::Json => json!({
            "records": page.records.iter().map(|r| json!({
                "audit_id": r.audit_id,
                "at": ts(r.at.as_ref()),
                "service": r.service,
                "actor": who(r),
                "roles": r.actor.as_ref().map(|a| a.roles.clone()).unwrap_or_default(),
                "action": r.action,
                "case_id": r.case_id.as_ref().map(|c| c.value.clone()),
                "targets": r.targets.iter().map(|t| json!({"kind": t.kind, "id": t.id})).collect::<Vec<_>>(),
                "trace_id": r.trace_id,
                "outcome": r.outcome,
            })).collect::<Vec<_>>(),
            "next_page_token": page.next_page_token,
        })
        .to_string(),
        Output::Text => {
            let mut out =
                format!("{:<20} {:<12} {:<28} {:<10} {}\n", "AT", "SERVICE", "WHO", "OUTCOME", "ACTION");
            for r in &page.records {
                out.push_str(&format!(
                    "{:<20} {:<12} {:<28} {:<10} {}\n",
                    ts(r.at.as_ref()),
                    r.service,
                    who(r),
                    r.outcome,
                    r.action
                ));
            }
            if page.records.is_empty() {
                out.push_str("(no records)\n");
            }
            if !page.next_page_token.is_empty() {
                out.push_str(&format!("more: --page-token {}\n", page.next_page_token));
            }
            out.trim_end().to_owned()
        }
    })
}

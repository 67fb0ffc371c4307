//! The disruption fan-out: for each incident behind its revision, one case per affected
//! traveler and a notification to each, written a batch per transaction. Any replica may run
//! it; an incident is worked by one replica at a time (a lease), and a pass resumes from its
//! cursor after a crash, so every traveler gets exactly one case per incident.

use std::sync::Arc;
use std::time::Duration;

use detour_audit::Audit;
use detour_domain::{CaseId, Channel, NotificationId, RequestedOutcome, TravelerId, events, sla, time};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::contact;
use crate::crisis::{
    DisruptionKind, DueNotification, FanoutBatch, FanoutCase, FanoutTarget, FanoutUpdate, FanoutWritten,
    Incident, NewNotification, Purpose, segment_key,
};
use crate::dispatch::Handoff;
use crate::error::IntakeError;
use crate::keys::{Owner, PersonalDataKeys};
use crate::model::{NewCase, StoredPersonal, StoredTraveler, TimelineEntry};
use crate::repo::{IntakeRepository, case_number};

#[derive(Debug, Clone)]
pub struct FanoutSettings {
    /// Travelers per transaction.
    pub batch: u32,
    /// How long a replica holds an incident without writing before another may take over.
    pub lease: Duration,
    /// How often to look for work when nothing wakes the worker.
    pub poll: Duration,
}

impl Default for FanoutSettings {
    fn default() -> Self {
        Self { batch: 500, lease: Duration::from_secs(30), poll: Duration::from_secs(2) }
    }
}

pub struct FanoutWorker {
    repo: Arc<dyn IntakeRepository>,
    keys: Arc<PersonalDataKeys>,
    settings: FanoutSettings,
    /// Woken by ReportDisruption.
    wake: Arc<Notify>,
    /// Wakes the dispatcher once notifications are queued.
    dispatch: Arc<Notify>,
    /// Gives the new cases' notifications to this process's dispatcher once written.
    handoff: Handoff,
}

impl FanoutWorker {
    pub fn new(
        repo: Arc<dyn IntakeRepository>,
        keys: Arc<PersonalDataKeys>,
        settings: FanoutSettings,
        wake: Arc<Notify>,
        dispatch: Arc<Notify>,
        handoff: Handoff,
    ) -> Self {
        Self { repo, keys, settings, wake, dispatch, handoff }
    }

    pub fn spawn(self, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                match self.run_once().await {
                    Ok(0) => {}
                    Ok(passes) => tracing::debug!(passes, "fan-out passes finished"),
                    Err(e) => tracing::warn!(error = %e, "fan-out failed; retrying"),
                }
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(self.settings.poll) => {}
                }
            }
        })
    }

    /// Works every incident that is behind; answers how many passes it finished.
    pub async fn run_once(&self) -> Result<usize, IntakeError> {
        let mut passes = 0;
        loop {
            let now = time::now();
            let Some((incident, cursor)) = self.repo.claim_fanout(now, now + self.lease()).await? else {
                return Ok(passes);
            };
            self.run_pass(&incident, cursor).await?;
            passes += 1;
        }
    }

    fn lease(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.settings.lease).unwrap_or(chrono::Duration::seconds(30))
    }

    async fn run_pass(&self, incident: &Incident, mut cursor: Option<TravelerId>) -> Result<(), IntakeError> {
        let audit = Audit::of_service(crate::NAME, "fan-out disruption");
        let started = std::time::Instant::now();
        let mut opened = 0usize;
        // The next batch is read and sealed while this one is written: the database and this
        // process take turns otherwise. That is safe because a batch's write touches only its own
        // travelers, and the cursor still moves one committed batch at a time.
        let mut next = self.prepare(incident, cursor).await?;
        while let Some(mut batch) = next {
            cursor = Some(batch.cursor);
            let reservation = self.handoff.reserve(batch.new_cases.len());
            if let Some(r) = &reservation {
                for c in &mut batch.new_cases {
                    c.notification.leased_until = Some(r.until);
                }
            }
            let write = self.repo.write_fanout(incident.id, &batch, time::now() + self.lease(), &audit);
            let (written, prepared) = tokio::join!(write, self.prepare(incident, cursor));
            let written = written?;
            opened += written.opened;
            if let Some(reservation) = reservation {
                self.handoff.hand(reservation, handed(incident, batch.new_cases, &written));
            }
            self.dispatch.notify_one();
            next = prepared?;
        }
        self.repo.finish_fanout(incident.id, incident.revision, time::now()).await?;
        tracing::info!(
            incident_id = %incident.id,
            revision = incident.revision,
            cases_opened = opened,
            elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "fan-out pass finished"
        );
        Ok(())
    }

    /// The batch of travelers after `cursor`, ready to write; `None` when the pass is done.
    async fn prepare(
        &self,
        incident: &Incident,
        cursor: Option<TravelerId>,
    ) -> Result<Option<FanoutBatch>, IntakeError> {
        let (targets, last) =
            self.repo.fanout_targets(incident.id, incident.revision, cursor, self.settings.batch).await?;
        let Some(last) = last else { return Ok(None) };
        Ok(Some(self.batch(incident, targets, last).await?))
    }

    async fn batch(
        &self,
        incident: &Incident,
        targets: Vec<FanoutTarget>,
        cursor: TravelerId,
    ) -> Result<FanoutBatch, IntakeError> {
        let at = time::now();
        let actor = detour_domain::Actor::service(crate::NAME, None);
        let mut new_cases = Vec::new();
        let mut updates = Vec::new();
        for t in targets {
            // A traveler whose personal data was erased cannot be reached or sealed for.
            let Some(sealed) = &t.traveler.sealed else { continue };
            let language = language_of(t.traveler.preferred_language.as_deref());
            let personal = self.keys.open_for(Owner::Traveler(t.traveler.id), sealed).await?;
            let channels = contact::reply_channels(
                Channel::Proactive,
                &t.traveler.contact_channels,
                personal.email().is_some(),
                personal.phone().is_some(),
            );
            match t.existing {
                Some((_, told)) if told >= incident.revision => {}
                Some((case_id, _)) => {
                    updates.push(FanoutUpdate {
                        case_id,
                        traveler_id: t.traveler.id,
                        notification: notification(
                            case_id,
                            incident,
                            t.traveler.id,
                            Purpose::DisruptionUpdate,
                            channels,
                            language,
                            at,
                        ),
                        timeline: TimelineEntry {
                            at,
                            kind: "incident.updated".into(),
                            actor: "intake".into(),
                            summary: format!("The disruption changed: {}", describe(incident)),
                        },
                    });
                }
                None => {
                    let id = CaseId::new();
                    let case = NewCase {
                        id,
                        traveler: StoredTraveler {
                            id: t.traveler.id,
                            preferred_language: t.traveler.preferred_language.clone(),
                            personal: StoredPersonal::Sealed(self.keys.seal(id, &personal).await?),
                        },
                        segment_key: Some(segment_key(&t.segment)),
                        segment: t.segment,
                        channel: Channel::Proactive,
                        description: describe(incident),
                        requested_outcomes: outcomes(incident.kind),
                        received_at: at,
                        first_response_due: at + sla::first_response_within(None, None),
                        idempotency_key: None,
                        fingerprint: format!("incident:{}", incident.id),
                        incident_id: Some(incident.id),
                        language: Some(language.to_owned()),
                        acknowledgement: None,
                    };
                    let opened =
                        events::envelope(crate::NAME, id, at, &actor, crate::grpc::case_opened(&case));
                    let notification = notification(
                        id,
                        incident,
                        t.traveler.id,
                        Purpose::Disruption,
                        channels,
                        language,
                        at,
                    );
                    new_cases.push(FanoutCase { case, opened, notification });
                }
            }
        }
        Ok(FanoutBatch { revision: incident.revision, new_cases, updates, cursor })
    }
}

/// The notifications of the cases a batch opened, as the dispatcher sends them.
fn handed(incident: &Incident, cases: Vec<FanoutCase>, written: &FanoutWritten) -> Vec<DueNotification> {
    cases
        .into_iter()
        .filter_map(|c| {
            let number = written.numbers.get(&c.case.id)?;
            let sealed = match c.case.traveler.personal {
                StoredPersonal::Sealed(sealed) => Some(sealed),
                StoredPersonal::Erased { .. } => None,
            };
            Some(DueNotification::written(
                c.notification,
                case_number(*number),
                c.case.first_response_due,
                sealed,
                Some(incident.clone()),
            ))
        })
        .collect()
}

fn notification(
    case_id: CaseId,
    incident: &Incident,
    traveler_id: TravelerId,
    purpose: Purpose,
    channels: Vec<Channel>,
    language: &str,
    at: detour_domain::Instant,
) -> NewNotification {
    NewNotification {
        id: NotificationId::new(),
        case_id,
        incident_id: Some(incident.id),
        traveler_id,
        purpose,
        channels,
        language: language.to_owned(),
        at,
        leased_until: None,
    }
}

/// "zh" for any Chinese tag, else "en": the two languages templates exist in.
pub fn language_of(tag: Option<&str>) -> &'static str {
    match tag {
        Some(t) if t.to_ascii_lowercase().starts_with("zh") => "zh",
        _ => "en",
    }
}

/// The case text for a proactive case: what happened, in the desk's words.
pub fn describe(i: &Incident) -> String {
    let what = match i.kind {
        DisruptionKind::FlightCancelled => "cancelled".to_owned(),
        DisruptionKind::FlightDelayed => format!("delayed by about {} minutes", i.delay_minutes),
        DisruptionKind::FlightDiverted => {
            format!("diverted to {}", i.diverted_to.as_deref().unwrap_or("another airport"))
        }
        DisruptionKind::AirportClosed => "closed".to_owned(),
        DisruptionKind::HotelClosed => "closed".to_owned(),
        DisruptionKind::OperatorFailure => "unable to operate".to_owned(),
        DisruptionKind::Weather => "affected by severe weather".to_owned(),
        DisruptionKind::Security => "affected by a security event".to_owned(),
    };
    let reason = if i.reason.is_empty() { String::new() } else { format!(" ({})", i.reason) };
    format!("Reported disruption: {} {what}{reason}", i.scope.subject())
}

/// What a traveler hit by this kind of disruption will need.
fn outcomes(kind: DisruptionKind) -> Vec<RequestedOutcome> {
    match kind {
        DisruptionKind::FlightCancelled | DisruptionKind::AirportClosed | DisruptionKind::FlightDiverted => {
            vec![RequestedOutcome::Rebooking]
        }
        DisruptionKind::HotelClosed => vec![RequestedOutcome::Hotel],
        DisruptionKind::FlightDelayed
        | DisruptionKind::OperatorFailure
        | DisruptionKind::Weather
        | DisruptionKind::Security => vec![RequestedOutcome::Help],
    }
}

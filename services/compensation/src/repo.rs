//! Compensation's storage: one interface, a PostgreSQL and a SQLite implementation generated
//! from the same SQL (both backends accept `$n` parameters and `ON CONFLICT … DO UPDATE`), and
//! one contract test suite run against both (`tests/it/repository.rs`).

use async_trait::async_trait;
use detour_audit::{Audit, AuditWrite, Outcome, Target};
use detour_domain::{CaseId, Instant, Money, OfferId, time};
use detour_proto::events::v1::Envelope;
use detour_storage::decode::{corrupt, instant, optional_instant, parse};

use crate::error::CompensationError;
use crate::model::{Applied, CaseContext, NewOffer, Offer, OfferStatus};

/// Everything compensation stores. Each method is one transaction; events it emits are written
/// to the outbox inside that transaction.
#[async_trait]
pub trait CompensationRepository: Send + Sync + 'static {
    /// Applies one triage event: records the case's context (a later triage replaces an earlier
    /// one) and, when `offer` is given, proposes it with its `OfferProposed` event unless the
    /// case already has an offer on that rung. When either changed something, the audit record of
    /// `audit` is appended with them. A second delivery of `event_id` changes nothing.
    async fn record_triage(
        &self,
        consumer: &str,
        event_id: &str,
        context: CaseContext,
        offer: Option<(NewOffer, Envelope)>,
        audit: &Audit,
    ) -> Result<Applied, CompensationError>;

    async fn case_context(&self, case_id: CaseId) -> Result<Option<CaseContext>, CompensationError>;

    /// Applies one event that calls for `offer`: proposes it with `proposed` (its
    /// `OfferProposed`) and the audit record of `audit`, unless `event_id` was applied before
    /// or the case already has an offer on that rung.
    async fn propose(
        &self,
        consumer: &str,
        event_id: &str,
        offer: NewOffer,
        proposed: Envelope,
        audit: &Audit,
    ) -> Result<Applied, CompensationError>;

    async fn get_offer(&self, id: OfferId) -> Result<Option<Offer>, CompensationError>;

    /// A case's offers, oldest first.
    async fn list_offers(&self, case_id: CaseId) -> Result<Vec<Offer>, CompensationError>;

    /// Accepts a proposed offer, emits `accepted` (its `OfferAccepted`) and appends the audit
    /// record of `audit`. An offer is accepted once: a second acceptance is refused (and the
    /// caller records the refusal).
    async fn accept_offer(
        &self,
        id: OfferId,
        at: Instant,
        accepted: Envelope,
        audit: &Audit,
    ) -> Result<Offer, CompensationError>;
}

/// The repository on one backend, for [`detour_events::sql_repositories!`]. The body is written
/// once, so the two implementations cannot drift apart.
macro_rules! sql_repository {
    ($name:ident, $db:ty, $pool:ty, $row:ty, $enqueue:path, $mark_processed:path, $begin:literal) => {
        impl $name {
            fn offer_from_row(row: &$row) -> Result<Offer, CompensationError> {
                use sqlx::Row;
                let status: OfferStatus = parse(&row.try_get::<String, _>("status")?)?;
                let accepted_at = optional_instant(row.try_get("accepted_at")?)?;
                if (status == OfferStatus::Accepted) != accepted_at.is_some() {
                    return Err(corrupt("offer status and acceptance time disagree").into());
                }
                Ok(Offer {
                    id: parse(&row.try_get::<String, _>("offer_id")?)?,
                    case_id: parse(&row.try_get::<String, _>("case_id")?)?,
                    amount: Money::new(
                        row.try_get("amount_minor")?,
                        parse(&row.try_get::<String, _>("currency")?)?,
                    ),
                    status,
                    policy_rule: row.try_get("policy_rule")?,
                    rationale: row.try_get("rationale")?,
                    proposed_at: instant(row.try_get("proposed_at")?)?,
                    accepted_at,
                })
            }

            async fn load_offer(
                conn: &mut <$db as sqlx::Database>::Connection,
                id: OfferId,
            ) -> Result<Option<Offer>, CompensationError> {
                let row = sqlx::query("SELECT * FROM offers WHERE offer_id = $1")
                    .bind(id.to_string())
                    .fetch_optional(&mut *conn)
                    .await?;
                row.as_ref().map(Self::offer_from_row).transpose()
            }

            /// Inserts the offer and enqueues its event inside `conn`'s transaction; `None` when
            /// the case already has an offer on that rung, and then nothing is emitted.
            async fn insert_offer(
                conn: &mut <$db as sqlx::Database>::Connection,
                offer: &NewOffer,
                proposed: &Envelope,
            ) -> Result<Option<OfferId>, CompensationError> {
                // The unique (case_id, rung) settles a race between two events proposing for one
                // case: the loser waits for the winner's commit and then inserts nothing.
                let inserted = sqlx::query(
                    "INSERT INTO offers (offer_id, case_id, rung, amount_minor, currency, status, policy_rule, \
                     rationale, proposed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     ON CONFLICT (case_id, rung) DO NOTHING",
                )
                .bind(offer.id.to_string())
                .bind(offer.case_id.to_string())
                .bind(offer.rung)
                .bind(offer.amount.amount_minor)
                .bind(offer.amount.currency.code())
                .bind(OfferStatus::Proposed.as_str())
                .bind(&offer.policy_rule)
                .bind(&offer.rationale)
                .bind(time::to_micros(offer.proposed_at))
                .execute(&mut *conn)
                .await?;
                if inserted.rows_affected() == 0 {
                    return Ok(None);
                }
                $enqueue(&mut *conn, detour_domain::events::streams::COMPENSATION, proposed).await?;
                Ok(Some(offer.id))
            }
        }

        #[async_trait]
        impl CompensationRepository for $name {
            async fn record_triage(
                &self,
                consumer: &str,
                event_id: &str,
                context: CaseContext,
                offer: Option<(NewOffer, Envelope)>,
                audit: &Audit,
            ) -> Result<Applied, CompensationError> {
                let mut tx = self.pool.begin_with($begin).await?;
                if !$mark_processed(&mut tx, consumer, event_id).await? {
                    return Ok(Applied::AlreadyProcessed);
                }
                // Redeliveries and retries can bring an older triage after a newer one; the
                // newer verdict stands.
                let recorded = sqlx::query(
                    "INSERT INTO case_contexts (case_id, category, severity, needs_supplier, price_minor, \
                     price_currency, triaged_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (case_id) DO UPDATE SET category = excluded.category, \
                     severity = excluded.severity, needs_supplier = excluded.needs_supplier, \
                     price_minor = excluded.price_minor, price_currency = excluded.price_currency, \
                     triaged_at = excluded.triaged_at \
                     WHERE case_contexts.triaged_at <= excluded.triaged_at",
                )
                .bind(context.case_id.to_string())
                .bind(context.category.as_str())
                .bind(context.severity.as_str())
                .bind(context.needs_supplier)
                .bind(context.price.map(|p| p.amount_minor))
                .bind(context.price.map(|p| p.currency.code().to_owned()))
                .bind(time::to_micros(context.triaged_at))
                .execute(&mut *tx)
                .await?;
                let proposed = match &offer {
                    Some((offer, event)) => Self::insert_offer(&mut tx, offer, event).await?,
                    None => None,
                };
                // A stale triage that proposes nothing changed nothing, and is not recorded.
                if recorded.rows_affected() > 0 || proposed.is_some() {
                    let targets = proposed.iter().map(|id| Target::new("offer", id)).collect();
                    let record = audit.record(Some(context.case_id), targets, Outcome::Ok);
                    AuditWrite::append_audit(&mut *tx, &record).await?;
                }
                tx.commit().await?;
                if proposed.is_some() {
                    self.committed();
                }
                Ok(Applied::Applied { proposed })
            }

            async fn case_context(&self, case_id: CaseId) -> Result<Option<CaseContext>, CompensationError> {
                use sqlx::Row;
                let row = sqlx::query("SELECT * FROM case_contexts WHERE case_id = $1")
                    .bind(case_id.to_string())
                    .fetch_optional(&self.pool)
                    .await?;
                let Some(row) = row else { return Ok(None) };
                let price = match (row.try_get::<Option<i64>, _>("price_minor")?, row.try_get::<Option<String>, _>("price_currency")?) {
                    (Some(minor), Some(currency)) => Some(Money::new(minor, parse(&currency)?)),
                    (None, None) => None,
                    _ => return Err(corrupt("price without currency or currency without price").into()),
                };
                Ok(Some(CaseContext {
                    case_id,
                    category: parse(&row.try_get::<String, _>("category")?)?,
                    severity: parse(&row.try_get::<String, _>("severity")?)?,
                    needs_supplier: row.try_get("needs_supplier")?,
                    price,
                    triaged_at: instant(row.try_get("triaged_at")?)?,
                }))
            }

            async fn propose(
                &self,
                consumer: &str,
                event_id: &str,
                offer: NewOffer,
                proposed: Envelope,
                audit: &Audit,
            ) -> Result<Applied, CompensationError> {
                let mut tx = self.pool.begin_with($begin).await?;
                if !$mark_processed(&mut tx, consumer, event_id).await? {
                    return Ok(Applied::AlreadyProcessed);
                }
                let proposed = Self::insert_offer(&mut tx, &offer, &proposed).await?;
                if let Some(id) = proposed {
                    let record = audit.record(Some(offer.case_id), vec![Target::new("offer", id)], Outcome::Ok);
                    AuditWrite::append_audit(&mut *tx, &record).await?;
                }
                // Committed even without a new offer, so the event counts as handled.
                tx.commit().await?;
                if proposed.is_some() {
                    self.committed();
                }
                Ok(Applied::Applied { proposed })
            }

            async fn get_offer(&self, id: OfferId) -> Result<Option<Offer>, CompensationError> {
                let mut conn = self.pool.acquire().await?;
                Self::load_offer(&mut conn, id).await
            }

            async fn list_offers(&self, case_id: CaseId) -> Result<Vec<Offer>, CompensationError> {
                let rows = sqlx::query("SELECT * FROM offers WHERE case_id = $1 ORDER BY proposed_at, offer_id")
                    .bind(case_id.to_string())
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(Self::offer_from_row).collect()
            }

            async fn accept_offer(
                &self,
                id: OfferId,
                at: Instant,
                accepted: Envelope,
                audit: &Audit,
            ) -> Result<Offer, CompensationError> {
                let mut tx = self.pool.begin_with($begin).await?;
                let done = sqlx::query(
                    "UPDATE offers SET status = $1, accepted_at = $2 WHERE offer_id = $3 AND status = $4",
                )
                .bind(OfferStatus::Accepted.as_str())
                .bind(time::to_micros(at))
                .bind(id.to_string())
                .bind(OfferStatus::Proposed.as_str())
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Err(match Self::load_offer(&mut tx, id).await? {
                        Some(_) => CompensationError::AlreadyAccepted(id),
                        None => CompensationError::OfferNotFound(id),
                    });
                }
                $enqueue(&mut tx, detour_domain::events::streams::COMPENSATION, &accepted).await?;
                let offer = Self::load_offer(&mut tx, id).await?.ok_or(CompensationError::OfferNotFound(id))?;
                let record = audit.record(Some(offer.case_id), vec![Target::new("offer", id)], Outcome::Ok);
                AuditWrite::append_audit(&mut *tx, &record).await?;
                tx.commit().await?;
                self.committed();
                Ok(offer)
            }
        }
    };
}

detour_events::sql_repositories!(CompensationRepository {
    postgres: PgCompensationRepository,
    sqlite: SqliteCompensationRepository,
    body: sql_repository,
});

//! Feedback's storage: one interface, a PostgreSQL and a SQLite implementation generated from
//! the same SQL (both backends accept `$n` parameters and `ON CONFLICT`), and one contract test
//! suite run against both (`tests/it/repository.rs`).

use async_trait::async_trait;
use detour_audit::{Audit, AuditWrite, Outcome, Target};
use detour_domain::{CaseId, SurveyId, time};
use detour_proto::events::v1::Envelope;
use detour_storage::decode::{corrupt, instant, parse};

use crate::error::FeedbackError;
use crate::model::{Answer, Applied, Score, Survey, SurveyStatus};

/// Everything feedback stores. Each method is one transaction; the events it emits are written
/// to the outbox inside that transaction.
#[async_trait]
pub trait FeedbackRepository: Send + Sync + 'static {
    /// Stores a resolved case's survey with its `SurveySent` event (`sent`) and the audit record
    /// of `audit`, once: a redelivered event, or another resolution of a case that already has a
    /// survey, changes and records nothing.
    async fn send_survey(
        &self,
        consumer: &str,
        event_id: &str,
        survey: &Survey,
        sent: &Envelope,
        audit: &Audit,
    ) -> Result<Applied, FeedbackError>;

    async fn get_survey(&self, id: SurveyId) -> Result<Option<Survey>, FeedbackError>;

    /// The case's surveys, oldest first (none when feedback never heard of the case).
    async fn list_surveys(&self, case_id: CaseId) -> Result<Vec<Survey>, FeedbackError>;

    /// Records the traveler's answer with its `SurveyAnswered` event (`answered`) and the audit
    /// record of `audit`, and returns the answered survey. A survey takes one answer:
    /// `AlreadyAnswered` after that (and the caller records the refusal).
    async fn answer_survey(
        &self,
        id: SurveyId,
        answer: &Answer,
        answered: &Envelope,
        audit: &Audit,
    ) -> Result<Survey, FeedbackError>;
}

/// The answer columns of a row, which are all set exactly when the survey is answered.
fn answer_of(
    status: SurveyStatus,
    score: Option<i32>,
    comment: Option<String>,
    answered_at: Option<i64>,
) -> Result<Option<Answer>, FeedbackError> {
    match (status, score, answered_at) {
        (SurveyStatus::Sent, None, None) => Ok(None),
        (SurveyStatus::Answered, Some(score), Some(at)) => Ok(Some(Answer {
            score: Score::new(score).ok_or_else(|| corrupt(format!("score {score} out of range")))?,
            comment,
            answered_at: instant(at)?,
        })),
        _ => Err(corrupt(format!("{status} survey with inconsistent answer columns")).into()),
    }
}

/// The repository on one backend, for [`detour_events::sql_repositories!`]. The body is written
/// once, so the two implementations cannot drift apart.
macro_rules! sql_repository {
    ($name:ident, $db:ty, $pool:ty, $row:ty, $enqueue:path, $mark_processed:path, $begin:literal) => {
        impl $name {
            fn survey_from_row(row: &$row) -> Result<Survey, FeedbackError> {
                use sqlx::Row;
                let status: SurveyStatus = parse(&row.try_get::<String, _>("status")?)?;
                Ok(Survey {
                    id: parse(&row.try_get::<String, _>("survey_id")?)?,
                    case_id: parse(&row.try_get::<String, _>("case_id")?)?,
                    sent_at: instant(row.try_get("sent_at")?)?,
                    answer: answer_of(
                        status,
                        row.try_get("score")?,
                        row.try_get("comment")?,
                        row.try_get("answered_at")?,
                    )?,
                })
            }

            async fn load(
                conn: &mut <$db as sqlx::Database>::Connection,
                id: SurveyId,
            ) -> Result<Option<Survey>, FeedbackError> {
                let row = sqlx::query("SELECT * FROM surveys WHERE survey_id = $1")
                    .bind(id.to_string())
                    .fetch_optional(&mut *conn)
                    .await?;
                row.as_ref().map(Self::survey_from_row).transpose()
            }
        }

        #[async_trait]
        impl FeedbackRepository for $name {
            async fn send_survey(
                &self,
                consumer: &str,
                event_id: &str,
                survey: &Survey,
                sent: &Envelope,
                audit: &Audit,
            ) -> Result<Applied, FeedbackError> {
                let mut tx = self.pool.begin_with($begin).await?;
                if !$mark_processed(&mut tx, consumer, event_id).await? {
                    return Ok(Applied::Unchanged);
                }
                let inserted = sqlx::query(
                    "INSERT INTO surveys (survey_id, case_id, status, sent_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (case_id) DO NOTHING",
                )
                .bind(survey.id.to_string())
                .bind(survey.case_id.to_string())
                .bind(SurveyStatus::Sent.as_str())
                .bind(time::to_micros(survey.sent_at))
                .execute(&mut *tx)
                .await?;
                // A traveler is asked once per case, however often the case is resolved.
                if inserted.rows_affected() == 0 {
                    tx.commit().await?;
                    return Ok(Applied::Unchanged);
                }
                $enqueue(&mut tx, detour_domain::events::streams::FEEDBACK, sent).await?;
                let record =
                    audit.record(Some(survey.case_id), vec![Target::new("survey", survey.id)], Outcome::Ok);
                AuditWrite::append_audit(&mut *tx, &record).await?;
                tx.commit().await?;
                self.committed();
                Ok(Applied::Applied)
            }

            async fn get_survey(&self, id: SurveyId) -> Result<Option<Survey>, FeedbackError> {
                let mut conn = self.pool.acquire().await?;
                Self::load(&mut conn, id).await
            }

            async fn list_surveys(&self, case_id: CaseId) -> Result<Vec<Survey>, FeedbackError> {
                let rows =
                    sqlx::query("SELECT * FROM surveys WHERE case_id = $1 ORDER BY sent_at, survey_id")
                        .bind(case_id.to_string())
                        .fetch_all(&self.pool)
                        .await?;
                rows.iter().map(Self::survey_from_row).collect()
            }

            async fn answer_survey(
                &self,
                id: SurveyId,
                answer: &Answer,
                answered: &Envelope,
                audit: &Audit,
            ) -> Result<Survey, FeedbackError> {
                let mut tx = self.pool.begin_with($begin).await?;
                let survey = Self::load(&mut tx, id).await?.ok_or(FeedbackError::NotFound(id))?;
                if survey.answer.is_some() {
                    return Err(FeedbackError::AlreadyAnswered(id));
                }
                // The status guard settles a race between two answers: the second updates nothing.
                let done = sqlx::query(
                    "UPDATE surveys SET status = $1, score = $2, comment = $3, answered_at = $4 \
                     WHERE survey_id = $5 AND status = $6",
                )
                .bind(SurveyStatus::Answered.as_str())
                .bind(answer.score.get())
                .bind(answer.comment.as_deref())
                .bind(time::to_micros(answer.answered_at))
                .bind(id.to_string())
                .bind(SurveyStatus::Sent.as_str())
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Err(FeedbackError::AlreadyAnswered(id));
                }
                $enqueue(&mut tx, detour_domain::events::streams::FEEDBACK, answered).await?;
                let survey = Self::load(&mut tx, id).await?.ok_or(FeedbackError::NotFound(id))?;
                let record = audit.record(Some(survey.case_id), vec![Target::new("survey", id)], Outcome::Ok);
                AuditWrite::append_audit(&mut *tx, &record).await?;
                tx.commit().await?;
                self.committed();
                Ok(survey)
            }
        }
    };
}

detour_events::sql_repositories!(FeedbackRepository {
    postgres: PgFeedbackRepository,
    sqlite: SqliteFeedbackRepository,
    body: sql_repository,
});

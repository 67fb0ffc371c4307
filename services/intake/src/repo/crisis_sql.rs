//! [`super::crisis::CrisisRepository`] on one backend; expanded by `sql_repository!` for both.

macro_rules! crisis_sql_repository {
    ($name:ident, $db:ty, $row:ty, $begin:literal) => {
        impl $name {
            fn is_postgres() -> bool {
                <$db as sqlx::Database>::NAME == "PostgreSQL"
            }

            fn registered_from_row(row: &$row) -> Result<RegisteredTraveler, IntakeError> {
                use sqlx::Row;
                let channels: Vec<String> = decode::json(&row.try_get::<String, _>("contact_channels")?)?;
                let sealed: Option<Vec<u8>> = row.try_get("personal_data")?;
                let version: Option<i64> = row.try_get("data_key_version")?;
                let sealed = match (sealed, version) {
                    (Some(ciphertext), Some(key_version)) => {
                        Some(SealedPersonal { tenant: row.try_get("tenant")?, key_version, ciphertext })
                    }
                    _ => None,
                };
                Ok(RegisteredTraveler {
                    id: parse(&row.try_get::<String, _>("traveler_id")?)?,
                    preferred_language: row.try_get("preferred_language")?,
                    contact_channels: channels.iter().map(|c| parse(c)).collect::<Result<_, _>>()?,
                    sealed,
                    email_index: row.try_get("email_index")?,
                    phone_index: row.try_get("phone_index")?,
                })
            }

            fn incident_from_row(row: &$row) -> Result<Incident, IntakeError> {
                use sqlx::Row;
                Ok(Incident {
                    id: parse(&row.try_get::<String, _>("incident_id")?)?,
                    kind: parse(&row.try_get::<String, _>("kind")?)?,
                    scope: decode::json(&row.try_get::<String, _>("scope")?)?,
                    reason: row.try_get("reason")?,
                    delay_minutes: row.try_get::<i32, _>("delay_minutes")?,
                    diverted_to: row.try_get("diverted_to")?,
                    declared_at: instant(row.try_get("declared_at")?)?,
                    updated_at: instant(row.try_get("updated_at")?)?,
                    revision: row.try_get::<i32, _>("revision")?,
                    fanout_revision: row.try_get::<i32, _>("fanout_revision")?,
                    fanout_done_at: optional_instant(row.try_get("fanout_done_at")?)?,
                })
            }

            fn notification_from_row(row: &$row) -> Result<Notification, IntakeError> {
                use sqlx::Row;
                let channels: Vec<String> = decode::json(&row.try_get::<String, _>("channels")?)?;
                Ok(Notification {
                    id: parse(&row.try_get::<String, _>("notification_id")?)?,
                    case_id: parse(&row.try_get::<String, _>("case_id")?)?,
                    incident_id: decode::optional(row.try_get("incident_id")?)?,
                    traveler_id: parse(&row.try_get::<String, _>("traveler_id")?)?,
                    purpose: parse(&row.try_get::<String, _>("purpose")?)?,
                    status: parse(&row.try_get::<String, _>("status")?)?,
                    channels: channels.iter().map(|c| parse(c)).collect::<Result<_, _>>()?,
                    channel_index: usize::try_from(row.try_get::<i32, _>("channel_index")?).unwrap_or(0),
                    attempts_on_channel: row.try_get::<i32, _>("attempts_on_channel")?,
                    language: row.try_get("language")?,
                    created_at: instant(row.try_get("created_at")?)?,
                    delivered_at: optional_instant(row.try_get("delivered_at")?)?,
                    acknowledged_at: optional_instant(row.try_get("acknowledged_at")?)?,
                    attempts: Vec::new(),
                })
            }

            /// Fills in each notification's attempts, oldest first.
            async fn load_attempts(
                conn: &mut <$db as sqlx::Database>::Connection,
                notifications: &mut [Notification],
            ) -> Result<(), IntakeError> {
                use sqlx::Row;
                if notifications.is_empty() {
                    return Ok(());
                }
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "SELECT notification_id, at, channel, accepted, detail FROM notification_attempts WHERE notification_id IN ",
                );
                crisis::push_in(&mut q, notifications.iter().map(|n| n.id.to_string()));
                q.push(" ORDER BY seq");
                let rows = q.build().fetch_all(&mut *conn).await?;
                let mut by_id: HashMap<NotificationId, Vec<DeliveryAttempt>> = HashMap::new();
                for r in rows {
                    let id: NotificationId = parse(&r.try_get::<String, _>("notification_id")?)?;
                    by_id.entry(id).or_default().push(DeliveryAttempt {
                        at: instant(r.try_get("at")?)?,
                        channel: parse(&r.try_get::<String, _>("channel")?)?,
                        accepted: r.try_get::<bool, _>("accepted")?,
                        detail: r.try_get("detail")?,
                    });
                }
                for n in notifications.iter_mut() {
                    n.attempts = by_id.remove(&n.id).unwrap_or_default();
                }
                Ok(())
            }

            async fn load_notification(
                conn: &mut <$db as sqlx::Database>::Connection,
                id: NotificationId,
            ) -> Result<Option<Notification>, IntakeError> {
                let row = sqlx::query("SELECT * FROM notifications WHERE notification_id = $1")
                    .bind(id.to_string())
                    .fetch_optional(&mut *conn)
                    .await?;
                let Some(row) = row else { return Ok(None) };
                let mut n = [Self::notification_from_row(&row)?];
                Self::load_attempts(conn, &mut n).await?;
                let [n] = n;
                Ok(Some(n))
            }

            /// Queues notifications inside the caller's transaction.
            /// Applies a transaction's moves to its incidents' counts: last in the transaction,
            /// so the incident's row is locked only for the commit.
            async fn apply_tally(conn: &mut <$db as sqlx::Database>::Connection, tally: Tally) -> Result<(), IntakeError> {
                for (incident, m) in tally.by_incident {
                    sqlx::query(
                        "UPDATE incidents SET cases_opened = cases_opened + $1, notifications_queued = notifications_queued + $2, \
                         notifications_delivered = notifications_delivered + $3, \
                         notifications_acknowledged = notifications_acknowledged + $4, \
                         notifications_undeliverable = notifications_undeliverable + $5, \
                         last_delivered_at = CASE WHEN last_delivered_at IS NULL OR last_delivered_at < $6 THEN $6 \
                         ELSE last_delivered_at END WHERE incident_id = $7",
                    )
                    .bind(m.cases_opened)
                    .bind(m.queued)
                    .bind(m.delivered)
                    .bind(m.acknowledged)
                    .bind(m.undeliverable)
                    .bind(m.last_delivered_at)
                    .bind(incident)
                    .execute(&mut *conn)
                    .await?;
                }
                Ok(())
            }

            pub(super) async fn insert_notifications(
                conn: &mut <$db as sqlx::Database>::Connection,
                notifications: &[NewNotification],
            ) -> Result<(), IntakeError> {
                for chunk in notifications.chunks(crisis::ROWS_PER_INSERT) {
                    let mut rows = Vec::with_capacity(chunk.len());
                    for n in chunk {
                        let channels: Vec<&str> = n.channels.iter().map(|c| c.as_str()).collect();
                        rows.push((n, decode::to_json(&channels)?));
                    }
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO notifications (notification_id, case_id, incident_id, traveler_id, purpose, status, \
                         channels, channel_index, attempts_on_channel, language, created_at, next_attempt_at, lease_until) ",
                    );
                    q.push_values(rows, |mut b, (n, channels)| {
                        b.push_bind(n.id.to_string())
                            .push_bind(n.case_id.to_string())
                            .push_bind(n.incident_id.map(|i| i.to_string()))
                            .push_bind(n.traveler_id.to_string())
                            .push_bind(n.purpose.as_str())
                            .push_bind(NotificationStatus::Pending.as_str())
                            .push_bind(channels)
                            .push_bind(0_i32)
                            .push_bind(0_i32)
                            .push_bind(n.language.clone())
                            .push_bind(time::to_micros(n.at))
                            .push_bind(time::to_micros(n.leased_until.unwrap_or(n.at)))
                            .push_bind(n.leased_until.map(time::to_micros));
                    });
                    q.build().execute(&mut *conn).await?;
                }
                let mut tally = Tally::default();
                for n in notifications {
                    if let Some(incident) = n.incident_id {
                        tally.incident(incident.to_string()).queued += 1;
                    }
                }
                Self::apply_tally(conn, tally).await
            }

            /// Inserts timeline entries for many cases at once.
            async fn insert_timeline(
                conn: &mut <$db as sqlx::Database>::Connection,
                entries: &[(CaseId, &TimelineEntry)],
            ) -> Result<(), IntakeError> {
                for chunk in entries.chunks(crisis::ROWS_PER_INSERT) {
                    let mut q = sqlx::QueryBuilder::<$db>::new("INSERT INTO case_timeline (case_id, at, kind, actor, summary) ");
                    q.push_values(chunk, |mut b, (case_id, e)| {
                        b.push_bind(case_id.to_string())
                            .push_bind(time::to_micros(e.at))
                            .push_bind(e.kind.clone())
                            .push_bind(e.actor.clone())
                            .push_bind(e.summary.clone());
                    });
                    q.build().execute(&mut *conn).await?;
                }
                Ok(())
            }

            /// Draws case numbers for `ids`, with one multi-row insert per chunk.
            pub(super) async fn number_cases(
                conn: &mut <$db as sqlx::Database>::Connection,
                ids: &[CaseId],
            ) -> Result<HashMap<CaseId, i64>, IntakeError> {
                use sqlx::Row;
                let mut numbers = HashMap::with_capacity(ids.len());
                for chunk in ids.chunks(crisis::ROWS_PER_INSERT) {
                    let mut q = sqlx::QueryBuilder::<$db>::new("INSERT INTO case_numbers (case_id) ");
                    q.push_values(chunk, |mut b, id| {
                        b.push_bind(id.to_string());
                    });
                    q.push(" RETURNING number, case_id");
                    for row in q.build().fetch_all(&mut *conn).await? {
                        numbers.insert(parse(&row.try_get::<String, _>("case_id")?)?, row.try_get::<i64, _>("number")?);
                    }
                }
                Ok(numbers)
            }

            /// Inserts new cases, numbered by [`Self::number_cases`], each with the id of the
            /// notification that tells the traveler about it, with multi-row inserts.
            /// `yield_to_open`: a case whose traveler already has an open case about the same
            /// segment is skipped (the caller finds out which) instead of failing the statement.
            pub(super) async fn insert_cases(
                conn: &mut <$db as sqlx::Database>::Connection,
                cases: &[(&NewCase, Option<NotificationId>)],
                numbers: &HashMap<CaseId, i64>,
                yield_to_open: bool,
            ) -> Result<(), IntakeError> {
                for chunk in cases.chunks(crisis::ROWS_PER_INSERT / 2) {
                    let mut rows = Vec::with_capacity(chunk.len());
                    for (n, ack) in chunk {
                        let StoredPersonal::Sealed(sealed) = &n.traveler.personal else {
                            return Err(decode::corrupt("a new case must carry sealed personal data").into());
                        };
                        let number =
                            numbers.get(&n.id).copied().ok_or_else(|| decode::corrupt("a new case got no number"))?;
                        let traveler =
                            TravelerRef { id: n.traveler.id, preferred_language: n.traveler.preferred_language.clone() };
                        rows.push((
                            *n,
                            *ack,
                            sealed,
                            case_number(number),
                            decode::to_json(&traveler)?,
                            decode::to_json(&n.segment)?,
                            decode::to_json(&n.requested_outcomes)?,
                        ));
                    }
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO cases (case_id, case_number, status, traveler, segment, channel, description, \
                         requested_outcomes, opened_at, first_response_due, idempotency_key, request_fingerprint, \
                         tenant, traveler_id, personal_data, data_key_version, incident_id, language, \
                         acknowledgement_id, open_segment_key) ",
                    );
                    q.push_values(rows, |mut b, (n, ack, sealed, number, traveler, segment, outcomes)| {
                        b.push_bind(n.id.to_string())
                            .push_bind(number)
                            .push_bind(CaseStatus::Open.as_str())
                            .push_bind(traveler)
                            .push_bind(segment)
                            .push_bind(n.channel.as_str())
                            .push_bind(n.description.clone())
                            .push_bind(outcomes)
                            .push_bind(time::to_micros(n.received_at))
                            .push_bind(time::to_micros(n.first_response_due))
                            .push_bind(n.idempotency_key.clone())
                            .push_bind(n.fingerprint.clone())
                            .push_bind(sealed.tenant.clone())
                            .push_bind(n.traveler.id.to_string())
                            .push_bind(sealed.ciphertext.clone())
                            .push_bind(sealed.key_version)
                            .push_bind(n.incident_id.map(|i| i.to_string()))
                            .push_bind(n.language.clone())
                            .push_bind(ack.map(|a| a.to_string()))
                            .push_bind(n.segment_key.clone());
                    });
                    if yield_to_open {
                        q.push(" ON CONFLICT (traveler_id, open_segment_key) DO NOTHING");
                    }
                    q.build().execute(&mut *conn).await?;
                }
                Ok(())
            }

            /// Adds each contact to the open case it joins, with multi-row inserts.
            pub(super) async fn insert_interactions(
                conn: &mut <$db as sqlx::Database>::Connection,
                contacts: &[(&NewCase, CaseId)],
            ) -> Result<(), IntakeError> {
                for chunk in contacts.chunks(crisis::ROWS_PER_INSERT / 2) {
                    let mut rows = Vec::with_capacity(chunk.len());
                    for (n, case_id) in chunk {
                        rows.push((*n, *case_id, decode::to_json(&n.requested_outcomes)?));
                    }
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO case_interactions (case_id, at, channel, description, requested_outcomes, \
                         idempotency_key, request_fingerprint, acknowledgement_id) ",
                    );
                    q.push_values(rows, |mut b, (n, case_id, outcomes)| {
                        b.push_bind(case_id.to_string())
                            .push_bind(time::to_micros(n.received_at))
                            .push_bind(n.channel.as_str())
                            .push_bind(n.description.clone())
                            .push_bind(outcomes)
                            .push_bind(n.idempotency_key.clone())
                            .push_bind(n.fingerprint.clone())
                            .push_bind(n.acknowledgement.as_ref().map(|a| a.id.to_string()));
                    });
                    q.build().execute(&mut *conn).await?;
                }
                Ok(())
            }

            async fn materialise_targets(
                conn: &mut <$db as sqlx::Database>::Connection,
                incident: &Incident,
            ) -> Result<u64, IntakeError> {
                let id = incident.id.to_string();
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO incident_targets (incident_id, traveler_id, booking_reference, position) \
                     SELECT ",
                );
                q.push_bind(id.clone())
                    .push(
                        ", tt.traveler_id, s.booking_reference, s.position FROM segments s \
                         JOIN trip_travelers tt ON tt.booking_reference = s.booking_reference WHERE 1 = 1",
                    );
                crisis::push_scope(&mut q, &incident.scope);
                q.push(" ON CONFLICT (incident_id, traveler_id) DO NOTHING");
                let added = q.build().execute(&mut *conn).await?.rows_affected();
                sqlx::query(
                    "UPDATE incidents SET targets_revision = revision, fanout_cursor = NULL, \
                     affected_travelers = affected_travelers + $1 WHERE incident_id = $2",
                )
                .bind(i64::try_from(added).unwrap_or(i64::MAX))
                .bind(id.as_str())
                .execute(&mut *conn)
                .await?;
                Ok(added)
            }
        }

        #[async_trait]
        impl CrisisRepository for $name {
            async fn upsert_trips(&self, trips: &[StoredTrip], audit: &Audit) -> Result<Vec<bool>, IntakeError> {
                use sqlx::Row;
                if trips.is_empty() {
                    return Ok(Vec::new());
                }
                let (kept, slot_of_input) = crisis::last_of_each(trips);
                let refs: Vec<String> = kept.iter().map(|t| t.booking_reference.clone()).collect();
                let mut tx = self.pool.begin_with($begin).await?;
                let mut existing = HashSet::new();
                for chunk in refs.chunks(crisis::ROWS_PER_INSERT) {
                    let mut q = sqlx::QueryBuilder::<$db>::new("SELECT booking_reference FROM trips WHERE booking_reference IN ");
                    crisis::push_in(&mut q, chunk.iter().cloned());
                    for row in q.build().fetch_all(&mut *tx).await? {
                        existing.insert(row.try_get::<String, _>("booking_reference")?);
                    }
                }
                let travelers = crisis::distinct_travelers(&kept);
                for chunk in travelers.chunks(crisis::ROWS_PER_INSERT) {
                    let mut rows = Vec::with_capacity(chunk.len());
                    for t in chunk {
                        let channels: Vec<&str> = t.contact_channels.iter().map(|c| c.as_str()).collect();
                        rows.push((t, decode::to_json(&channels)?));
                    }
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO travelers (traveler_id, tenant, preferred_language, contact_channels, personal_data, \
                         data_key_version, email_index, phone_index, personal_data_erased_at, updated_at) ",
                    );
                    let at = time::to_micros(kept[0].at);
                    q.push_values(rows, |mut b, (t, channels)| {
                        let sealed = t.sealed.as_ref();
                        b.push_bind(t.id.to_string())
                            .push_bind(sealed.map(|s| s.tenant.clone()).unwrap_or_default())
                            .push_bind(t.preferred_language.clone())
                            .push_bind(channels)
                            .push_bind(sealed.map(|s| s.ciphertext.clone()))
                            .push_bind(sealed.map(|s| s.key_version))
                            .push_bind(t.email_index.clone())
                            .push_bind(t.phone_index.clone())
                            .push_bind(if sealed.is_some() { None } else { Some(at) })
                            .push_bind(at);
                    });
                    q.push(
                        " ON CONFLICT (traveler_id) DO UPDATE SET tenant = excluded.tenant, \
                         preferred_language = excluded.preferred_language, contact_channels = excluded.contact_channels, \
                         personal_data = excluded.personal_data, data_key_version = excluded.data_key_version, \
                         email_index = excluded.email_index, phone_index = excluded.phone_index, \
                         personal_data_erased_at = excluded.personal_data_erased_at, updated_at = excluded.updated_at",
                    );
                    q.build().execute(&mut *tx).await?;
                }
                for chunk in kept.chunks(crisis::ROWS_PER_INSERT) {
                    let mut q = sqlx::QueryBuilder::<$db>::new("INSERT INTO trips (booking_reference, updated_at) ");
                    q.push_values(chunk, |mut b, t| {
                        b.push_bind(t.booking_reference.clone()).push_bind(time::to_micros(t.at));
                    });
                    q.push(" ON CONFLICT (booking_reference) DO UPDATE SET updated_at = excluded.updated_at");
                    q.build().execute(&mut *tx).await?;
                    for table in ["trip_travelers", "segments"] {
                        let mut q = sqlx::QueryBuilder::<$db>::new(format!("DELETE FROM {table} WHERE booking_reference IN "));
                        crisis::push_in(&mut q, chunk.iter().map(|t| t.booking_reference.clone()));
                        q.build().execute(&mut *tx).await?;
                    }
                }
                let links: Vec<(String, String)> = crisis::distinct(
                    kept.iter().flat_map(|t| t.travelers.iter().map(|r| (t.booking_reference.clone(), r.id.to_string()))),
                );
                for chunk in links.chunks(crisis::ROWS_PER_INSERT) {
                    let mut q = sqlx::QueryBuilder::<$db>::new("INSERT INTO trip_travelers (booking_reference, traveler_id) ");
                    q.push_values(chunk, |mut b, (booking, traveler)| {
                        b.push_bind(booking.clone()).push_bind(traveler.clone());
                    });
                    q.build().execute(&mut *tx).await?;
                }
                let mut segments = Vec::new();
                for t in &kept {
                    for (position, s) in t.segments.iter().enumerate() {
                        let mut segment = s.segment.clone();
                        segment.booking_reference = t.booking_reference.clone();
                        segments.push((t.booking_reference.clone(), i32::try_from(position).unwrap_or(i32::MAX), segment, s.local_date));
                    }
                }
                for chunk in segments.chunks(crisis::ROWS_PER_INSERT) {
                    let mut rows = Vec::with_capacity(chunk.len());
                    for (booking, position, segment, local_date) in chunk {
                        rows.push((booking, position, segment, local_date, decode::to_json(segment)?));
                    }
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO segments (booking_reference, position, kind, supplier_code, service_reference, origin, \
                         destination, local_date, starts_at, ends_at, segment) ",
                    );
                    q.push_values(rows, |mut b, (booking, position, segment, local_date, json)| {
                        b.push_bind(booking.clone())
                            .push_bind(*position)
                            .push_bind(segment.kind.as_str())
                            .push_bind(segment.supplier_code.clone())
                            .push_bind(normalise_reference(&segment.service_reference))
                            .push_bind(segment.origin.clone())
                            .push_bind(segment.destination.clone())
                            .push_bind(local_date.to_string())
                            .push_bind(time::to_micros(segment.starts_at))
                            .push_bind(segment.ends_at.map(time::to_micros))
                            .push_bind(json);
                    });
                    q.build().execute(&mut *tx).await?;
                }
                let records: Vec<_> = kept
                    .iter()
                    .map(|t| audit.record(None, vec![Target::new("trip", &t.booking_reference)], Outcome::Ok))
                    .collect();
                tx.append_audit_many(&records).await?;
                tx.commit().await?;
                // An import is the bulk write the registry's lookups are planned against.
                self.wrote("travelers", travelers.len());
                self.wrote("trips", kept.len());
                self.wrote("trip_travelers", links.len());
                self.wrote("segments", segments.len());
                let created: Vec<bool> = kept.iter().map(|t| !existing.contains(&t.booking_reference)).collect();
                // A trip named twice in one call was new only at its first mention.
                let mut seen = HashSet::new();
                Ok(slot_of_input.iter().map(|&i| created[i] && seen.insert(i)).collect())
            }

            async fn find_travelers(
                &self,
                scope: &Scope,
                after: Option<AffectedCursor>,
                limit: u32,
            ) -> Result<(Vec<Affected>, Option<AffectedCursor>), IntakeError> {
                use sqlx::Row;
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "SELECT tt.traveler_id, s.booking_reference, s.position, s.segment, s.local_date FROM segments s \
                     JOIN trip_travelers tt ON tt.booking_reference = s.booking_reference WHERE 1 = 1",
                );
                crisis::push_scope(&mut q, scope);
                if let Some(c) = &after {
                    q.push(" AND (tt.traveler_id, s.booking_reference, s.position) > (")
                        .push_bind(c.traveler_id.to_string())
                        .push(", ")
                        .push_bind(c.booking_reference.clone())
                        .push(", ")
                        .push_bind(c.position)
                        .push(")");
                }
                q.push(" ORDER BY tt.traveler_id, s.booking_reference, s.position LIMIT ")
                    .push_bind(i64::from(limit) + 1);
                let rows = q.build().fetch_all(&self.pool).await?;
                let mut found = Vec::with_capacity(rows.len());
                for r in rows {
                    let date: String = r.try_get("local_date")?;
                    found.push(Affected {
                        traveler_id: parse(&r.try_get::<String, _>("traveler_id")?)?,
                        booking_reference: r.try_get("booking_reference")?,
                        position: r.try_get::<i32, _>("position")?,
                        segment: decode::json(&r.try_get::<String, _>("segment")?)?,
                        local_date: parse(&date)?,
                    });
                }
                Ok(keyset::page(found, limit, |a| AffectedCursor {
                    traveler_id: a.traveler_id,
                    booking_reference: a.booking_reference.clone(),
                    position: a.position,
                }))
            }

            async fn registered_traveler(&self, id: TravelerId) -> Result<Option<RegisteredTraveler>, IntakeError> {
                let row = sqlx::query("SELECT * FROM travelers WHERE traveler_id = $1")
                    .bind(id.to_string())
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(Self::registered_from_row).transpose()
            }

            async fn travelers_by_index(&self, handle: Handle, index: &str) -> Result<Vec<RegisteredTraveler>, IntakeError> {
                let sql = match handle {
                    Handle::Email => "SELECT * FROM travelers WHERE email_index = $1 ORDER BY traveler_id LIMIT 10",
                    Handle::Phone => "SELECT * FROM travelers WHERE phone_index = $1 ORDER BY traveler_id LIMIT 10",
                };
                let rows = sqlx::query(sql).bind(index).fetch_all(&self.pool).await?;
                rows.iter().map(Self::registered_from_row).collect()
            }

            async fn travelers_of_booking(&self, booking_reference: &str) -> Result<Vec<RegisteredTraveler>, IntakeError> {
                let rows = sqlx::query(
                    "SELECT r.* FROM travelers r JOIN trip_travelers tt ON tt.traveler_id = r.traveler_id \
                     WHERE tt.booking_reference = $1 ORDER BY r.traveler_id",
                )
                .bind(booking_reference)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(Self::registered_from_row).collect()
            }

            async fn report_disruption(
                &self,
                report: &DisruptionReport,
                audit: &Audit,
            ) -> Result<(Incident, ReportOutcome), IntakeError> {
                let key = report.scope.key();
                // A second report racing the first loses on the unique scope key and retries as
                // an update of the winner's incident.
                for _ in 0..2 {
                    let mut tx = self.pool.begin_with($begin).await?;
                    let row = sqlx::query("SELECT * FROM incidents WHERE scope_key = $1")
                        .bind(&key)
                        .fetch_optional(&mut *tx)
                        .await?;
                    let (id, outcome) = match row {
                        Some(row) => {
                            let current = Self::incident_from_row(&row)?;
                            let changed = current.kind != report.kind
                                || current.reason != report.reason
                                || current.delay_minutes != report.delay_minutes
                                || current.diverted_to != report.diverted_to;
                            if !changed {
                                tx.append_audit(&audit.record(None, vec![Target::new("incident", current.id)], Outcome::Replayed)).await?;
                                tx.commit().await?;
                                return Ok((current, ReportOutcome::Unchanged));
                            }
                            sqlx::query(
                                "UPDATE incidents SET kind = $1, reason = $2, delay_minutes = $3, diverted_to = $4, \
                                 updated_at = $5, revision = revision + 1, fanout_done_at = NULL WHERE incident_id = $6",
                            )
                            .bind(report.kind.as_str())
                            .bind(&report.reason)
                            .bind(report.delay_minutes)
                            .bind(report.diverted_to.as_deref())
                            .bind(time::to_micros(report.at))
                            .bind(current.id.to_string())
                            .execute(&mut *tx)
                            .await?;
                            (current.id, ReportOutcome::Updated)
                        }
                        None => {
                            let id = IncidentId::new();
                            let inserted = sqlx::query(
                                "INSERT INTO incidents (incident_id, scope_key, kind, scope, reason, delay_minutes, diverted_to, \
                                 declared_at, updated_at, revision, fanout_revision, targets_revision) \
                                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, 1, 0, 0)",
                            )
                            .bind(id.to_string())
                            .bind(&key)
                            .bind(report.kind.as_str())
                            .bind(decode::to_json(&report.scope)?)
                            .bind(&report.reason)
                            .bind(report.delay_minutes)
                            .bind(report.diverted_to.as_deref())
                            .bind(time::to_micros(report.at))
                            .execute(&mut *tx)
                            .await;
                            match inserted {
                                Ok(_) => (id, ReportOutcome::Created),
                                Err(e) => {
                                    let err = detour_storage::StorageError::from(e);
                                    if err.is_unique_violation() {
                                        continue;
                                    }
                                    return Err(err.into());
                                }
                            }
                        }
                    };
                    tx.append_audit(&audit.record(None, vec![Target::new("incident", id)], Outcome::Ok)).await?;
                    let row = sqlx::query("SELECT * FROM incidents WHERE incident_id = $1")
                        .bind(id.to_string())
                        .fetch_one(&mut *tx)
                        .await?;
                    let incident = Self::incident_from_row(&row)?;
                    tx.commit().await?;
                    return Ok((incident, outcome));
                }
                Err(detour_storage::StorageError::Corrupt("incident scope key conflict did not resolve".into()).into())
            }

            async fn incident(&self, id: IncidentId) -> Result<Option<(Incident, IncidentCounts)>, IntakeError> {
                use sqlx::Row;
                let row = sqlx::query("SELECT * FROM incidents WHERE incident_id = $1")
                    .bind(id.to_string())
                    .fetch_optional(&self.pool)
                    .await?;
                let Some(row) = row else { return Ok(None) };
                let incident = Self::incident_from_row(&row)?;
                let counts = IncidentCounts {
                    affected_travelers: row.try_get("affected_travelers")?,
                    cases_opened: row.try_get("cases_opened")?,
                    queued: row.try_get("notifications_queued")?,
                    delivered: row.try_get("notifications_delivered")?,
                    acknowledged: row.try_get("notifications_acknowledged")?,
                    undeliverable: row.try_get("notifications_undeliverable")?,
                    last_delivered_at: optional_instant(row.try_get("last_delivered_at")?)?,
                };
                Ok(Some((incident, counts)))
            }

            async fn claim_fanout(
                &self,
                now: Instant,
                lease_until: Instant,
            ) -> Result<Option<(Incident, Option<TravelerId>)>, IntakeError> {
                use sqlx::Row;
                let mut tx = self.pool.begin_with($begin).await?;
                // Re-checked by the UPDATE itself: of two replicas picking the same incident, the
                // second finds the lease taken and claims nothing.
                let row = sqlx::query(
                    "UPDATE incidents SET fanout_lease_until = $1 WHERE incident_id = (\
                       SELECT incident_id FROM incidents WHERE fanout_revision < revision \
                       AND (fanout_lease_until IS NULL OR fanout_lease_until < $2) ORDER BY updated_at LIMIT 1) \
                     AND (fanout_lease_until IS NULL OR fanout_lease_until < $2) RETURNING *",
                )
                .bind(time::to_micros(lease_until))
                .bind(time::to_micros(now))
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else { return Ok(None) };
                let incident = Self::incident_from_row(&row)?;
                let targets_revision: i32 = row.try_get("targets_revision")?;
                let mut cursor: Option<TravelerId> = decode::optional(row.try_get("fanout_cursor")?)?;
                let mut added = 0;
                if targets_revision < incident.revision {
                    added = Self::materialise_targets(&mut tx, &incident).await?;
                    cursor = None;
                }
                tx.commit().await?;
                self.wrote("incident_targets", usize::try_from(added).unwrap_or(usize::MAX));
                Ok(Some((incident, cursor)))
            }

            async fn fanout_targets(
                &self,
                incident: IncidentId,
                revision: i32,
                after: Option<TravelerId>,
                limit: u32,
            ) -> Result<(Vec<FanoutTarget>, Option<TravelerId>), IntakeError> {
                use sqlx::Row;
                // Four primary-key lookups rather than one four-way join: on a freshly filled
                // target table the planner has no statistics and chose whole-table hash joins,
                // seconds per batch at 100,000 travelers.
                let mut conn = self.pool.acquire().await?;
                let targets = sqlx::query(
                    "SELECT traveler_id, booking_reference, position FROM incident_targets                      WHERE incident_id = $1 AND traveler_id > $2 ORDER BY traveler_id LIMIT $3",
                )
                .bind(incident.to_string())
                .bind(after.map(|a| a.to_string()).unwrap_or_default())
                .bind(i64::from(limit))
                .fetch_all(&mut *conn)
                .await?;
                if targets.is_empty() {
                    return Ok((Vec::new(), None));
                }
                let mut wanted = Vec::with_capacity(targets.len());
                for r in &targets {
                    wanted.push((
                        r.try_get::<String, _>("traveler_id")?,
                        r.try_get::<String, _>("booking_reference")?,
                        r.try_get::<i32, _>("position")?,
                    ));
                }
                let last = wanted.last().map(|(t, _, _)| parse::<TravelerId>(t)).transpose()?;
                let ids = || wanted.iter().map(|(t, _, _)| t.clone());
                let mut travelers = HashMap::new();
                let mut q = sqlx::QueryBuilder::<$db>::new("SELECT * FROM travelers WHERE traveler_id IN ");
                crisis::push_in(&mut q, ids());
                for r in q.build().fetch_all(&mut *conn).await? {
                    let t = Self::registered_from_row(&r)?;
                    travelers.insert(t.id.to_string(), t);
                }
                let mut segments = HashMap::new();
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "SELECT booking_reference, position, segment, local_date FROM segments WHERE booking_reference IN ",
                );
                crisis::push_in(&mut q, crisis::distinct(wanted.iter().map(|(_, b, _)| b.clone())));
                for r in q.build().fetch_all(&mut *conn).await? {
                    let key = (r.try_get::<String, _>("booking_reference")?, r.try_get::<i32, _>("position")?);
                    segments.insert(key, (r.try_get::<String, _>("segment")?, r.try_get::<String, _>("local_date")?));
                }
                let mut existing = HashMap::new();
                if revision > 1 {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "SELECT traveler_id, case_id, notified_revision FROM incident_cases WHERE incident_id = ",
                    );
                    q.push_bind(incident.to_string()).push(" AND traveler_id IN ");
                    crisis::push_in(&mut q, ids());
                    for r in q.build().fetch_all(&mut *conn).await? {
                        let case: CaseId = parse(&r.try_get::<String, _>("case_id")?)?;
                        existing.insert(r.try_get::<String, _>("traveler_id")?, (case, r.try_get::<i32, _>("notified_revision")?));
                    }
                }
                let mut out = Vec::with_capacity(wanted.len());
                for (traveler_id, booking, position) in wanted {
                    // A trip re-imported since the pass began may have lost the segment or the
                    // traveler: nothing to tell them about this incident then.
                    let (Some(traveler), Some((segment, date))) =
                        (travelers.remove(&traveler_id), segments.get(&(booking, position)))
                    else {
                        continue;
                    };
                    out.push(FanoutTarget {
                        traveler,
                        segment: decode::json(segment)?,
                        local_date: parse(date)?,
                        existing: existing.remove(&traveler_id),
                    });
                }
                Ok((out, last))
            }

            async fn write_fanout(
                &self,
                incident: IncidentId,
                batch: &FanoutBatch,
                lease_until: Instant,
                audit: &Audit,
            ) -> Result<FanoutWritten, IntakeError> {
                use sqlx::Row;
                let mut tx = self.pool.begin_with($begin).await?;
                // Claim each traveler's place first: whoever already holds one (an earlier write
                // of this batch, another replica after a lease ran out) keeps it.
                let mut claimed = HashSet::new();
                for chunk in batch.new_cases.chunks(crisis::ROWS_PER_INSERT) {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO incident_cases (incident_id, traveler_id, case_id, notified_revision) ",
                    );
                    q.push_values(chunk, |mut b, c| {
                        b.push_bind(incident.to_string())
                            .push_bind(c.case.traveler.id.to_string())
                            .push_bind(c.case.id.to_string())
                            .push_bind(batch.revision);
                    });
                    q.push(" ON CONFLICT (incident_id, traveler_id) DO NOTHING RETURNING case_id");
                    for row in q.build().fetch_all(&mut *tx).await? {
                        claimed.insert(row.try_get::<String, _>("case_id")?);
                    }
                }
                let mut cases_opened = i64::try_from(claimed.len()).unwrap_or(i64::MAX);
                let new: Vec<&FanoutCase> =
                    batch.new_cases.iter().filter(|c| claimed.contains(&c.case.id.to_string())).collect();
                let ids: Vec<CaseId> = new.iter().map(|c| c.case.id).collect();
                let numbers = Self::number_cases(&mut tx, &ids).await?;
                let cases: Vec<(&NewCase, Option<NotificationId>)> =
                    new.iter().map(|c| (&c.case, Some(c.notification.id))).collect();
                // A traveler who already wrote about this segment has an open case for it:
                // the incident links that one instead (below) rather than opening another.
                Self::insert_cases(&mut tx, &cases, &numbers, true).await?;
                // Cases that lost to an open case of the same traveler and segment: link the
                // open case to the incident and notify on it.
                let mut opened = HashSet::new();
                for chunk in new.chunks(crisis::ROWS_PER_INSERT) {
                    let mut q = sqlx::QueryBuilder::<$db>::new("SELECT case_id FROM cases WHERE case_id IN ");
                    crisis::push_in(&mut q, chunk.iter().map(|c| c.case.id.to_string()));
                    for row in q.build().fetch_all(&mut *tx).await? {
                        opened.insert(row.try_get::<String, _>("case_id")?);
                    }
                }
                let mut notifications = Vec::with_capacity(new.len() + batch.updates.len());
                let mut timeline: Vec<(CaseId, TimelineEntry)> = Vec::with_capacity(new.len());
                let mut events = Vec::with_capacity(new.len());
                let mut records = Vec::with_capacity(new.len() + batch.updates.len());
                for c in &new {
                    let target = vec![Target::new("traveler", c.case.traveler.id), Target::new("incident", incident)];
                    if opened.contains(&c.case.id.to_string()) {
                        timeline.push((
                            c.case.id,
                            TimelineEntry {
                                at: c.case.received_at,
                                kind: "case.opened".into(),
                                actor: "intake".into(),
                                summary: format!("Opened by Detour for a reported disruption ({})", c.case.channel.as_str()),
                            },
                        ));
                        events.push(numbered(&c.opened, numbers.get(&c.case.id).copied().unwrap_or_default()));
                        notifications.push(c.notification.clone());
                        records.push(audit.record(Some(c.case.id), target, Outcome::Ok));
                    } else {
                        let open = sqlx::query("SELECT case_id FROM cases WHERE traveler_id = $1 AND open_segment_key = $2")
                            .bind(c.case.traveler.id.to_string())
                            .bind(c.case.segment_key.as_deref())
                            .fetch_optional(&mut *tx)
                            .await?;
                        let Some(open) = open else {
                            sqlx::query("DELETE FROM incident_cases WHERE incident_id = $1 AND traveler_id = $2")
                                .bind(incident.to_string())
                                .bind(c.case.traveler.id.to_string())
                                .execute(&mut *tx)
                                .await?;
                            cases_opened -= 1;
                            continue;
                        };
                        let existing: CaseId = parse(&open.try_get::<String, _>("case_id")?)?;
                        sqlx::query("UPDATE incident_cases SET case_id = $1 WHERE incident_id = $2 AND traveler_id = $3")
                            .bind(existing.to_string())
                            .bind(incident.to_string())
                            .bind(c.case.traveler.id.to_string())
                            .execute(&mut *tx)
                            .await?;
                        sqlx::query("UPDATE cases SET incident_id = $1 WHERE case_id = $2 AND incident_id IS NULL")
                            .bind(incident.to_string())
                            .bind(existing.to_string())
                            .execute(&mut *tx)
                            .await?;
                        sqlx::query("DELETE FROM case_numbers WHERE case_id = $1")
                            .bind(c.case.id.to_string())
                            .execute(&mut *tx)
                            .await?;
                        timeline.push((
                            existing,
                            TimelineEntry {
                                at: c.case.received_at,
                                kind: "incident.linked".into(),
                                actor: "intake".into(),
                                summary: format!("Linked to incident {incident}"),
                            },
                        ));
                        let mut n = c.notification.clone();
                        n.case_id = existing;
                        // The writer knows nothing of the existing case to send it with: the
                        // dispatcher's claim takes it.
                        n.leased_until = None;
                        notifications.push(n);
                        records.push(audit.record(Some(existing), target, Outcome::Ok));
                    }
                }
                if !batch.updates.is_empty() {
                    let mut q = sqlx::QueryBuilder::<$db>::new("UPDATE incident_cases SET notified_revision = ");
                    q.push_bind(batch.revision)
                        .push(" WHERE incident_id = ")
                        .push_bind(incident.to_string())
                        .push(" AND notified_revision < ")
                        .push_bind(batch.revision)
                        .push(" AND traveler_id IN ");
                    crisis::push_in(&mut q, batch.updates.iter().map(|u| u.traveler_id.to_string()));
                    q.push(" RETURNING traveler_id");
                    let mut due = HashSet::new();
                    for row in q.build().fetch_all(&mut *tx).await? {
                        due.insert(row.try_get::<String, _>("traveler_id")?);
                    }
                    for u in batch.updates.iter().filter(|u| due.contains(&u.traveler_id.to_string())) {
                        timeline.push((u.case_id, u.timeline.clone()));
                        notifications.push(u.notification.clone());
                        records.push(audit.record(Some(u.case_id), vec![Target::new("incident", incident)], Outcome::Ok));
                    }
                }
                let entries: Vec<(CaseId, &TimelineEntry)> = timeline.iter().map(|(c, e)| (*c, e)).collect();
                Self::insert_timeline(&mut tx, &entries).await?;
                Self::insert_notifications(&mut tx, &notifications).await?;
                detour_events::outbox::EnqueueMany::enqueue_many(&mut *tx, detour_domain::events::streams::INTAKE, &events).await?;
                tx.append_audit_many(&records).await?;
                sqlx::query(
                    "UPDATE incidents SET fanout_cursor = $1, fanout_lease_until = $2, cases_opened = cases_opened + $3 \
                     WHERE incident_id = $4",
                )
                .bind(batch.cursor.to_string())
                .bind(time::to_micros(lease_until))
                .bind(cases_opened)
                .bind(incident.to_string())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                self.committed();
                self.wrote("cases", events.len());
                self.wrote("incident_cases", new.len());
                self.wrote("case_timeline", timeline.len());
                self.wrote("notifications", notifications.len());
                let numbers = new
                    .iter()
                    .filter(|c| opened.contains(&c.case.id.to_string()))
                    .filter_map(|c| numbers.get(&c.case.id).map(|n| (c.case.id, *n)))
                    .collect();
                Ok(FanoutWritten { opened: events.len(), numbers })
            }

            async fn finish_fanout(&self, incident: IncidentId, revision: i32, at: Instant) -> Result<(), IntakeError> {
                sqlx::query(
                    "UPDATE incidents SET fanout_revision = $1, fanout_cursor = NULL, fanout_lease_until = NULL, \
                     fanout_done_at = CASE WHEN revision <= $1 THEN $2 ELSE NULL END \
                     WHERE incident_id = $3 AND fanout_revision < $1",
                )
                .bind(revision)
                .bind(time::to_micros(at))
                .bind(incident.to_string())
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn claim_notifications(
                &self,
                now: Instant,
                lease_until: Instant,
                limit: u32,
            ) -> Result<Vec<DueNotification>, IntakeError> {
                use sqlx::Row;
                let mut tx = self.pool.begin_with($begin).await?;
                // Dispatchers on several replicas take disjoint sets: PostgreSQL skips rows another
                // transaction is claiming; SQLite has one writer at a time anyway. A claimed
                // notification is next due when its claim runs out (the claimer crashed): moving it
                // there keeps the in-flight ones out of the next claim's index range, which in a
                // storm is thousands of rows each claim would otherwise step over.
                //
                // `= ANY(ARRAY(…))`, not `IN (…)`: once PostgreSQL caches the statement's generic
                // plan it guesses a third of the table is due and hash-joins the claimed ids against
                // a sequential scan of every notification and its dead versions (22 ms a claim at
                // 30,000 notifications, half of the database's time while contacts poured in). An
                // array makes it a primary-key probe per claimed id whatever the guess.
                let sql = if Self::is_postgres() {
                    "UPDATE notifications SET lease_until = $1, next_attempt_at = $1 WHERE notification_id = ANY(ARRAY(\
                       SELECT notification_id FROM notifications WHERE next_attempt_at <= $2 \
                       AND (lease_until IS NULL OR lease_until < $2) ORDER BY next_attempt_at LIMIT $3 \
                       FOR UPDATE SKIP LOCKED)) RETURNING notification_id"
                } else {
                    "UPDATE notifications SET lease_until = $1, next_attempt_at = $1 WHERE notification_id IN (\
                       SELECT notification_id FROM notifications WHERE next_attempt_at <= $2 \
                       AND (lease_until IS NULL OR lease_until < $2) ORDER BY next_attempt_at LIMIT $3) \
                     RETURNING notification_id"
                };
                let ids = sqlx::query(sql)
                    .bind(time::to_micros(lease_until))
                    .bind(time::to_micros(now))
                    .bind(i64::from(limit))
                    .fetch_all(&mut *tx)
                    .await?;
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let ids: Vec<String> = ids.iter().map(|r| r.try_get::<String, _>("notification_id")).collect::<Result<_, _>>()?;
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "SELECT n.*, c.case_number, c.first_response_due, c.tenant, c.personal_data, c.data_key_version \
                     FROM notifications n JOIN cases c ON c.case_id = n.case_id WHERE n.notification_id IN ",
                );
                crisis::push_in(&mut q, ids);
                let rows = q.build().fetch_all(&mut *tx).await?;
                let mut incidents: HashMap<IncidentId, Incident> = HashMap::new();
                let mut due = Vec::with_capacity(rows.len());
                for r in rows {
                    let notification = Self::notification_from_row(&r)?;
                    let sealed: Option<Vec<u8>> = r.try_get("personal_data")?;
                    let version: Option<i64> = r.try_get("data_key_version")?;
                    let sealed = match (sealed, version) {
                        (Some(ciphertext), Some(key_version)) => {
                            Some(SealedPersonal { tenant: r.try_get("tenant")?, key_version, ciphertext })
                        }
                        _ => None,
                    };
                    let incident = match notification.incident_id {
                        Some(id) => {
                            if !incidents.contains_key(&id) {
                                let row = sqlx::query("SELECT * FROM incidents WHERE incident_id = $1")
                                    .bind(id.to_string())
                                    .fetch_one(&mut *tx)
                                    .await?;
                                incidents.insert(id, Self::incident_from_row(&row)?);
                            }
                            incidents.get(&id).cloned()
                        }
                        None => None,
                    };
                    due.push(DueNotification {
                        case_number: r.try_get("case_number")?,
                        first_response_due: instant(r.try_get("first_response_due")?)?,
                        sealed,
                        incident,
                        notification,
                    });
                }
                tx.commit().await?;
                Ok(due)
            }

            async fn record_sends(&self, results: &[SendResult], at: Instant) -> Result<(), IntakeError> {
                use sqlx::Row;
                if results.is_empty() {
                    return Ok(());
                }
                let mut tx = self.pool.begin_with($begin).await?;
                let attempts: Vec<(&SendResult, &DeliveryAttempt)> =
                    results.iter().flat_map(|r| r.attempts.iter().map(move |a| (r, a))).collect();
                for chunk in attempts.chunks(crisis::ROWS_PER_INSERT) {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO notification_attempts (notification_id, at, channel, accepted, detail) ",
                    );
                    q.push_values(chunk, |mut b, (r, a)| {
                        b.push_bind(r.id.to_string())
                            .push_bind(time::to_micros(a.at))
                            .push_bind(a.channel.as_str())
                            .push_bind(a.accepted)
                            .push_bind(a.detail.clone());
                    });
                    q.build().execute(&mut *tx).await?;
                }
                let mut tally = Tally::default();
                // Grouped by the channels they moved (almost always none, or one after a
                // first channel that failed), one statement each.
                let mut delivered: BTreeMap<u32, Vec<String>> = BTreeMap::new();
                for r in results.iter().filter(|r| r.next == NextStep::Delivered) {
                    delivered.entry(r.moved).or_default().push(r.id.to_string());
                }
                for (moved, ids) in delivered {
                    for chunk in ids.chunks(crisis::ROWS_PER_INSERT) {
                        let mut q = sqlx::QueryBuilder::<$db>::new("UPDATE notifications SET status = ");
                        q.push_bind(NotificationStatus::Delivered.as_str())
                            .push(", delivered_at = ")
                            .push_bind(time::to_micros(at))
                            .push(", channel_index = channel_index + ")
                            .push_bind(i64::from(moved))
                            .push(", next_attempt_at = NULL, lease_until = NULL WHERE status = ")
                            .push_bind(NotificationStatus::Pending.as_str())
                            .push(" AND notification_id IN ");
                        crisis::push_in(&mut q, chunk.iter().cloned());
                        q.push(" RETURNING incident_id");
                        for row in q.build().fetch_all(&mut *tx).await? {
                            if let Some(incident) = row.try_get::<Option<String>, _>("incident_id")? {
                                tally.moved(incident.clone(), NotificationStatus::Pending, NotificationStatus::Delivered);
                                tally.incident(incident).last_delivered_at = Some(time::to_micros(at));
                            }
                        }
                    }
                }
                // The rest, one statement per change and next attempt rather than per
                // notification.
                let mut changes: BTreeMap<(&'static str, Option<i64>, u32), Vec<String>> = BTreeMap::new();
                for r in results {
                    let set = match r.next {
                        NextStep::Delivered => continue,
                        // The first failure on a channel moved to counts as its first attempt.
                        NextStep::Retry { .. } if r.moved > 0 => "attempts_on_channel = 1",
                        NextStep::Retry { .. } => "attempts_on_channel = attempts_on_channel + 1",
                        NextStep::NextChannel => "attempts_on_channel = 0",
                        NextStep::Undeliverable => "status = 'undeliverable'",
                    };
                    let next_at = match r.next {
                        NextStep::Retry { at: retry } => Some(time::to_micros(retry)),
                        NextStep::NextChannel => Some(time::to_micros(at)),
                        NextStep::Delivered | NextStep::Undeliverable => None,
                    };
                    changes.entry((set, next_at, r.moved)).or_default().push(r.id.to_string());
                }
                for ((set, next_at, moved), ids) in changes {
                    for chunk in ids.chunks(crisis::ROWS_PER_INSERT) {
                        let mut q = sqlx::QueryBuilder::<$db>::new("UPDATE notifications SET ");
                        q.push(set)
                            .push(", channel_index = channel_index + ")
                            .push_bind(i64::from(moved))
                            .push(", next_attempt_at = ")
                            .push_bind(next_at)
                            .push(", lease_until = NULL WHERE status = 'pending' AND notification_id IN ");
                        crisis::push_in(&mut q, chunk.iter().cloned());
                        q.push(" RETURNING incident_id, status");
                        for row in q.build().fetch_all(&mut *tx).await? {
                            let status: NotificationStatus = parse(&row.try_get::<String, _>("status")?)?;
                            if let Some(incident) = row.try_get::<Option<String>, _>("incident_id")?
                                && status != NotificationStatus::Pending
                            {
                                tally.moved(incident, NotificationStatus::Pending, status);
                            }
                        }
                    }
                }
                Self::apply_tally(&mut tx, tally).await?;
                tx.commit().await?;
                self.wrote("notification_attempts", attempts.len());
                Ok(())
            }

            async fn list_notifications(
                &self,
                scope: NotificationScope,
                after: Option<NotificationCursor>,
                limit: u32,
            ) -> Result<(Vec<Notification>, Option<NotificationCursor>), IntakeError> {
                let mut conn = self.pool.acquire().await?;
                let mut q = sqlx::QueryBuilder::<$db>::new("SELECT * FROM notifications WHERE ");
                match scope {
                    NotificationScope::Case(c) => q.push("case_id = ").push_bind(c.to_string()),
                    NotificationScope::Incident(i) => q.push("incident_id = ").push_bind(i.to_string()),
                };
                NOTIFICATION_PAGE.push_page(&mut q, after.map(|c| (c.created_at_micros, c.id.to_string())), limit);
                let rows = q.build().fetch_all(&mut *conn).await?;
                let mut found = rows.iter().map(Self::notification_from_row).collect::<Result<Vec<_>, _>>()?;
                Self::load_attempts(&mut conn, &mut found).await?;
                Ok(keyset::page(found, limit, |n| NotificationCursor {
                    created_at_micros: time::to_micros(n.created_at),
                    id: n.id,
                }))
            }

            async fn acknowledge_notification(
                &self,
                id: NotificationId,
                at: Instant,
                audit: &Audit,
            ) -> Result<Notification, IntakeError> {
                let mut tx = self.pool.begin_with($begin).await?;
                let Some(current) = Self::load_notification(&mut tx, id).await? else {
                    return Err(IntakeError::NotificationNotFound(id));
                };
                if current.status == NotificationStatus::Acknowledged {
                    return Ok(current);
                }
                sqlx::query(
                    "UPDATE notifications SET status = $1, acknowledged_at = $2, next_attempt_at = NULL, lease_until = NULL \
                     WHERE notification_id = $3",
                )
                .bind(NotificationStatus::Acknowledged.as_str())
                .bind(time::to_micros(at))
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
                if let Some(incident) = current.incident_id {
                    let mut tally = Tally::default();
                    tally.moved(incident.to_string(), current.status, NotificationStatus::Acknowledged);
                    Self::apply_tally(&mut tx, tally).await?;
                }
                let entry = TimelineEntry {
                    at,
                    kind: "notification.acknowledged".into(),
                    actor: "intake".into(),
                    summary: format!("The traveler confirmed the {} message", current.purpose.as_str().replace('_', " ")),
                };
                Self::add_timeline(&mut tx, current.case_id, &entry).await?;
                tx.append_audit(&audit.record(Some(current.case_id), vec![Target::new("notification", id)], Outcome::Ok))
                    .await?;
                let updated = Self::load_notification(&mut tx, id).await?.ok_or(IntakeError::NotificationNotFound(id))?;
                tx.commit().await?;
                Ok(updated)
            }
        }
    };
}

//! Trigger firings and their delivery in the PostgreSQL store ([`crate::Outbox`]).

use leadscore_core::time::Timestamp;

use super::rows::model_in;
use super::PgStore;
use crate::engine;
use crate::{
    CampaignMember, Delivery, DeliveryStatus, DueReport, FiringQuery, FiringRecord, OutboxCounts,
    OutboxRecord, Result, Settle, StoreError,
};

impl crate::Outbox for PgStore {
    fn fire_due(&mut self, now: Timestamp, limit: usize) -> Result<DueReport> {
        let cache = &self.active;
        self.write(|pg| {
            let Some(version) = PgStore::active_version(&mut pg.tx)? else {
                return Ok(DueReport::default());
            };
            let model = model_in(cache, pg, version)?;
            engine::fire_due(pg, &model, version, now, limit, None)
        })
    }

    fn next_due(&self) -> Result<Option<Timestamp>> {
        self.read(|pg| {
            Ok(pg
                .query_opt("SELECT min(due) FROM contacts", &[])?
                .and_then(|r| r.get::<_, Option<i64>>(0))
                .map(Timestamp))
        })
    }

    fn firings(&self, q: &FiringQuery) -> Result<Vec<FiringRecord>> {
        self.read(|pg| {
            pg.query(
                "SELECT seq, key, trigger_id, contact, at, recorded_at, late, model_version, score, explanation
                 FROM firings
                 WHERE seq > $1 AND ($2::TEXT IS NULL OR trigger_id = $2) AND ($3::TEXT IS NULL OR contact = $3)
                 ORDER BY seq LIMIT $4",
                &[&q.after.unwrap_or(0), &q.trigger, &q.contact, &(q.limit as i64)],
            )?
            .into_iter()
            .map(|r| {
                Ok(FiringRecord {
                    seq: r.get(0),
                    key: r.get(1),
                    trigger: r.get(2),
                    contact: r.get(3),
                    at: Timestamp(r.get(4)),
                    recorded_at: Timestamp(r.get(5)),
                    late: r.get(6),
                    model_version: r.get::<_, i32>(7) as u32,
                    score: crate::outbox::json_value(r.get(8))?,
                    explanation: crate::outbox::json_value(r.get(9))?,
                })
            })
            .collect()
        })
    }

    fn claim(
        &mut self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> Result<Vec<Delivery>> {
        let rows = self.unlocked(|pg| {
            pg.query(
                "UPDATE outbox SET next_attempt = $2, attempts = attempts + 1
                 WHERE id IN (SELECT id FROM outbox WHERE status = 'pending' AND next_attempt <= $1
                              ORDER BY next_attempt, id LIMIT $3 FOR UPDATE SKIP LOCKED)
                 RETURNING id, key, destination, payload, attempts",
                &[&now.0, &lease_until.0, &(limit as i64)],
            )
        })?;
        let mut out = rows
            .into_iter()
            .map(|r| {
                let (action, body) = crate::outbox::split_payload(r.get(3))?;
                Ok(Delivery {
                    id: r.get(0),
                    key: r.get(1),
                    destination: r.get(2),
                    action,
                    body,
                    attempt: r.get::<_, i32>(4) as u32,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        out.sort_by_key(|d| d.id);
        Ok(out)
    }

    fn settle(&mut self, results: &[(i64, Settle)], now: Timestamp) -> Result<()> {
        self.unlocked(|pg| {
            for (id, result) in results {
                match result {
                    Settle::Delivered => pg.execute(
                        "UPDATE outbox SET status = 'delivered', delivered_at = $2, last_error = NULL WHERE id = $1",
                        &[id, &now.0],
                    )?,
                    Settle::Retry { at, error } => pg.execute(
                        "UPDATE outbox SET next_attempt = $2, last_error = $3 WHERE id = $1 AND status = 'pending'",
                        &[id, &at.0, error],
                    )?,
                    Settle::Dead { error } => pg.execute(
                        "UPDATE outbox SET status = 'dead', last_error = $2 WHERE id = $1 AND status = 'pending'",
                        &[id, error],
                    )?,
                };
            }
            Ok(())
        })
    }

    fn outbox(&self, status: Option<DeliveryStatus>, limit: usize) -> Result<Vec<OutboxRecord>> {
        self.read(|pg| {
            pg.query(
                "SELECT id, firing, key, destination, status, attempts, next_attempt, last_error, created_at, delivered_at
                 FROM outbox WHERE ($1::TEXT IS NULL OR status = $1) ORDER BY id DESC LIMIT $2",
                &[&status.map(|s| s.as_str()), &(limit as i64)],
            )?
            .into_iter()
            .map(|r| {
                let status: String = r.get(4);
                Ok(OutboxRecord {
                    id: r.get(0),
                    firing: r.get(1),
                    key: r.get(2),
                    destination: r.get(3),
                    status: DeliveryStatus::parse(&status)
                        .ok_or_else(|| StoreError::Corrupt(format!("outbox status {status:?}")))?,
                    attempts: r.get::<_, i32>(5) as u32,
                    next_attempt: Timestamp(r.get(6)),
                    last_error: r.get(7),
                    created_at: Timestamp(r.get(8)),
                    delivered_at: r.get::<_, Option<i64>>(9).map(Timestamp),
                })
            })
            .collect()
        })
    }

    fn retry_dead(&mut self, id: Option<i64>, now: Timestamp) -> Result<u64> {
        self.unlocked(|pg| {
            pg.execute(
                "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt = $2
                 WHERE status = 'dead' AND ($1::BIGINT IS NULL OR id = $1)",
                &[&id, &now.0],
            )
        })
    }

    fn purge_dead(&mut self, id: Option<i64>) -> Result<u64> {
        self.unlocked(|pg| {
            pg.execute(
                "DELETE FROM outbox WHERE status = 'dead' AND ($1::BIGINT IS NULL OR id = $1)",
                &[&id],
            )
        })
    }

    fn outbox_counts(&self) -> Result<OutboxCounts> {
        self.read(|pg| {
            let mut counts = OutboxCounts::default();
            for r in pg.query("SELECT status, count(*) FROM outbox GROUP BY status", &[])? {
                counts.add(r.get(0), r.get::<_, i64>(1) as u64)?;
            }
            Ok(counts)
        })
    }

    fn campaign_members(
        &self,
        campaign: &str,
        since: Option<Timestamp>,
        limit: usize,
    ) -> Result<Vec<CampaignMember>> {
        self.read(|pg| {
            Ok(pg
                .query(
                    "SELECT contact, firing, at, enrolled_at FROM campaign_members
                     WHERE campaign = $1 AND enrolled_at >= $2 ORDER BY enrolled_at, firing LIMIT $3",
                    &[&campaign, &since.map_or(i64::MIN, |t| t.0), &(limit as i64)],
                )?
                .into_iter()
                .map(|r| CampaignMember {
                    contact: r.get(0),
                    firing: r.get(1),
                    at: Timestamp(r.get(2)),
                    enrolled_at: Timestamp(r.get(3)),
                })
                .collect())
        })
    }
}

//! Trigger firings and their delivery in the SQLite store ([`crate::Outbox`]).

use leadscore_core::time::Timestamp;
use rusqlite::{params, TransactionBehavior};
use serde_json::Value;

use super::rows::model_in;
use super::SqliteStore;
use crate::engine;
use crate::{
    CampaignMember, Delivery, DeliveryStatus, DueReport, FiringQuery, FiringRecord, OutboxCounts,
    OutboxRecord, Result, Settle, StoreError,
};

impl crate::Outbox for SqliteStore {
    fn fire_due(&mut self, now: Timestamp, limit: usize) -> Result<DueReport> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some(version) = Self::active_version(&tx)? else {
            return Ok(DueReport::default());
        };
        let model = model_in(&self.active, &tx, version)?;
        let mut sql = super::writing(&mut self.owner, &self.overlay, &tx, Some((&model, version)))?;
        // The writer's cache stays valid, less the contacts whose triggers
        // this changes (without this, the next ingest would take the
        // changes for another writer's and empty it).
        let live = super::writer_cache(&mut self.live, &self.owner, &tx);
        let report = engine::fire_due(&mut sql, &model, version, now, limit, live)?;
        let staged = super::finish_writing(&self.owner, sql, super::Writes::Acked)?;
        super::commit(tx, &mut self.owner, staged)?;
        if let Some(live) = &mut self.live {
            live.committed(&self.conn);
        }
        Ok(report)
    }

    fn next_due(&self) -> Result<Option<Timestamp>> {
        let tx = self.conn.unchecked_transaction()?;
        let sql = self.reading(&tx)?;
        // The earliest stored due time of a row not kept in memory, and
        // the kept rows' own.
        let mut stmt =
            tx.prepare_cached("SELECT due, id FROM contacts WHERE due IS NOT NULL ORDER BY due")?;
        let mut rows = stmt.query([])?;
        let mut next = None;
        while let Some(r) = rows.next()? {
            if sql
                .kept(r.get_ref(1)?.as_str().unwrap_or_default())
                .is_none()
            {
                next = Some(Timestamp(r.get(0)?));
                break;
            }
        }
        let kept = sql.all_kept().into_iter().filter_map(|e| e.row.due).min();
        Ok(next.into_iter().chain(kept).min())
    }

    fn firings(&self, q: &FiringQuery) -> Result<Vec<FiringRecord>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, key, trigger_id, contact, at, recorded_at, late, model_version, score, explanation
             FROM firings
             WHERE seq > ?1 AND (?2 IS NULL OR trigger_id = ?2) AND (?3 IS NULL OR contact = ?3)
             ORDER BY seq LIMIT ?4",
        )?;
        let rows = stmt.query_map(
            params![q.after.unwrap_or(0), q.trigger, q.contact, q.limit as i64],
            |r| {
                Ok((
                    FiringRecord {
                        seq: r.get(0)?,
                        key: r.get(1)?,
                        trigger: r.get(2)?,
                        contact: r.get(3)?,
                        at: Timestamp(r.get(4)?),
                        recorded_at: Timestamp(r.get(5)?),
                        late: r.get(6)?,
                        model_version: r.get(7)?,
                        score: Value::Null,
                        explanation: Value::Null,
                    },
                    r.get::<_, String>(8)?,
                    r.get::<_, String>(9)?,
                ))
            },
        )?;
        rows.map(|row| {
            let (mut f, score, explanation) = row?;
            f.score = crate::outbox::json_value(&score)?;
            f.explanation = crate::outbox::json_value(&explanation)?;
            Ok(f)
        })
        .collect()
    }

    fn claim(
        &mut self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> Result<Vec<Delivery>> {
        let changes = self.conn.total_changes();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let claimed = {
            let mut stmt = tx.prepare_cached(
                "UPDATE outbox SET next_attempt = ?2, attempts = attempts + 1
                 WHERE id IN (SELECT id FROM outbox WHERE status = 'pending' AND next_attempt <= ?1
                              ORDER BY next_attempt, id LIMIT ?3)
                 RETURNING id, key, destination, payload, attempts",
            )?;
            let rows = stmt.query_map(params![now.0, lease_until.0, limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, u32>(4)?,
                ))
            })?;
            rows.collect::<Result<Vec<_>, _>>()?
        };
        tx.commit()?;
        self.outbox_only_since(changes);
        let mut out = claimed
            .into_iter()
            .map(|(id, key, destination, payload, attempt)| {
                let (action, body) = crate::outbox::split_payload(&payload)?;
                Ok(Delivery {
                    id,
                    key,
                    destination,
                    action,
                    body,
                    attempt,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        out.sort_by_key(|d| d.id);
        Ok(out)
    }

    fn settle(&mut self, results: &[(i64, Settle)], now: Timestamp) -> Result<()> {
        let changes = self.conn.total_changes();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (id, result) in results {
            match result {
                Settle::Delivered => tx.prepare_cached(
                    "UPDATE outbox SET status = 'delivered', delivered_at = ?2, last_error = NULL WHERE id = ?1",
                )?.execute(params![id, now.0])?,
                Settle::Retry { at, error } => tx.prepare_cached(
                    "UPDATE outbox SET next_attempt = ?2, last_error = ?3 WHERE id = ?1 AND status = 'pending'",
                )?.execute(params![id, at.0, error])?,
                Settle::Dead { error } => tx.prepare_cached(
                    "UPDATE outbox SET status = 'dead', last_error = ?2 WHERE id = ?1 AND status = 'pending'",
                )?.execute(params![id, error])?,
            };
        }
        tx.commit()?;
        self.outbox_only_since(changes);
        Ok(())
    }

    fn outbox(&self, status: Option<DeliveryStatus>, limit: usize) -> Result<Vec<OutboxRecord>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, firing, key, destination, status, attempts, next_attempt, last_error, created_at, delivered_at
             FROM outbox WHERE (?1 IS NULL OR status = ?1) ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![status.map(|s| s.as_str()), limit as i64], |r| {
            Ok((
                r.get::<_, String>(4)?,
                OutboxRecord {
                    id: r.get(0)?,
                    firing: r.get(1)?,
                    key: r.get(2)?,
                    destination: r.get(3)?,
                    status: DeliveryStatus::Pending,
                    attempts: r.get(5)?,
                    next_attempt: Timestamp(r.get(6)?),
                    last_error: r.get(7)?,
                    created_at: Timestamp(r.get(8)?),
                    delivered_at: r.get::<_, Option<i64>>(9)?.map(Timestamp),
                },
            ))
        })?;
        rows.map(|row| {
            let (status, mut record) = row?;
            record.status = DeliveryStatus::parse(&status)
                .ok_or_else(|| StoreError::Corrupt(format!("outbox status {status:?}")))?;
            Ok(record)
        })
        .collect()
    }

    fn retry_dead(&mut self, id: Option<i64>, now: Timestamp) -> Result<u64> {
        Ok(self.conn.execute(
            "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt = ?2
             WHERE status = 'dead' AND (?1 IS NULL OR id = ?1)",
            params![id, now.0],
        )? as u64)
    }

    fn purge_dead(&mut self, id: Option<i64>) -> Result<u64> {
        Ok(self.conn.execute(
            "DELETE FROM outbox WHERE status = 'dead' AND (?1 IS NULL OR id = ?1)",
            params![id],
        )? as u64)
    }

    fn outbox_counts(&self) -> Result<OutboxCounts> {
        let mut counts = OutboxCounts::default();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT status, count(*) FROM outbox GROUP BY status")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
        })?;
        for row in rows {
            let (status, n) = row?;
            counts.add(&status, n)?;
        }
        Ok(counts)
    }

    fn campaign_members(
        &self,
        campaign: &str,
        since: Option<Timestamp>,
        limit: usize,
    ) -> Result<Vec<CampaignMember>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT contact, firing, at, enrolled_at FROM campaign_members
             WHERE campaign = ?1 AND enrolled_at >= ?2 ORDER BY enrolled_at, firing LIMIT ?3",
        )?;
        let rows = stmt.query_map(
            params![campaign, since.map_or(i64::MIN, |t| t.0), limit as i64],
            |r| {
                Ok(CampaignMember {
                    contact: r.get(0)?,
                    firing: r.get(1)?,
                    at: Timestamp(r.get(2)?),
                    enrolled_at: Timestamp(r.get(3)?),
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

impl SqliteStore {
    /// This connection's writes since its count of changed rows was
    /// `changes` were all to the outbox, which the writer's cache holds
    /// nothing of: the cache stays as valid as it was (without this, the
    /// next ingest would take them for another operation's writes of live
    /// rows and empty it, at every delivery).
    fn outbox_only_since(&mut self, changes: u64) {
        if let Some(live) = &mut self.live {
            live.unchanged_across(changes, self.conn.total_changes());
        }
    }
}

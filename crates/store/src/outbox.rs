//! Trigger firings, the outbox their actions are delivered from, and the
//! campaign lists kept by leadscore: the records the [`crate::Store`] trait
//! hands out.

use leadscore_core::time::Timestamp;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

pub use crate::engine::{firing_key, DueReport, LATE_AFTER_SECONDS};

/// A recorded trigger firing.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct FiringRecord {
    /// Position (increasing).
    pub seq: i64,
    /// Idempotency key: hash of trigger, contact and time.
    pub key: String,
    /// Trigger id.
    pub trigger: String,
    /// Canonical contact id.
    pub contact: String,
    /// The evaluation point where the condition became true.
    pub at: Timestamp,
    /// When it was recorded.
    pub recorded_at: Timestamp,
    /// Found after the fact (late events, downtime, imported history).
    pub late: bool,
    /// Model version whose trigger fired.
    pub model_version: u32,
    /// Score snapshot at `at`.
    pub score: Value,
    /// The rules behind the score at `at`.
    pub explanation: Value,
}

/// Which firings to list.
#[derive(Debug, Clone, Default)]
pub struct FiringQuery {
    /// Only this trigger.
    pub trigger: Option<String>,
    /// Only this contact (canonical id).
    pub contact: Option<String>,
    /// Only firings after this position (cursor).
    pub after: Option<i64>,
    /// At most this many.
    pub limit: usize,
}

/// Status of an outbox row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Waiting for (another) attempt.
    Pending,
    /// Delivered.
    Delivered,
    /// Gave up after the last attempt (dead letter).
    Dead,
}

impl DeliveryStatus {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
        }
    }

    /// Parses a name.
    pub fn parse(text: &str) -> Option<DeliveryStatus> {
        Some(match text {
            "pending" => DeliveryStatus::Pending,
            "delivered" => DeliveryStatus::Delivered,
            "dead" => DeliveryStatus::Dead,
            _ => return None,
        })
    }
}

/// An outbox row.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct OutboxRecord {
    /// Row id.
    pub id: i64,
    /// The firing it delivers.
    pub firing: i64,
    /// The firing's idempotency key.
    pub key: String,
    /// `webhook URL`, `crm hubspot`, `log`.
    pub destination: String,
    /// Its status.
    pub status: DeliveryStatus,
    /// Attempts made (claims).
    pub attempts: u32,
    /// Not before (for pending rows; a claimed row's lease).
    pub next_attempt: Timestamp,
    /// The last failure.
    pub last_error: Option<String>,
    /// When it was queued.
    pub created_at: Timestamp,
    /// When it was delivered.
    pub delivered_at: Option<Timestamp>,
}

/// A claimed delivery: what a worker sends.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// Outbox row id.
    pub id: i64,
    /// The firing's idempotency key.
    pub key: String,
    /// `webhook URL`, `crm hubspot`, `log`.
    pub destination: String,
    /// The action (`{"type": "webhook", ...}`).
    pub action: Value,
    /// The firing as sent (trigger, contact, score, explanation, key, time).
    pub body: Value,
    /// This attempt's number (1 for the first).
    pub attempt: u32,
}

/// How a delivery attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Settle {
    /// Delivered.
    Delivered,
    /// Failed; try again at `at`.
    Retry {
        /// Next attempt.
        at: Timestamp,
        /// What went wrong.
        error: String,
    },
    /// Failed for the last time: a dead letter.
    Dead {
        /// What went wrong.
        error: String,
    },
}

/// Outbox rows by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct OutboxCounts {
    /// Waiting (the outbox depth).
    pub pending: u64,
    /// Delivered.
    pub delivered: u64,
    /// Dead letters.
    pub dead: u64,
}

impl OutboxCounts {
    /// Records `n` rows of the status named `status`.
    pub(crate) fn add(&mut self, status: &str, n: u64) -> crate::Result<()> {
        match DeliveryStatus::parse(status) {
            Some(DeliveryStatus::Pending) => self.pending = n,
            Some(DeliveryStatus::Delivered) => self.delivered = n,
            Some(DeliveryStatus::Dead) => self.dead = n,
            None => {
                return Err(crate::StoreError::Corrupt(format!(
                    "outbox status {status:?}"
                )))
            }
        }
        Ok(())
    }
}

/// A member of a campaign list.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct CampaignMember {
    /// Canonical contact id.
    pub contact: String,
    /// The firing that enrolled it.
    pub firing: i64,
    /// The firing time.
    pub at: Timestamp,
    /// When it was enrolled.
    pub enrolled_at: Timestamp,
}

/// Splits a stored payload into action and body.
pub(crate) fn split_payload(payload: &str) -> crate::Result<(Value, Value)> {
    let mut value: Value = serde_json::from_str(payload)
        .map_err(|e| crate::StoreError::Corrupt(format!("outbox payload: {e}")))?;
    Ok((value["action"].take(), value["body"].take()))
}

/// Parses stored JSON text.
pub(crate) fn json_value(text: &str) -> crate::Result<Value> {
    serde_json::from_str(text).map_err(|e| crate::StoreError::Corrupt(format!("stored JSON: {e}")))
}

//! Background jobs (model activations started through the API) as the
//! store keeps them, and how they are seen and updated.

use leadscore_core::time::Timestamp;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

use crate::{now, Result, StoreError};

/// A background job (a model activation started through the API) as the
/// store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Job {
    /// Its id.
    pub id: i64,
    /// What it does (`activate`).
    pub kind: String,
    /// The model version it is about.
    pub version: Option<u32>,
    /// `running`, `done`, `failed`, or `interrupted`: still `running` in
    /// the store but not updated for [`JOB_SILENCE`] (its process stopped;
    /// an activation resumes when requested again).
    pub state: String,
    /// Contacts done so far.
    pub done: u64,
    /// Contacts in all, once known.
    pub total: Option<u64>,
    /// What the job did, when done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<Value>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it started.
    pub created_at: Timestamp,
    /// Its last update.
    pub updated_at: Timestamp,
}

/// How long a running job may go without an update before it is reported
/// as interrupted. Running jobs update at least every few seconds while
/// they make progress.
pub const JOB_SILENCE: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// The `jobs` columns of one row, in the order both backends select them:
/// `id, kind, version, state, done, total, report, error, created_at,
/// updated_at`.
pub(crate) type JobRow = (
    i64,
    String,
    Option<i64>,
    String,
    i64,
    Option<i64>,
    Option<String>,
    Option<String>,
    i64,
    i64,
);

impl Job {
    /// A stored row, as seen now.
    pub(crate) fn from_row(row: JobRow) -> Result<Job> {
        let (id, kind, version, state, done, total, report, error, created_at, updated_at) = row;
        let report = report
            .map(|r| serde_json::from_str(&r))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("job {id} report: {e}")))?;
        Ok(Job {
            id,
            kind,
            version: version.map(|v| v as u32),
            state,
            done: done as u64,
            total: total.map(|t| t as u64),
            report,
            error,
            created_at: Timestamp(created_at),
            updated_at: Timestamp(updated_at),
        }
        .seen_at(now()))
    }

    /// The job as seen at `now`: a running job silent for longer than
    /// [`JOB_SILENCE`] is `interrupted`.
    fn seen_at(mut self, now: Timestamp) -> Job {
        let silence = JOB_SILENCE.as_nanos() as i64;
        if self.state == "running" && now.0.saturating_sub(self.updated_at.0) > silence {
            self.state = "interrupted".into();
        }
        self
    }
}

/// A change to a job.
#[derive(Debug, Clone, PartialEq)]
pub enum JobUpdate {
    /// `done` of `total` contacts.
    Progress {
        /// Contacts done.
        done: u64,
        /// Contacts in all.
        total: u64,
    },
    /// Finished, with what it did.
    Done(Value),
    /// Failed, with why.
    Failed(String),
}

/// The `jobs` columns an update writes; `None` keeps the stored value.
pub(crate) struct JobColumns<'u> {
    pub(crate) state: &'static str,
    pub(crate) done: Option<i64>,
    pub(crate) total: Option<i64>,
    pub(crate) report: Option<String>,
    pub(crate) error: Option<&'u str>,
}

impl JobUpdate {
    /// The columns this update writes.
    pub(crate) fn columns(&self) -> JobColumns<'_> {
        let keep = |state| JobColumns {
            state,
            done: None,
            total: None,
            report: None,
            error: None,
        };
        match self {
            JobUpdate::Progress { done, total } => JobColumns {
                done: Some(*done as i64),
                total: Some(*total as i64),
                ..keep("running")
            },
            JobUpdate::Done(report) => JobColumns {
                report: Some(report.to_string()),
                ..keep("done")
            },
            JobUpdate::Failed(error) => JobColumns {
                error: Some(error),
                ..keep("failed")
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_job_silent_for_too_long_is_interrupted() {
        let job = |state: &str| Job {
            id: 1,
            kind: "activate".into(),
            version: Some(2),
            state: state.into(),
            done: 0,
            total: None,
            report: None,
            error: None,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
        };
        let silence = JOB_SILENCE.as_nanos() as i64;
        assert_eq!(job("running").seen_at(Timestamp(silence)).state, "running");
        assert_eq!(
            job("running").seen_at(Timestamp(silence + 1)).state,
            "interrupted"
        );
        assert_eq!(job("done").seen_at(Timestamp(silence + 1)).state, "done");
    }
}

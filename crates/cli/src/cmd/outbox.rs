//! `leadscore outbox`: the deliveries of trigger firings.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use leadscore_server::delivery::{Deliverer, DeliveryConfig};
use leadscore_server::StoreHandle;
use leadscore_store::{now, DeliveryStatus, FiringQuery};

use crate::args::OutboxCommand;
use crate::store;

pub fn run(db: &Path, command: OutboxCommand) -> Result<ExitCode> {
    match command {
        OutboxCommand::List {
            status,
            limit,
            json,
        } => {
            let status = match status.as_deref() {
                None => None,
                Some(s) => Some(DeliveryStatus::parse(s).with_context(|| {
                    format!("--status {s:?}: expected pending, delivered or dead")
                })?),
            };
            let store = store::open_existing(db)?;
            let rows = store.outbox(status, limit)?;
            let counts = store.outbox_counts()?;
            if json {
                let value = serde_json::json!({"rows": rows, "counts": counts});
                return super::emit(&format!("{value}\n")).map(|_| ExitCode::SUCCESS);
            }
            let mut out = format!(
                "{} pending, {} delivered, {} dead\n",
                counts.pending, counts.delivered, counts.dead
            );
            writeln!(
                out,
                "{:<6} {:<9} {:<8} {:<32} {:<40} last error",
                "id", "status", "attempts", "next attempt", "destination"
            )?;
            for r in rows {
                writeln!(
                    out,
                    "{:<6} {:<9} {:<8} {:<32} {:<40} {}",
                    r.id,
                    r.status.as_str(),
                    r.attempts,
                    r.next_attempt.to_string(),
                    r.destination,
                    r.last_error.unwrap_or_default()
                )?;
            }
            super::emit(&out)?;
        }
        OutboxCommand::Retry { id, all: _ } => {
            let n = store::open_existing(db)?.retry_dead(id, now())?;
            if id.is_some() && n == 0 {
                bail!("no dead letter {}", id.unwrap_or_default());
            }
            eprintln!("{n} dead letter(s) queued again");
        }
        OutboxCommand::Purge { id, all: _ } => {
            let n = store::open_existing(db)?.purge_dead(id)?;
            if id.is_some() && n == 0 {
                bail!("no dead letter {}", id.unwrap_or_default());
            }
            eprintln!("{n} dead letter(s) deleted");
        }
        OutboxCommand::Deliver => {
            let store = store::open_existing(db)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let report = runtime.block_on(async move {
                let (handle, worker) = StoreHandle::start(store);
                let deliverer = Deliverer::new(handle, DeliveryConfig::default())
                    .map_err(anyhow::Error::msg)?;
                let report = deliverer.drain().await.map_err(anyhow::Error::msg);
                drop(deliverer);
                let _ = tokio::task::spawn_blocking(move || worker.join()).await;
                report
            })?;
            eprintln!(
                "{} due contact(s), {} firing(s); {} delivered, {} to retry, {} dead",
                report.due.contacts,
                report.due.firings,
                report.delivered,
                report.retried,
                report.dead
            );
        }
        OutboxCommand::Firings {
            trigger,
            contact,
            limit,
        } => {
            let store = store::open_existing(db)?;
            let contact = match contact {
                Some(id) => Some(store.contact(&id)?.map(|c| c.id).unwrap_or(id)),
                None => None,
            };
            let firings = store.firings(&FiringQuery {
                trigger,
                contact,
                after: None,
                limit,
            })?;
            let mut out = String::new();
            for f in firings {
                writeln!(out, "{}", serde_json::to_string(&f)?)?;
            }
            super::emit(&out)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

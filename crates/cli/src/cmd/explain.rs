//! `leadscore explain`: one contact's score, rule by rule.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Result};
use leadscore_core::batch::ContactLog;
use leadscore_core::model::Model;
use leadscore_core::score::{Explanation, Score};
use leadscore_core::time::Timestamp;

use crate::args::Input;
use crate::load;

pub fn run(input: &Input, db: &Path, contact: &str, json: bool) -> Result<ExitCode> {
    let loaded = load::input(input, db, Some(contact))?;
    load::report_skipped(&loaded.skipped);
    let Some(found) = find(&loaded.contacts, contact) else {
        bail!(
            "no contact {contact:?} with messages at or before {}",
            loaded.as_of
        );
    };
    let (score, explanation) = found.explain_as_of(&loaded.model, loaded.as_of);
    if json {
        let value = serde_json::json!({"contact_id": found.id, "as_of": loaded.as_of.to_string(), "score": score, "explanation": explanation});
        super::emit(&(serde_json::to_string_pretty(&value)? + "\n"))?;
    } else {
        super::emit(&table(
            &loaded.model,
            found,
            loaded.as_of,
            &score,
            &explanation,
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The contact whose canonical id, user id or anonymous id is `id`.
pub fn find<'c>(contacts: &'c [ContactLog], id: &str) -> Option<&'c ContactLog> {
    contacts.iter().find(|c| c.id == id).or_else(|| {
        contacts.iter().find(|c| {
            c.messages
                .iter()
                .any(|m| m.user_id.as_deref() == Some(id) || m.anonymous_id.as_deref() == Some(id))
        })
    })
}

fn round(x: f64) -> String {
    let r = format!("{x:.2}");
    if r == "-0.00" {
        "0.00".into()
    } else {
        r
    }
}

/// A human-readable breakdown.
pub fn table(
    model: &Model,
    contact: &ContactLog,
    t: Timestamp,
    score: &Score,
    explanation: &Explanation,
) -> String {
    let mut out = String::new();
    let dash = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.to_string()
        }
    };
    let _ = writeln!(
        out,
        "contact {} as of {t} (model {:?})",
        contact.id, model.name
    );
    let _ = writeln!(
        out,
        "score {} = clamp(raw {} = fit {} + engagement {}, {}, {})",
        round(score.score),
        round(score.raw),
        round(score.fit),
        round(score.engagement),
        model.min,
        model.max
    );
    let _ = writeln!(
        out,
        "tier {}  grade {}  stage {}  status {}",
        dash(&score.tier),
        dash(&score.grade),
        dash(&score.stage),
        score.status.as_str()
    );
    let _ = writeln!(out, "{} message(s)", contact.messages.len());
    if !explanation.excluded_by.is_empty() {
        let _ = writeln!(out, "\nexcluded by:");
        for e in &explanation.excluded_by {
            let _ = writeln!(out, "  {:<24} {}", e.id, e.reason);
        }
    }
    let _ = writeln!(
        out,
        "\n{:<24} {:<11} {:>8} {:>6}  {:<24} {:<24} detail",
        "rule", "kind", "points", "awards", "first award", "last award"
    );
    for rule in &explanation.rules {
        let time = |t: Option<Timestamp>| t.map_or("-".to_string(), |t| t.to_string());
        let _ = writeln!(
            out,
            "{:<24} {:<11} {:>8} {:>6}  {:<24} {:<24} {}",
            rule.id,
            rule.kind.as_str(),
            round(rule.points),
            rule.awards,
            time(rule.first_award),
            time(rule.last_award),
            rule.detail
        );
        if !rule.message_ids.is_empty() {
            let shown: Vec<&str> = rule
                .message_ids
                .iter()
                .take(8)
                .map(String::as_str)
                .collect();
            let more = rule.message_ids.len().saturating_sub(shown.len());
            let _ = write!(out, "{:<24} messages: {}", "", shown.join(", "));
            if more > 0 {
                let _ = write!(out, " … (+{more})");
            }
            out.push('\n');
        }
    }
    if explanation.rules.is_empty() {
        let _ = writeln!(out, "(no rule contributes)");
    }
    out
}

//! Score rows as CSV (RFC 4180) or JSON lines (SPEC §4).

use std::io::Write;

use anyhow::Result;
use leadscore_core::score::{Contribution, Score};
use serde::Serialize;

use crate::args::Format;

/// The SPEC §4 columns.
pub const COLUMNS: [&str; 10] = [
    "contact_id",
    "score",
    "raw",
    "fit",
    "engagement",
    "tier",
    "grade",
    "stage",
    "status",
    "reasons",
];

#[derive(Serialize)]
struct Row<'a> {
    contact_id: &'a str,
    score: f64,
    raw: f64,
    fit: f64,
    engagement: f64,
    tier: &'a str,
    grade: &'a str,
    stage: &'a str,
    status: &'a str,
    reasons: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    explanation: Option<&'a [Contribution]>,
}

/// Writes score rows in one format.
pub struct ScoreWriter<W: Write> {
    format: Format,
    explain: bool,
    csv: Option<csv::Writer<W>>,
    json: Option<W>,
}

impl<W: Write> ScoreWriter<W> {
    /// Starts the output (writes the CSV header).
    pub fn new(out: W, format: Format, explain: bool) -> Result<ScoreWriter<W>> {
        Ok(match format {
            Format::Csv => {
                let mut csv = csv::Writer::from_writer(out);
                let mut header: Vec<&str> = COLUMNS.to_vec();
                if explain {
                    header.push("explanation");
                }
                csv.write_record(&header)?;
                ScoreWriter {
                    format,
                    explain,
                    csv: Some(csv),
                    json: None,
                }
            }
            Format::Jsonl => ScoreWriter {
                format,
                explain,
                csv: None,
                json: Some(out),
            },
        })
    }

    /// Writes one contact.
    pub fn write(
        &mut self,
        contact_id: &str,
        score: &Score,
        explanation: Option<&[Contribution]>,
    ) -> Result<()> {
        let row = Row {
            contact_id,
            score: score.score,
            raw: score.raw,
            fit: score.fit,
            engagement: score.engagement,
            tier: &score.tier,
            grade: &score.grade,
            stage: &score.stage,
            status: score.status.as_str(),
            reasons: score.reasons.join(";"),
            explanation: if self.explain { explanation } else { None },
        };
        match self.format {
            Format::Csv => {
                let csv = self.csv.as_mut().expect("csv writer");
                let numbers = [row.score, row.raw, row.fit, row.engagement].map(|n| n.to_string());
                let mut record = vec![
                    row.contact_id,
                    &numbers[0],
                    &numbers[1],
                    &numbers[2],
                    &numbers[3],
                    row.tier,
                    row.grade,
                    row.stage,
                    row.status,
                    &row.reasons,
                ];
                let explained;
                if self.explain {
                    explained = serde_json::to_string(&row.explanation.unwrap_or_default())?;
                    record.push(&explained);
                }
                csv.write_record(&record)?;
            }
            Format::Jsonl => {
                let out = self.json.as_mut().expect("json writer");
                // Serialise first so that a closed stdout surfaces as an
                // `io::Error` (which `main` treats as a normal end).
                let mut line = serde_json::to_vec(&row)?;
                line.push(b'\n');
                out.write_all(&line)?;
            }
        }
        Ok(())
    }

    /// Flushes everything.
    pub fn finish(self) -> Result<()> {
        if let Some(mut csv) = self.csv {
            csv.flush()?;
        }
        if let Some(mut out) = self.json {
            out.flush()?;
        }
        Ok(())
    }
}

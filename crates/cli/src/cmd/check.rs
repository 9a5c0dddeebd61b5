//! `leadscore check`: validate models.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use crate::load;

pub fn run(models: &[PathBuf]) -> Result<ExitCode> {
    let mut ok = true;
    for path in models {
        match load::model(path) {
            Ok(model) => {
                let mut text = format!(
                    "{}: ok: model {:?}: {}\n",
                    path.display(),
                    model.name,
                    model.summary()
                );
                if !model.triggers.is_empty() {
                    text += "  note: in a store, triggers record firings into the outbox, delivered by `leadscore serve` or `leadscore outbox deliver` (docs/triggers.md); `leadscore triggers` simulates them offline\n";
                }
                super::emit(&text)?
            }
            Err(e) => {
                ok = false;
                eprintln!("{}: {e:#}", path.display());
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

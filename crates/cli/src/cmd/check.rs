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
                    text += "  note: triggers are validated; firing them (campaigns, webhooks, CRM) is not supported yet\n";
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

//! `leadscore check`: validate models.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use crate::load;

pub fn run(models: &[PathBuf]) -> Result<ExitCode> {
    let mut ok = true;
    for path in models {
        match load::model(path) {
            Ok(model) => super::emit(&format!(
                "{}: ok: model {:?}: {}\n",
                path.display(),
                model.name,
                model.summary()
            ))?,
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

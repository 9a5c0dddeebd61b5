//! `leadscore train` on the real data sets of `../shared/data` (read in
//! place, never copied): the AUC targets, and errors.

use std::path::PathBuf;

use crate::harness::leadscore;

/// `../shared/data/NAME`, if present (it is beside the repository, not in it).
fn shared(name: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data")
        .join(name);
    if dir.exists() {
        Some(dir)
    } else {
        eprintln!("{} absent: real-data test skipped", dir.display());
        None
    }
}

/// The two AUCs the report prints.
fn aucs(report: &str) -> (f64, f64) {
    let auc = |prefix: &str| -> f64 {
        let line = report
            .lines()
            .find(|l| l.trim().starts_with(prefix))
            .unwrap();
        line.split_whitespace()
            .nth(prefix.split(' ').count())
            .unwrap()
            .parse()
            .unwrap()
    };
    (auc("logistic regression"), auc("written model file"))
}

#[test]
fn x_education_without_sales_columns_reaches_the_target_auc() {
    let Some(dir) = shared("xeducation") else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let toml = out.path().join("xed.toml").display().to_string();
    let table = dir.join("Leads.csv").display().to_string();
    let mut args = vec![
        "train",
        "--table",
        &table,
        "--id-column",
        "Prospect ID",
        "--label",
        "Converted",
        "--out",
        &toml,
    ];
    for column in [
        "Lead Number",
        "Tags",
        "Lead Quality",
        "Lead Profile",
        "Asymmetrique Activity Index",
        "Asymmetrique Profile Index",
        "Asymmetrique Activity Score",
        "Asymmetrique Profile Score",
    ] {
        args.extend(["--exclude", column]);
    }
    let report = leadscore(&args).success();
    let (model, file) = aucs(&report);
    assert!(model >= 0.89, "{report}");
    assert!((model - file).abs() <= 0.02, "{report}");
    // The written model is a valid model and scores the table.
    leadscore(&["check", &toml]).success();
}

#[test]
fn train_errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t.csv");
    std::fs::write(&table, "id,a,won\n1,x,maybe\n2,y,0\n").unwrap();
    let t = table.display().to_string();
    let bad = leadscore(&["train", "--table", &t, "--label", "won"]).failure();
    assert!(bad.contains("row 2: column \"won\": expected 1/0"), "{bad}");
    std::fs::write(&table, "id,a,won\n1,x,0\n2,y,0\n").unwrap();
    let one = leadscore(&["train", "--table", &t, "--label", "won"]).failure();
    assert!(one.contains("needs both outcomes"), "{one}");
    let typo = leadscore(&["train", "--table", &t, "--label", "wun"]).failure();
    assert!(typo.contains("no column \"wun\""), "{typo}");
}

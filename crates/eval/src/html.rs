//! A self-contained HTML report of an evaluation: inline SVG charts drawn
//! here (no script, no external asset, no CDN), readable offline.

use std::fmt::Write as _;

use crate::evaluate::Report;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A bar chart: `bars` of (label, [values per series]).
fn bars(title: &str, series: &[(&str, &str)], bars: &[(String, Vec<f64>)], unit: &str) -> String {
    let (w, h, left, bottom) = (640.0, 260.0, 48.0, 40.0);
    let max = bars
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let slot = (w - left - 10.0) / bars.len().max(1) as f64;
    let bar = slot * 0.8 / series.len().max(1) as f64;
    let mut svg = format!(
        "<figure><figcaption>{}</figcaption><svg viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\">",
        escape(title)
    );
    let plot = h - bottom - 10.0;
    for k in 0..=4 {
        let y = 10.0 + plot * f64::from(k) / 4.0;
        let value = max * (1.0 - f64::from(k) / 4.0);
        let _ = write!(
            svg,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\">{value:.1}{unit}</text>",
            w - 10.0,
            left - 4.0,
            y + 3.0
        );
    }
    for (i, (label, values)) in bars.iter().enumerate() {
        let x0 = left + slot * i as f64 + slot * 0.1;
        for (j, v) in values.iter().enumerate() {
            let height = plot * v / max;
            let _ = write!(
                svg,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{height:.1}\" fill=\"{}\"><title>{}: {v:.3}</title></rect>",
                x0 + bar * j as f64,
                10.0 + plot - height,
                series[j].1,
                escape(series[j].0)
            );
        }
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\">{}</text>",
            x0 + slot * 0.4,
            h - bottom + 14.0,
            escape(label)
        );
    }
    for (j, (name, color)) in series.iter().enumerate() {
        let x = left + 120.0 * j as f64;
        let _ = write!(
            svg,
            "<rect x=\"{x}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{color}\"/><text x=\"{}\" y=\"{}\" font-size=\"11\">{}</text>",
            h - 16.0,
            x + 14.0,
            h - 7.0,
            escape(name)
        );
    }
    svg.push_str("</svg></figure>");
    svg
}

/// The report as one HTML page.
pub fn report_html(title: &str, r: &Report) -> String {
    let mut page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:720px;margin:2em auto;color:#222}}\
         table{{border-collapse:collapse}}td,th{{padding:2px 8px;text-align:right;border-bottom:1px solid #eee}}\
         figcaption{{font-weight:600;margin:1em 0 .3em}}.warn{{color:#a40}}</style></head><body><h1>{t}</h1>",
        t = escape(title)
    );
    let _ = write!(
        page,
        "<p>{} contacts evaluated, {} converted ({:.1}%). ROC AUC <b>{:.4}</b> (95% CI {:.4}–{:.4}), PR AUC {:.4}.{}</p>",
        r.contacts,
        r.positives,
        100.0 * r.positives as f64 / r.contacts.max(1) as f64,
        r.auc.estimate,
        r.auc.low,
        r.auc.high,
        r.pr_auc,
        r.velocity_days
            .map(|d| format!(" Median {d:.1} days from reaching the top tier to converting."))
            .unwrap_or_default()
    );
    for w in &r.warnings {
        let _ = write!(page, "<p class=\"warn\">Warning: {}</p>", escape(w));
    }
    let (pos, neg) = (
        r.positives.max(1) as f64,
        (r.contacts - r.positives).max(1) as f64,
    );
    let histogram: Vec<(String, Vec<f64>)> = r
        .histogram
        .iter()
        .map(|b| {
            (
                format!("{:.0}", b.low),
                vec![
                    b.positives as f64 / pos * 100.0,
                    b.negatives as f64 / neg * 100.0,
                ],
            )
        })
        .collect();
    page.push_str(&bars(
        "Score distribution by outcome (share of each group per score bin)",
        &[("converted", "#2a7"), ("not converted", "#bbb")],
        &histogram,
        "%",
    ));
    let lift: Vec<(String, Vec<f64>)> = r
        .deciles
        .iter()
        .map(|b| (b.name.clone(), vec![b.lift]))
        .collect();
    page.push_str(&bars(
        "Lift per score decile (1 = top 10%)",
        &[("lift", "#36c")],
        &lift,
        "",
    ));
    let observed: Vec<(String, Vec<f64>)> = r
        .histogram
        .iter()
        .map(|b| {
            let n = b.positives + b.negatives;
            let rate = if n > 0 {
                b.positives as f64 / n as f64 * 100.0
            } else {
                0.0
            };
            (format!("{:.0}", b.low), vec![rate])
        })
        .collect();
    page.push_str(&bars(
        "Observed conversion per score bin (scores are points, not probabilities: this is the calibration view)",
        &[("converted", "#c63")],
        &observed,
        "%",
    ));
    page.push_str("<h2>Tiers</h2><table><tr><th>tier</th><th>contacts</th><th>converted</th><th>rate</th><th>lift</th></tr>");
    for b in &r.tiers {
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1}%</td><td>{:.2}</td></tr>",
            escape(&b.name),
            b.contacts,
            b.positives,
            b.rate * 100.0,
            b.lift
        );
    }
    page.push_str("</table><h2>Thresholds</h2><table><tr><th>threshold</th><th>MQLs</th><th>precision</th><th>recall</th></tr>");
    for t in &r.thresholds {
        let _ = write!(
            page,
            "<tr><td>{:.1}</td><td>{}</td><td>{:.1}%</td><td>{:.1}%</td></tr>",
            t.threshold,
            t.qualified,
            t.precision * 100.0,
            t.recall * 100.0
        );
    }
    page.push_str("</table></body></html>\n");
    page
}

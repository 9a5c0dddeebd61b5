//! The API reference as one self-contained HTML page (no scripts, no
//! external assets), from [`ROUTES`].

use super::{Access, ROUTES};

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The API reference as one HTML page (no scripts, no external assets).
pub fn page() -> String {
    let mut rows = String::new();
    let mut tag = "";
    for r in ROUTES {
        if r.tag != tag {
            tag = r.tag;
            rows += &format!("<tr><th colspan=\"4\">{}</th></tr>\n", escape(tag));
        }
        let access = match r.access {
            Access::Ingest => {
                "write key (Basic, the body's writeKey, or ?writeKey= on the beacon route)"
            }
            Access::Read => "read key",
            Access::Admin => "admin key",
            Access::Signed => "signed link",
            Access::Public => "none",
        };
        let mut params = r.query.join(", ");
        if let Some(body) = r.body {
            params = if params.is_empty() {
                format!("body: {body}")
            } else {
                format!("{params}; body: {body}")
            };
        }
        let codes: Vec<String> = r
            .responses
            .iter()
            .map(|(c, w)| format!("{c} {}", escape(w)))
            .collect();
        rows += &format!(
            "<tr><td><code>{} {}</code></td><td>{}</td><td>{}<br><small>{}</small></td><td><small>{}</small></td></tr>\n",
            r.method,
            escape(r.path),
            access,
            escape(r.summary),
            escape(&params),
            codes.join("<br>")
        );
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>leadscore API</title>\n<style>body{{font:15px system-ui,sans-serif;margin:2em;max-width:72em}}table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #ddd;padding:.4em;text-align:left;vertical-align:top}}th{{background:#f4f4f4;text-transform:capitalize}}code{{white-space:nowrap}}</style></head>\n<body><h1>leadscore API {}</h1><p>Machine-readable: <a href=\"/openapi.json\">/openapi.json</a>. Ingest routes take the write key as the HTTP Basic user name (as Segment SDKs send it); the REST API takes <code>Authorization: Bearer KEY</code>.</p>\n<table><tr><th>route</th><th>key</th><th>what</th><th>answers</th></tr>\n{rows}</table></body></html>\n",
        env!("CARGO_PKG_VERSION")
    )
}

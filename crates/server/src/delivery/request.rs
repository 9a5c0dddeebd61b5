//! What an action becomes on the wire: a signed webhook, or a CRM update
//! (HubSpot, Salesforce, Pipedrive) with the contact's score fields; or a
//! permanent error that no retry can fix.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

/// One CRM's base URL, token and id setting.
#[derive(Debug, Clone, Default)]
pub struct CrmTarget {
    /// Base URL (no trailing slash).
    pub base: String,
    /// Access token (`None`: deliveries to it fail with a clear error).
    pub token: Option<String>,
    /// HubSpot: the `idProperty` contacts are matched on; Salesforce: the
    /// sObject type. Unused for Zoho.
    pub option: String,
}

/// The three CRMs, from `LEADSCORE_{HUBSPOT,SALESFORCE,ZOHO}_{URL,TOKEN}`,
/// `LEADSCORE_HUBSPOT_ID_PROPERTY` and `LEADSCORE_SALESFORCE_OBJECT`.
#[derive(Debug, Clone, Default)]
pub struct CrmSettings {
    /// HubSpot (default <https://api.hubapi.com>, `idProperty=email`).
    pub hubspot: CrmTarget,
    /// Salesforce (no default URL: the instance URL; sObject `Lead`).
    pub salesforce: CrmTarget,
    /// Zoho CRM (default <https://www.zohoapis.com>).
    pub zoho: CrmTarget,
}

impl CrmSettings {
    /// Reads the environment.
    pub fn from_env() -> CrmSettings {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let target = |system: &str, base: &str, option: &str, option_default: &str| CrmTarget {
            base: var(&format!("LEADSCORE_{system}_URL"))
                .unwrap_or_else(|| base.to_string())
                .trim_end_matches('/')
                .to_string(),
            token: var(&format!("LEADSCORE_{system}_TOKEN")),
            option: var(option).unwrap_or_else(|| option_default.to_string()),
        };
        CrmSettings {
            hubspot: target(
                "HUBSPOT",
                "https://api.hubapi.com",
                "LEADSCORE_HUBSPOT_ID_PROPERTY",
                "email",
            ),
            salesforce: target("SALESFORCE", "", "LEADSCORE_SALESFORCE_OBJECT", "Lead"),
            zoho: target("ZOHO", "https://www.zohoapis.com", "", ""),
        }
    }
}

/// One HTTP request an action makes.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// `POST`, `PATCH`, `PUT`.
    pub method: &'static str,
    /// Full URL.
    pub url: String,
    /// Headers besides `Content-Type: application/json`.
    pub headers: Vec<(String, String)>,
    /// JSON body, exactly as sent.
    pub body: String,
}

/// Why an action cannot be attempted (a dead letter at once).
#[derive(Debug, Clone, PartialEq)]
pub struct Permanent(pub String);

/// The signature header of a webhook: `t=<unix seconds>,v1=<hex
/// HMAC-SHA256 of "<t>.<body>">` (the scheme Stripe uses).
pub fn sign_webhook(secret: &[u8], unix_seconds: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any size");
    mac.update(unix_seconds.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={unix_seconds},v1={hex}")
}

/// URL path segment escaping (ids may hold `@`, `/`, spaces).
fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The request a webhook or CRM action makes for a firing `body` (`None`
/// for `log`, which writes a log line instead).
pub fn request_for(
    action: &Value,
    body: &Value,
    crm: &CrmSettings,
    unix_seconds: i64,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Request>, Permanent> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let contact = text(&body["contact_id"]);
    let score = &body["score"];
    match action["type"].as_str() {
        Some("webhook") => {
            let payload = body.to_string();
            let mut headers = vec![(
                "Idempotency-Key".to_string(),
                text(&body["idempotency_key"]),
            )];
            if let Some(name) = action["secret_env"].as_str() {
                let secret = env(name).ok_or_else(|| {
                    Permanent(format!(
                        "webhook secret: environment variable {name} is not set"
                    ))
                })?;
                headers.push((
                    "Leadscore-Signature".to_string(),
                    sign_webhook(secret.as_bytes(), unix_seconds, &payload),
                ));
            }
            Ok(Some(Request {
                method: "POST",
                url: text(&action["url"]),
                headers,
                body: payload,
            }))
        }
        Some("crm") => {
            let system = text(&action["system"]);
            let target = match system.as_str() {
                "hubspot" => &crm.hubspot,
                "salesforce" => &crm.salesforce,
                "zoho" => &crm.zoho,
                other => return Err(Permanent(format!("unknown CRM {other:?}"))),
            };
            let upper = system.to_uppercase();
            let token = target.token.as_deref().ok_or_else(|| {
                Permanent(format!("{system}: LEADSCORE_{upper}_TOKEN is not set"))
            })?;
            if target.base.is_empty() {
                return Err(Permanent(format!(
                    "{system}: LEADSCORE_{upper}_URL is not set"
                )));
            }
            let number = score["score"].as_f64().unwrap_or_default();
            let rounded = (number * 100.0).round() / 100.0;
            let bearer = ("Authorization".to_string(), format!("Bearer {token}"));
            Ok(Some(match system.as_str() {
                // Contacts API v3: PATCH /crm/v3/objects/contacts/{id}?idProperty=…
                "hubspot" => Request {
                    method: "PATCH",
                    url: format!(
                        "{}/crm/v3/objects/contacts/{}?idProperty={}",
                        target.base,
                        segment(&contact),
                        segment(&target.option)
                    ),
                    headers: vec![bearer],
                    body: json!({"properties": {
                        "leadscore_score": rounded.to_string(),
                        "leadscore_tier": score["tier"],
                        "leadscore_grade": score["grade"],
                        "leadscore_stage": score["stage"],
                        "leadscore_trigger": body["trigger"],
                    }})
                    .to_string(),
                },
                // sObject update: PATCH /services/data/vXX.X/sobjects/Lead/{id}
                "salesforce" => Request {
                    method: "PATCH",
                    url: format!(
                        "{}/services/data/v61.0/sobjects/{}/{}",
                        target.base,
                        segment(&target.option),
                        segment(&contact)
                    ),
                    headers: vec![bearer],
                    body: json!({
                        "Leadscore_Score__c": rounded,
                        "Leadscore_Tier__c": score["tier"],
                        "Leadscore_Grade__c": score["grade"],
                        "Leadscore_Stage__c": score["stage"],
                    })
                    .to_string(),
                },
                // Zoho CRM v2: PUT /crm/v2/Leads with {"data": [{"id": …}]}
                _ => Request {
                    method: "PUT",
                    url: format!("{}/crm/v2/Leads", target.base),
                    headers: vec![(
                        "Authorization".to_string(),
                        format!("Zoho-oauthtoken {token}"),
                    )],
                    body: json!({"data": [{
                        "id": contact,
                        "Leadscore_Score": rounded,
                        "Leadscore_Tier": score["tier"],
                        "Leadscore_Grade": score["grade"],
                        "Leadscore_Stage": score["stage"],
                    }]})
                    .to_string(),
                },
            }))
        }
        Some("log") => Ok(None),
        other => Err(Permanent(format!("cannot deliver action {other:?}"))),
    }
}

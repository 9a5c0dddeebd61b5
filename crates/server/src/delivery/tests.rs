//! Unit tests of delivery: webhook signatures, CRM requests, permanent errors.

use super::*;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

fn body() -> Value {
    json!({
        "idempotency_key": "k1",
        "trigger": "mql",
        "contact_id": "ana@example.com",
        "fired_at": "2025-01-01T00:00:00Z",
        "late": false,
        "score": {"score": 71.456, "tier": "hot", "grade": "A", "stage": "MQL"},
    })
}

fn crm() -> CrmSettings {
    let target = |base: &str, option: &str| CrmTarget {
        base: base.into(),
        token: Some("tok".into()),
        option: option.into(),
    };
    CrmSettings {
        hubspot: target("http://h", "email"),
        salesforce: target("http://s", "Lead"),
        zoho: target("http://z", ""),
    }
}

#[test]
fn webhook_signature_is_stripe_style_and_verifiable() {
    // Known answer: HMAC-SHA256("whsec", "1700000000.{}").
    let signed = sign_webhook(b"whsec", 1_700_000_000, "{}");
    assert!(signed.starts_with("t=1700000000,v1="), "{signed}");
    let mut mac = Hmac::<Sha256>::new_from_slice(b"whsec").unwrap();
    mac.update(b"1700000000.{}");
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(signed, format!("t=1700000000,v1={hex}"));
    let action = json!({"type": "webhook", "url": "http://x/h", "secret_env": "S"});
    let env = |name: &str| (name == "S").then(|| "whsec".to_string());
    let r = request_for(&action, &body(), &crm(), 1_700_000_000, &env)
        .unwrap()
        .unwrap();
    assert_eq!(r.method, "POST");
    assert_eq!(r.headers[0], ("Idempotency-Key".into(), "k1".into()));
    assert_eq!(
        r.headers[1].1,
        sign_webhook(b"whsec", 1_700_000_000, &r.body)
    );
    let missing = request_for(&action, &body(), &crm(), 0, &|_| None).unwrap_err();
    assert!(
        missing.0.contains("environment variable S is not set"),
        "{missing:?}"
    );
}

#[test]
fn crm_requests_have_each_systems_shape() {
    let env = |_: &str| None;
    let crm_request = |system: &str, settings: &CrmSettings| {
        request_for(
            &json!({"type": "crm", "system": system}),
            &body(),
            settings,
            0,
            &env,
        )
    };
    let hub = crm_request("hubspot", &crm()).unwrap().unwrap();
    assert_eq!(hub.method, "PATCH");
    assert_eq!(
        hub.url,
        "http://h/crm/v3/objects/contacts/ana%40example.com?idProperty=email"
    );
    assert_eq!(hub.headers, [("Authorization".into(), "Bearer tok".into())]);
    assert_eq!(
        serde_json::from_str::<Value>(&hub.body).unwrap(),
        json!({"properties": {"leadscore_score": "71.46", "leadscore_tier": "hot",
            "leadscore_grade": "A", "leadscore_stage": "MQL", "leadscore_trigger": "mql"}})
    );
    let sf = crm_request("salesforce", &crm()).unwrap().unwrap();
    assert_eq!(
        sf.url,
        "http://s/services/data/v61.0/sobjects/Lead/ana%40example.com"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&sf.body).unwrap()["Leadscore_Score__c"],
        json!(71.46)
    );
    let zoho = crm_request("zoho", &crm()).unwrap().unwrap();
    assert_eq!(
        (zoho.method, zoho.url.as_str()),
        ("PUT", "http://z/crm/v2/Leads")
    );
    assert_eq!(zoho.headers[0].1, "Zoho-oauthtoken tok");
    assert_eq!(
        serde_json::from_str::<Value>(&zoho.body).unwrap()["data"][0]["id"],
        "ana@example.com"
    );
    let mut no_token = crm();
    no_token.zoho.token = None;
    let err = crm_request("zoho", &no_token).unwrap_err();
    assert!(err.0.contains("LEADSCORE_ZOHO_TOKEN"), "{err:?}");
    assert_eq!(
        request_for(&json!({"type": "log"}), &body(), &crm(), 0, &env),
        Ok(None)
    );
}

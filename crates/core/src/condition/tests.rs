//! Unit tests of conditions: CEL compiled and evaluated against events and contacts.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::*;

#[derive(Default)]
struct Slots(HashMap<String, usize>);

impl Names for Slots {
    fn slot(&mut self, name: &str) -> usize {
        let next = self.0.len();
        *self.0.entry(name.to_string()).or_insert(next)
    }
}

struct Fixed;

impl Activity for Fixed {
    fn count(&self, slot: usize) -> u64 {
        [3, 0][slot]
    }
    fn days_since(&self, slot: usize) -> Option<f64> {
        [Some(182.5), None][slot]
    }
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

fn check(source: &str, place: Place) -> Result<Condition, CompileError> {
    Condition::compile(source, place, &mut Slots::default())
}

fn holds_on_event(source: &str) -> bool {
    holds_on(
        source,
        json!({"path": "/pricing/team", "price": 49.5, "qty": 2, "tags": ["a", "b"],
        "nested": {"k": "v"}}),
    )
}

/// Evaluates `source` on an event with `properties`, given both as a parsed
/// map and as message text (read by the scanner where it can); both must
/// agree.
fn holds_on(source: &str, properties: Value) -> bool {
    let text = |v: &Value| {
        LazyObject::from_raw(serde_json::value::RawValue::from_string(v.to_string()).unwrap())
    };
    let context = json!({"ip": "1.2.3.4"});
    let traits = object(json!({"country": "DE", "employees": 50.0, "consent": true}));
    let company = object(json!({"industry": "Software"}));
    let condition = check(source, Place::Event).unwrap();
    let [parsed, scanned] = [
        (
            LazyObject::from_map(object(properties.clone())),
            LazyObject::from_map(object(context.clone())),
        ),
        (text(&properties), text(&context)),
    ]
    .map(|(properties, context)| {
        condition.holds(&Scope {
            event: Some("Product Viewed"),
            properties: Some(&properties),
            context: Some(&context),
            traits: Some(&traits),
            company: Some(&company),
            ..Scope::default()
        })
    });
    assert_eq!(parsed, scanned, "{source} on {properties}");
    parsed
}

#[test]
fn message_text_and_parsed_maps_agree() {
    let flat = json!({"path": "/pricing/team", "price": 49.5, "qty": 2, "big": 18446744073709551615u64,
        "neg": -3, "ok": true, "none": null, "e": 1e3});
    for (source, expected) in [
        ("properties.path.startsWith('/pricing')", true),
        ("properties.path == '/pricing/team'", true),
        ("properties.missing == 'x'", false),
        // A missing key fails the whole condition, negated or not.
        ("!(properties.missing == 'x')", false),
        ("has(properties.none) && properties.none == null", true),
        ("has(properties.missing)", false),
        ("properties.price > 49 && properties.qty == 2", true),
        ("properties.big == 18446744073709551615u", true),
        ("properties.neg < 0 && properties.e == 1000", true),
        ("properties.ok", true),
        ("context.ip == '1.2.3.4' && !has(context.locale)", true),
        ("properties.qty.startsWith('2')", false),
    ] {
        assert_eq!(holds_on(source, flat.clone()), expected, "{source}");
    }
    // Escapes and nesting go to the parsed map; the answers are the same.
    let odd = json!({"path": "/a\"b", "nested": {"k": "v"}, "qty": 2});
    assert!(holds_on(
        "properties.path == '/a\"b' && properties.qty == 2",
        odd.clone()
    ));
    assert!(holds_on(
        "has(properties.nested) && properties.nested.k == 'v'",
        odd
    ));
}

#[test]
fn evaluates_the_common_shapes() {
    for (source, expected) in [
        ("properties.path.startsWith('/pricing')", true),
        (
            "properties.path.endsWith('/team') && event == 'Product Viewed'",
            true,
        ),
        ("traits.country in ['DE', 'AT', 'CH']", true),
        ("traits.country in ['FR']", false),
        ("traits.employees >= 50", true),
        ("traits.employees == 50", true),
        ("properties.qty * 2 == 4.0", true),
        ("properties.price > 49 && properties.price < 50", true),
        ("has(traits.consent) && traits.consent == true", true),
        ("!has(traits.budget)", true),
        ("'a' in properties.tags && size(properties.tags) == 2", true),
        ("properties.tags.exists(t, t == 'b')", true),
        ("properties.tags.all(t, t == 'b')", false),
        (
            "properties.nested.k == 'v' && properties['nested']['k'] == 'v'",
            true,
        ),
        ("properties.path.matches('^/pricing/.*$')", true),
        ("company.industry.lowerAscii() == 'software'", true),
        (
            "int('12') + 1 == 13 && double('1.5') == 1.5 && string(3) == '3'",
            true,
        ),
        ("traits.country == 'DE' ? properties.qty == 2 : false", true),
        ("context.ip == '1.2.3.4'", true),
        ("'Product Viewed' == event && 50 == traits.employees", true),
        ("context.ip != '1.2.3.4'", false),
        (
            "properties.path.contains('pricing') && !properties.path.endsWith('x')",
            true,
        ),
        ("properties.nested.missing == 'v'", false),
        ("properties.nested.k.missing == 'v'", false),
        ("properties.nested.k != null", true),
    ] {
        assert_eq!(holds_on_event(source), expected, "{source}");
    }
}

#[test]
fn failures_are_false_and_absorbed_by_logic() {
    for (source, expected) in [
        ("traits.budget >= 10000", false),
        ("!(traits.budget >= 10000)", false),
        ("traits.budget >= 10000 || traits.country == 'DE'", true),
        ("traits.budget >= 10000 && traits.country == 'FR'", false),
        ("traits.country > 3", false),
        ("properties.qty / 0 == 1", false),
        ("traits.country", false),
    ] {
        assert_eq!(holds_on_event(source), expected, "{source}");
    }
}

#[test]
fn functions_read_the_contact_activity() {
    let mut slots = Slots::default();
    let c = Condition::compile(
        "count('Order Completed') == 3 && days_since('Order Completed') >= 182",
        Place::Contact,
        &mut slots,
    )
    .unwrap();
    let d = Condition::compile("days_since('Never') >= 0", Place::Contact, &mut slots).unwrap();
    assert!(c.uses_activity());
    let traits = Map::new();
    let scope = Scope {
        traits: Some(&traits),
        company: Some(&traits),
        activity: Some(&Fixed),
        ..Scope::default()
    };
    assert!(c.holds(&scope));
    assert!(
        !d.holds(&scope),
        "days_since of a never-seen event fails, so false"
    );
}

#[test]
fn trigger_variables() {
    let c = check(
        "score >= 70 && grade in ['A', 'B'] && status == 'active'",
        Place::Trigger,
    )
    .unwrap();
    let traits = Map::new();
    let outcome = Outcome {
        score: 70.0,
        raw: 75.0,
        fit: 40.0,
        engagement: 35.0,
        tier: "hot",
        grade: "A",
        stage: "MQL",
        status: "active",
    };
    let scope = Scope {
        traits: Some(&traits),
        company: Some(&traits),
        outcome: Some(&outcome),
        ..Scope::default()
    };
    assert!(c.holds(&scope));
}

#[test]
fn rejects_unknown_variables_functions_and_syntax_with_offsets() {
    let e = check("traits.x == 1 && propertes.y == 2", Place::Event).unwrap_err();
    assert_eq!(e.offset, 17, "{e:?}");
    assert!(
        e.message.contains("unknown variable `propertes`"),
        "{}",
        e.message
    );
    let e = check("properties.x == 1", Place::Contact).unwrap_err();
    assert!(
        e.message.contains("unknown variable `properties`"),
        "{}",
        e.message
    );
    let e = check("count('X') > 1", Place::Event).unwrap_err();
    assert!(e.message.contains("not available"), "{}", e.message);
    let e = check("frobnicate(traits.x)", Place::Contact).unwrap_err();
    assert!(
        e.message.contains("unknown function `frobnicate`"),
        "{}",
        e.message
    );
    let e = check("traits.x >= ", Place::Contact).unwrap_err();
    assert_eq!(e.offset, 12);
    assert!(e.message.starts_with("invalid CEL"), "{}", e.message);
    let e = check("count(traits.name) > 1", Place::Contact).unwrap_err();
    assert!(e.message.contains("string literal"), "{}", e.message);
    assert!(check("   ", Place::Contact).is_err());
    // A bad pattern is one line naming the fault and where it is (the
    // regex crate draws it over several lines).
    let e = check("traits.x.matches('ab(c')", Place::Contact).unwrap_err();
    assert_eq!(
        e.message,
        "invalid regular expression \"ab(c\": unclosed group at character 3"
    );
}

#[test]
fn label_names_are_found_wherever_they_are_compared() {
    let c = check(
        r#"(tier == "hot" || !(stage != "SQL")) && (score > 3 ? grade in ["A", "B", 1] : status == "active") && traits.tier == "x""#,
        Place::Trigger,
    )
    .unwrap();
    let mut found = c.label_literals();
    found.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        found,
        [
            (Label::Grade, "A".to_string()),
            (Label::Grade, "B".to_string()),
            (Label::Stage, "SQL".to_string()),
            (Label::Status, "active".to_string()),
            (Label::Tier, "hot".to_string()),
        ]
    );
}

#[test]
fn the_trait_and_company_keys_a_condition_reads_are_listed() {
    let c = check(
        r#"traits.country == "DE" && has(company.employees) && traits["job title"].startsWith("VP")
           && traits.address.city == "Berlin" && [1, 2].exists(x, x > company.size)
           && properties.plan == "pro""#,
        Place::Event,
    )
    .unwrap();
    let fields = c.fields_read();
    let read: Vec<(&str, &str)> = fields.iter().map(|(o, f)| (*o, f.as_str())).collect();
    assert_eq!(
        read,
        [
            ("company", "employees"),
            ("company", "size"),
            ("traits", "address"),
            ("traits", "country"),
            ("traits", "job title"),
        ]
    );
}

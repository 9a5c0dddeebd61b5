//! The trigger engine against hand-worked cases and against a reference
//! that evaluates every tick, boundary and message one by one.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::event::Message;
use crate::fold::sort_log;

const BASE: i64 = 1_700_006_400; // a whole day since the epoch (UTC midnight)
const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;

fn model(rules: &str) -> Model {
    Model::from_toml("t.toml", &format!("[model]\nname = \"t\"\n{rules}"))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_seconds(BASE + seconds)
}

fn message(value: Value) -> Message {
    Message::from_json(value, None, None).unwrap()
}

fn track(event: &str, seconds: i64, id: &str) -> Message {
    message(json!({"type": "track", "event": event, "userId": "u",
        "timestamp": at(seconds).to_string(), "messageId": id}))
}

fn identify(traits: Value, seconds: i64, id: &str) -> Message {
    message(json!({"type": "identify", "userId": "u", "traits": traits,
        "timestamp": at(seconds).to_string(), "messageId": id}))
}

fn fired(model: &Model, log: &[Message], until: i64) -> Vec<(String, i64)> {
    let mut log = log.to_vec();
    sort_log(&mut log);
    let (_, _, firings) = simulate(model, None, &log, at(until));
    firings
        .iter()
        .map(|f| {
            (
                model.triggers[f.trigger].id.clone(),
                (f.at.0 / 1_000_000_000) - BASE,
            )
        })
        .collect()
}

const REACTIVATION: &str = r#"
[[engagement]]
id = "view"
event = "Product Viewed"
points = 10
[[trigger]]
id = "reactivation"
when = 'days_since("Product Viewed") >= 182'
actions = [{ type = "log" }]
"#;

#[test]
fn a_days_since_trigger_fires_exactly_at_the_threshold_once_per_crossing() {
    let m = model(REACTIVATION);
    let log = [track("Product Viewed", 5 * HOUR + 7, "a")];
    assert_eq!(
        fired(&m, &log, 400 * DAY),
        [("reactivation".to_string(), 182 * DAY + 5 * HOUR + 7)]
    );
    assert!(
        fired(&m, &log, 182 * DAY + 5 * HOUR + 6).is_empty(),
        "not before"
    );
    // A new view re-arms it (days_since drops to 0) and it fires again.
    let log = [
        track("Product Viewed", 0, "a"),
        track("Product Viewed", 200 * DAY, "b"),
    ];
    assert_eq!(
        fired(&m, &log, 500 * DAY),
        [
            ("reactivation".to_string(), 182 * DAY),
            ("reactivation".to_string(), 382 * DAY)
        ]
    );
}

#[test]
fn the_due_time_is_the_threshold_not_the_next_tick() {
    let m = model(REACTIVATION);
    let log = [track("Product Viewed", 17, "a")];
    let (contact, state, firings) = simulate(&m, None, &log, at(17));
    assert!(firings.is_empty());
    assert_eq!(state.next_point(&m, &contact), Some(at(182 * DAY + 17)));
}

#[test]
fn a_score_threshold_fires_at_the_message_and_rearms_after_decay() {
    let m = model(
        r#"
[score]
half_life = "1d"
[[engagement]]
id = "demo"
event = "Demo Requested"
points = 40
[[trigger]]
id = "mql"
when = 'score >= 30'
actions = [{ type = "log" }]
"#,
    );
    // 40 points decay below 30 after log2(40/30) d = 9.96 h: false at the
    // 10 h tick; a new request at day 2 crosses again.
    let log = [
        track("Demo Requested", 0, "a"),
        track("Demo Requested", 2 * DAY, "b"),
    ];
    assert_eq!(
        fired(&m, &log, 3 * DAY),
        [("mql".to_string(), 0), ("mql".to_string(), 2 * DAY)]
    );
    // The state after the first message knows the exact tick it goes false.
    let (contact, state, _) = simulate(&m, None, &log[..1], at(0));
    assert_eq!(state.next_point(&m, &contact), Some(at(10 * HOUR)));
}

#[test]
fn a_decay_crossing_is_found_at_the_first_tick_after_it() {
    let m = model(
        r#"
[score]
half_life = "1d"
[triggers]
tick = "1h"
[[engagement]]
id = "view"
event = "V"
points = 20
[[trigger]]
id = "cooling"
when = 'score < 9'
actions = [{ type = "log" }]
"#,
    );
    // 20 * 2^(-x) < 9 from x = log2(20/9) d = 27.65 h: the 28 h tick.
    let log = [track("V", 0, "a")];
    assert_eq!(
        fired(&m, &log, 10 * DAY),
        [("cooling".to_string(), 28 * HOUR)]
    );
}

#[test]
fn once_fires_at_most_once_and_excluded_contacts_fire_nothing() {
    let m = model(
        r#"
[[exclude]]
id = "competitor"
when = 'has(traits.competitor) && traits.competitor == true'
reason = "competitor"
[[engagement]]
id = "view"
event = "V"
points = 10
[[inactivity]]
id = "dormant"
after = "10d"
points = -10
[[trigger]]
id = "engaged"
when = 'score >= 10'
once = true
actions = [{ type = "log" }]
[[trigger]]
id = "again"
when = 'score >= 10'
actions = [{ type = "log" }]
"#,
    );
    let log = [track("V", 0, "a"), track("V", 20 * DAY, "b")];
    assert_eq!(
        fired(&m, &log, 30 * DAY),
        [
            ("engaged".to_string(), 0),
            ("again".to_string(), 0),
            // dormant at day 10 (score 0) re-arms; the day-20 view crosses again.
            ("again".to_string(), 20 * DAY),
        ]
    );
    let mut excluded = log.to_vec();
    excluded.push(identify(json!({"competitor": true}), 0, "i"));
    assert!(fired(&m, &excluded, 30 * DAY).is_empty());
}

#[test]
fn states_round_trip_and_other_models_are_refused() {
    let m = model(REACTIVATION);
    let (_, state, _) = simulate(&m, None, &[track("Product Viewed", 0, "a")], at(DAY));
    let bytes = state.encode();
    assert_eq!(TriggerState::decode(&m, &bytes), Some(state.clone()));
    let two = model(&format!(
        "{REACTIVATION}[[trigger]]\nid = \"b\"\nwhen = 'score > 1'\nactions = [{{ type = \"log\" }}]\n"
    ));
    assert_eq!(TriggerState::decode(&two, &bytes), None);
    assert_eq!(TriggerState::decode(&m, &[9]), None);
}

#[test]
fn armed_states_do_not_report_what_was_already_true() {
    let m = model(REACTIVATION);
    let log = [track("Product Viewed", 0, "a")];
    let (contact, _, _) = simulate(&m, None, &log, at(0));
    let mut armed = TriggerState::armed_at(&m, &contact, at(300 * DAY));
    let mut out = Vec::new();
    armed.advance(&m, &contact, at(400 * DAY), true, &mut out);
    assert!(out.is_empty(), "{out:?}");
}

/// Evaluates at every message, every tick and every boundary, in order.
fn reference(model: &Model, log: &[Message], until: Timestamp) -> Vec<Firing> {
    let tick = model.tick.nanos();
    let mut contact = ContactState::new(model, None);
    let mut state = TriggerState::new(model);
    let mut out = Vec::new();
    let points_between = |contact: &ContactState, from: Timestamp, to: Timestamp| {
        let mut points: Vec<Timestamp> = Vec::new();
        let mut k = from.0.div_euclid(tick) + 1;
        while k * tick <= to.0 {
            points.push(Timestamp(k * tick));
            k += 1;
        }
        for &(slot, days) in &model.trigger_plan().days {
            if let Some(last) = contact.slot_last(slot) {
                let b = last.0 + (days * 86_400e9).round() as i64;
                points.extend([Timestamp(b), Timestamp(b + 1)]);
            }
        }
        points.extend(contact.inactivity_starts(model));
        points.retain(|p| *p > from && *p <= to);
        points.sort_unstable();
        points.dedup();
        points
    };
    for m in log {
        if let Some(from) = state.at() {
            for p in points_between(&contact, from, m.timestamp) {
                if p < m.timestamp {
                    state.evaluate(model, &contact, p, &mut out);
                }
            }
        }
        contact.absorb(model, m).unwrap();
        state.evaluate(model, &contact, m.timestamp, &mut out);
    }
    if let Some(from) = state.at() {
        for p in points_between(&contact, from, until) {
            state.evaluate(model, &contact, p, &mut out);
        }
    }
    out
}

const PROPERTY_MODEL: &str = r#"
[score]
half_life = "2d"
[triggers]
tick = "1h"
[[engagement]]
id = "view"
event = "V"
points = 12
[[engagement]]
id = "bounce"
event = "B"
points = -9
half_life = "5d"
[[inactivity]]
id = "dormant"
after = "3d"
points = -5
[[tier]]
name = "hot"
min = 20
[[tier]]
name = "warm"
min = 8
[[trigger]]
id = "hot"
when = 'tier == "hot"'
actions = [{ type = "log" }]
[[trigger]]
id = "cold"
when = 'score < 4 && days_since("V") >= 1.5'
actions = [{ type = "log" }]
[[trigger]]
id = "band"
when = 'engagement > 3 && raw <= 15'
actions = [{ type = "log" }]
"#;

/// A condition the search cannot bound: evaluated at every tick.
const OPAQUE: &str = r#"
[[trigger]]
id = "odd"
when = 'score * 2.0 > 17.0'
actions = [{ type = "log" }]
"#;

proptest! {
    // 64 cases, or PROPTEST_CASES for a soak (README).
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)
    ))]

    /// The due-time search finds exactly the firings of evaluating every
    /// tick, boundary and message.
    #[test]
    fn the_search_equals_evaluating_every_point(
        events in proptest::collection::vec((0..3u8, 0..(12 * DAY)), 1..12),
        opaque in any::<bool>(),
        days in any::<bool>(),
    ) {
        // Without `days_since()` the search skips the boundaries where no
        // threshold can be crossed.
        let base = if days {
            PROPERTY_MODEL.to_string()
        } else {
            PROPERTY_MODEL.replace(r#"score < 4 && days_since("V") >= 1.5"#, "score < 4")
        };
        let m = if opaque {
            model(&format!("{base}{OPAQUE}"))
        } else {
            model(&base)
        };
        prop_assert_eq!(m.trigger_plan().opaque, opaque);
        prop_assert_eq!(m.trigger_plan().days.is_empty(), !days);
        let mut log: Vec<Message> = events
            .iter()
            .enumerate()
            .map(|(i, (kind, s))| {
                track(["V", "B", "X"][*kind as usize], *s, &format!("m{i}"))
            })
            .collect();
        sort_log(&mut log);
        let until = at(16 * DAY);
        let (_, _, found) = simulate(&m, None, &log, until);
        let expected = reference(&m, &log, until);
        prop_assert_eq!(&found, &expected);
    }
}

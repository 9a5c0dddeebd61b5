//! Hand-worked numbers for every rule kind through the whole fold.

use serde_json::{json, Value};

use crate::batch::contacts_as_of;
use crate::event::Message;
use crate::fold::ContactState;
use crate::model::Model;
use crate::score::{RuleKind, Score, Status};
use crate::time::Timestamp;

const HEADER: &str = "[model]\nname = \"t\"\n";

fn model(rules: &str) -> Model {
    Model::from_toml("t.toml", &format!("{HEADER}{rules}")).unwrap_or_else(|e| panic!("{e}"))
}

fn day(d: f64) -> String {
    Timestamp((d * 86_400e9) as i64 + 1_700_000_000_000_000_000).to_string()
}

fn track(event: &str, d: f64, id: &str) -> Value {
    json!({"type": "track", "event": event, "userId": "u", "timestamp": day(d), "messageId": id})
}

fn identify(traits: Value, d: f64, id: &str) -> Value {
    json!({"type": "identify", "userId": "u", "traits": traits, "timestamp": day(d), "messageId": id})
}

fn score_at(model: &Model, messages: &[Value], d: f64) -> Score {
    let messages: Vec<Message> = messages
        .iter()
        .map(|v| Message::from_json(v.clone(), None, None).unwrap())
        .collect();
    let t = Timestamp::parse(&day(d)).unwrap();
    let contacts = contacts_as_of(messages, Vec::new(), t);
    assert_eq!(contacts.len(), 1);
    contacts[0].score_as_of(model, t)
}

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-9, "{a} != {b}");
}

#[test]
fn decay_halves_per_half_life_and_rule_overrides_model() {
    let m = model(
        r#"[score]
half_life = "10d"
max = 1000
[[engagement]]
id = "view"
event = "V"
points = 40
[[engagement]]
id = "buy"
event = "B"
points = 100
half_life = "none"
"#,
    );
    let s = score_at(&m, &[track("V", 0.0, "1"), track("B", 0.0, "2")], 20.0);
    close(s.engagement, 40.0 * 0.25 + 100.0);
    let s = score_at(&m, &[track("V", 0.0, "1"), track("V", 10.0, "2")], 15.0);
    close(
        s.engagement,
        40.0 * 0.5f64.powf(1.5) + 40.0 * 0.5f64.powf(0.5),
    );
}

#[test]
fn nth_keeps_occurrence_ranges_in_time_order() {
    let m = model(
        r#"[score]
max = 1000
[[engagement]]
id = "first"
event = "B"
nth = "1"
points = 25
[[engagement]]
id = "repeat"
event = "B"
nth = "2.."
points = 50
[[engagement]]
id = "second-third"
event = "B"
nth = "2..3"
points = 1
"#,
    );
    // Given out of order: the occurrence at day 1 is the first.
    let events = [
        track("B", 3.0, "a"),
        track("B", 1.0, "b"),
        track("B", 2.0, "c"),
        track("B", 4.0, "d"),
    ];
    let s = score_at(&m, &events, 5.0);
    close(s.engagement, 25.0 + 3.0 * 50.0 + 2.0);
}

#[test]
fn ties_on_timestamp_are_ordered_by_message_id() {
    let m = model("[[engagement]]\nid = \"first\"\nevent = \"B\"\nnth = \"1\"\npoints = 25\n[[engagement]]\nid = \"color\"\nevent = \"B\"\nnth = \"1\"\nwhen = 'properties.c == \"red\"'\npoints = 1\n");
    let mut a = track("B", 1.0, "m2");
    a["properties"] = json!({"c": "blue"});
    let mut b = track("B", 1.0, "m1");
    b["properties"] = json!({"c": "red"});
    let s = score_at(&m, &[a, b], 2.0);
    close(s.engagement, 26.0);
}

#[test]
fn limit_window_boundary_is_exclusive_at_the_start() {
    let m = model(
        "[score]\nmax = 1000\n[[engagement]]\nid = \"v\"\nevent = \"V\"\npoints = 5\nlimit = { count = 3, per = \"1d\" }\n",
    );
    // Awards at 0, 0.25, 0.5; 0.75 refused; 1.0: window (0, 1] holds 2 awards -> awarded.
    let events: Vec<Value> = [0.0, 0.25, 0.5, 0.75, 1.0]
        .iter()
        .enumerate()
        .map(|(i, d)| track("V", *d, &format!("m{i}")))
        .collect();
    let s = score_at(&m, &events, 1.0);
    close(s.engagement, 20.0);
}

#[test]
fn cap_clamps_negative_totals() {
    let m = model(
        "[score]\nmin = -100\n[[engagement]]\nid = \"bounce\"\nevent = \"X\"\npoints = -10\ncap = 25\n",
    );
    let events: Vec<Value> = (0..4)
        .map(|i| track("X", i as f64, &format!("m{i}")))
        .collect();
    let s = score_at(&m, &events, 5.0);
    close(s.engagement, -25.0);
    close(s.score, -25.0);
}

#[test]
fn streak_counts_resets_and_restarts() {
    let m = model(
        r#"[score]
min = -100
[[streak]]
id = "ignored"
event = "Email Delivered"
reset = ["Email Opened"]
length = 2
points = -30
"#,
    );
    let d = |i: f64, id: &str| track("Email Delivered", i, id);
    let events = [
        d(1.0, "1"),
        track("Email Opened", 2.0, "2"),
        d(3.0, "3"),
        d(4.0, "4"),
        d(5.0, "5"),
    ];
    let s = score_at(&m, &events, 6.0);
    close(s.engagement, -30.0);
    let events = [d(1.0, "1"), d(2.0, "2"), d(3.0, "3"), d(4.0, "4")];
    close(score_at(&m, &events, 6.0).engagement, -60.0);
}

#[test]
fn inactivity_applies_from_exactly_after() {
    let m = model(
        "[score]\nmin = -100\n[[inactivity]]\nid = \"dormant\"\nafter = \"60d\"\npoints = -15\n[[inactivity]]\nid = \"no-buy\"\nafter = \"10d\"\nevents = [\"B\"]\npoints = -5\n",
    );
    let events = [track("B", 0.0, "1"), track("V", 5.0, "2")];
    close(score_at(&m, &events, 9.0).engagement, 0.0);
    close(score_at(&m, &events, 10.0).engagement, -5.0);
    close(score_at(&m, &events, 64.999).engagement, -5.0);
    close(score_at(&m, &events, 65.0).engagement, -20.0);
    let only_traits = [identify(json!({"x": 1}), 0.0, "1")];
    close(score_at(&m, &only_traits, 100.0).engagement, 0.0);
}

#[test]
fn fit_cases_first_match_else_and_traits_as_of_t() {
    let m = model(
        r#"[[fit]]
id = "country"
cases = [
  { when = 'traits.country in ["DE", "AT"]', points = 15 },
  { when = 'traits.country in ["DE", "FR"]', points = 8 },
]
else = 1
[[fit]]
id = "size"
when = 'traits.employees >= 50'
points = 20
"#,
    );
    let events = [
        identify(json!({"country": "DE", "employees": 50.0}), 1.0, "1"),
        identify(json!({"country": "FR", "employees": null}), 3.0, "2"),
    ];
    close(score_at(&m, &events, 2.0).fit, 35.0);
    close(score_at(&m, &events, 3.0).fit, 8.0);
    close(
        score_at(&m, &[identify(json!({"country": "US"}), 1.0, "1")], 2.0).fit,
        1.0,
    );
}

#[test]
fn identify_at_the_same_instant_is_visible_to_the_event() {
    let m = model("[[engagement]]\nid = \"de\"\nevent = \"V\"\nwhen = 'traits.country == \"DE\"'\npoints = 5\n");
    let events = [
        track("V", 1.0, "a"),
        identify(json!({"country": "DE"}), 1.0, "z"),
    ];
    close(score_at(&m, &events, 1.0).engagement, 5.0);
}

#[test]
fn tiers_and_grades_at_exact_thresholds_and_clamping() {
    let m = model(
        r#"[[fit]]
id = "f"
when = 'traits.p >= 0'
points = 40
[[engagement]]
id = "v"
event = "V"
points = 30
[[tier]]
name = "hot"
min = 70
[[tier]]
name = "warm"
min = 40
[[grade]]
name = "A"
min = 40
[[grade]]
name = "B"
min = 20
"#,
    );
    let base = identify(json!({"p": 1}), 0.0, "0");
    let s = score_at(&m, &[base.clone(), track("V", 1.0, "1")], 1.0);
    assert_eq!((s.tier.as_str(), s.grade.as_str()), ("hot", "A"));
    close(s.score, 70.0);
    let s = score_at(&m, std::slice::from_ref(&base), 1.0);
    assert_eq!(s.tier, "warm");
    let events: Vec<Value> = std::iter::once(base)
        .chain((1..5).map(|i| track("V", 1.0, &format!("v{i}"))))
        .collect();
    let s = score_at(&m, &events, 1.0);
    close(s.raw, 160.0);
    close(s.score, 100.0);
    let s = score_at(&m, &[track("V", 1.0, "1")], 1.0);
    assert_eq!(
        (s.tier.as_str(), s.grade.as_str()),
        ("", ""),
        "30 points: below every tier"
    );
}

#[test]
fn stages_only_move_forward_and_need_an_active_contact() {
    let m = model(
        r#"[score]
half_life = "1d"
[[exclude]]
id = "optout"
when = 'has(traits.optout) && traits.optout == true'
reason = "opted out"
[[engagement]]
id = "v"
event = "V"
points = 60
[[stage]]
name = "MQL"
min = 50
[[stage]]
name = "SQL"
min = 80
"#,
    );
    let events = [track("V", 0.0, "1")];
    let s = score_at(&m, &events, 10.0);
    close(s.score, 60.0 / 1024.0);
    assert_eq!(s.stage, "MQL", "reached at day 0, kept after decay");
    let excluded_then_back = [
        identify(json!({"optout": true}), 0.0, "0"),
        track("V", 0.0, "1"),
        identify(json!({"optout": false}), 5.0, "2"),
    ];
    let s = score_at(&m, &excluded_then_back, 5.0);
    assert_eq!(
        s.stage, "",
        "60 points were earned while excluded; at day 5 the score is under 50"
    );
    let s = score_at(&m, &excluded_then_back, 0.0);
    assert_eq!(
        (s.status, s.stage.as_str(), s.tier.as_str()),
        (Status::Excluded, "", "")
    );
}

/// A stage reached at a point with no award (here: traits raise the fit
/// while earlier awards are still fresh) counts, even though the score has
/// decayed below it by the next point and by t.
#[test]
fn a_stage_reached_between_awards_is_kept() {
    let m = model(
        r#"[score]
half_life = "1d"
[[fit]]
id = "pro"
when = 'traits.plan == "pro"'
points = 15
[[fit]]
id = "vip"
when = 'has(traits.vip) && traits.vip'
points = 20
[[engagement]]
id = "demo"
event = "Demo"
points = 40
[[stage]]
name = "MQL"
min = 50
[[stage]]
name = "SQL"
min = 70
"#,
    );
    let hour = 1.0 / 24.0;
    let events = [
        identify(json!({"plan": "pro"}), 0.0, "0"),
        track("Demo", hour, "1"),
        identify(json!({"vip": true}), 2.0 * hour, "2"),
        track("Noise", 5.0, "3"),
    ];
    let s = score_at(&m, &events, 10.0);
    close(s.score, 35.0 + 40.0 * 0.5f64.powf(10.0 - hour));
    assert_eq!(
        s.stage, "SQL",
        "35 fit + 38.9 engagement at the vip identify"
    );
}

#[test]
fn exclusion_reasons_in_file_order_and_scores_still_computed() {
    let m = model(
        r#"[[exclude]]
id = "no-email"
when = '!has(traits.email)'
reason = "no email"
[[exclude]]
id = "no-consent"
when = '!has(traits.consent) || traits.consent != true'
reason = "no marketing consent"
[[engagement]]
id = "v"
event = "V"
points = 5
[[tier]]
name = "any"
min = 0
"#,
    );
    let s = score_at(&m, &[track("V", 1.0, "1")], 1.0);
    assert_eq!(s.status, Status::Excluded);
    assert_eq!(s.reasons, ["no email", "no marketing consent"]);
    close(s.score, 5.0);
    assert_eq!(s.tier, "");
    let s = score_at(
        &m,
        &[
            track("V", 1.0, "1"),
            identify(json!({"email": "a@b", "consent": true}), 2.0, "2"),
        ],
        2.0,
    );
    assert_eq!((s.status, s.tier.as_str()), (Status::Active, "any"));
}

#[test]
fn count_and_days_since_as_of_t() {
    let m = model(
        r#"[[fit]]
id = "buyer"
when = 'count("Order Completed") >= 2'
points = 10
[[fit]]
id = "lapsed"
when = 'days_since("Product Viewed") >= 182'
points = 1
"#,
    );
    let events = [
        track("Order Completed", 1.0, "1"),
        track("Order Completed", 2.0, "2"),
        track("Product Viewed", 3.0, "3"),
    ];
    close(score_at(&m, &events, 1.5).fit, 0.0);
    close(score_at(&m, &events, 184.9).fit, 10.0);
    close(score_at(&m, &events, 185.0).fit, 11.0);
}

#[test]
fn duplicates_keep_the_earliest_copy() {
    let m = model("[score]\nmax = 1000\n[[engagement]]\nid = \"v\"\nevent = \"V\"\npoints = 5\nnth = \"1\"\n[[engagement]]\nid = \"all\"\nevent = \"V\"\npoints = 1\n");
    let events = [
        track("V", 2.0, "same"),
        track("V", 1.0, "same"),
        track("V", 1.5, "other"),
    ];
    let s = score_at(&m, &events, 1.2);
    close(s.engagement, 6.0);
    let s = score_at(&m, &events, 3.0);
    close(s.engagement, 7.0);
}

#[test]
fn explanation_traces_awards_to_message_ids() {
    let m = model("[score]\nhalf_life = \"1d\"\n[[engagement]]\nid = \"v\"\nevent = \"V\"\npoints = 8\ncap = 10\n[[fit]]\nid = \"f\"\nwhen = 'traits.x == 1'\npoints = 3\n");
    let messages: Vec<Message> = [
        identify(json!({"x": 1}), 0.0, "i"),
        track("V", 1.0, "b"),
        track("V", 0.0, "a"),
    ]
    .into_iter()
    .map(|v| Message::from_json(v, None, None).unwrap())
    .collect();
    let t = Timestamp::parse(&day(2.0)).unwrap();
    let contacts = contacts_as_of(messages, Vec::new(), t);
    let (score, explanation) = contacts[0].explain_as_of(&m, t);
    let v = explanation.rules.iter().find(|r| r.id == "v").unwrap();
    assert_eq!(v.kind, RuleKind::Engagement);
    assert_eq!(v.message_ids, ["a", "b"]);
    assert_eq!(v.awards, 2);
    close(v.points, 8.0 * 0.25 + 8.0 * 0.5);
    let total: f64 = explanation.rules.iter().map(|r| r.points).sum();
    close(total, score.raw);
}

#[test]
fn fold_sorts_an_unsorted_log_itself() {
    let m = model("[score]\nmax = 1000\n[[engagement]]\nid = \"first\"\nevent = \"V\"\nnth = \"1\"\npoints = 7\n[[engagement]]\nid = \"all\"\nevent = \"V\"\npoints = 1\n");
    let mut messages: Vec<Message> = (0..5)
        .map(|i| Message::from_json(track("V", i as f64, &format!("m{i}")), None, None).unwrap())
        .collect();
    let t = Timestamp::parse(&day(9.0)).unwrap();
    let sorted = ContactState::fold(&m, None, &messages);
    messages.reverse();
    let reversed = ContactState::fold(&m, None, &messages);
    assert_eq!(sorted, reversed);
    close(reversed.score_at(&m, t).unwrap().engagement, 12.0);
}

/// Fit and exclusion results are kept between messages by what they read;
/// each kind of change must refresh exactly the rules that read it.
#[test]
fn kept_fit_and_exclusion_follow_each_kind_of_change() {
    let m = model(
        r#"[score]
max = 1000
[[exclude]]
id = "unsubscribed"
when = 'count("Unsubscribed") > 0'
reason = "unsubscribed"
[[fit]]
id = "title"
when = 'traits.title == "vp"'
points = 1
[[fit]]
id = "size"
when = 'company.size > 100'
points = 10
[[fit]]
id = "both"
when = 'traits.title == "vp" && company.size > 100'
points = 100
[[fit]]
id = "active"
when = 'count("Visit") >= 2'
points = 1000
"#,
    );
    let group = |size: i64, d: f64, id: &str| json!({"type": "group", "userId": "u", "groupId": "g", "traits": {"size": size}, "timestamp": day(d), "messageId": id});
    let steps: Vec<(Value, f64, bool)> = vec![
        (identify(json!({"title": "vp"}), 1.0, "1"), 1.0, false),
        (group(500, 2.0, "2"), 111.0, false),
        (identify(json!({"title": "cto"}), 3.0, "3"), 10.0, false),
        (track("Visit", 4.0, "4"), 10.0, false),
        (track("Visit", 5.0, "5"), 1010.0, false),
        (group(50, 6.0, "6"), 1000.0, false),
        (identify(json!({"title": "vp"}), 7.0, "7"), 1001.0, false),
        (group(5000, 8.0, "8"), 1111.0, false),
        (track("Unsubscribed", 9.0, "9"), 1111.0, true),
    ];
    let mut state = ContactState::new(&m, None);
    for (i, (message, fit, excluded)) in steps.into_iter().enumerate() {
        let message = Message::from_json(message, None, None).unwrap();
        state.absorb(&m, &message).unwrap();
        // Asked twice: the second answer comes from what the first kept.
        for _ in 0..2 {
            let s = state.score_at(&m, message.timestamp).unwrap();
            assert_eq!(s.fit, fit, "after message {}", i + 1);
            assert_eq!(
                s.status == Status::Excluded,
                excluded,
                "after message {}",
                i + 1
            );
        }
    }
}

/// Traits stay shared with what was copied from the state (a written row)
/// until a message changes them; a change copies them first, so the earlier
/// copy keeps what it had.
#[test]
fn traits_are_shared_until_a_message_changes_them() {
    use std::sync::Arc;
    let m = model("");
    let mut state = ContactState::new(&m, None);
    let absorb = |state: &mut ContactState, message: Value| {
        let message = Message::from_json(message, None, None).unwrap();
        state.absorb(&m, &message).unwrap();
    };
    absorb(
        &mut state,
        identify(json!({"title": "vp", "plan": "pro"}), 1.0, "1"),
    );
    let written = state.shared_traits().clone();
    absorb(&mut state, track("Visit", 2.0, "2"));
    absorb(&mut state, identify(json!({"title": "vp"}), 3.0, "3"));
    assert!(Arc::ptr_eq(&written, state.shared_traits()), "unchanged");
    absorb(
        &mut state,
        identify(json!({"title": "cto", "plan": null}), 4.0, "4"),
    );
    assert_eq!(
        Value::Object((*written).clone()),
        json!({"title": "vp", "plan": "pro"})
    );
    assert_eq!(
        Value::Object(state.traits().clone()),
        json!({"title": "cto"})
    );
    let written = state.shared_traits().clone();
    absorb(&mut state, identify(json!({"plan": null}), 5.0, "5"));
    assert!(
        Arc::ptr_eq(&written, state.shared_traits()),
        "nothing to remove"
    );
    absorb(&mut state, identify(json!({"seats": 3}), 6.0, "6"));
    assert_eq!(Value::Object((*written).clone()), json!({"title": "cto"}));
    assert_eq!(
        Value::Object(state.traits().clone()),
        json!({"title": "cto", "seats": 3})
    );
}

/// A state's buffers are its own vectors' memory, as large as they are.
#[test]
fn buffers_name_the_states_vectors() {
    let m = model(
        r#"
[[engagement]]
id = "a"
event = "A"
points = 1
[[engagement]]
id = "b"
event = "B"
points = 2
"#,
    );
    let mut state = ContactState::new(&m, None);
    let message = Message::from_json(track("A", 1.0, "m-1"), None, None).unwrap();
    state.absorb(&m, &message).unwrap();
    let [engagements, _, _, _, _, last_id] = state.buffers();
    assert_eq!(
        engagements.1,
        2 * std::mem::size_of_val(&state.engagements[0])
    );
    assert_eq!(engagements.0, state.engagements.as_ptr().cast());
    assert_eq!(last_id, (state.last_message_id.as_ptr(), 3));
}

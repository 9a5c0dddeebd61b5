//! SPEC §3.2 written out plainly, as a reference for the fold:
//! random models (engagement rules with `nth`, `limit`, `cap`, decay and a
//! `when` on properties or on traits as of the event; streaks; inactivity;
//! fit with cases, `else` and `days_since`; exclusions with `count`; tiers
//! and stages) over random logs of one contact, each rule's points and the
//! labels compared with the fold's, at random times. The reference
//! recomputes everything from the sorted log at `t`; the fold keeps running
//! state, bounds and caches, which is where it could go wrong.

use leadscore_core::batch::contacts_as_of;
use leadscore_core::event::Message;
use leadscore_core::fold::ContactState;
use leadscore_core::incremental::IncrementalContact;
use leadscore_core::model::Model;
use leadscore_core::score::Status;
use leadscore_core::time::{Timestamp, NANOS_PER_SECOND};
use proptest::prelude::*;

mod random;

use random::{arb_log, arb_spec, Spec, When, DAY, HOUR, START};

/// The plan (0 pro, 1 free) as of `at`: the latest identify at or before it,
/// in (timestamp, messageId) order; null removes it.
fn plan_at(identifies: &[(i64, usize)], at: i64) -> Option<usize> {
    identifies
        .iter()
        .take_while(|(t, _)| *t <= at)
        .last()
        .and_then(|&(_, plan)| (plan < 2).then_some(plan))
}

/// An event of the log as the reference sees it.
struct Event {
    at: i64,
    name: usize,
    demo: bool,
}

fn decayed(points: f64, at: i64, t: i64, half_life: Option<i64>) -> f64 {
    match half_life {
        None => points,
        Some(h) => points * 0.5f64.powf((t - at) as f64 / h as f64),
    }
}

fn capped(sum: f64, cap: Option<u32>) -> f64 {
    match cap {
        None => sum,
        Some(c) => sum.clamp(-f64::from(c), f64::from(c)),
    }
}

fn rule_half_life(rule: Option<Option<i64>>, model: Option<i64>) -> Option<i64> {
    rule.unwrap_or(model)
}

/// Each rule's points at `t`, by SPEC §3.2, in model order.
fn reference(spec: &Spec, log: &[Message], t: i64) -> Expected {
    // The generator writes what each message is into its id.
    let mut log: Vec<&Message> = log
        .iter()
        .filter(|m| m.timestamp <= Timestamp::from_seconds(t))
        .collect();
    log.sort_by(|a, b| (a.timestamp, &a.message_id).cmp(&(b.timestamp, &b.message_id)));
    log.dedup_by(|a, b| a.message_id == b.message_id);
    let mut identifies = Vec::new();
    let mut events = Vec::new();
    for m in log {
        let at = m.timestamp.0 / NANOS_PER_SECOND;
        let parts: Vec<&str> = m.message_id[1..].split('-').collect();
        if m.message_id.starts_with('i') {
            identifies.push((at, parts[0].parse::<usize>().unwrap()));
        } else {
            events.push(Event {
                at,
                name: parts[0].parse().unwrap(),
                demo: parts[2] == "true",
            });
        }
    }
    let mut out = Vec::new();
    for (i, rule) in spec.engagement.iter().enumerate() {
        let mut awarded: Vec<i64> = Vec::new();
        let occurrences = events.iter().filter(|e| {
            e.name == rule.name
                && match rule.when {
                    When::Always => true,
                    When::Demo => e.demo,
                    When::Pro => plan_at(&identifies, e.at) == Some(0),
                }
        });
        for (n, e) in occurrences.enumerate() {
            let n = n as u32 + 1;
            if let Some((from, to)) = rule.nth {
                if n < from || to.is_some_and(|to| n > to) {
                    continue;
                }
            }
            if let Some((count, per)) = rule.limit {
                let recent = awarded
                    .iter()
                    .filter(|&&a| a > e.at - per && a <= e.at)
                    .count();
                if recent >= count {
                    continue;
                }
            }
            awarded.push(e.at);
        }
        let half_life = rule_half_life(rule.half_life, spec.half_life);
        let sum: f64 = awarded
            .iter()
            .map(|&at| decayed(f64::from(rule.points), at, t, half_life))
            .sum();
        out.push((format!("e{i}"), capped(sum, rule.cap)));
    }
    for (i, rule) in spec.streaks.iter().enumerate() {
        let mut counter = 0;
        let mut sum = 0.0;
        let half_life = rule_half_life(rule.half_life, spec.half_life);
        for e in &events {
            if rule.reset.contains(&e.name) {
                counter = 0;
            } else if e.name == rule.name {
                counter += 1;
                if counter == rule.length {
                    sum += decayed(f64::from(rule.points), e.at, t, half_life);
                    counter = 0;
                }
            }
        }
        out.push((format!("s{i}"), capped(sum, rule.cap)));
    }
    for (i, rule) in spec.inactivity.iter().enumerate() {
        let latest = events
            .iter()
            .filter(|e| {
                rule.events
                    .as_ref()
                    .is_none_or(|names| names.contains(&e.name))
            })
            .map(|e| e.at)
            .max();
        let applies = latest.is_some_and(|latest| t - latest >= rule.after);
        out.push((
            format!("i{i}"),
            if applies { f64::from(rule.points) } else { 0.0 },
        ));
    }
    let plan = plan_at(&identifies, t);
    let fit = match spec.fit {
        Some((points, _)) if plan == Some(0) => f64::from(points),
        Some((_, Some(otherwise))) => f64::from(otherwise),
        _ => 0.0,
    };
    // `days_since("B") < 3`: false when there is no B.
    let last_b = events.iter().filter(|e| e.name == 1).map(|e| e.at).max();
    let recent = spec.fit.is_some() && last_b.is_some_and(|b| ((t - b) as f64 / DAY as f64) < 3.0);
    let busy = events.iter().filter(|e| e.name == 2).count() >= 3;
    Expected {
        engagement: out,
        fit: fit + if recent { 7.0 } else { 0.0 },
        excluded: spec.exclude_free && (plan == Some(1) || busy),
    }
}

/// SPEC §3.2 (8): the highest stage the score reached at an evaluation
/// point (each message's timestamp, and t) where the contact was not
/// excluded; empty while excluded at t.
fn reference_stage(spec: &Spec, log: &[Message], t: i64) -> &'static str {
    let mut points: Vec<i64> = log
        .iter()
        .map(|m| m.timestamp.0 / NANOS_PER_SECOND)
        .filter(|&p| p <= t)
        .chain([t])
        .collect();
    points.sort_unstable();
    points.dedup();
    let mut reached = f64::NEG_INFINITY;
    for p in points {
        let e = reference(spec, log, p);
        if !e.excluded {
            reached = reached.max(e.score(spec));
        }
    }
    match () {
        _ if reference(spec, log, t).excluded => "",
        _ if reached >= 45.0 => "ready",
        _ if reached >= 20.0 => "warm",
        _ => "",
    }
}

/// What SPEC §3.2 gives at t.
struct Expected {
    /// Each engagement, streak and inactivity rule's points.
    engagement: Vec<(String, f64)>,
    /// The fit total.
    fit: f64,
    /// Whether the contact is excluded.
    excluded: bool,
}

impl Expected {
    fn score(&self, spec: &Spec) -> f64 {
        let engagement: f64 = self.engagement.iter().map(|(_, p)| p).sum();
        (self.fit + engagement).clamp(f64::from(spec.min), f64::from(spec.max))
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

proptest! {
    #![proptest_config(crate::harness::cases(512))]

    #[test]
    fn the_fold_agrees_with_the_spec_written_out(
        spec in arb_spec(),
        log in arb_log(),
        t_step in 0i64..240,
        resend_every in 1usize..6,
    ) {
        let source = spec.toml();
        let model = Model::from_toml("random.toml", &source)
            .unwrap_or_else(|e| panic!("{e}\n{source}"));
        // Every 3 hours: half of the times on the messages' grid.
        let t = START + t_step * 3 * HOUR;
        let at = Timestamp::from_seconds(t);
        let expected = reference(&spec, &log, t);
        let mut arrival = log.clone();
        arrival.reverse();
        let resent: Vec<Message> = arrival.iter().step_by(resend_every).cloned().collect();
        arrival.extend(resent);
        let contacts = contacts_as_of(arrival.clone(), Vec::new(), at);
        let Some(contact) = contacts.first() else {
            // Nothing at or before t.
            prop_assert!(log.iter().all(|m| m.timestamp > at));
            return Ok(());
        };
        let (score, explanation) = contact.explain_as_of(&model, at);
        let mut engagement = 0.0;
        for (id, points) in &expected.engagement {
            let got = explanation.rules.iter().find(|r| &r.id == id).map_or(0.0, |r| r.points);
            prop_assert!(close(got, *points), "{id}: fold {got}, spec {points}\n{source}");
            engagement += points;
        }
        prop_assert!(close(score.engagement, engagement), "engagement {} vs {engagement}\n{source}", score.engagement);
        prop_assert!(close(score.fit, expected.fit), "fit {} vs {}\n{source}", score.fit, expected.fit);
        let raw = expected.fit + engagement;
        prop_assert!(close(score.raw, raw), "raw {} vs {raw}\n{source}", score.raw);
        let clamped = raw.clamp(f64::from(spec.min), f64::from(spec.max));
        prop_assert!(close(score.score, clamped), "score {} vs {clamped}\n{source}", score.score);
        let tier = match () {
            _ if expected.excluded => "",
            _ if clamped >= 40.0 => "hot",
            _ if clamped >= 0.0 => "cold",
            _ => "",
        };
        prop_assert_eq!(score.status == Status::Excluded, expected.excluded, "{}", source);
        prop_assert_eq!(score.tier.as_str(), tier, "{}", source);
        let stage = reference_stage(&spec, &log, t);
        prop_assert_eq!(score.stage.as_str(), stage, "{}", source);
        // Absorbed one by one, in arrival order (late ones re-fold).
        let mut live = IncrementalContact::new(&model, None);
        for m in arrival.iter().filter(|m| m.timestamp <= at) {
            live.absorb(&model, m.clone());
        }
        let incremental = live.score_as_of(&model, at);
        prop_assert!(close(incremental.score, score.score) && close(incremental.engagement, score.engagement)
            && incremental.stage == score.stage,
            "incremental {incremental:?} vs batch {score:?}\n{source}");
    }
}

proptest! {
    #![proptest_config(crate::harness::cases(256))]

    /// Scores after a contact's latest message, as stores list them "now":
    /// a model that says its scores do not move with time (no decay, no
    /// inactivity, no `days_since()` in fit or exclusion) scores the contact
    /// the same at every later time; and a stored state decoded without its
    /// traits, given its score as of its last message, scores any later
    /// time as the whole state does when the contact rules do not read time.
    #[test]
    fn scores_after_the_latest_message(
        spec in arb_spec(),
        log in arb_log(),
        later in prop::collection::vec(0i64..4_000, 1..4),
    ) {
        let source = spec.toml();
        let model = Model::from_toml("random.toml", &source)
            .unwrap_or_else(|e| panic!("{e}\n{source}"));
        let mut live = IncrementalContact::new(&model, None);
        for m in &log {
            live.absorb(&model, m.clone());
        }
        let state = live.state();
        let last = state.last_timestamp().expect("messages were absorbed");
        let known = state.score_at(&model, last).unwrap();
        let bare = ContactState::decode(&model, &state.encode(&model), Default::default(), Default::default()).unwrap();
        for hours in later {
            let t = Timestamp(last.0 + hours * HOUR * NANOS_PER_SECOND);
            let whole = state.score_at(&model, t).unwrap();
            prop_assert!(model.moves_with_time() || whole == known, "the score moved\n{}", source);
            match bare.score_after(&model, t, &known).unwrap() {
                Some(score) => prop_assert_eq!(&score, &whole, "{}", source),
                None => prop_assert!(model.contact_rules_use_time(), "{}", source),
            }
        }
        prop_assert!(bare.score_after(&model, Timestamp(last.0 - 1), &known).is_err());
    }
}

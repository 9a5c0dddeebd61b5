//! Random models and logs of one contact for the reference test: the
//! rules' shapes (`Spec`), their TOML, and the strategies that draw them.

use leadscore_core::event::Message;
use leadscore_core::time::Timestamp;
use proptest::prelude::*;
use serde_json::json;

use crate::harness::message;

pub(super) const START: i64 = 1_700_006_400;
pub(super) const HOUR: i64 = 3_600;
pub(super) const DAY: i64 = 24 * HOUR;
/// Event names: three tracks and page views.
pub(super) const NAMES: [&str; 4] = ["A", "B", "C", "$page"];

/// An engagement rule's `when`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum When {
    Always,
    /// `properties.form == "demo"`.
    Demo,
    /// `traits.plan == "pro"`, the traits as of the event.
    Pro,
}

#[derive(Debug, Clone)]
pub(super) struct Engagement {
    pub(super) name: usize,
    pub(super) points: i32,
    pub(super) when: When,
    pub(super) nth: Option<(u32, Option<u32>)>,
    pub(super) limit: Option<(usize, i64)>,
    pub(super) cap: Option<u32>,
    pub(super) half_life: Option<Option<i64>>, // None: the model's; Some(None): "none"
}

#[derive(Debug, Clone)]
pub(super) struct Streak {
    pub(super) name: usize,
    pub(super) reset: Vec<usize>,
    pub(super) length: u32,
    pub(super) points: i32,
    pub(super) cap: Option<u32>,
    pub(super) half_life: Option<Option<i64>>,
}

#[derive(Debug, Clone)]
pub(super) struct Inactivity {
    pub(super) after: i64,
    pub(super) points: i32,
    pub(super) events: Option<Vec<usize>>,
}

#[derive(Debug, Clone)]
pub(super) struct Spec {
    pub(super) half_life: Option<i64>,
    pub(super) min: i32,
    pub(super) max: i32,
    /// A fit rule: points when the plan is "pro" at t, else (optional).
    pub(super) fit: Option<(i32, Option<i32>)>,
    /// Excluded while the plan is "free" at t.
    pub(super) exclude_free: bool,
    pub(super) engagement: Vec<Engagement>,
    pub(super) streaks: Vec<Streak>,
    pub(super) inactivity: Vec<Inactivity>,
}

pub(super) fn duration(seconds: i64) -> String {
    if seconds % DAY == 0 {
        format!("{}d", seconds / DAY)
    } else {
        format!("{}h", seconds / HOUR)
    }
}

pub(super) fn half_life_toml(h: Option<Option<i64>>) -> String {
    match h {
        None => String::new(),
        Some(None) => "half_life = \"none\"\n".into(),
        Some(Some(s)) => format!("half_life = \"{}\"\n", duration(s)),
    }
}

impl Spec {
    pub(super) fn toml(&self) -> String {
        let mut t = format!(
            "[model]\nname = \"random\"\n[score]\nmin = {}\nmax = {}\n",
            self.min, self.max
        );
        if let Some(h) = self.half_life {
            t += &format!("half_life = \"{}\"\n", duration(h));
        }
        if self.exclude_free {
            t += "[[exclude]]\nid = \"free\"\nwhen = 'traits.plan == \"free\"'\nreason = \"free plan\"\n";
            t += "[[exclude]]\nid = \"busy\"\nwhen = 'count(\"C\") >= 3'\nreason = \"busy\"\n";
        }
        if let Some((points, otherwise)) = self.fit {
            t += &format!("[[fit]]\nid = \"f\"\ncases = [{{ when = 'traits.plan == \"pro\"', points = {points} }}]\n");
            if let Some(e) = otherwise {
                t += &format!("else = {e}\n");
            }
            t += "[[fit]]\nid = \"recent\"\nwhen = 'days_since(\"B\") < 3.0'\npoints = 7\n";
        }
        t += "[[tier]]\nname = \"hot\"\nmin = 40\n[[tier]]\nname = \"cold\"\nmin = 0\n";
        t += "[[stage]]\nname = \"warm\"\nmin = 20\n[[stage]]\nname = \"ready\"\nmin = 45\n";
        for (i, e) in self.engagement.iter().enumerate() {
            t += &format!(
                "[[engagement]]\nid = \"e{i}\"\nevent = \"{}\"\npoints = {}\n",
                NAMES[e.name], e.points
            );
            match e.when {
                When::Always => {}
                When::Demo => t += "when = 'properties.form == \"demo\"'\n",
                When::Pro => t += "when = 'traits.plan == \"pro\"'\n",
            }
            match e.nth {
                Some((n, None)) => t += &format!("nth = \"{n}..\"\n"),
                Some((n, Some(m))) if m == n => t += &format!("nth = \"{n}\"\n"),
                Some((n, Some(m))) => t += &format!("nth = \"{n}..{m}\"\n"),
                None => {}
            }
            if let Some((count, per)) = e.limit {
                t += &format!(
                    "limit = {{ count = {count}, per = \"{}\" }}\n",
                    duration(per)
                );
            }
            if let Some(cap) = e.cap {
                t += &format!("cap = {cap}\n");
            }
            t += &half_life_toml(e.half_life);
        }
        for (i, s) in self.streaks.iter().enumerate() {
            let reset: Vec<String> = s
                .reset
                .iter()
                .map(|r| format!("\"{}\"", NAMES[*r]))
                .collect();
            t += &format!(
                "[[streak]]\nid = \"s{i}\"\nevent = \"{}\"\nreset = [{}]\nlength = {}\npoints = {}\n",
                NAMES[s.name],
                reset.join(", "),
                s.length,
                s.points
            );
            if let Some(cap) = s.cap {
                t += &format!("cap = {cap}\n");
            }
            t += &half_life_toml(s.half_life);
        }
        for (i, r) in self.inactivity.iter().enumerate() {
            t += &format!(
                "[[inactivity]]\nid = \"i{i}\"\nafter = \"{}\"\npoints = {}\n",
                duration(r.after),
                r.points
            );
            if let Some(events) = &r.events {
                let names: Vec<String> = events
                    .iter()
                    .map(|e| format!("\"{}\"", NAMES[*e]))
                    .collect();
                t += &format!("events = [{}]\n", names.join(", "));
            }
        }
        t
    }
}

pub(super) fn arb_half_life() -> impl Strategy<Value = Option<Option<i64>>> {
    prop_oneof![
        2 => Just(None),
        1 => Just(Some(None)),
        1 => prop_oneof![Just(12 * HOUR), Just(3 * DAY), Just(30 * DAY)].prop_map(|h| Some(Some(h))),
    ]
}

pub(super) fn arb_cap() -> impl Strategy<Value = Option<u32>> {
    prop_oneof![2 => Just(None), 1 => (1u32..40).prop_map(Some)]
}

pub(super) fn arb_spec() -> impl Strategy<Value = Spec> {
    let engagement = (
        0..NAMES.len(),
        -8i32..25,
        prop_oneof![2 => Just(When::Always), 1 => Just(When::Demo), 1 => Just(When::Pro)],
        prop_oneof![
            2 => Just(None),
            1 => (1u32..4, prop_oneof![Just(None), (0u32..3).prop_map(Some)])
                .prop_map(|(n, extra)| Some((n, extra.map(|e| n + e)))),
        ],
        prop_oneof![
            2 => Just(None),
            1 => (1usize..4, prop_oneof![Just(6 * HOUR), Just(DAY), Just(2 * DAY)]).prop_map(Some),
        ],
        arb_cap(),
        arb_half_life(),
    )
        .prop_map(
            |(name, points, when, nth, limit, cap, half_life)| Engagement {
                name,
                points,
                when,
                nth,
                limit,
                cap,
                half_life,
            },
        );
    let streak = (
        0..NAMES.len(),
        0..NAMES.len(),
        2u32..5,
        -5i32..20,
        arb_cap(),
        arb_half_life(),
    )
        .prop_map(|(name, reset, length, points, cap, half_life)| Streak {
            name,
            // A counted name may not also reset.
            reset: if reset == name { vec![] } else { vec![reset] },
            length,
            points,
            cap,
            half_life,
        });
    let inactivity = (
        prop_oneof![Just(2 * DAY), Just(10 * DAY)],
        -15i32..0,
        prop_oneof![Just(None), (0..NAMES.len()).prop_map(|e| Some(vec![e]))],
    )
        .prop_map(|(after, points, events)| Inactivity {
            after,
            points,
            events,
        });
    (
        prop_oneof![Just(None), Just(Some(7 * DAY)), Just(Some(DAY))],
        prop_oneof![Just((0, 100)), Just((-30, 60))],
        prop_oneof![
            Just(None),
            (1i32..30, prop_oneof![Just(None), (-5i32..5).prop_map(Some)]).prop_map(Some)
        ],
        any::<bool>(),
        prop::collection::vec(engagement, 1..5),
        prop::collection::vec(streak, 0..2),
        prop::collection::vec(inactivity, 0..2),
    )
        .prop_map(
            |(half_life, (min, max), fit, exclude_free, engagement, streaks, inactivity)| Spec {
                half_life,
                min,
                max,
                fit,
                exclude_free,
                engagement,
                streaks,
                inactivity,
            },
        )
}

/// Messages of contact `u` over 20 days, every 6 hours (so ties and exact
/// window edges happen), some sent twice; ids are unique per content and
/// say what the reference needs (`e<name>-<step>-<demo>-<n>` for events,
/// `i<plan>-<step>-<n>` for identifies setting `plan` to pro, free or null).
pub(super) fn arb_log() -> impl Strategy<Value = Vec<Message>> {
    let one = (
        0..NAMES.len() + 1,
        0i64..80,
        any::<bool>(),
        0u32..1_000,
        0usize..3,
    );
    prop::collection::vec(one, 1..40).prop_map(|raw| {
        raw.into_iter()
            .map(|(name, step, demo, n, plan)| {
                let ts = Timestamp::from_seconds(START + step * 6 * HOUR).to_string();
                let form = if demo { "demo" } else { "other" };
                let mut v = if name == NAMES.len() {
                    let value = [json!("pro"), json!("free"), json!(null)][plan].clone();
                    json!({"type": "identify", "traits": {"plan": value},
                           "messageId": format!("i{plan}-{step}-{n}")})
                } else if NAMES[name] == "$page" {
                    json!({"type": "page", "name": "Home", "properties": {"form": form},
                           "messageId": format!("e{name}-{step}-{demo}-{n}")})
                } else {
                    json!({"type": "track", "event": NAMES[name], "properties": {"form": form},
                           "messageId": format!("e{name}-{step}-{demo}-{n}")})
                };
                v["userId"] = json!("u");
                v["timestamp"] = json!(ts);
                message(v)
            })
            .collect()
    })
}

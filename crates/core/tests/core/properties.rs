//! The invariants of SPEC §1 as properties: order independence, idempotence,
//! incremental == batch, score within [min, max].

use std::collections::HashSet;

use leadscore_core::batch::{contacts_as_of, contacts_as_of_chunks, ContactLog};
use leadscore_core::event::Message;
use leadscore_core::fold::ContactState;
use leadscore_core::incremental::IncrementalContact;
use leadscore_core::model::Model;
use leadscore_core::score::{Score, Status};
use leadscore_core::time::Timestamp;
use proptest::prelude::*;
use serde_json::json;

use crate::harness::{example, message};

const EVENTS: &[&str] = &[
    "Product Viewed",
    "Product Added",
    "Order Completed",
    "Email Delivered",
    "Email Opened",
    "Email Link Clicked",
    "Email Bounced",
    "Form Submitted",
    "Meeting Booked",
    "Call Completed",
    "Opportunity Lost",
    "Unsubscribed",
];

pub const START: i64 = 1_700_000_000;

/// One random message for contact `u` (or its anonymous id `a`), within
/// ~400 days, with coarse timestamps so that ties happen.
pub fn arb_message() -> impl Strategy<Value = Message> {
    let when = (0i64..400, 0i64..4).prop_map(|(d, q)| START + d * 86_400 + q * 21_600);
    let id = 0u32..1_000_000;
    let activity = (0..EVENTS.len() + 1, when.clone(), id.clone(), any::<bool>(), 0..3usize).prop_map(
        |(e, ts, id, anon, form)| {
            let who = if anon { json!({"anonymousId": "a"}) } else { json!({"userId": "u"}) };
            let mut v = if e == EVENTS.len() {
                json!({"type": "page", "name": "Pricing", "properties": {"path": (["/pricing", "/blog", "/"][form])}})
            } else {
                json!({"type": "track", "event": EVENTS[e], "properties": {"form": (["demo", "contact", "x"][form])}})
            };
            v["timestamp"] = json!(Timestamp::from_seconds(ts).to_string());
            v["messageId"] = json!(format!("m{id}"));
            v.as_object_mut().unwrap().extend(who.as_object().unwrap().clone());
            message(v)
        },
    );
    let traits =
        (when.clone(), id.clone(), any::<bool>(), 0..4usize).prop_map(|(ts, id, consent, c)| {
            message(
                json!({"type": "identify", "userId": "u", "anonymousId": "a",
            "timestamp": Timestamp::from_seconds(ts).to_string(), "messageId": format!("i{id}"),
            "traits": {"consent": consent, "email": "x@y.z", "segment": "s", "onboarded": true,
                       "country": (["DE", "FR", "US", "BR"][c]), "budget": c * 300,
                       "job_title": (["VP Sales", "Intern", "Head of IT", "CTO"][c])}}),
            )
        });
    let company = (when, id, 0..4usize).prop_map(|(ts, id, c)| {
        message(json!({"type": "group", "userId": "u", "groupId": "g",
            "timestamp": Timestamp::from_seconds(ts).to_string(), "messageId": format!("g{id}"),
            "traits": {"employees": ([10, 60, 300, 9000][c]), "industry": (["Software", "Retail", "E-commerce", "Other"][c]),
                       "country": (["US", "FR", "DE", "BR"][c]), "revenue": c * 6_000_000,
                       "tech_stack": ([["hubspot"], ["excel"], ["salesforce"], ["none"]][c])}}))
    });
    prop_oneof![6 => activity, 1 => traits, 1 => company]
}

fn batch_score(model: &Model, messages: Vec<Message>, t: Timestamp) -> Vec<(String, Score)> {
    scores(model, contacts_as_of(messages, Vec::new(), t), t)
}

fn scores(model: &Model, contacts: Vec<ContactLog>, t: Timestamp) -> Vec<(String, Score)> {
    contacts
        .into_iter()
        .map(|c| {
            let s = c.score_as_of(model, t);
            (c.id, s)
        })
        .collect()
}

fn assert_same(a: &[(String, Score)], b: &[(String, Score)]) {
    assert_eq!(a.len(), b.len());
    for ((ia, sa), (ib, sb)) in a.iter().zip(b) {
        assert_eq!(ia, ib);
        for (x, y) in [
            (sa.score, sb.score),
            (sa.raw, sb.raw),
            (sa.fit, sb.fit),
            (sa.engagement, sb.engagement),
        ] {
            assert!((x - y).abs() < 1e-6, "{sa:?} vs {sb:?}");
        }
        assert_eq!(
            (&sa.tier, &sa.grade, &sa.stage, sa.status, &sa.reasons),
            (&sb.tier, &sb.grade, &sb.stage, sb.status, &sb.reasons)
        );
    }
}

pub fn models() -> Vec<Model> {
    vec![example("b2b"), example("ecommerce"), example("email")]
}

proptest! {
    #![proptest_config(crate::harness::cases(64))]

    #[test]
    fn shuffling_and_duplicating_never_changes_scores(
        messages in prop::collection::vec(arb_message(), 1..60),
        seed in any::<u64>(),
        dup_every in 1usize..5,
        chunk_len in 1usize..8,
        t_day in 0i64..500,
    ) {
        let t = Timestamp::from_seconds(START + t_day * 86_400);
        let mut shuffled = messages.clone();
        // Deterministic shuffle from the seed, then resend every k-th message.
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            shuffled.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let resent: Vec<Message> = shuffled.iter().step_by(dup_every).cloned().collect();
        shuffled.extend(resent);
        for model in models() {
            let a = batch_score(&model, messages.clone(), t);
            let b = batch_score(&model, shuffled.clone(), t);
            assert_same(&a, &b);
            // The log cut into chunks (as `leadscore score` reads it).
            let chunks = shuffled.chunks(chunk_len).map(<[Message]>::to_vec).collect();
            let c = scores(&model, contacts_as_of_chunks(chunks, Vec::new(), t), t);
            assert_same(&a, &c);
            for (_, s) in &a {
                prop_assert!(s.score >= model.min && s.score <= model.max);
            }
        }
    }

    #[test]
    fn incremental_absorb_in_any_order_equals_batch(
        messages in prop::collection::vec(arb_message(), 1..60),
        t_day in 400i64..500,
    ) {
        let t = Timestamp::from_seconds(START + t_day * 86_400);
        for model in models() {
            let batch = batch_score(&model, messages.clone(), t);
            for (id, expected) in &batch {
                let mut live = IncrementalContact::new(&model, None);
                let contacts = contacts_as_of(messages.clone(), Vec::new(), t);
                let mine = contacts.iter().find(|c| &c.id == id).unwrap();
                let ids: HashSet<&str> = mine.messages.iter().map(|m| m.message_id.as_str()).collect();
                // Arrival order (not log order), with some messages resent.
                for m in messages.iter().chain(messages.iter().take(5)) {
                    if ids.contains(m.message_id.as_str()) {
                        live.absorb(&model, m.clone());
                    }
                }
                let got = live.score_as_of(&model, t);
                assert_same(&[(id.clone(), expected.clone())], &[(id.clone(), got)]);
            }
        }
    }
}

proptest! {
    #![proptest_config(crate::harness::cases(64))]

    /// SPEC §3.2 (8) by brute force: the stage is the highest one the score
    /// reached at an evaluation point <= t (each message's timestamp, and t)
    /// where the contact was not excluded — each point scored by folding
    /// the log up to it. The fold skips points it can bound below the next
    /// stage; this checks the skipping never misses one.
    #[test]
    fn the_stage_is_the_highest_reached_at_any_evaluation_point(
        messages in prop::collection::vec(arb_message(), 1..40),
        squeeze in prop_oneof![Just(1i64), Just(40)],
        t_day in 0i64..500,
    ) {
        // Squeezed into 10 days, awards pile up past the stages' minimums.
        let start = Timestamp::from_seconds(START).0;
        let messages: Vec<Message> = messages
            .into_iter()
            .map(|mut m| {
                m.timestamp = Timestamp(start + (m.timestamp.0 - start) / squeeze);
                m
            })
            .collect();
        let t = Timestamp::from_seconds(START + t_day * 86_400 / squeeze);
        for model in models() {
            for contact in contacts_as_of(messages.clone(), Vec::new(), t) {
                let mut points: Vec<Timestamp> = contact.messages.iter().map(|m| m.timestamp).collect();
                points.push(t);
                points.dedup();
                let reached = points
                    .iter()
                    .filter_map(|&p| {
                        let prefix: Vec<Message> = contact
                            .messages
                            .iter()
                            .filter(|m| m.timestamp <= p)
                            .cloned()
                            .collect();
                        let score = ContactState::fold(&model, None, &prefix).score_at(&model, p).unwrap();
                        (score.status == Status::Active).then(|| model.stages.rank_of(score.score)).flatten()
                    })
                    .max();
                let expected = reached.map_or("", |r| model.stages.name(r));
                let got = contact.score_as_of(&model, t);
                if got.status == Status::Active {
                    prop_assert_eq!(got.stage.as_str(), expected, "{} at {}", contact.id, t);
                }
            }
        }
    }
}

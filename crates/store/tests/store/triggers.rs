//! Triggers in the store: firings recorded with the change that caused
//! them equal the offline simulation, due times fire exactly once, the
//! outbox leases, retries, buries and replays deliveries.

use std::collections::BTreeSet;

use leadscore_core::event::Message;
use leadscore_core::fold::sort_log;
use leadscore_core::model::Model;
use leadscore_core::time::Timestamp;
use leadscore_core::triggers::simulate;
use leadscore_store::{DeliveryStatus, FiringQuery, Settle, Store};
use serde_json::json;

use crate::harness::*;
use leadscore_store::Outbox as _;

const DAY: i64 = 86_400;

fn firing_set(store: &dyn Store) -> BTreeSet<(String, String, Timestamp)> {
    store
        .firings(&FiringQuery {
            limit: 1_000_000,
            ..FiringQuery::default()
        })
        .unwrap()
        .into_iter()
        .map(|f| (f.trigger, f.contact, f.at))
        .collect()
}

/// Every firing of the offline simulation up to `t`.
fn offline(
    model: &Model,
    messages: &[Message],
    t: Timestamp,
) -> BTreeSet<(String, String, Timestamp)> {
    let mut out = BTreeSet::new();
    for mut contact in leadscore_core::batch::contacts_as_of(messages.to_vec(), Vec::new(), t) {
        sort_log(&mut contact.messages);
        let (_, _, firings) = simulate(model, None, &contact.messages, t);
        out.extend(firings.into_iter().map(|f| {
            (
                model.triggers[f.trigger].id.clone(),
                contact.id.clone(),
                f.at,
            )
        }));
    }
    out
}

#[test]
fn live_firings_equal_the_offline_simulation() {
    let (mut messages, t) = generated(80, 240, 11);
    sort_log(&mut messages);
    for name in ["ecommerce", "email"] {
        let model = example(name);
        let expected = offline(&model, &messages, t);
        assert!(!expected.is_empty(), "{name}: no firing to compare");
        for (mut store, _guard) in backends() {
            activate(store.as_mut(), name);
            // In time order, in batches, then the due times up to t.
            for chunk in messages.chunks(300) {
                store.ingest(incoming(chunk)).unwrap();
            }
            while store.fire_due(t, 100).unwrap().contacts > 0 {}
            assert_eq!(firing_set(store.as_ref()), expected, "{name}");
            // History is recorded late (it is months old) and every
            // non-campaign action is queued once per firing.
            let firings = store
                .firings(&FiringQuery {
                    limit: 10,
                    ..FiringQuery::default()
                })
                .unwrap();
            assert!(firings.iter().all(|f| f.late));
            let queued = store.outbox_counts().unwrap().pending;
            let per_firing: u64 = model
                .triggers
                .iter()
                .map(|tr| {
                    let n = tr
                        .actions
                        .iter()
                        .filter(|a| a.describe().split(' ').next() != Some("campaign"))
                        .count() as u64;
                    n * expected.iter().filter(|f| f.0 == tr.id).count() as u64
                })
                .sum();
            assert_eq!(queued, per_firing, "{name}");
        }
    }
}

#[test]
fn any_arrival_order_finds_at_least_the_offline_firings_and_resends_add_none() {
    let (messages, t) = generated(30, 200, 12);
    let model = example("ecommerce");
    let expected = offline(&model, &messages, t);
    for (mut store, _guard) in backends() {
        activate(store.as_mut(), "ecommerce");
        ingest_in_batches(store.as_mut(), &arrival(&messages, 99, 5), 97);
        while store.fire_due(t, 100).unwrap().contacts > 0 {}
        let got = firing_set(store.as_ref());
        // Late events may reveal crossings after others were delivered;
        // a delivered firing is never retracted (docs/triggers.md).
        assert!(
            expected.is_subset(&got),
            "missing: {:?}",
            expected.difference(&got)
        );
        let again = store.ingest(incoming(&messages)).unwrap();
        assert_eq!(again.firings, 0);
        assert_eq!(firing_set(store.as_ref()), got);
    }
}

/// A trigger due 182 days after a contact's last view (shared with the
/// SQLite backend's unit tests).
const REACTIVATION: &str = include_str!("reactivation.toml");

fn track(user: &str, event: &str, at: Timestamp, id: &str) -> Message {
    Message::from_json(
        json!({"type": "track", "userId": user, "event": event,
               "timestamp": at.to_string(), "messageId": id}),
        None,
        None,
    )
    .unwrap()
}

#[test]
fn a_due_trigger_fires_at_exactly_its_time_once_and_enrols_the_contact() {
    let seen = leadscore_store::now();
    let due = seen.plus(leadscore_core::time::Duration::from_seconds(182 * DAY));
    let before = Timestamp(due.0 - 1_000_000_000);
    for (mut store, _guard) in backends() {
        let v = store.add_model("r.toml", REACTIVATION).unwrap().version;
        store.activate(v, &mut |_, _| {}).unwrap();
        let report = store
            .ingest(incoming(&[track("ana", "Product Viewed", seen, "v1")]))
            .unwrap();
        assert_eq!(report.firings, 0);
        assert_eq!(store.next_due().unwrap(), Some(due));
        assert_eq!(store.fire_due(before, 10).unwrap().firings, 0);
        let fired = store.fire_due(due, 10).unwrap();
        assert_eq!((fired.contacts, fired.firings), (1, 1));
        assert_eq!(
            store.fire_due(due, 10).unwrap().contacts,
            0,
            "once per crossing"
        );
        let f = store
            .firings(&FiringQuery {
                contact: Some("ana".into()),
                limit: 10,
                ..FiringQuery::default()
            })
            .unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].at, due);
        assert!(!f[0].late, "processed at its due time");
        let members = store.campaign_members("reactivation", None, 10).unwrap();
        assert_eq!(members.len(), 1);
        assert_eq!((members[0].contact.as_str(), members[0].at), ("ana", due));
        assert!(store
            .history("ana")
            .unwrap()
            .iter()
            .any(|e| e.cause == "campaign reactivation (trigger reactivation)"));
        // Downtime: processed a day late, it is marked late.
        let bob_seen = seen.plus(leadscore_core::time::Duration::from_seconds(DAY));
        store
            .ingest(incoming(&[track("bob", "Product Viewed", bob_seen, "v2")]))
            .unwrap();
        let bob_due = bob_seen.plus(leadscore_core::time::Duration::from_seconds(182 * DAY));
        store
            .fire_due(
                bob_due.plus(leadscore_core::time::Duration::from_seconds(DAY)),
                10,
            )
            .unwrap();
        let f = store
            .firings(&FiringQuery {
                contact: Some("bob".into()),
                limit: 10,
                ..FiringQuery::default()
            })
            .unwrap();
        assert_eq!((f[0].at, f[0].late), (bob_due, true));
        // Erasure takes the firings, the deliveries and the enrolments.
        store.erase("ana").unwrap().unwrap();
        assert!(store
            .campaign_members("reactivation", None, 10)
            .unwrap()
            .iter()
            .all(|m| m.contact != "ana"));
        assert_eq!(
            store.outbox_counts().unwrap().pending,
            1,
            "bob's log action"
        );
    }
}

/// A firing's position is a client's cursor (`firings?after=`): erasing
/// the contact of the newest firing does not give its position to the
/// next one, which a client holding it would never see.
#[test]
fn a_firing_position_is_never_taken_again_after_an_erasure() {
    let seen = leadscore_store::now();
    let due = seen.plus(leadscore_core::time::Duration::from_seconds(182 * DAY));
    for (mut store, _guard) in backends() {
        let v = store.add_model("r.toml", REACTIVATION).unwrap().version;
        store.activate(v, &mut |_, _| {}).unwrap();
        let fire = |store: &mut Box<dyn Store>, user: &str, id: &str| {
            store
                .ingest(incoming(&[track(user, "Product Viewed", seen, id)]))
                .unwrap();
            assert_eq!(store.fire_due(due, 10).unwrap().firings, 1);
            let query = FiringQuery {
                contact: Some(user.into()),
                limit: 10,
                ..FiringQuery::default()
            };
            store.firings(&query).unwrap()[0].seq
        };
        fire(&mut store, "ana", "p1");
        let bob = fire(&mut store, "bob", "p2");
        store.erase("bob").unwrap().unwrap();
        let carl = fire(&mut store, "carl", "p3");
        assert!(carl > bob, "carl's firing at {carl}, bob's was at {bob}");
        let after = FiringQuery {
            after: Some(bob),
            limit: 10,
            ..FiringQuery::default()
        };
        let seen: Vec<String> = store
            .firings(&after)
            .unwrap()
            .into_iter()
            .map(|f| f.contact)
            .collect();
        assert_eq!(seen, ["carl"]);
    }
}

#[test]
fn activation_starts_triggers_from_what_is_true_then() {
    let seen = Timestamp::from_seconds(1_700_000_000);
    for (mut store, _guard) in backends() {
        store
            .ingest(incoming(&[track("old", "Product Viewed", seen, "v1")]))
            .unwrap();
        let v = store.add_model("r.toml", REACTIVATION).unwrap().version;
        store.activate(v, &mut |_, _| {}).unwrap();
        // Long past 182 days: true at activation, so no crossing to fire.
        assert_eq!(
            store.fire_due(leadscore_store::now(), 10).unwrap().firings,
            0
        );
        assert!(firing_set(store.as_ref()).is_empty());
    }
}

#[test]
fn the_outbox_leases_retries_buries_and_replays() {
    let seen = Timestamp::from_seconds(1_700_000_000);
    let t = |s: i64| Timestamp::from_seconds(1_800_000_000 + s);
    for (mut store, _guard) in backends() {
        let v = store.add_model("r.toml", REACTIVATION).unwrap().version;
        store.activate(v, &mut |_, _| {}).unwrap();
        store
            .ingest(incoming(&[
                track("a", "Product Viewed", seen, "1"),
                track("b", "Product Viewed", seen, "2"),
            ]))
            .unwrap();
        store.fire_due(t(0), 10).unwrap();
        assert_eq!(store.outbox_counts().unwrap().pending, 2);
        let claimed = store.claim(t(0), t(30), 10).unwrap();
        assert_eq!(claimed.len(), 2);
        assert_eq!(claimed[0].attempt, 1);
        assert_eq!(claimed[0].action["type"], "log");
        assert_eq!(claimed[0].body["trigger"], "reactivation");
        assert_eq!(claimed[0].body["idempotency_key"], claimed[0].key.as_str());
        // Leased: nobody else gets them until the lease ends.
        assert!(store.claim(t(10), t(40), 10).unwrap().is_empty());
        store
            .settle(&[(claimed[0].id, Settle::Delivered)], t(1))
            .unwrap();
        // The other worker died: its lease expires and the row comes back.
        let again = store.claim(t(31), t(60), 10).unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!((again[0].id, again[0].attempt), (claimed[1].id, 2));
        let retry = Settle::Retry {
            at: t(100),
            error: "HTTP 500".into(),
        };
        store.settle(&[(again[0].id, retry)], t(32)).unwrap();
        assert!(store.claim(t(99), t(130), 10).unwrap().is_empty());
        let third = store.claim(t(100), t(130), 10).unwrap();
        let dead = Settle::Dead {
            error: "HTTP 500".into(),
        };
        store.settle(&[(third[0].id, dead)], t(101)).unwrap();
        let counts = store.outbox_counts().unwrap();
        assert_eq!((counts.pending, counts.delivered, counts.dead), (0, 1, 1));
        let dead = store.outbox(Some(DeliveryStatus::Dead), 10).unwrap();
        assert_eq!(dead[0].last_error.as_deref(), Some("HTTP 500"));
        assert_eq!(dead[0].attempts, 3);
        // Replay the dead letter: it is delivered again from scratch.
        assert_eq!(store.retry_dead(None, t(200)).unwrap(), 1);
        let replayed = store.claim(t(200), t(230), 10).unwrap();
        assert_eq!((replayed[0].id, replayed[0].attempt), (dead[0].id, 1));
        let gone = Settle::Dead {
            error: "gone".into(),
        };
        store.settle(&[(replayed[0].id, gone)], t(201)).unwrap();
        assert_eq!(store.purge_dead(Some(dead[0].id)).unwrap(), 1);
        assert_eq!(store.outbox_counts().unwrap().dead, 0);
    }
}

/// Two processes draining one PostgreSQL outbox never get the same row.
#[test]
fn two_connections_drain_one_postgres_outbox_without_double_delivery() {
    let Some(url) = postgres_url() else {
        return;
    };
    let (mut first, guard) = postgres(&url);
    let v = first.add_model("r.toml", REACTIVATION).unwrap().version;
    first.activate(v, &mut |_, _| {}).unwrap();
    let seen = Timestamp::from_seconds(1_700_000_000);
    let views: Vec<Message> = (0..400)
        .map(|i| track(&format!("c{i}"), "Product Viewed", seen, &format!("m{i}")))
        .collect();
    first.ingest(incoming(&views)).unwrap();
    let later = Timestamp::from_seconds(1_800_000_000);
    while first.fire_due(later, 100).unwrap().contacts > 0 {}
    assert_eq!(first.outbox_counts().unwrap().pending, 400);
    let second = {
        let mut config: leadscore_store::PgConfig = url.parse().unwrap();
        config.options(&format!("-c search_path={}", guard.schema()));
        leadscore_store::PgStore::open_config(&config).unwrap()
    };
    let drain = |mut store: Box<dyn Store>| {
        std::thread::spawn(move || {
            let mut mine = Vec::new();
            loop {
                let batch = store
                    .claim(later, Timestamp(later.0 + 60_000_000_000), 7)
                    .unwrap();
                if batch.is_empty() {
                    return mine;
                }
                let done: Vec<_> = batch.iter().map(|d| (d.id, Settle::Delivered)).collect();
                store.settle(&done, later).unwrap();
                mine.extend(batch.into_iter().map(|d| d.id));
            }
        })
    };
    let a = drain(Box::new(first));
    let b = drain(Box::new(second));
    let (a, b) = (a.join().unwrap(), b.join().unwrap());
    let all: BTreeSet<i64> = a.iter().chain(&b).copied().collect();
    assert_eq!(a.len() + b.len(), 400, "each row delivered once");
    assert_eq!(all.len(), 400);
    assert!(
        !a.is_empty() && !b.is_empty(),
        "both worked: {} / {}",
        a.len(),
        b.len()
    );
}

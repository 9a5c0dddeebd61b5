//! GDPR erasure: everything about a contact goes; its ids are tombstoned so
//! a replayed old event does not bring it back.

use leadscore_core::time::Timestamp;
use leadscore_store::Outcome;

use crate::harness::*;

#[test]
fn erase_removes_everything_and_replays_do_not_resurrect() {
    let (messages, _) = generated(10, 60, 21);
    for (mut store, _dir) in backends() {
        activate(store.as_mut(), "ecommerce");
        store.ingest(incoming(&messages)).unwrap();
        let target = store.contacts(None, 1).unwrap().remove(0).id;
        let log = store.contact_messages(&target).unwrap().unwrap();
        let (ids, own) = (log.ids, log.messages);
        // Outcomes naming any of its ids go too; others stay.
        let outcome = |id: &str, what: &str| Outcome {
            contact_id: id.to_string(),
            outcome: what.to_string(),
            value: None,
            at: Timestamp::from_seconds(1_700_000_000),
        };
        let kept = outcome("someone-else", "won");
        let mut recorded: Vec<Outcome> = ids.iter().map(|id| outcome(id, "lost")).collect();
        recorded.push(kept.clone());
        store.add_outcomes(&recorded).unwrap();
        let export = leadscore_store::export_contact(store.as_ref(), &target)
            .unwrap()
            .unwrap();
        assert_eq!(
            export["outcomes"].as_array().unwrap().len(),
            ids.len(),
            "the export lists its outcomes"
        );
        let before = store.stats().unwrap();
        let report = store.erase(&target).unwrap().unwrap();
        assert_eq!(report.events, own.len() as u64);
        assert_eq!(report.ids, ids);
        assert_eq!(report.outcomes, ids.len() as u64);
        assert_eq!(store.outcomes().unwrap(), vec![kept.clone()]);
        assert!(store.contact(&target).unwrap().is_none());
        assert!(store.history(&target).unwrap().is_empty());
        assert!(store.contact_messages(&target).unwrap().is_none());
        let after = store.stats().unwrap();
        assert_eq!(after.events, before.events - own.len() as u64);
        assert_eq!(after.contacts, before.contacts - 1);
        // Replaying the whole log: the erased contact's messages are refused.
        let replay = store.ingest(incoming(&messages)).unwrap();
        assert_eq!(replay.erased, own.len() as u64);
        assert_eq!(replay.accepted, 0);
        assert!(store.contact(&target).unwrap().is_none());
        assert!(store.erase("nobody").unwrap().is_none());
        // An id known only from its outcomes: exported, erased, tombstoned.
        let export = leadscore_store::export_contact(store.as_ref(), "someone-else")
            .unwrap()
            .unwrap();
        assert_eq!(export["outcomes"][0]["outcome"], "won");
        let report = store.erase("someone-else").unwrap().unwrap();
        assert_eq!(
            (report.contact.as_str(), report.outcomes),
            ("someone-else", 1)
        );
        assert!(store.outcomes().unwrap().is_empty());
        assert!(
            leadscore_store::export_contact(store.as_ref(), "someone-else")
                .unwrap()
                .is_none()
        );
        let late = store
            .ingest(incoming(&parse_jsonl(&[
                r#"{"type":"track","userId":"someone-else","event":"Email Opened","messageId":"late-1","timestamp":"2025-01-01T00:00:00Z"}"#,
            ])))
            .unwrap();
        assert_eq!(late.erased, 1, "its id is tombstoned");
        // Outcomes naming an erased id are ignored, as its events are.
        let report = store
            .add_outcomes(&[
                outcome(&ids[0], "won"),
                outcome("someone-else", "won"),
                outcome("new-lead", "won"),
            ])
            .unwrap();
        assert_eq!((report.added, report.erased), (1, 2), "{report:?}");
        assert_eq!(report.duplicates, 0);
        assert_eq!(store.outcomes().unwrap(), [outcome("new-lead", "won")]);
    }
}

#[test]
fn api_keys_are_stored_hashed_with_their_scope_and_can_be_revoked() {
    use leadscore_store::{key_hash, new_key, Scope};
    for (mut store, _guard) in backends() {
        let key = new_key(Scope::Ingest).unwrap();
        assert!(key.starts_with("ls_ingest_") && key.len() > 60, "{key}");
        let stored = store
            .add_key(&key_hash(&key), Scope::Ingest, "website")
            .unwrap();
        let found = store.key_by_hash(&key_hash(&key)).unwrap().unwrap();
        assert_eq!(found, stored);
        assert_eq!(
            (found.scope, found.revoked, found.label.as_str()),
            (Scope::Ingest, false, "website")
        );
        assert!(store
            .key_by_hash(&key_hash("ls_ingest_wrong"))
            .unwrap()
            .is_none());
        assert!(store.revoke_key(found.id).unwrap());
        assert!(store.key_by_hash(&key_hash(&key)).unwrap().unwrap().revoked);
        assert!(!store.revoke_key(9_999).unwrap());
        assert_eq!(store.keys().unwrap().len(), 1);
        assert!(Scope::Admin.allows(Scope::Read) && !Scope::Read.allows(Scope::Ingest));
    }
}

proptest::proptest! {
    #![proptest_config(crate::harness::cases(24))]

    /// Erasing one contact of a stitched log (its ids also appear in other
    /// contacts' messages and links): nothing of it stays or comes back,
    /// and every other contact still equals the batch of the stored log.
    #[test]
    fn erasing_a_stitched_contact_leaves_the_rest_equal_to_the_batch(
        seed in proptest::prelude::any::<u64>(),
        n in 10usize..100,
        pick in proptest::prelude::any::<usize>(),
    ) {
        let (messages, t) = stitched_log(seed, n);
        let model = example("b2b");
        for (mut store, _dir) in backends() {
            activate(store.as_mut(), "b2b");
            ingest_in_batches(store.as_mut(), &arrival(&messages, seed, 4), 7);
            let contacts = store.contacts(None, 100).unwrap();
            proptest::prop_assume!(contacts.len() >= 2);
            let target = &contacts[pick % contacts.len()].id;
            let ids = store.contact_messages(target).unwrap().unwrap().ids;
            store.erase(target).unwrap().unwrap();
            let check = |store: &dyn leadscore_store::Store| {
                for id in &ids {
                    assert!(store.contact(id).unwrap().is_none(), "{id} is back");
                }
                let log = stored_messages(store);
                assert!(log.iter().all(|m| !ids.iter().any(|id| id == m.own_id())));
                assert_live_equals_batch(store, &model, &log, t);
            };
            check(store.as_ref());
            // Everything sent again: nothing of it comes back.
            store.ingest(incoming(&messages)).unwrap();
            check(store.as_ref());
        }
    }
}

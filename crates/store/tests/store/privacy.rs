//! GDPR erasure: everything about a contact goes; its ids are tombstoned so
//! a replayed old event does not bring it back.

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
        let before = store.stats().unwrap();
        let report = store.erase(&target).unwrap().unwrap();
        assert_eq!(report.events, own.len() as u64);
        assert_eq!(report.ids, ids);
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
    }
}

//! Model activation: rescoring under a new version, atomic switch, resuming
//! after a crash, events arriving mid-activation, rollback.

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::harness::*;
use leadscore_store::{now, JobUpdate};

#[test]
fn events_before_any_model_are_scored_at_activation() {
    let (messages, t) = generated(30, 90, 11);
    for (mut store, _dir) in backends() {
        let report = store.ingest(incoming(&messages)).unwrap();
        assert!(!report.scored);
        assert_eq!(store.stats().unwrap().contacts, 0);
        activate(store.as_mut(), "b2b");
        assert_live_equals_batch(store.as_ref(), &example("b2b"), &messages, t);
    }
}

#[test]
fn activating_another_version_rescores_everyone_and_records_changes() {
    let (messages, t) = generated(30, 90, 12);
    for (mut store, _dir) in backends() {
        let v1 = activate(store.as_mut(), "b2b");
        store.ingest(incoming(&messages)).unwrap();
        let v2 = activate(store.as_mut(), "email");
        assert_ne!(v1, v2);
        assert_live_equals_batch(store.as_ref(), &example("email"), &messages, t);
        let contact = store.contacts(None, 1).unwrap().remove(0);
        assert_eq!(contact.model_version, v2);
        let history = store.history(&contact.id).unwrap();
        assert!(history.iter().any(|e| e.cause == format!("activate v{v2}")));
        // Rollback = activating the previous version again.
        assert_eq!(store.previous_version().unwrap(), Some(v1));
        store.activate(v1, &mut |_, _| {}).unwrap();
        assert_live_equals_batch(store.as_ref(), &example("b2b"), &messages, t);
        assert_eq!(store.previous_version().unwrap(), Some(v2));
    }
}

#[test]
fn an_interrupted_activation_keeps_old_scores_and_resumes() {
    let (messages, t) = generated(1_200, 20, 13);
    for (mut store, _dir) in backends() {
        let v1 = activate(store.as_mut(), "b2b");
        store.ingest(incoming(&messages)).unwrap();
        let (file, source) = example_source("ecommerce");
        let v2 = store.add_model(&file, &source).unwrap().version;
        // Crash after the first step has committed.
        let crashed = catch_unwind(AssertUnwindSafe(|| {
            store
                .activate(v2, &mut |done, _| {
                    if done > 0 {
                        panic!("simulated crash");
                    }
                })
                .unwrap();
        }));
        assert!(crashed.is_err());
        // Old scores are still served, under the old version.
        assert_eq!(store.active_model().unwrap().unwrap().0, v1);
        assert_live_equals_batch(store.as_ref(), &example("b2b"), &messages, t);
        // Events keep arriving meanwhile.
        let (more, t2) = generated(3, 30, 99);
        store.ingest(incoming(&more)).unwrap();
        let report = store.activate(v2, &mut |_, _| {}).unwrap();
        assert!(report.resumed);
        let mut all = messages.clone();
        all.extend(more);
        assert_live_equals_batch(store.as_ref(), &example("ecommerce"), &all, t.max(t2));
    }
}

/// Both sides of a dry run are batch scores as of its time: after the
/// latest events (the active model's engagement decayed since), and
/// halfway through the log, where contacts first seen later are left out,
/// ids stitched later are separate contacts, and later events do not count.
#[test]
fn a_dry_run_compares_both_models_as_of_its_time() {
    let (messages, end) = generated(60, 90, 15);
    let day = 86_400 * 1_000_000_000;
    let later = leadscore_core::time::Timestamp(end.0 + 90 * day);
    let halfway = leadscore_core::time::Timestamp(end.0 - 45 * day);
    let tiers = |model: &str, at| {
        let mut counts = std::collections::BTreeMap::<String, u64>::new();
        for (_, score) in batch(&example(model), &messages, at) {
            *counts.entry(score.tier.into()).or_default() += 1;
        }
        counts
    };
    assert_ne!(
        tiers("b2b", end),
        tiers("b2b", later),
        "decay must move tiers between the two times, or this test says nothing"
    );
    let (now_contacts, then_contacts) = (
        batch(&example("b2b"), &messages, end).len(),
        batch(&example("b2b"), &messages, halfway).len(),
    );
    assert!(
        then_contacts < now_contacts,
        "some contacts must be first seen after halfway ({then_contacts} of {now_contacts})"
    );
    for (mut store, _dir) in backends() {
        activate(store.as_mut(), "b2b");
        store.ingest(incoming(&messages)).unwrap();
        for at in [end, later, halfway] {
            let run = store
                .dry_run(&example("email"), at, &mut |_, _| {})
                .unwrap();
            assert_eq!(run.as_of, at);
            assert_eq!(run.tiers_before, tiers("b2b", at), "active model at {at}");
            assert_eq!(run.tiers_after, tiers("email", at), "candidate at {at}");
            let expected = batch(&example("b2b"), &messages, at).len() as u64;
            assert_eq!(run.contacts, expected, "contacts at {at}");
        }
    }
}

#[test]
fn a_dry_run_reports_impact_without_changing_anything() {
    let (messages, _) = generated(40, 90, 14);
    for (mut store, _dir) in backends() {
        activate(store.as_mut(), "b2b");
        store.ingest(incoming(&messages)).unwrap();
        let before = store.stats().unwrap();
        let same = store
            .dry_run(&example("b2b"), now(), &mut |_, _| {})
            .unwrap();
        assert_eq!(same.contacts, before.contacts);
        assert_eq!(same.tier_changes, 0);
        assert_eq!(same.tiers_before, same.tiers_after);
        assert!(same.top_movers.iter().all(|m| m.before == m.after));
        let other = store
            .dry_run(&example("email"), now(), &mut |_, _| {})
            .unwrap();
        assert_eq!(other.contacts, before.contacts);
        assert!(other.tier_changes > 0);
        assert!(other.top_movers.len() <= 10);
        let moves: Vec<f64> = other
            .top_movers
            .iter()
            .map(|m| (m.after - m.before).abs())
            .collect();
        assert!(moves.windows(2).all(|w| w[0] >= w[1]));
        assert_eq!(store.stats().unwrap(), before);
    }
}

#[test]
fn jobs_are_recorded_with_their_progress_and_end() {
    for (mut store, _dir) in backends() {
        let job = store.add_job("activate", Some(2)).unwrap();
        assert_eq!(
            (job.kind.as_str(), job.version, job.state.as_str(), job.done),
            ("activate", Some(2), "running", 0)
        );
        assert_eq!(job.total, None);
        store
            .update_job(job.id, &JobUpdate::Progress { done: 5, total: 40 })
            .unwrap();
        let seen = store.job(job.id).unwrap().unwrap();
        assert_eq!((seen.done, seen.total), (5, Some(40)));
        assert!(seen.updated_at >= job.updated_at);
        store
            .update_job(
                job.id,
                &JobUpdate::Done(serde_json::json!({"contacts": 40})),
            )
            .unwrap();
        let done = store.job(job.id).unwrap().unwrap();
        assert_eq!(done.state, "done");
        assert_eq!(done.done, 5, "the end keeps the last progress");
        assert_eq!(done.report, Some(serde_json::json!({"contacts": 40})));
        let other = store.add_job("activate", Some(3)).unwrap();
        assert_ne!(other.id, job.id);
        store
            .update_job(
                other.id,
                &JobUpdate::Failed("no such model version 3".into()),
            )
            .unwrap();
        let failed = store.job(other.id).unwrap().unwrap();
        assert_eq!(failed.state, "failed");
        assert_eq!(failed.error.as_deref(), Some("no such model version 3"));
        assert_eq!(store.job(other.id + 100).unwrap(), None);
    }
}

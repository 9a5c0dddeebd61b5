//! Model versions: immutable, validated, deduplicated by content, diffable.

use leadscore_store::{diff_models, RuleChange, StoreError};

use crate::harness::*;

#[test]
fn versions_are_immutable_and_deduplicated_by_content() {
    for (mut store, _dir) in backends() {
        let (file, source) = example_source("b2b");
        let a = store.add_model(&file, &source).unwrap();
        let b = store.add_model("again.toml", &source).unwrap();
        assert_eq!(a.version, b.version);
        assert_eq!(b.name, "b2b.toml");
        let changed = source.replace("points = 5", "points = 6");
        let c = store.add_model(&file, &changed).unwrap();
        assert_eq!(c.version, a.version + 1);
        assert_eq!(store.model_source(a.version).unwrap(), source);
        assert_eq!(store.models().unwrap().len(), 2);
        assert!(store.models().unwrap().iter().all(|m| !m.active));
        assert!(matches!(
            store.model_source(99),
            Err(StoreError::NoSuchVersion(99))
        ));
    }
}

#[test]
fn an_invalid_model_is_refused_with_its_place() {
    for (mut store, _dir) in backends() {
        let e = store
            .add_model(
                "bad.toml",
                "[model]\nname = \"bad\"\n\n[[engagement]]\nid = \"x\"\nevent = \"A\"\npoints = 1\nwhen = 'properties.a =='\n",
            )
            .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("bad.toml:8:"), "{text}");
        assert!(text.contains("x"), "{text}");
        assert!(store.models().unwrap().is_empty());
    }
}

#[test]
fn diff_names_rules_by_kind_and_id() {
    let (_, b2b) = example_source("b2b");
    let changed = b2b.replacen("points = 5", "points = 7", 1);
    let changes = diff_models(&b2b, &changed).unwrap();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert!(
        matches!(&changes[0], RuleChange::Changed { fields, .. } if fields == &["points: 5 -> 7"])
    );
}

#[test]
fn outcomes_are_kept_in_order() {
    use leadscore_core::time::Timestamp;
    use leadscore_store::Outcome;
    for (mut store, _guard) in backends() {
        let outcomes = vec![
            Outcome {
                contact_id: "a".into(),
                outcome: "won".into(),
                value: Some(10.5),
                at: Timestamp::from_seconds(1_700_000_000),
            },
            Outcome {
                contact_id: "b".into(),
                outcome: "lost".into(),
                value: None,
                at: Timestamp::from_seconds(1_700_000_100),
            },
        ];
        assert_eq!(store.add_outcomes(&outcomes).unwrap().added, 2);
        assert_eq!(store.outcomes().unwrap(), outcomes);
        // Equal outcomes (also within one call) are recorded once; another
        // value, time or outcome is another outcome.
        let mut again = outcomes.clone();
        again.push(outcomes[1].clone());
        let mut other = outcomes[1].clone();
        other.value = Some(1.0);
        again.push(other.clone());
        let report = store.add_outcomes(&again).unwrap();
        assert_eq!((report.added, report.duplicates), (1, 3));
        let mut later = outcomes[0].clone();
        later.at = Timestamp::from_seconds(1_700_000_001);
        let mut lost = outcomes[0].clone();
        lost.outcome = "lost".into();
        assert_eq!(
            store
                .add_outcomes(&[later.clone(), lost.clone(), later.clone()])
                .unwrap()
                .added,
            2
        );
        let mut all = outcomes.clone();
        all.extend([other, later, lost]);
        assert_eq!(store.outcomes().unwrap(), all);
    }
}

#[test]
fn a_challenger_is_attached_detached_and_must_exist() {
    for (mut store, _guard) in backends() {
        assert!(store.challenger().unwrap().is_none());
        let (file, source) = example_source("email");
        let v = store.add_model(&file, &source).unwrap().version;
        store.set_challenger(Some(v)).unwrap();
        let (version, model) = store.challenger().unwrap().unwrap();
        assert_eq!((version, model.name.as_str()), (v, "email"));
        assert!(
            store.set_challenger(Some(v + 100)).is_err(),
            "unknown version"
        );
        assert_eq!(
            store.challenger().unwrap().unwrap().0,
            v,
            "unchanged by the error"
        );
        store.set_challenger(None).unwrap();
        assert!(store.challenger().unwrap().is_none());
    }
}

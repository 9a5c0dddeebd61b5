//! The leaderboard and the segment summary: as stored (each contact's
//! score as of its latest event), as of a time, when decay and inactivity
//! have moved scores since, and rewound to a time in the middle of the log
//! (the contacts as they were then). Pages, filters and order are
//! checked against the batch scores at that time, filtered and sorted here.

use leadscore_core::event::Message;
use leadscore_core::model::Model;
use leadscore_core::score::{Score, Status};
use leadscore_core::time::{Timestamp, NANOS_PER_SECOND};
use leadscore_store::{ScoreQuery, Store, SummaryBuilder};

use crate::harness::*;

/// `examples/b2b.toml` with neither decay nor inactivity: its scores do
/// not move between events.
fn still_b2b() -> String {
    let (_, source) = example_source("b2b");
    let source = source.replace(r#"half_life = "60d""#, r#"half_life = "none""#);
    let start = source
        .find("[[inactivity]]")
        .expect("b2b has an inactivity rule");
    let end = start + source[start..].find("\n# ---").expect("a section follows");
    format!("{}{}", &source[..start], &source[end..])
}

/// `examples/b2b.toml` with a fit rule on `days_since()`: a scan then
/// reads traits and evaluates fit and exclusion at the listing's time.
fn timed_b2b() -> String {
    let (_, source) = example_source("b2b");
    format!("{source}\n[[fit]]\nid = \"recent-form\"\nwhen = 'days_since(\"Form Submitted\") < 30.0'\npoints = 5\n")
}

/// Every contact with the score a listing as of `at` must show: rewound,
/// the batch scores at `at` (the contacts as they were then); otherwise
/// each live contact with the stored score for `None` and for contacts
/// with events after `at`, else the batch score at `at`.
fn expected(
    store: &dyn Store,
    model: &Model,
    messages: &[Message],
    at: Option<Timestamp>,
    rewind: bool,
) -> Vec<(String, Score)> {
    let batch: std::collections::BTreeMap<String, Score> = match at {
        Some(t) => batch(model, messages, t).into_iter().collect(),
        None => Default::default(),
    };
    if rewind {
        return batch.into_iter().collect();
    }
    let rows = store.contacts(None, 10_000).unwrap();
    assert_eq!(rows.len() as u64, store.stats().unwrap().contacts);
    rows.into_iter()
        .map(|r| {
            let score = match at {
                Some(t) if r.last_event.is_some_and(|last| last <= t) => batch[&r.id].clone(),
                _ => r.score,
            };
            (r.id, score)
        })
        .collect()
}

/// `rows` ordered as a leaderboard: by score (highest first unless
/// `ascending`), then by id.
fn ordered(mut rows: Vec<(String, Score)>, ascending: bool) -> Vec<(String, Score)> {
    rows.sort_by(|a, b| {
        let by_score = a.1.score.partial_cmp(&b.1.score).unwrap();
        let by_score = if ascending {
            by_score
        } else {
            by_score.reverse()
        };
        by_score.then(a.0.cmp(&b.0))
    });
    rows
}

fn listed(store: &dyn Store, query: &ScoreQuery) -> Vec<(String, Score)> {
    let rows = store.scores(query).unwrap();
    rows.into_iter().map(|r| (r.id, r.score)).collect()
}

#[test]
fn leaderboards_and_segments_as_stored_and_as_of_a_time() {
    let (messages, end) = generated(60, 90, 41);
    let (b2b_file, b2b) = example_source("b2b");
    let (still, timed) = (still_b2b(), timed_b2b());
    let day = 86_400 * NANOS_PER_SECOND;
    let mut times: Vec<Timestamp> = messages.iter().map(|m| m.timestamp).collect();
    times.sort_unstable();
    let middle = times[times.len() / 2];
    for (file, source, moves, timed) in [
        (b2b_file.as_str(), &b2b, true, false),
        ("still.toml", &still, false, false),
        ("timed.toml", &timed, true, true),
    ] {
        let model = Model::from_toml(file, source).unwrap();
        // Every way of answering is exercised: the index, a scan with the
        // stored fit, a scan that evaluates fit at the listing's time.
        assert_eq!(model.moves_with_time(), moves, "{file}");
        assert_eq!(model.contact_rules_use_time(), timed, "{file}");
        for (mut store, _guard) in backends() {
            activate_source(store.as_mut(), file, source);
            store.ingest(incoming(&messages)).unwrap();
            let store = store.as_ref();
            let later = Timestamp(end.0 + 45 * day);
            for (at, rewind) in [
                (None, false),
                (Some(middle), false),
                (Some(middle), true),
                (Some(later), false),
                (Some(later), true),
            ] {
                let all = expected(store, &model, &messages, at, rewind);
                let context = format!("{file}, as of {at:?}, rewind {rewind}");
                // Pages of 7, highest first: every contact once, in order.
                let mut query = ScoreQuery {
                    at,
                    rewind,
                    limit: 7,
                    ..ScoreQuery::default()
                };
                let mut seen = Vec::new();
                loop {
                    let page = listed(store, &query);
                    let Some((id, score)) = page.last() else {
                        break;
                    };
                    query.after = Some((score.score, id.clone()));
                    seen.extend(page);
                    assert!(
                        seen.len() <= all.len(),
                        "{context}: a page repeats contacts"
                    );
                }
                assert_eq!(seen, ordered(all.clone(), false), "{context}");
                // Filters: the top contact's tier, at least the score of
                // the middle contact of that tier (so a contact sits on
                // the bound).
                let top = &seen[0].1;
                let in_tier: Vec<f64> = seen
                    .iter()
                    .filter(|(_, s)| s.tier == top.tier)
                    .map(|(_, s)| s.score)
                    .collect();
                let floor = in_tier[in_tier.len() / 2];
                let filtered = ScoreQuery {
                    at,
                    rewind,
                    tier: Some(top.tier.to_string()),
                    status: Some(Status::Active),
                    min: Some(floor),
                    limit: 1_000,
                    ..ScoreQuery::default()
                };
                let wanted: Vec<_> = all
                    .iter()
                    .filter(|(_, s)| {
                        s.tier == top.tier && s.status == Status::Active && s.score >= floor
                    })
                    .cloned()
                    .collect();
                assert!(!wanted.is_empty(), "{context}");
                assert_eq!(
                    listed(store, &filtered),
                    ordered(wanted, false),
                    "{context}"
                );
                // Lowest first: the five lowest, and all at most the
                // middle contact's score.
                let median = seen[seen.len() / 2].1.score;
                for (max, limit) in [(None, 5), (Some(median), 1_000)] {
                    let low = ScoreQuery {
                        at,
                        rewind,
                        ascending: true,
                        max,
                        limit,
                        ..ScoreQuery::default()
                    };
                    let wanted: Vec<_> = all
                        .iter()
                        .filter(|(_, s)| max.is_none_or(|max| s.score <= max))
                        .cloned()
                        .collect();
                    let mut wanted = ordered(wanted, true);
                    wanted.truncate(limit);
                    assert_eq!(listed(store, &low), wanted, "{context}");
                }
                // The segment summary counts the same scores.
                let mut wanted = SummaryBuilder::new(Some(&model));
                for (_, s) in &all {
                    wanted.add(&s.tier, &s.grade, s.status, s.score);
                }
                assert_eq!(
                    store.summary(at, rewind).unwrap(),
                    wanted.finish(at),
                    "{context}"
                );
            }
        }
    }
}

/// A scan reads live rows a thousand at a time and scores each step on
/// other threads while it reads the next: over several steps every
/// contact is listed and counted once, as the batch scores say.
#[test]
fn a_scan_over_several_steps_lists_every_contact_once() {
    let (messages, end) = generated(2_300, 2, 3);
    let (file, source) = example_source("b2b");
    let model = Model::from_toml(&file, &source).unwrap();
    let mut times: Vec<Timestamp> = messages.iter().map(|m| m.timestamp).collect();
    times.sort_unstable();
    // Late enough that most contacts exist, early enough that many have
    // events after it (rewound from their logs).
    let late = times[times.len() * 9 / 10];
    let day = 86_400 * NANOS_PER_SECOND;
    for (mut store, _guard) in backends() {
        activate_source(store.as_mut(), &file, &source);
        store.ingest(incoming(&messages)).unwrap();
        let store = store.as_ref();
        for (at, rewind) in [(late, true), (Timestamp(end.0 + 30 * day), false)] {
            let all = expected(store, &model, &messages, Some(at), rewind);
            let context = format!("as of {at:?}, rewind {rewind}");
            assert!(all.len() > 2_000, "{context}: {} contacts", all.len());
            let query = ScoreQuery {
                at: Some(at),
                rewind,
                limit: 10_000,
                ..ScoreQuery::default()
            };
            assert_eq!(
                listed(store, &query),
                ordered(all.clone(), false),
                "{context}"
            );
            let mut wanted = SummaryBuilder::new(Some(&model));
            for (_, s) in &all {
                wanted.add(&s.tier, &s.grade, s.status, s.score);
            }
            assert_eq!(
                store.summary(Some(at), rewind).unwrap(),
                wanted.finish(Some(at)),
                "{context}"
            );
        }
    }
}

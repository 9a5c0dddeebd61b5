//! Listings of the past kept for their next pages.
//!
//! A leaderboard as of a past time scores every contact again, so each of
//! its pages used to cost the whole computation. The first page now keeps
//! the whole listing (in its order) under a snapshot number that the
//! cursor carries; the next pages are cut from it while it is kept. The
//! pages of one listing are therefore one consistent computation, and a
//! listing asked for without a cursor is always computed afresh.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leadscore_store::{Listed, ScoreQuery};

/// How long a listing is kept after it was computed.
const KEEP: Duration = Duration::from_secs(10 * 60);

/// Rows kept at most over all listings (a few hundred bytes each); a
/// listing larger than this is not kept, and its pages are computed each.
const ROWS: usize = 400_000;

/// Listings kept at most.
const LISTINGS: usize = 4;

/// The listings of the past computed recently.
pub(crate) struct PastListings {
    next: AtomicU64,
    /// Counts [`PastListings::clear`]s: a listing computed before one is
    /// not kept after it.
    cleared: AtomicU64,
    kept: Mutex<Vec<Kept>>,
    /// [`ROWS`] but in tests.
    rows: usize,
}

impl Default for PastListings {
    fn default() -> PastListings {
        PastListings {
            next: AtomicU64::new(0),
            cleared: AtomicU64::new(0),
            kept: Mutex::new(Vec::new()),
            rows: ROWS,
        }
    }
}

struct Kept {
    snapshot: u64,
    made: Instant,
    /// The active model version it was scored under.
    version: Option<u32>,
    /// The query without its cursor and limit.
    query: ScoreQuery,
    rows: Arc<Vec<Listed>>,
}

/// `query` without what differs from one page to the next.
fn listing(query: &ScoreQuery) -> ScoreQuery {
    ScoreQuery {
        after: None,
        limit: 0,
        ..query.clone()
    }
}

impl PastListings {
    /// The rows of listing `snapshot` if it is still kept and was made for
    /// `query` (its cursor and limit aside) under model `version`.
    pub(crate) fn get(
        &self,
        snapshot: u64,
        query: &ScoreQuery,
        version: Option<u32>,
    ) -> Option<Arc<Vec<Listed>>> {
        let mut kept = self.kept.lock().ok()?;
        kept.retain(|k| k.made.elapsed() < KEEP);
        let wanted = listing(query);
        kept.iter()
            .find(|k| k.snapshot == snapshot && k.version == version && k.query == wanted)
            .map(|k| k.rows.clone())
    }

    /// The most rows a kept listing may hold.
    pub(crate) fn capacity(&self) -> usize {
        self.rows
    }

    /// The mark to give [`PastListings::put`] for a listing computed from
    /// now on.
    pub(crate) fn mark(&self) -> u64 {
        self.cleared.load(Ordering::SeqCst)
    }

    /// Keeps a listing (`rows`: every row of `query` from its cursor on,
    /// in its order; later pages only read further on) whose computation
    /// began at `mark` and returns its snapshot number, or `None` when it
    /// is too large to keep or the listings were cleared since.
    pub(crate) fn put(
        &self,
        query: &ScoreQuery,
        version: Option<u32>,
        rows: Arc<Vec<Listed>>,
        mark: u64,
    ) -> Option<u64> {
        if rows.len() > self.rows {
            return None;
        }
        let mut kept = self.kept.lock().ok()?;
        if self.cleared.load(Ordering::SeqCst) != mark {
            return None;
        }
        kept.retain(|k| k.made.elapsed() < KEEP);
        let snapshot = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        kept.push(Kept {
            snapshot,
            made: Instant::now(),
            version,
            query: listing(query),
            rows,
        });
        // The oldest go first.
        while kept.len() > LISTINGS || kept.iter().map(|k| k.rows.len()).sum::<usize>() > self.rows
        {
            kept.remove(0);
        }
        Some(snapshot)
    }

    /// Forgets every listing (a contact was erased: no page may show it).
    pub(crate) fn clear(&self) {
        if let Ok(mut kept) = self.kept.lock() {
            self.cleared.fetch_add(1, Ordering::SeqCst);
            kept.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadscore_core::score::{Score, Status};
    use leadscore_core::time::Timestamp;

    fn rows(n: usize) -> Arc<Vec<Listed>> {
        Arc::new(
            (0..n)
                .map(|i| Listed {
                    id: format!("c{i:03}"),
                    last_event: None,
                    score: Score {
                        score: (n - i) as f64,
                        raw: (n - i) as f64,
                        fit: 0.0,
                        engagement: (n - i) as f64,
                        tier: Default::default(),
                        grade: Default::default(),
                        stage: Default::default(),
                        status: Status::Active,
                        reasons: Vec::new(),
                    },
                })
                .collect(),
        )
    }

    #[test]
    fn a_listing_is_found_by_snapshot_query_and_version_only() {
        let past = PastListings::default();
        let query = ScoreQuery {
            at: Some(Timestamp::from_seconds(1_700_000_000)),
            rewind: true,
            limit: 10,
            ..ScoreQuery::default()
        };
        let id = past.put(&query, Some(1), rows(30), past.mark()).unwrap();
        let next_page = ScoreQuery {
            after: Some((20.0, "c010".into())),
            limit: 5,
            ..query.clone()
        };
        let found = past.get(id, &next_page, Some(1)).unwrap();
        assert_eq!(next_page.page(&found)[0].id, "c011");
        assert!(past.get(id, &query, Some(2)).is_none(), "another model");
        assert!(
            past.get(id + 1, &query, Some(1)).is_none(),
            "another snapshot"
        );
        let other = ScoreQuery {
            tier: Some("hot".into()),
            ..query.clone()
        };
        assert!(past.get(id, &other, Some(1)).is_none(), "other filters");
        let mark = past.mark();
        past.clear();
        assert!(past.get(id, &query, Some(1)).is_none(), "cleared");
        assert!(
            past.put(&query, Some(1), rows(3), mark).is_none(),
            "computed before the clear"
        );
    }

    #[test]
    fn the_oldest_listings_go_and_large_ones_are_not_kept() {
        let past = PastListings {
            rows: 12,
            ..PastListings::default()
        };
        let query = ScoreQuery {
            rewind: true,
            ..ScoreQuery::default()
        };
        let ids: Vec<u64> = (0..LISTINGS + 1)
            .map(|_| past.put(&query, None, rows(2), 0).unwrap())
            .collect();
        assert!(
            past.get(ids[0], &query, None).is_none(),
            "more than {LISTINGS}"
        );
        assert!(ids[1..]
            .iter()
            .all(|&id| past.get(id, &query, None).is_some()));
        assert!(past.put(&query, None, rows(13), 0).is_none(), "too large");
        let big = past.put(&query, None, rows(7), 0).unwrap();
        assert!(past.get(big, &query, None).is_some());
        let kept = ids
            .iter()
            .filter(|&&id| past.get(id, &query, None).is_some());
        assert_eq!(kept.count(), 2, "12 rows at most: 7 + 2 + 2");
    }
}

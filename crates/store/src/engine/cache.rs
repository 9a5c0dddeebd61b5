//! The writer's cache of live rows between batches.

use leadscore_core::fold::ContactState;
use leadscore_core::triggers::TriggerState;
use rustc_hash::FxHashMap;
use smol_str::SmolStr;

use super::Stored;
use crate::ScoreFields;

/// Contacts' live state as the writer's last batches left it, so that the
/// next batch touching them neither reads nor decodes their rows again.
///
/// Only sound while the connection that keeps it is the only writer of live
/// rows: its owner empties it whenever anything else may have written
/// ([`LiveCache::clear`]), and hands batches only what they committed
/// ([`LiveCache::committed`]). A batch takes the entries it touches out and
/// puts back, on commit, what it wrote; on any error the entries it took
/// are simply gone (the rows are read again).
pub(crate) struct LiveCache {
    /// Contacts per generation: the cache keeps at least the last this
    /// many contacts written, and at most twice as many (and a batch).
    generation: usize,
    /// The model version the entries are under.
    pub(super) version: u32,
    /// Written since the generation began (boxed: a state is large, and
    /// the maps move their values as they grow).
    pub(super) young: FxHashMap<SmolStr, Box<Cached>>,
    /// Written in the generation before, and not touched since.
    pub(super) old: FxHashMap<SmolStr, Box<Cached>>,
    /// Written by the batch in progress.
    pub(super) pending: Vec<(SmolStr, Box<Cached>)>,
    /// The canonical contact of ids the last batches met (at most four
    /// generations' worth, then started over).
    pub(super) ids: FxHashMap<SmolStr, SmolStr>,
    /// The canonical contact of every id the batch in progress resolved
    /// from the store or moved, as it left them.
    pub(super) pending_ids: FxHashMap<SmolStr, SmolStr>,
    /// The table of the generation last dropped, emptied ([`drop_elsewhere`]).
    recycled: Recycled,
}

/// What a live row decodes to.
pub(super) struct Cached {
    pub(super) state: ContactState,
    pub(super) triggers: TriggerState,
    pub(super) current: ScoreFields,
    /// What the backend stored with the row, when it said.
    pub(super) stored: Option<Stored>,
}

/// An entry's box, its value moved out, for the contact's next entry
/// ([`unbox`]).
pub(super) type Spare = Box<std::mem::MaybeUninit<Cached>>;

/// Moves a taken entry's value out of its box and keeps the box, for the
/// entry the batch puts back ([`Spare`], `Box::write`): freeing each box
/// when taken and allocating another when put back took 5.2 % of the
/// server's writer (docs/performance.md, session 44).
pub(super) fn unbox(cached: Box<Cached>) -> (Cached, Spare) {
    let raw = Box::into_raw(cached);
    // SAFETY: `raw` comes from a `Box<Cached>`, so it is valid, aligned
    // and initialised; the value is read out once, and the allocation is
    // then owned by a box of `MaybeUninit<Cached>`, which has `Cached`'s
    // layout and drops nothing of the value moved out.
    unsafe {
        let value = raw.read();
        (value, Box::from_raw(raw.cast()))
    }
}

/// [`LiveCache::new`]'s `generation` by default: with the live rows of
/// the last 50,000 contacts written, up to 100,000, about 1.3–2.4 KB each
/// with `examples/b2b.toml` (130–240 MB at most). Contacts written again
/// within that many others skip reading, decoding and (SQLite) the read
/// of their row's ledger positions: a fifth of the writer's instructions
/// per event (docs/performance.md, session 22).
pub const DEFAULT_LIVE_CONTACTS: usize = 50_000;

/// A generation's map.
type Generation = FxHashMap<SmolStr, Box<Cached>>;

/// Where the thread that drops a generation leaves its emptied table.
type Recycled = std::sync::Arc<std::sync::Mutex<Option<Generation>>>;

/// Drops a generation's entries on a thread of its own: its 16k states
/// hold many allocations each, and freeing them took the writer 13 ms,
/// added to the commit that filled the generation (every half second at
/// 30k events/s). The emptied table, its memory kept, goes to `recycled`
/// for the next generation: a fresh one of 100,000 contacts is 4 MiB,
/// whose first touches faulted in huge pages that the kernel zeroed while
/// the writer waited, 5 ms at every generation (docs/performance.md,
/// session 31). Should the thread not start, the generation is dropped
/// here.
fn drop_elsewhere(mut generation: Generation, recycled: &Recycled) {
    let recycled = std::sync::Arc::clone(recycled);
    let _ = std::thread::Builder::new()
        .name("leadscore-drop".into())
        .spawn(move || {
            generation.clear();
            *recycled.lock().unwrap_or_else(|e| e.into_inner()) = Some(generation);
        });
}

impl LiveCache {
    /// A cache that keeps at least the last `generation` contacts written
    /// (at least one).
    pub fn new(generation: usize) -> LiveCache {
        LiveCache {
            generation: generation.max(1),
            version: 0,
            young: FxHashMap::default(),
            old: FxHashMap::default(),
            pending: Vec::new(),
            ids: FxHashMap::default(),
            pending_ids: FxHashMap::default(),
            recycled: Recycled::default(),
        }
    }

    /// Forgets everything (another writer may have changed any row).
    pub fn clear(&mut self) {
        self.young.clear();
        self.old.clear();
        self.pending.clear();
        self.ids.clear();
        self.pending_ids.clear();
    }

    /// The batch's writes are committed: they are what the rows now hold.
    pub fn committed(&mut self) {
        // Where they go, looked up together first: the lookups' cache
        // misses overlap, where the inserts' would not ([`crate::prefetch`]).
        for (contact, _) in &self.pending {
            std::hint::black_box(self.young.get(contact));
        }
        for (contact, cached) in self.pending.drain(..) {
            self.young.insert(contact, cached);
        }
        if self.ids.len() + self.pending_ids.len() > 4 * self.generation {
            self.ids.clear();
        }
        self.ids.extend(self.pending_ids.drain());
        if self.young.len() >= self.generation {
            std::mem::swap(&mut self.young, &mut self.old);
            let fresh = self.fresh_generation();
            drop_elsewhere(std::mem::replace(&mut self.young, fresh), &self.recycled);
        }
    }

    /// An empty map for a generation: the table of the last one dropped if
    /// it is back (emptied by [`drop_elsewhere`]), else a new one.
    fn fresh_generation(&self) -> Generation {
        self.recycled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_else(|| {
                FxHashMap::with_capacity_and_hasher(self.generation, Default::default())
            })
    }

    /// Takes `contact` out (a batch is about to change it).
    pub(super) fn take(&mut self, contact: &str) -> Option<Box<Cached>> {
        self.young
            .remove(contact)
            .or_else(|| self.old.remove(contact))
    }

    /// `contact`'s entry, where it is, left in place.
    fn get(&self, contact: &str) -> Option<&Cached> {
        self.young
            .get(contact)
            .or_else(|| self.old.get(contact))
            .map(|cached| &**cached)
    }

    /// Asks for the buffers of `contact`'s cached state (its rules' states,
    /// its triggers'), which its entry, asked for by [`Self::prefetch`],
    /// says where they are: called a message ahead of the one that reads
    /// them, when the entry has arrived.
    pub(super) fn prefetch_state(&self, contact: &str) {
        if let Some(cached) = self.get(contact) {
            let (state, triggers) = (cached.state.buffers(), cached.triggers.buffers());
            for (start, bytes) in state.into_iter().chain(triggers) {
                crate::prefetch::prefetch_bytes(start, bytes);
            }
        }
    }

    /// Asks for the entries of `contacts` ahead of the batch that will
    /// take them ([`crate::prefetch`]).
    pub(super) fn prefetch<'a>(&self, contacts: impl Iterator<Item = &'a str>) {
        for contact in contacts {
            if let Some(cached) = self.get(contact) {
                crate::prefetch::prefetch::<Cached>(cached);
            }
        }
    }

    /// The id under which the cache holds `contact`, if it does.
    pub fn held(&self, contact: &str) -> Option<&SmolStr> {
        self.young
            .get_key_value(contact)
            .or_else(|| self.old.get_key_value(contact))
            .map(|(held, _)| held)
    }

    /// Starts a batch under `version`.
    pub(super) fn begin(&mut self, version: u32) {
        self.pending.clear();
        self.pending_ids.clear();
        if self.version != version {
            self.clear();
            self.version = version;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadscore_core::model::Model;

    /// A new contact's entry.
    fn cached(model: &Model) -> Box<Cached> {
        Box::new(Cached {
            state: ContactState::new(model, None),
            triggers: TriggerState::new(model),
            current: ScoreFields {
                score: 0.0,
                tier: Default::default(),
                grade: Default::default(),
                stage: Default::default(),
                status: leadscore_core::score::Status::Active,
            },
            stored: None,
        })
    }

    /// An entry's value moved out of its box is whole and dropped once;
    /// the box takes the next value.
    #[test]
    fn an_unboxed_entry_leaves_its_box_for_the_next() {
        let model = Model::from_toml("m.toml", "[model]\nname = \"m\"\n").unwrap();
        let mut entry = cached(&model);
        entry.current.score = 7.0;
        let traits = std::sync::Arc::clone(entry.state.shared_traits());
        let before = std::sync::Arc::strong_count(&traits);
        let (value, spare) = unbox(entry);
        assert_eq!(value.current.score, 7.0);
        drop(spare); // frees the allocation, drops nothing of the value
        assert_eq!(std::sync::Arc::strong_count(&traits), before);
        drop(value);
        assert_eq!(std::sync::Arc::strong_count(&traits), before - 1);
        let (mut value, spare) = unbox(cached(&model));
        value.current.score = 9.0;
        let spare_address = &*spare as *const std::mem::MaybeUninit<Cached> as *const Cached;
        let again = Box::write(spare, value);
        assert_eq!(&*again as *const Cached, spare_address, "the same box");
        assert_eq!(again.current.score, 9.0);
    }

    /// The cache never holds more than two generations and a batch, and
    /// keeps what the latest batches wrote.
    #[test]
    fn the_live_cache_stays_bounded() {
        let model = Model::from_toml("m.toml", "[model]\nname = \"m\"\n").unwrap();
        let entry = || cached(&model);
        const GENERATION: usize = 16_000;
        let mut cache = LiveCache::new(GENERATION);
        cache.begin(1);
        for batch in 0..100 {
            for i in 0..1_000 {
                cache.pending.push((format!("{batch}-{i}").into(), entry()));
            }
            cache.committed();
            assert!(cache.young.len() + cache.old.len() <= 2 * GENERATION + 1_000);
            assert!(cache.held(&format!("{batch}-0")).is_some() && cache.pending.is_empty());
            if batch >= 20 {
                assert!(
                    cache.held(&format!("{}-999", batch - 15)).is_some(),
                    "the generation before"
                );
                assert!(
                    cache.held(&format!("{}-0", batch - 40)).is_none(),
                    "older ones dropped"
                );
            }
        }
        assert!(cache.take("99-5").is_some() && cache.held("99-5").is_none());
        // A dropped generation's table comes back, empty, for the next.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while cache.recycled.lock().unwrap().is_none() {
            assert!(std::time::Instant::now() < deadline, "no table came back");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let table = cache
            .recycled
            .lock()
            .unwrap()
            .as_ref()
            .map(|t| t.capacity());
        assert!(table >= Some(GENERATION));
        let fresh = cache.fresh_generation();
        assert!(fresh.is_empty() && fresh.capacity() >= GENERATION);
        assert!(cache.recycled.lock().unwrap().is_none(), "taken");
        cache.begin(2);
        assert!(
            cache.held("99-6").is_none(),
            "another version's states are dropped"
        );
    }

    /// A lookup by text finds ids of any length, inline (up to 23 bytes)
    /// or not, and hands back the id the cache holds, not a copy.
    #[test]
    fn ids_of_any_length_are_found_and_shared() {
        let model = Model::from_toml("m.toml", "[model]\nname = \"m\"\n").unwrap();
        let mut cache = LiveCache::new(16);
        cache.begin(1);
        let short = SmolStr::new("u-1");
        let long = SmolStr::new("3f1c9a52-7b1e-4c55-9d2a-0c8e2f6b1a44@example.com");
        for id in [&short, &long] {
            cache.pending.push((id.clone(), cached(&model)));
        }
        cache.committed();
        let held = cache.held(&long).expect("a long id is found by its text");
        assert_eq!(held.as_ptr(), long.as_ptr(), "the id held, shared");
        assert_eq!(cache.held(&short), Some(&short));
        assert!(cache.held("u-2").is_none() && cache.held(&long[..40]).is_none());
        assert!(cache.take(&long).is_some() && cache.held(&long).is_none());
    }
}

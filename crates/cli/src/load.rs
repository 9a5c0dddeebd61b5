//! Loading inputs for commands: models, event files, contacts, as-of time.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use leadscore_core::batch::{contacts_as_of, contacts_as_of_chunks, ContactLog};
use leadscore_core::event::Message;
use leadscore_core::model::Model;
use leadscore_core::time::Timestamp;
use leadscore_input::{read_contacts, read_message_chunks, ReadOptions, Skipped};
use serde_json::{Map, Value};

use crate::args::Input;
use crate::progress;

/// Reads and compiles a model; errors list every problem with its place.
pub fn model(path: &Path) -> Result<Model> {
    let source = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read model {}", path.display()))?;
    Model::from_toml(&path.display().to_string(), &source)
        .map_err(|e| anyhow::anyhow!("invalid model\n{e}"))
}

/// Parses `--as-of`: RFC 3339, or a plain date meaning midnight UTC.
pub fn as_of(text: Option<&str>) -> Result<Timestamp> {
    match text {
        None => Ok(leadscore_store::now()),
        Some(text) => {
            Timestamp::parse_date_or_time(text).map_err(|e| anyhow::anyhow!("--as-of: {e}"))
        }
    }
}

/// An events file (or stdin for `-`): reader, name for errors, size (0 if unknown).
pub fn open_events(path: &Path) -> Result<(Box<dyn Read>, String, u64)> {
    if path == Path::new("-") {
        return Ok((Box::new(std::io::stdin().lock()), "<stdin>".to_string(), 0));
    }
    let file =
        File::open(path).with_context(|| format!("cannot open events {}", path.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    Ok((Box::new(file), path.display().to_string(), size))
}

/// Reads every event file (or stdin for `-`), in parsed chunks.
pub fn messages(
    paths: &[impl AsRef<Path>],
    skip_invalid: bool,
) -> Result<(Vec<Vec<Message>>, Skipped)> {
    let options = ReadOptions {
        skip_invalid,
        ..ReadOptions::default()
    };
    let mut all = Vec::new();
    let mut skipped = Skipped::default();
    for path in paths {
        let (reader, name, size) = open_events(path.as_ref())?;
        let bar = progress::bytes(size, "reading");
        let (messages, more) = read_message_chunks(
            BufReader::with_capacity(1 << 20, reader),
            &name,
            &options,
            |n| bar.set_position(n),
        )?;
        bar.finish_and_clear();
        all.extend(messages);
        skipped.count += more.count;
        skipped.first.extend(more.first);
    }
    Ok((all, skipped))
}

/// Prints the skipped-message report on stderr.
pub fn report_skipped(skipped: &Skipped) {
    if skipped.count == 0 {
        return;
    }
    eprintln!("skipped {} invalid message(s):", skipped.count);
    for e in &skipped.first {
        eprintln!("  {e}");
    }
    if skipped.count as usize > skipped.first.len() {
        eprintln!(
            "  … and {} more",
            skipped.count as usize - skipped.first.len()
        );
    }
}

/// Model, contacts grouped as of t, and the as-of time.
pub struct Loaded {
    pub model: Arc<Model>,
    pub contacts: Vec<ContactLog>,
    pub as_of: Timestamp,
    pub skipped: Skipped,
}

/// An open store.
pub type StoreBox = Box<dyn leadscore_store::Store>;

/// The model (`--model`, else the store's active one) and the store, opened
/// when the command line leaves out the model or the log.
pub fn model_and_store(input: &Input, db: &Path) -> Result<(Arc<Model>, Option<StoreBox>)> {
    let store = if input.model.is_none() || input.log.events.is_empty() {
        Some(crate::store::open_existing(db)?)
    } else {
        None
    };
    let model = match (&input.model, &store) {
        (Some(path), _) => Arc::new(model(path)?),
        (None, Some(store)) => {
            store
                .active_model()?
                .context("the store has no active model: pass --model or run `leadscore model add FILE --activate`")?
                .1
        }
        (None, None) => unreachable!("a store is opened when --model is absent"),
    };
    Ok((model, store))
}

/// The rows of `--contacts`, in file order (none without it).
pub fn contacts_file(input: &Input) -> Result<Vec<(String, Map<String, Value>)>> {
    contacts_rows(input.log.contacts.as_deref(), &input.log.id_column)
}

/// The rows of a contacts file, in file order (none without one).
pub fn contacts_rows(
    path: Option<&Path>,
    id_column: &str,
) -> Result<Vec<(String, Map<String, Value>)>> {
    let Some(path) = path else {
        return Ok(Vec::new());
    };
    let file =
        File::open(path).with_context(|| format!("cannot open contacts {}", path.display()))?;
    Ok(read_contacts(
        BufReader::new(file),
        &path.display().to_string(),
        id_column,
    )?)
}

/// Everything a command over a log needs, held at once: from files, or
/// from the store (its log and its active model) for what the command line
/// leaves out. With `only`, a store's log is read for that contact alone
/// (all its ids: a superset of what it was at any earlier time, so
/// grouping as of t is still exact); commands over every contact of a
/// store read it with [`store_blocks`] instead.
pub fn input(input: &Input, db: &Path, only: Option<&str>) -> Result<Loaded> {
    let as_of = as_of(input.as_of.as_deref())?;
    let (model, store) = model_and_store(input, db)?;
    let (messages, skipped) = match &store {
        Some(store) if input.log.events.is_empty() => {
            let messages = match only {
                Some(id) => store
                    .contact_messages(id)?
                    .map(|log| log.messages)
                    .unwrap_or_default(),
                None => {
                    let mut all = Vec::new();
                    store.each_log(&mut |log| all.extend(log.messages))?;
                    all
                }
            };
            (vec![messages], Skipped::default())
        }
        _ => messages(&input.log.events, input.skip_invalid)?,
    };
    let contacts_file = contacts_file(input)?;
    if messages.is_empty() && contacts_file.is_empty() && skipped.count > 0 {
        bail!("no valid message in the input");
    }
    let contacts = contacts_as_of_chunks(messages, contacts_file, as_of);
    Ok(Loaded {
        model,
        contacts,
        as_of,
        skipped,
    })
}

/// Contacts handed over per block by [`store_blocks`].
const BLOCK: usize = 1_024;

/// Every contact of the store's log as of `--as-of`, in blocks, read one
/// contact's log at a time (`Store::each_log`, one snapshot) and grouped
/// again as of that time: a contact's ids now are a superset of its ids
/// then, so the contacts come out exactly as from the whole log (not in id
/// order). A `--contacts` file applies to the contacts holding its ids, in
/// file order; its other rows become contacts of their own. Memory holds
/// one block of logs, never the whole log. `each` gets the model, the time
/// and a block; the model is returned.
pub fn store_blocks(
    input: &Input,
    db: &Path,
    each: &mut dyn FnMut(&Model, Timestamp, Vec<ContactLog>),
) -> Result<Arc<Model>> {
    let t = as_of(input.as_of.as_deref())?;
    let (model, store) = model_and_store(input, db)?;
    let store = store.expect("a store is opened when --events is absent");
    blocks(store.as_ref(), contacts_file(input)?, t, &mut |block| {
        each(&model, t, block)
    })?;
    Ok(model)
}

/// [`store_blocks`] without a model: every contact of `store`'s log as of
/// `t`, with the rows of a contacts file, handed to `each` a block at a
/// time.
pub fn blocks(
    store: &dyn leadscore_store::Store,
    contacts_file: Vec<(String, Traits)>,
    t: Timestamp,
    each: &mut dyn FnMut(Vec<ContactLog>),
) -> Result<()> {
    let mut file = FileRows::new(contacts_file);
    let bar = progress::count("contacts");
    let mut block: Vec<ContactLog> = Vec::new();
    store.each_log(&mut |log| {
        let base = file.take(&log.ids);
        block.extend(contacts_as_of(log.messages, base, t));
        if block.len() >= BLOCK {
            bar.inc(block.len() as u64);
            each(std::mem::take(&mut block));
        }
    })?;
    block.extend(contacts_as_of(Vec::new(), file.rest(), t));
    bar.finish_and_clear();
    each(block);
    Ok(())
}

/// Contacts-file rows by id, each with its place in the file: rows for two
/// ids of one contact apply in file order, as when the whole log is
/// grouped at once.
struct FileRows(HashMap<String, Vec<(usize, Traits)>>);

/// A contact's traits from the contacts file.
type Traits = Map<String, Value>;

impl FileRows {
    fn new(rows: Vec<(String, Traits)>) -> FileRows {
        let mut by_id: HashMap<String, Vec<_>> = HashMap::new();
        for (i, (id, traits)) in rows.into_iter().enumerate() {
            by_id.entry(id).or_default().push((i, traits));
        }
        FileRows(by_id)
    }

    /// Removes the rows of `ids`, in file order.
    fn take(&mut self, ids: &[String]) -> Vec<(String, Traits)> {
        let mut rows: Vec<(usize, String, Traits)> = ids
            .iter()
            .filter_map(|id| self.0.remove_entry(id))
            .flat_map(|(id, rows)| rows.into_iter().map(move |(i, m)| (i, id.clone(), m)))
            .collect();
        rows.sort_by_key(|r| r.0);
        rows.into_iter().map(|(_, id, m)| (id, m)).collect()
    }

    /// Removes every row left, in file order.
    fn rest(&mut self) -> Vec<(String, Traits)> {
        let ids: Vec<String> = self.0.keys().cloned().collect();
        self.take(&ids)
    }
}

//! Command-line arguments (clap derive). Every subcommand has examples.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

mod groups;
mod input;
mod serve;

pub use groups::{KeysCommand, ModelCommand, OutboxCommand};
pub use input::{Format, Input, Log, OutcomeArgs};
pub use serve::{LogFormat, ServeSettings, DEFAULT_LISTEN};

/// leadscore: exact, explainable lead scoring for marketing automation.
#[derive(Debug, Parser)]
#[command(name = "leadscore", version, about, propagate_version = true)]
pub struct Args {
    /// The store (SQLite file), created on first import. Default: leadscore.db, and
    /// leadscore-demo.db for `demo` and `serve --demo`.
    #[arg(long, global = true, env = "LEADSCORE_DB")]
    pub db: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate scoring models; print a summary per model or errors with places, and with
    /// --events how each rule meets a real log.
    #[command(
        after_help = "With --events (or --store), each valid model is run over the log as of its latest message (or --as-of): the\ncontacts each rule gives points to or excludes, rules that never apply, event names no rule\nreads, and names a rule would read if spelt its way (`form submitted` for `Form Submitted`).\n\nExamples:\n  leadscore check examples/b2b.toml\n  leadscore check models/*.toml\n  leadscore check new.toml --events last-90-days.jsonl\n  leadscore check new.toml --store --as-of 2025-06-01"
    )]
    Check {
        /// Model files (TOML).
        #[arg(required = true)]
        models: Vec<PathBuf>,
        /// Segment JSON lines to run each model over (repeat; `-` reads stdin).
        #[arg(long, group = "log")]
        events: Vec<PathBuf>,
        /// Run each model over the store's log instead (one contact at a time).
        #[arg(long, group = "log")]
        store: bool,
        /// With --events or --store: the time rules are looked at (default: the log's latest
        /// message; for the store, now).
        #[arg(long, requires = "log")]
        as_of: Option<String>,
        /// With --events or --store: exit 1 when an event name or a key rules read is spelt
        /// another way in the log (for a deployment pipeline).
        #[arg(long, requires = "log")]
        strict: bool,
    },
    /// Score every contact of an event log as of a time (CSV or JSON lines on stdout).
    #[command(
        after_help = "Examples:\n  leadscore score --model examples/b2b.toml --events events.jsonl\n  leadscore score --as-of 2025-06-01          # the store's log, its active model\n  leadscore score --model m.toml --events events.jsonl --contacts crm.csv --as-of 2025-06-01T00:00:00Z\n  cat events.jsonl | leadscore score --model m.toml --events - --format jsonl --explain"
    )]
    Score {
        #[command(flatten)]
        input: Input,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Csv)]
        format: Format,
        /// Add each contributing rule (id, kind, points, awards, first/last award).
        #[arg(long)]
        explain: bool,
    },
    /// Show how one contact's score is made: every rule, the events behind it, decay, exclusions.
    #[command(
        after_help = "Examples:\n  leadscore explain --model examples/b2b.toml --events events.jsonl --contact u00000042\n  leadscore explain --model m.toml --events e.jsonl --contact alice@example.com --as-of 2025-03-01"
    )]
    Explain {
        #[command(flatten)]
        input: Input,
        /// Contact id (any of its ids: user id or anonymous id).
        #[arg(long)]
        contact: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print every trigger firing that would have happened between two dates (offline simulation).
    #[command(
        after_help = "Each trigger fires on every false-to-true edge of its condition, evaluated at each\nmessage, at each instant a time-based term changes (days_since thresholds, inactivity)\nand at the decay tick. Test a model's triggers on history before activating it.\n\nExamples:\n  leadscore triggers --model examples/b2b.toml --events events.jsonl --from 2025-03-01 --to 2025-06-01\n  leadscore triggers --model m.toml --events e.jsonl --to 2025-06-01 --format jsonl"
    )]
    Triggers {
        /// Scoring model (TOML). Default: the store's active model.
        #[arg(long)]
        model: Option<PathBuf>,
        #[command(flatten)]
        log: Log,
        /// Print firings from this time on (RFC 3339 or a date). Default: all.
        #[arg(long)]
        from: Option<String>,
        /// Simulate up to this time (RFC 3339 or a date). Default: now.
        #[arg(long)]
        to: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Csv)]
        format: Format,
        /// Skip invalid messages (reporting how many and why) instead of failing.
        #[arg(long)]
        skip_invalid: bool,
    },
    /// Write a synthetic but realistic event stream (deterministic per seed).
    #[command(
        after_help = "Examples:\n  leadscore generate --contacts 10000 --days 180 --out data/\n  leadscore generate --contacts 10000 --days 90 --end today --out live/\n  leadscore generate --contacts 100000 --days 365 --seed 7 --out /tmp/big"
    )]
    Generate {
        /// Number of contacts.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
        contacts: u64,
        /// Length of the period in days (from 2025-01-01, or ending at --end).
        #[arg(long, default_value_t = 180)]
        days: u32,
        /// Random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Directory to write events.jsonl and contacts.csv into.
        #[arg(long)]
        out: PathBuf,
        /// End the period at the start of this day (YYYY-MM-DD, UTC), or `today` for a log
        /// whose contacts are live now (the period then starts --days earlier).
        #[arg(long, value_name = "DATE|today", value_parser = crate::cmd::generate::parse_end)]
        end: Option<i64>,
    },
    /// Generate a small data set, score it with the e-commerce example, show the top contacts,
    /// and load it into an embedded store to explore.
    #[command(
        after_help = "Examples:\n  leadscore demo\n  leadscore demo --contacts 10000 --store /tmp/demo.db"
    )]
    Demo {
        /// Number of contacts to generate.
        #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
        contacts: u64,
        /// SQLite store to (re)create with the demo data (the same as --db; default
        /// leadscore-demo.db). Only a store the demo built is replaced.
        #[arg(long)]
        store: Option<PathBuf>,
    },
    /// Import Segment JSON lines (and a contacts CSV, sales outcomes) into the store; live scores follow.
    #[command(
        after_help = "Examples:\n  leadscore import events.jsonl\n  leadscore --db /data/ls.db import day1.jsonl day2.jsonl --skip-invalid\n  leadscore import --contacts crm.csv --id-column email --map Country=country --map notes=\n  leadscore import --outcomes won-lost.csv      # sales outcomes from the CRM\n  cat events.jsonl | leadscore import -"
    )]
    Import {
        /// Segment JSON lines files; `-` reads stdin.
        files: Vec<PathBuf>,
        /// Contacts CSV: each row becomes traits older than any event.
        #[arg(long)]
        contacts: Option<PathBuf>,
        /// Sales outcomes to record for `evaluate`, `train` and `GET /api/v1/models/compare`:
        /// CSV (`contact_id,outcome,at[,value]`) or JSON lines, as `POST /api/v1/outcomes`.
        /// An outcome already recorded (same contact id, outcome, time and value) is skipped.
        #[arg(long)]
        outcomes: Option<PathBuf>,
        /// Column of the contacts CSV holding the contact id.
        #[arg(long, default_value = "id")]
        id_column: String,
        /// Map a contacts CSV column to a trait name (`Country=country`), or
        /// leave it out (`notes=`); repeat for several. Other columns keep their names.
        #[arg(long = "map", value_name = "COLUMN=TRAIT")]
        map: Vec<String>,
        /// Skip invalid messages (reporting how many and why) instead of failing.
        #[arg(long)]
        skip_invalid: bool,
        /// Messages per transaction.
        #[arg(long, default_value_t = 10_000)]
        batch: usize,
        /// Print `committed N` on stdout after each transaction (for scripts and crash tests).
        #[arg(long, hide = true)]
        report_commits: bool,
    },
    /// Model versions: add, list, show, diff, dry-run, activate, rollback.
    #[command(
        after_help = "Examples:\n  leadscore model add examples/b2b.toml --activate\n  leadscore model list\n  leadscore model diff 1 2\n  leadscore model dry-run new.toml\n  leadscore model activate 2\n  leadscore model rollback\n  leadscore model challenger 3   # compared in shadow: GET /api/v1/models/compare"
    )]
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
    /// One contact's live score, tier, grade, stage, traits and ids.
    #[command(
        after_help = "Examples:\n  leadscore contact u00000042\n  leadscore contact alice@example.com --as-of 2025-03-01 --json"
    )]
    Contact {
        /// Any of the contact's ids.
        id: String,
        /// Score as of this time instead of now.
        #[arg(long)]
        as_of: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Leaderboard: the store's contacts by score now (decay applied), or as they were at a past
    /// time, filtered by tier, grade, stage, status or score; or counts per tier × grade and a
    /// score histogram.
    #[command(
        after_help = "Examples:\n  leadscore top\n  leadscore top --tier hot --grade A --limit 50\n  leadscore top --min 40 --max 70 --json\n  leadscore top --summary\n  leadscore top --summary --as-of 2025-11-01      # the tier counts on 1 November"
    )]
    Top {
        /// Only this tier.
        #[arg(long)]
        tier: Option<String>,
        /// Only this grade.
        #[arg(long)]
        grade: Option<String>,
        /// Only this stage.
        #[arg(long)]
        stage: Option<String>,
        /// Only active or only excluded contacts.
        #[arg(long, value_parser = ["active", "excluded"])]
        status: Option<String>,
        /// Score at least.
        #[arg(long)]
        min: Option<f64>,
        /// Score at most.
        #[arg(long)]
        max: Option<f64>,
        /// Lowest scores first.
        #[arg(long)]
        ascending: bool,
        /// Contacts at most.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
        limit: u64,
        /// Counts per tier × grade and a score histogram instead of contacts.
        #[arg(long, conflicts_with_all = ["tier", "grade", "stage", "status", "min", "max", "ascending", "limit"])]
        summary: bool,
        /// Score as of this time instead of now (RFC 3339, or a date = midnight UTC), from the
        /// messages up to it: contacts first seen later are left out, ids stitched later listed
        /// apart.
        #[arg(long)]
        as_of: Option<String>,
        /// Print JSON (lines of contacts, or the summary object).
        #[arg(long)]
        json: bool,
    },
    /// A contact's score history: every change of score, tier, grade, stage or status, and why.
    #[command(
        after_help = "Examples:\n  leadscore history --contact u00000042\n  leadscore history --contact u00000042 --json"
    )]
    History {
        /// Any of the contact's ids.
        #[arg(long)]
        contact: String,
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Serve the Segment-compatible ingest API and the REST API over the store.
    #[command(
        after_help = "Examples:\n  leadscore keys create --scope ingest --label website   # a write key\n  leadscore serve --listen 127.0.0.1:8080\n  leadscore serve --demo      # demo data, keys printed\n  curl -u WRITE_KEY: -H 'Content-Type: application/json' \\\n    -d '{\"userId\":\"u1\",\"event\":\"Demo Requested\"}' http://127.0.0.1:8080/v1/track"
    )]
    Serve {
        #[command(flatten)]
        settings: ServeSettings,
        /// Settings file (TOML, with the keys `--print-config` prints: listen,
        /// body_limit, cors_origins, max_queued_events, …); flags and
        /// environment variables override it.
        #[arg(long, env = "LEADSCORE_CONFIG")]
        config: Option<PathBuf>,
        /// Print the effective settings as TOML and exit.
        #[arg(long)]
        print_config: bool,
        /// Serve demo data: (re)build the demo store (--db, default leadscore-demo.db) as
        /// `leadscore demo` does (the e-commerce example model, 2,000 synthetic contacts),
        /// create keys and print example requests. Only a store the demo built is replaced.
        #[arg(long)]
        demo: bool,
    },
    /// Print a signed email tracking link (open pixel, or click redirect with --click URL).
    #[command(
        after_help = "Examples (LEADSCORE_LINK_SECRET set, as for the server):\n  leadscore link --base https://t.example.com --user u42 --campaign spring\n  leadscore link --base https://t.example.com --user u42 --campaign spring --click https://example.com/offer"
    )]
    Link {
        /// The server's public base URL.
        #[arg(long)]
        base: String,
        /// The contact's user id.
        #[arg(long)]
        user: String,
        /// Campaign name, recorded as the event's `campaign` property.
        #[arg(long)]
        campaign: Option<String>,
        /// Make a click link that redirects here (http or https).
        #[arg(long)]
        click: Option<String>,
    },
    /// API keys: create (printed once, stored hashed), list, revoke.
    #[command(
        after_help = "Examples:\n  leadscore keys create --scope ingest --label website\n  leadscore keys create --scope read\n  leadscore keys list\n  leadscore keys revoke 3"
    )]
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Does the score predict conversions? Point-in-time evaluation on recorded outcomes.
    #[command(
        after_help = "Each contact with an outcome is scored as of a decision time before it, from its messages\nup to then only: --as-of-policy fixed:DATE (everyone at one date), before:7d (each contact 7 days\nbefore its outcome) or after-first-seen:30d. Reports ROC AUC with a 95% bootstrap interval,\nPR AUC, conversion and lift per decile and per tier, the tier x grade matrix, MQL volume with\nprecision/recall per threshold, the median days from reaching the top tier to converting, and\nwarnings when the model is too generous.\n\nOutcomes: CSV with columns contact_id,outcome,at[,value] or JSON lines with those fields;\nwithout --outcomes, the store's (POST /api/v1/outcomes).\n\nExamples:\n  leadscore evaluate --model m.toml --events events.jsonl --outcomes outcomes.csv --as-of-policy before:7d\n  leadscore evaluate --as-of-policy fixed:2025-06-01 --json      # the store's log, model and outcomes",
        mut_arg("as_of", |a| a.help("Read the log only up to this time, as if evaluating then (RFC 3339, or a date = midnight UTC). Default: now")),
    )]
    Evaluate {
        #[command(flatten)]
        input: Input,
        #[command(flatten)]
        outcomes: OutcomeArgs,
        /// Bootstrap resamples of the AUC interval.
        #[arg(long, default_value_t = 1000)]
        bootstrap: usize,
        /// Bootstrap seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Warn when the top tier holds more than this share of contacts.
        #[arg(long, default_value_t = 0.3)]
        max_top_share: f64,
        /// Also report AUC and score distribution per month of decision time, with the
        /// population stability index (PSI) against the first month (drift).
        #[arg(long)]
        monthly: bool,
        /// Also write an HTML report with charts (self-contained: no script, no CDN).
        #[arg(long)]
        html: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Champion vs challenger: the same point-in-time evaluation for two models, with paired
    /// bootstrap intervals of the AUC difference and of conversion among the top contacts.
    #[command(
        after_help = "Examples:\n  leadscore compare --champion live.toml --challenger new.toml --events events.jsonl --outcomes outcomes.csv\n  leadscore compare --champion a.toml --challenger b.toml --events e.jsonl --outcomes o.csv --top-share 0.05 --json"
    )]
    Compare {
        /// The model in use.
        #[arg(long)]
        champion: PathBuf,
        /// The candidate.
        #[arg(long)]
        challenger: PathBuf,
        #[command(flatten)]
        log: Log,
        #[command(flatten)]
        outcomes: OutcomeArgs,
        /// Read the log only up to this time, as if comparing then (RFC 3339, or a date =
        /// midnight UTC). Default: now.
        #[arg(long)]
        as_of: Option<String>,
        /// The share of contacts called "the top" (e.g. what sales can call).
        #[arg(long, default_value_t = 0.1)]
        top_share: f64,
        /// Bootstrap resamples.
        #[arg(long, default_value_t = 1000)]
        bootstrap: usize,
        /// Bootstrap seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Learn fit points from outcomes: cross-validated L2 logistic regression on a table of
    /// contacts, event files or the store's log, written as a ready-to-use model file.
    #[command(
        after_help = "Every column but the id, the label and --exclude becomes a feature: categories one-hot\n(levels rarer than --min-support grouped as other; empty cells and --missing values as missing),\nnumbers in --bins quantile bins. Prints the cross-validated AUC of the regression and of the\nmodel file it writes (same folds).\n\nExamples:\n  leadscore train --table Leads.csv --id-column 'Prospect ID' --label Converted \\\n    --exclude 'Lead Number' --exclude Tags --exclude 'Lead Quality' --out suggested.toml\n  leadscore train --table mqls.csv --id-column mql_id --positives closed_deals.csv --date first_contact_date --out olist.toml\n  leadscore train --events events.jsonl --contacts crm.csv --outcomes outcomes.csv --as-of-policy before:7d --out learned.toml\n  leadscore train --events events.jsonl --outcome-event 'Order Completed' --recent 14d --recency --out learned.toml\n  leadscore --db leadscore.db train --out learned.toml      # the store's log and outcomes"
    )]
    Train {
        /// Table of contacts (CSV with a header row).
        #[arg(long)]
        table: Option<PathBuf>,
        /// Instead of --table: Segment JSON lines (repeat); each contact with an outcome becomes a
        /// row of its traits and event counts as of its decision time (see --as-of-policy).
        #[arg(long, conflicts_with = "table")]
        events: Vec<PathBuf>,
        /// Without --table: a contacts CSV (its columns become traits).
        #[arg(long, conflicts_with = "table")]
        contacts: Option<PathBuf>,
        /// Without --table: the outcomes file (CSV or JSON lines, as for evaluate). Required with
        /// --events unless --outcome-event; from the store, its outcomes are the default.
        #[arg(long, conflicts_with = "table")]
        outcomes: Option<PathBuf>,
        /// Without --table, instead of --outcomes: an event that is the conversion.
        #[arg(long, conflicts_with_all = ["outcomes", "table"])]
        outcome_event: Option<String>,
        /// Without --table: when each contact is observed (fixed:DATE, before:DURATION, after-first-seen:DURATION).
        #[arg(long, default_value = "before:7d", conflicts_with = "table")]
        as_of_policy: String,
        /// Without --table: outcomes that count as converted (comma-separated).
        #[arg(
            long,
            default_value = "converted,won",
            value_delimiter = ',',
            conflicts_with = "table"
        )]
        positive: Vec<String>,
        /// Without --table: also count each event with this half-life (repeat, e.g. 7d, 30d);
        /// written as engagement rules that decay the same way.
        #[arg(long, conflicts_with = "table")]
        recent: Vec<String>,
        /// Without --table: also use the days since each event's latest occurrence (binned),
        /// written as fit rules on days_since("EVENT").
        #[arg(long, conflicts_with = "table")]
        recency: bool,
        /// Column holding the contact id.
        #[arg(long, default_value = "id")]
        id_column: String,
        /// With --table: the column holding the outcome (1/true/yes = converted).
        #[arg(long, requires = "table")]
        label: Option<String>,
        /// With --table, instead of --label: a CSV whose first column lists the converted ids.
        #[arg(long, requires = "table", conflicts_with = "label")]
        positives: Option<PathBuf>,
        /// Leave a column out (repeat): identifiers, columns filled in by sales.
        #[arg(long)]
        exclude: Vec<String>,
        /// A cell value meaning missing (repeat) [default: Select].
        #[arg(long)]
        missing: Vec<String>,
        /// With --table: a date column (YYYY-MM-DD…) to turn into month and weekday features (repeat).
        #[arg(long, requires = "table")]
        date: Vec<String>,
        /// Cross columns into one (repeat): `--cross landing_page,origin` learns points per
        /// combination seen at least --min-support times, for effects one column alone misses.
        #[arg(long, value_name = "A,B")]
        cross: Vec<String>,
        /// Levels seen fewer times are grouped as other.
        #[arg(long, default_value_t = 30)]
        min_support: usize,
        /// Quantile bins of numeric columns.
        #[arg(long, default_value_t = 5)]
        bins: usize,
        /// L2 penalty of the regression.
        #[arg(long, default_value_t = 1.0)]
        l2: f64,
        /// Cross-validation folds (stratified), at least 2.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(2..))]
        folds: u16,
        /// Seed of the folds.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Repeat the cross-validation with new folds (seeds --seed, --seed + 1, …) and report
        /// the mean: one split's AUC moves by a few thousandths with the seed.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
        repeat: u16,
        /// Write the suggested model here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Trigger deliveries: list the outbox, replay or purge dead letters, deliver now.
    #[command(
        after_help = "`leadscore serve` delivers continuously; `outbox deliver` fires what is due and\ndelivers what is ready once, then exits (for cron jobs and trying models out).\n\nExamples:\n  leadscore outbox list --status dead\n  leadscore outbox retry --id 42\n  leadscore outbox retry --all\n  leadscore outbox purge --all\n  leadscore outbox deliver\n  leadscore outbox firings --trigger sales-handoff"
    )]
    Outbox {
        #[command(subcommand)]
        command: OutboxCommand,
    },
    /// What the store holds: events, contacts, history entries, size, active model.
    #[command(
        after_help = "Examples:\n  leadscore status\n  leadscore --db /data/ls.db status --json"
    )]
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Recompute every contact from the log under the active model.
    #[command(after_help = "Example:\n  leadscore rescore")]
    Rescore,
    /// Delete everything held about a contact (GDPR); its ids are tombstoned.
    #[command(after_help = "Example:\n  leadscore erase --contact u00000042")]
    Erase {
        /// Any of the contact's ids.
        #[arg(long)]
        contact: String,
    },
    /// The store's whole event log as Segment JSON lines (backup, a move to PostgreSQL, offline
    /// runs), its recorded outcomes, or everything held about one contact (GDPR access request).
    #[command(
        after_help = "The log is written one contact's messages at a time, each message as stored (its messageId\nkept, so importing it again adds nothing); `leadscore import` reads it back. Erased contacts'\ntombstones are not part of it. With --out, the file appears only once complete.\n\nExamples:\n  leadscore export --out events.jsonl\n  leadscore export | leadscore --db postgres://user@host/leads import -\n  leadscore export --outcomes --out outcomes.csv\n  leadscore export --contact u00000042 > u42.json"
    )]
    Export {
        /// Everything held about this contact (any of its ids), as JSON.
        #[arg(long, conflicts_with_all = ["outcomes", "out"])]
        contact: Option<String>,
        /// The recorded outcomes (CSV: contact_id,outcome,at,value) instead of the log.
        #[arg(long)]
        outcomes: bool,
        /// Write to this file (created once complete) instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print the JSON Schema of model files.
    #[command(after_help = "Example:\n  leadscore schema > docs/model.schema.json")]
    Schema,
    /// Measure fold and end-to-end scoring throughput on generated data.
    #[command(
        after_help = "Examples:\n  leadscore bench\n  leadscore bench --contacts 20000 --days 365 --out docs/bench.json\n  leadscore bench --store --contacts 100000 --days 365 --out docs/bench-store.json\n  leadscore bench --server --contacts 100000 --days 21 --out docs/bench-server.json\n  LEADSCORE_WRITE_KEY=… leadscore bench --load http://127.0.0.1:8080 --rate 50000 --seconds 30"
    )]
    Bench {
        /// Contacts to generate.
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
        contacts: u64,
        /// Days of activity (not with --triggers or --load, which make their own).
        #[arg(long, default_value_t = 365, conflicts_with_all = ["triggers", "load"])]
        days: u32,
        /// Also write the figures as JSON to this file.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Measure the store instead (import raw and live, rescore, state size, point reads,
        /// segment summaries now and of the past):
        /// SQLite in temporary files, or PostgreSQL when --db is a postgres:// URL
        /// (two schemas, leadscore_bench_raw and leadscore_bench_live, are recreated).
        #[arg(long)]
        store: bool,
        /// Measure triggers instead: due-time scheduling at growing store sizes (up to
        /// --contacts), webhook delivery throughput and event-to-webhook latency.
        #[arg(long, conflicts_with = "store")]
        triggers: bool,
        /// Measure the server instead: how soon an event is visible in its contact's score
        /// through the HTTP API, idle and while 8 clients ingest (store of --contacts generated
        /// contacts over --days).
        #[arg(long, conflicts_with_all = ["store", "triggers"])]
        server: bool,
        /// Load a running `leadscore serve` at this URL instead: `/v1/batch` requests offered
        /// at a fixed --rate (open loop), latency counted from each request's due time.
        #[arg(long, value_name = "URL", conflicts_with_all = ["store", "triggers", "server"])]
        load: Option<String>,
        /// With --load: the write key (`keys create --scope ingest`).
        #[arg(
            long,
            env = "LEADSCORE_WRITE_KEY",
            hide_env_values = true,
            requires = "load"
        )]
        write_key: Option<String>,
        /// With --load: events per second offered.
        #[arg(long, default_value_t = 50_000, requires = "load")]
        rate: u32,
        /// With --load: events per request.
        #[arg(long, default_value_t = 100, requires = "load")]
        batch_size: u32,
        /// With --load: how long to offer the load.
        #[arg(long, default_value_t = 30, requires = "load")]
        seconds: u32,
        /// With --load: seconds of load first, in the same process and on the same
        /// connections, not counted (the measured part then starts in steady state).
        #[arg(long, default_value_t = 0, requires = "load")]
        warm_seconds: u32,
        /// With --load: events per second of the warm-up (default: --rate).
        #[arg(long, value_name = "RATE", requires_all = ["load", "warm_seconds"])]
        warm_rate: Option<u32>,
        /// With --load: send a batch's events to consecutive contacts (neighbouring keys,
        /// fewer pages written per commit) instead of contacts spread by a hash.
        #[arg(long, requires = "load")]
        sequential: bool,
        /// With --load: the shape of the message ids (where each lands in the store's
        /// message-id index): `uuid` as RudderStack's and Segment's mobile SDKs make them,
        /// `segment-js` (`node-next-<ms>-<uuid>`) as Segment's Node and browser libraries do.
        #[arg(long, value_enum, default_value = "uuid", requires = "load")]
        ids: crate::cmd::bench_load::IdShape,
        /// With --load: also write each measured request as a CSV row to this file: when it
        /// was due (Unix ms), its latency from then (ms), whether it was acknowledged. To
        /// line slow requests up with the server's log.
        #[arg(long, value_name = "FILE", requires = "load")]
        latencies: Option<std::path::PathBuf>,
    },
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn every_subcommand_is_well_formed() {
        super::Args::command().debug_assert();
    }

    /// A warm-up rate without a warm-up is refused, not ignored.
    #[test]
    fn a_warm_up_rate_needs_a_warm_up() {
        use clap::Parser;
        let load = [
            "leadscore",
            "bench",
            "--load",
            "http://127.0.0.1:1",
            "--write-key",
            "k",
        ];
        let with = |more: &[&str]| super::Args::try_parse_from(load.iter().chain(more));
        assert!(with(&["--warm-rate", "5"]).is_err());
        assert!(with(&["--warm-rate", "5", "--warm-seconds", "1"]).is_ok());
        assert!(with(&["--warm-seconds", "1"]).is_ok());
    }
}

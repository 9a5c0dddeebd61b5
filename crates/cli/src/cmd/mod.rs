//! One module per subcommand; each parses nothing and decides nothing that
//! belongs in the core: it loads, delegates and prints.

mod bench;
pub(crate) mod bench_load;
mod bench_server;
mod bench_store;
mod bench_triggers;
mod check;
mod demo;
mod evaluate;
mod explain;
pub(crate) mod generate;
mod import;
mod model;
mod outbox;
mod score;
mod serve;
mod stored;
mod train;
mod triggers;

use std::process::ExitCode;

use std::io::Write;

use anyhow::{Context, Result};

use crate::args::{Args, Command};

/// The store when `--db` and `LEADSCORE_DB` are not given.
const DEFAULT_STORE: &str = "leadscore.db";

/// Runs a parsed command line.
pub fn run(args: Args) -> Result<ExitCode> {
    // `demo` and `serve --demo` build their own store, elsewhere by default.
    let demo_db = args
        .db
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from(demo::STORE));
    let db = args
        .db
        .as_deref()
        .unwrap_or(std::path::Path::new(DEFAULT_STORE));
    match args.command {
        Command::Check {
            models,
            events,
            store,
            as_of,
            strict,
        } => check::run(
            &models,
            &events,
            store.then_some(db),
            as_of.as_deref(),
            strict,
        ),
        Command::Score {
            input,
            format,
            explain,
        } => score::run(&input, db, format, explain),
        Command::Explain {
            input,
            contact,
            json,
        } => explain::run(&input, db, &contact, json),
        Command::Triggers {
            model,
            log,
            from,
            to,
            format,
            skip_invalid,
        } => {
            let input = crate::args::Input {
                model,
                log,
                as_of: to,
                skip_invalid,
            };
            triggers::run(&input, db, from.as_deref(), format)
        }
        Command::Generate {
            contacts,
            days,
            seed,
            out,
            end,
        } => generate::run(contacts, days, seed, end, &out),
        Command::Demo { contacts, store } => demo::run(contacts, &store.unwrap_or(demo_db)),
        Command::Import {
            files,
            contacts,
            outcomes,
            id_column,
            map,
            skip_invalid,
            batch,
            report_commits,
        } => import::run(
            db,
            import::Import {
                files: &files,
                contacts: contacts.as_deref(),
                outcomes: outcomes.as_deref(),
                id_column: &id_column,
                map: &map,
                skip_invalid,
                batch,
                report_commits,
            },
        ),
        Command::Model { command } => model::run(db, &command),
        Command::Contact { id, as_of, json } => stored::contact(db, &id, as_of.as_deref(), json),
        Command::History { contact, json } => stored::history(db, &contact, json),
        Command::Top {
            tier,
            grade,
            stage,
            status,
            min,
            max,
            ascending,
            limit,
            summary,
            as_of,
            json,
        } => {
            let query = leadscore_store::ScoreQuery {
                at: Some(crate::load::as_of(as_of.as_deref())?),
                rewind: as_of.is_some(),
                tier,
                grade,
                stage,
                status: status
                    .as_deref()
                    .and_then(leadscore_core::score::Status::parse),
                min,
                max,
                ascending,
                after: None,
                limit: usize::try_from(limit).unwrap_or(usize::MAX),
            };
            if summary {
                stored::summary(db, &query, json)
            } else {
                stored::top(db, &query, json)
            }
        }
        Command::Rescore => stored::rescore(db),
        Command::Status { json } => stored::status(db, json),
        Command::Serve {
            settings,
            config,
            print_config,
            demo: false,
        } => serve::run(db, settings, config.as_deref(), print_config),
        Command::Serve {
            settings,
            config,
            print_config,
            demo: true,
        } => {
            if !print_config {
                demo::run(2_000, &demo_db)?;
                serve::demo_keys(
                    &demo_db,
                    settings
                        .listen
                        .as_deref()
                        .unwrap_or(crate::args::DEFAULT_LISTEN),
                    demo::month_ago(),
                )?;
            }
            serve::run(&demo_db, settings, config.as_deref(), print_config)
        }
        Command::Keys { command } => serve::keys(db, &command),
        Command::Outbox { command } => outbox::run(db, command),
        Command::Evaluate {
            input,
            outcomes,
            bootstrap,
            seed,
            max_top_share,
            monthly,
            html,
            json,
        } => evaluate::run(
            &input,
            db,
            &evaluate::Labels::of(&outcomes),
            leadscore_eval::evaluate::Settings {
                resamples: bootstrap,
                seed,
                max_top_share,
            },
            monthly,
            html.as_deref(),
            json,
        ),
        Command::Compare {
            champion,
            challenger,
            log,
            outcomes,
            as_of,
            top_share,
            bootstrap,
            seed,
            json,
        } => evaluate::compare(
            &crate::args::Input {
                model: Some(champion),
                log,
                as_of,
                skip_invalid: false,
            },
            &challenger,
            db,
            &evaluate::Labels::of(&outcomes),
            top_share,
            leadscore_eval::evaluate::Settings {
                resamples: bootstrap,
                seed,
                ..Default::default()
            },
            json,
        ),
        Command::Train {
            table,
            events,
            recent,
            recency,
            contacts,
            outcomes,
            outcome_event,
            as_of_policy,
            positive,
            id_column,
            label,
            positives,
            exclude,
            missing,
            date,
            cross,
            min_support,
            bins,
            l2,
            folds,
            seed,
            repeat,
            out,
            json,
        } => train::run(train::Args {
            db,
            table: table.as_deref(),
            events: train::Events {
                files: &events,
                contacts: contacts.as_deref(),
                labels: evaluate::Labels {
                    outcomes: outcomes.as_deref(),
                    policy: &as_of_policy,
                    positive: &positive,
                    event: outcome_event.as_deref(),
                },
                recent: &recent,
                recency,
            },
            id_column: &id_column,
            label: label.as_deref(),
            positives: positives.as_deref(),
            exclude,
            missing,
            dates: date,
            crosses: cross,
            min_support,
            bins,
            l2,
            folds: usize::from(folds),
            seed,
            repeats: usize::from(repeat),
            out: out.as_deref(),
            json,
        }),
        Command::Link {
            base,
            user,
            campaign,
            click,
        } => serve::sign(&base, &user, campaign.as_deref(), click.as_deref()),
        Command::Erase { contact } => stored::erase(db, &contact),
        Command::Export {
            contact: Some(contact),
            ..
        } => stored::export(db, &contact),
        Command::Export {
            contact: None,
            outcomes,
            out,
        } => stored::export_all(db, outcomes, out.as_deref()),
        Command::Schema => {
            emit(&leadscore_core::model::Model::json_schema())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            contacts,
            out,
            load: Some(url),
            write_key,
            rate,
            batch_size,
            seconds,
            warm_seconds,
            warm_rate,
            sequential,
            ids,
            latencies,
            ..
        } => {
            let write_key = write_key
                .context("--load needs a write key: --write-key or LEADSCORE_WRITE_KEY")?;
            let plan = bench_load::LoadPlan {
                url: &url,
                write_key: &write_key,
                rate,
                batch: batch_size,
                seconds,
                warm_seconds,
                warm_rate: warm_rate.unwrap_or(rate),
                contacts,
                sequential,
                ids,
            };
            bench_load::run(&plan, out.as_deref(), latencies.as_deref())
        }
        Command::Bench {
            contacts,
            out,
            triggers: true,
            ..
        } => bench_triggers::run(contacts, out.as_deref()),
        Command::Bench {
            contacts,
            days,
            out,
            server: true,
            ..
        } => bench_server::run(contacts, days, out.as_deref()),
        Command::Bench {
            contacts,
            days,
            out,
            store: false,
            ..
        } => bench::run(contacts, days, out.as_deref()),
        Command::Bench {
            contacts,
            days,
            out,
            store: true,
            ..
        } => bench_store::run(db, contacts, days, out.as_deref()),
    }
}

/// Writes text to stdout, returning an error (never panicking) when stdout is
/// closed; `main` treats a closed pipe as a normal end.
/// `"name" count` pairs joined by commas, the first `shown` of them and
/// how many more ("none" when empty).
pub fn counted<'a>(items: impl ExactSizeIterator<Item = (&'a str, u64)>, shown: usize) -> String {
    let total = items.len();
    if total == 0 {
        return "none".to_string();
    }
    let mut text: Vec<String> = items
        .take(shown)
        .map(|(name, n)| format!("{name:?} {n}"))
        .collect();
    if total > shown {
        text.push(format!("and {} more", total - shown));
    }
    text.join(", ")
}

pub fn emit(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

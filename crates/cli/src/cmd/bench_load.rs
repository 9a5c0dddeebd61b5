//! `leadscore bench --load URL`: an open-loop load of Segment `/v1/batch`
//! requests at a fixed rate against a running `leadscore serve`.
//!
//! A closed-loop tool such as wrk sends a connection's next request only
//! when the previous one is answered, so it measures latency at whatever
//! rate the server saturates at, and a stall delays the requests that
//! would have been sent during it without counting them ("coordinated
//! omission"). Here request `i` is due at `start + i × interval` whatever
//! happened before, is sent on its own task (on a new connection when all
//! open ones are busy), and its latency runs from the time it was due to
//! its answer: a stall of the server counts against every request due
//! during it, as a client sending at that rate would see.
//!
//! A warm-up (`--warm-seconds`, at `--warm-rate`) runs first in the same
//! process, on the same connections, and is not counted: the measured
//! part starts in the server's steady state, without a new client
//! starting up beside it (`docs/performance.md`, session 30).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::json;
use tokio::time::Instant;

/// What to send and for how long.
pub struct LoadPlan<'a> {
    pub url: &'a str,
    pub write_key: &'a str,
    /// Events per second offered.
    pub rate: u32,
    /// Events per request.
    pub batch: u32,
    pub seconds: u32,
    /// Seconds of load before the measured part (not counted), and its
    /// events per second.
    pub warm_seconds: u32,
    pub warm_rate: u32,
    /// Distinct contacts the events are spread over.
    pub contacts: u64,
    /// Whether a batch's events go to consecutive contacts instead of
    /// contacts spread by a hash.
    pub sequential: bool,
    /// How the message ids are made.
    pub ids: IdShape,
}

/// The shape of the message ids a load sends: where each new id lands in
/// the store's message-id index depends on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum IdShape {
    /// A random UUID v4, as RudderStack's SDKs and Segment's mobile,
    /// Python and Java libraries make them: each new id lands on a page of
    /// its own.
    Uuid,
    /// `node-next-<unix ms>-<UUID v4>`, as Segment's Node library makes
    /// them (its browser library: `ajs-next-<unix ms>-<UUID v4>`): ids
    /// increase with the time they were made, so new ones land at the end
    /// of the index.
    SegmentJs,
}

/// The contact of event `n`: spread over `contacts` by a hash (the first
/// SplitMix64 output seeded with `n`), so that a batch's events land on
/// unrelated contacts as a server-side source's do, not on neighbouring
/// keys that share pages.
fn contact_of(n: u64, contacts: u64) -> u64 {
    leadscore_eval::rng::Rng::new(n).below(contacts as usize) as u64
}

/// A random UUID v4 for event `n` of run `run` (distinct across events
/// and runs).
pub(crate) fn uuid(run: u64, n: u64) -> String {
    let mut out = String::with_capacity(36);
    push_uuid(&mut out, run, n);
    out
}

/// Appends [`uuid`]'s text for event `n` of run `run` to `out`: 8-4-4-4-12
/// hex digits, version 4, variant `10xx`.
fn push_uuid(out: &mut String, run: u64, n: u64) {
    let mut rng = leadscore_eval::rng::Rng::new(run.rotate_left(32) ^ n);
    let (a, b) = (rng.next_u64(), rng.next_u64());
    push_hex(out, a >> 32, 8);
    out.push('-');
    push_hex(out, a >> 16, 4);
    out.push_str("-4");
    push_hex(out, a, 3);
    out.push('-');
    push_hex(out, 0x8000 | ((b >> 48) & 0x3fff), 4);
    out.push('-');
    push_hex(out, b, 12);
}

/// Appends the low `digits` hex digits of `value` (lowercase, leading
/// zeros kept) to `out`.
fn push_hex(out: &mut String, value: u64, digits: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for d in (0..digits).rev() {
        out.push(char::from(HEX[((value >> (4 * d)) & 0xf) as usize]));
    }
}

/// Appends the message id of event `n` of run `run`, made at `unix_ms`
/// (its decimal digits), in the shape a real SDK sends ([`IdShape`]).
fn push_message_id(out: &mut String, shape: IdShape, run: u64, n: u64, unix_ms: &str) {
    if shape == IdShape::SegmentJs {
        out.push_str("node-next-");
        out.push_str(unix_ms);
        out.push('-');
    }
    push_uuid(out, run, n);
}

/// One `/v1/batch` body: `batch` `Email Link Clicked` events, each with a
/// message id unique to this run ([`push_message_id`]), stamped with the
/// current time (every event new, none a duplicate). Written straight
/// into one string: the load generator shares the server's CPUs, and
/// formatting each event through `format!` took about a quarter of its
/// own CPU (`docs/performance.md`, session 50).
fn body(run: u64, first: u64, plan: &LoadPlan<'_>) -> String {
    let at = leadscore_store::now();
    let now = at.to_string();
    let mut ms = itoa::Buffer::new();
    let unix_ms = ms.format(at.0.div_euclid(1_000_000));
    let mut contact_digits = itoa::Buffer::new();
    let per_event = 150 + now.len() + unix_ms.len();
    let mut out = String::with_capacity(16 + plan.batch as usize * per_event);
    out.push_str(r#"{"batch":["#);
    for n in first..first + u64::from(plan.batch) {
        if n > first {
            out.push(',');
        }
        let contact = if plan.sequential {
            n % plan.contacts
        } else {
            contact_of(n, plan.contacts)
        };
        out.push_str(r#"{"type":"track","userId":"load-"#);
        out.push_str(contact_digits.format(contact));
        out.push_str(r#"","event":"Email Link Clicked","messageId":""#);
        push_message_id(&mut out, plan.ids, run, n, unix_ms);
        out.push_str(r#"","timestamp":""#);
        out.push_str(&now);
        out.push_str(r#""}"#);
    }
    out.push_str("]}");
    out
}

/// The outcome of one request: latency from when it was due, in ms, and
/// whether the server acknowledged it (2xx).
type Answer = (f64, bool);

/// Writes each answer as a CSV row: when its request was due (Unix ms,
/// from `start_unix_ms` and its offset `due`), its latency (ms), whether
/// it was acknowledged.
fn write_latencies(
    path: &std::path::Path,
    start_unix_ms: f64,
    answers: &[(Duration, Answer)],
) -> Result<()> {
    let failed = || format!("cannot write {}", path.display());
    let mut csv = csv::Writer::from_path(path).with_context(failed)?;
    csv.write_record(["due_unix_ms", "latency_ms", "acknowledged"])
        .with_context(failed)?;
    for (due, (ms, ok)) in answers {
        let due = start_unix_ms + due.as_secs_f64() * 1e3;
        csv.serialize((format!("{due:.3}"), format!("{ms:.3}"), ok))
            .with_context(failed)?;
    }
    csv.flush().with_context(failed)
}

/// When each request is due, from the start, and whether it is measured:
/// the warm-up's requests at `warm_rate`, then the measured ones at
/// `rate` from `warm_seconds` on.
fn schedule(plan: &LoadPlan<'_>) -> Vec<(Duration, bool)> {
    let part = |rate: u32, seconds: u32| {
        let count = u64::from(rate) * u64::from(seconds) / u64::from(plan.batch);
        // No request at rate 0; the interval only has to be finite.
        let interval = Duration::from_secs_f64(f64::from(plan.batch) / f64::from(rate.max(1)));
        (0..count).map(move |i| interval.mul_f64(i as f64))
    };
    let warm_end = Duration::from_secs(u64::from(plan.warm_seconds));
    part(plan.warm_rate, plan.warm_seconds)
        .map(|at| (at, false))
        .chain(part(plan.rate, plan.seconds).map(|at| (warm_end + at, true)))
        .collect()
}

pub fn run(
    plan: &LoadPlan<'_>,
    out: Option<&std::path::Path>,
    latencies_csv: Option<&std::path::Path>,
) -> Result<ExitCode> {
    if plan.rate == 0 || plan.batch == 0 || plan.seconds == 0 || plan.contacts == 0 {
        bail!("--rate, --batch-size, --seconds and --contacts must be at least 1");
    }
    let url = format!("{}/v1/batch", plan.url.trim_end_matches('/'));
    let plan_schedule = schedule(plan);
    let requests = plan_schedule
        .iter()
        .filter(|(_, measured)| *measured)
        .count();
    if requests == 0 {
        bail!("the plan offers no request: raise --rate or --seconds, or lower --batch-size");
    }
    let run_id = leadscore_store::now().seconds_f64() as u64;
    // One thread: the load takes as little CPU as it can from the server
    // it measures on the same machine.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (mut answers, warm_failed, elapsed, start_unix_ms) = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .build()?;
        // The URL parsed and the key encoded once, not for every request.
        let url = reqwest::Url::parse(&url).with_context(|| format!("not a URL: {url}"))?;
        let headers = client
            .post(url.clone())
            .basic_auth(plan.write_key, Some(""))
            .header("content-type", "application/json")
            .build()?
            .headers()
            .clone();
        let mut tasks = tokio::task::JoinSet::new();
        let mut answers: Vec<(Duration, Answer)> = Vec::with_capacity(requests);
        let mut warm_failed = 0usize;
        let mut keep = |(at, answer, measured): (Duration, Answer, bool)| {
            if measured {
                answers.push((at, answer));
            } else if !answer.1 {
                warm_failed += 1;
            }
        };
        let start = Instant::now();
        let start_unix_ms = leadscore_store::now().seconds_f64() * 1e3;
        let measured_from = start + Duration::from_secs(u64::from(plan.warm_seconds));
        for (i, (at, measured)) in plan_schedule.into_iter().enumerate() {
            let due = start + at;
            tokio::time::sleep_until(due).await;
            while let Some(answer) = tasks.try_join_next() {
                keep(answer?);
            }
            let mut request = reqwest::Request::new(reqwest::Method::POST, url.clone());
            *request.headers_mut() = headers.clone();
            *request.body_mut() = Some(body(run_id, i as u64 * u64::from(plan.batch), plan).into());
            let client = client.clone();
            tasks.spawn(async move {
                let ok = match client.execute(request).await {
                    Ok(response) => {
                        let ok = response.status().is_success();
                        // The body is read so the connection can be reused.
                        ok && response.bytes().await.is_ok()
                    }
                    Err(_) => false,
                };
                (at, (due.elapsed().as_secs_f64() * 1e3, ok), measured)
            });
        }
        while let Some(answer) = tasks.join_next().await {
            keep(answer?);
        }
        let elapsed = measured_from.elapsed().as_secs_f64();
        Ok::<_, anyhow::Error>((answers, warm_failed, elapsed, start_unix_ms))
    })?;
    if let Some(path) = latencies_csv {
        answers.sort_by_key(|(at, _)| *at);
        write_latencies(path, start_unix_ms, &answers)?;
    }
    let failed = answers.iter().filter(|(_, (_, ok))| !ok).count();
    let mut latencies: Vec<f64> = answers.iter().map(|(_, (ms, _))| *ms).collect();
    latencies.sort_by(f64::total_cmp);
    let acknowledged = (answers.len() - failed) as f64 * f64::from(plan.batch);
    let at = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    let (p50, p90, p99, p999, max) = (at(0.5), at(0.9), at(0.99), at(0.999), at(1.0));
    eprintln!(
        "POST /v1/batch, {} events per request, offered {} events/s for {} s: {} requests, \
         {failed} failed; acknowledged {:.0} events/s; latency from due time p50 {p50:.2} ms, \
         p90 {p90:.2} ms, p99 {p99:.2} ms, p99.9 {p999:.2} ms, max {max:.2} ms",
        plan.batch,
        plan.rate,
        plan.seconds,
        answers.len(),
        acknowledged / elapsed,
    );
    if plan.warm_seconds > 0 {
        eprintln!(
            "(after {} s at {} events/s, not counted: {warm_failed} of its requests failed)",
            plan.warm_seconds, plan.warm_rate
        );
    }
    if let Some(path) = out {
        let figures = json!({
            "url": url, "events_per_request": plan.batch, "offered_events_per_s": plan.rate,
            "seconds": plan.seconds, "warm_seconds": plan.warm_seconds,
            "warm_events_per_s": plan.warm_rate, "warm_failed": warm_failed,
            "requests": answers.len(), "failed": failed,
            "acknowledged_events_per_s": acknowledged / elapsed,
            "latency_ms": {"p50": p50, "p90": p90, "p99": p99, "p99_9": p999, "max": max},
        });
        std::fs::write(path, serde_json::to_string_pretty(&figures)? + "\n")?;
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadscore_core::time::Timestamp;

    fn plan(sequential: bool) -> LoadPlan<'static> {
        LoadPlan {
            url: "http://127.0.0.1:1",
            write_key: "k",
            rate: 1,
            batch: 3,
            seconds: 1,
            warm_seconds: 0,
            warm_rate: 0,
            contacts: 2,
            sequential,
            ids: IdShape::Uuid,
        }
    }

    fn users(text: &str) -> Vec<String> {
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        let batch = value["batch"].as_array().unwrap();
        batch
            .iter()
            .map(|m| m["userId"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn contacts_are_consecutive_or_spread() {
        assert_eq!(
            users(&body(7, 10, &plan(true))),
            ["load-0", "load-1", "load-0"]
        );
        let spread: Vec<String> = (10..13)
            .map(|n| format!("load-{}", contact_of(n, 2)))
            .collect();
        assert_eq!(users(&body(7, 10, &plan(false))), spread);
    }

    #[test]
    fn a_body_is_a_segment_batch_of_distinct_new_events() {
        let text = body(7, 10, &plan(false));
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let batch = value["batch"].as_array().unwrap();
        assert_eq!(batch.len(), 3);
        let ids: Vec<_> = batch
            .iter()
            .map(|m| m["messageId"].as_str().unwrap())
            .collect();
        assert_eq!(ids, [10, 11, 12].map(|n| uuid(7, n)));
        let distinct: std::collections::BTreeSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), 3);
        // UUID v4 shape: 8-4-4-4-12 hex digits, version 4, variant 10xx.
        for id in &ids {
            let parts: Vec<&str> = id.split('-').collect();
            let lengths: Vec<usize> = parts.iter().map(|p| p.len()).collect();
            assert_eq!(lengths, [8, 4, 4, 4, 12], "{id}");
            assert!(
                id.chars().all(|c| c == '-' || c.is_ascii_hexdigit()),
                "{id}"
            );
            assert!(parts[2].starts_with('4'), "{id}");
            assert!("89ab".contains(&parts[3][..1]), "{id}");
        }
        // Another run, other ids.
        assert_ne!(uuid(8, 10), uuid(7, 10));
        assert!(batch.iter().all(|m| m["type"] == "track"));
    }

    /// The message id of event `n` of run `run`, made at `unix_ms`.
    fn message_id(shape: IdShape, run: u64, n: u64, unix_ms: i64) -> String {
        let mut out = String::new();
        push_message_id(&mut out, shape, run, n, &unix_ms.to_string());
        out
    }

    /// The UUID as `format!` writes it: the reference the hand-written
    /// digits must match.
    fn uuid_by_format(run: u64, n: u64) -> String {
        let mut rng = leadscore_eval::rng::Rng::new(run.rotate_left(32) ^ n);
        let (a, b) = (rng.next_u64(), rng.next_u64());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | ((b >> 48) & 0x3fff),
            b & 0xffff_ffff_ffff
        )
    }

    #[test]
    fn uuids_are_written_as_format_writes_them() {
        for run in [0, 7, u64::MAX] {
            for n in (0..5_000).chain([u64::MAX]) {
                assert_eq!(uuid(run, n), uuid_by_format(run, n), "run {run}, event {n}");
            }
        }
        let mut hex = String::new();
        push_hex(&mut hex, 0xab, 4);
        push_hex(&mut hex, 0x1234_5678_9abc_def0, 3);
        assert_eq!(hex, "00abef0");
    }

    /// A body is the text the `format!` version wrote, byte for byte.
    #[test]
    fn a_body_is_the_text_format_wrote() {
        for (ids, sequential) in [(IdShape::Uuid, false), (IdShape::SegmentJs, true)] {
            let mut p = plan(sequential);
            (p.ids, p.contacts, p.batch) = (ids, 1_000, 4);
            let text = body(7, 10, &p);
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            let at = value["batch"][0]["timestamp"].as_str().unwrap().to_string();
            let unix_ms = Timestamp::parse_date_or_time(&at).unwrap().0 / 1_000_000;
            let items: Vec<String> = (10..14)
                .map(|n| {
                    let contact = if sequential { n % 1_000 } else { contact_of(n, 1_000) };
                    let id = message_id(ids, 7, n, unix_ms);
                    format!(
                        r#"{{"type":"track","userId":"load-{contact}","event":"Email Link Clicked","messageId":"{id}","timestamp":"{at}"}}"#
                    )
                })
                .collect();
            assert_eq!(text, format!(r#"{{"batch":[{}]}}"#, items.join(",")));
        }
    }

    /// Segment's JavaScript libraries' ids: `node-next-`, the time in ms,
    /// a UUID v4; ids made later sort after earlier ones.
    #[test]
    fn segment_js_ids_carry_their_time() {
        let id = message_id(IdShape::SegmentJs, 7, 10, 1_700_000_000_123);
        assert_eq!(id, format!("node-next-1700000000123-{}", uuid(7, 10)));
        let later = message_id(IdShape::SegmentJs, 7, 11, 1_700_000_000_124);
        assert!(later > id);
        let mut segment_js = plan(false);
        segment_js.ids = IdShape::SegmentJs;
        let text = body(7, 10, &segment_js);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        for (m, n) in value["batch"].as_array().unwrap().iter().zip(10..) {
            let id = m["messageId"].as_str().unwrap();
            let rest = id.strip_prefix("node-next-").unwrap();
            let (ms, tail) = rest.split_once('-').unwrap();
            assert!(
                ms.len() == 13 && ms.bytes().all(|b| b.is_ascii_digit()),
                "{id}"
            );
            assert_eq!(tail, uuid(7, n));
        }
    }

    /// The warm-up's requests come first at its own rate, then the
    /// measured ones at the plan's rate from the warm-up's end on.
    #[test]
    fn a_warm_up_comes_first_and_is_not_measured() {
        let mut warmed = plan(true);
        (warmed.rate, warmed.seconds, warmed.batch) = (400, 2, 100);
        (warmed.warm_rate, warmed.warm_seconds) = (200, 3);
        let due = schedule(&warmed);
        let ms = |d: &Duration| d.as_millis();
        let warm: Vec<_> = due.iter().filter(|(_, m)| !m).map(|(d, _)| ms(d)).collect();
        let measured: Vec<_> = due.iter().filter(|(_, m)| *m).map(|(d, _)| ms(d)).collect();
        assert_eq!(warm, [0, 500, 1000, 1500, 2000, 2500]);
        assert_eq!(measured, [3000, 3250, 3500, 3750, 4000, 4250, 4500, 4750]);
        assert!(due.windows(2).all(|w| w[0].0 < w[1].0));
        // Without a warm-up, only measured requests from the start.
        let cold = schedule(&plan(true));
        assert_eq!(cold.len(), 0, "1 event/s for 1 s in batches of 3: none");
        let mut cold = plan(true);
        (cold.rate, cold.batch) = (3, 1);
        assert_eq!(
            schedule(&cold)
                .iter()
                .map(|(d, m)| (ms(d), *m))
                .collect::<Vec<_>>(),
            [(0, true), (333, true), (666, true)]
        );
    }

    #[test]
    fn latencies_are_written_with_their_due_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latencies.csv");
        let answers = [
            (Duration::from_millis(0), (3.25, true)),
            (Duration::from_micros(2_500), (41.5, false)),
        ];
        write_latencies(&path, 1_000_000.0, &answers).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "due_unix_ms,latency_ms,acknowledged\n\
             1000000.000,3.250,true\n\
             1000002.500,41.500,false\n"
        );
        let unwritable = dir.path().join("missing").join("latencies.csv");
        let error = write_latencies(&unwritable, 0.0, &answers).unwrap_err();
        assert!(error.to_string().contains("missing"), "{error}");
    }

    #[test]
    fn events_spread_evenly_over_the_contacts() {
        let mut counts = [0u32; 100];
        for n in 0..100_000 {
            counts[contact_of(n, 100) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
    }
}

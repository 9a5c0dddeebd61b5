//! Deterministic synthetic Segment event streams for trying and benchmarking
//! leadscore: anonymous browsing then identify, email sends/opens/clicks/
//! bounces, product views, carts, purchases, form fills, offline sales
//! activity arriving late, company traits, consent changes and resends.
//!
//! The same `(contacts, days, seed)` always gives byte-identical output: the
//! random numbers come from SplitMix64 seeded per contact, so output does not
//! depend on thread count or on any crate's RNG algorithm. Each contact's
//! messages are written together, in time order, except offline events
//! (`Meeting Booked`, `Call Completed`), which are written after the
//! contact's later events, as a CRM import would deliver them.

use std::fmt::Write as _;
use std::io::{self, Write};

use rayon::prelude::*;

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Number of contacts.
    pub contacts: u64,
    /// Length of the period in days.
    pub days: u32,
    /// Random seed.
    pub seed: u64,
    /// Start of the period, seconds since the Unix epoch (UTC midnight).
    pub start: i64,
}

/// 2025-01-01T00:00:00Z, the default start.
pub const DEFAULT_START: i64 = 1_735_689_600;

impl Config {
    /// `contacts` over `days` from [`DEFAULT_START`].
    pub fn new(contacts: u64, days: u32, seed: u64) -> Config {
        Config {
            contacts,
            days,
            seed,
            start: DEFAULT_START,
        }
    }

    /// `contacts` over the `days` that end at `end` (seconds since the
    /// epoch, a UTC midnight: the period's last day is the one before).
    pub fn ending(contacts: u64, days: u32, seed: u64, end: i64) -> Config {
        Config {
            start: end - i64::from(days) * 86_400,
            ..Config::new(contacts, days, seed)
        }
    }

    /// End of the period (seconds since the epoch).
    pub fn end(&self) -> i64 {
        self.start + i64::from(self.days) * 86_400
    }
}

/// SplitMix64: tiny, fast, and stable forever.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Rng {
        let mut r = Rng(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        r.next();
        r
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Uniform in [0, n).
    fn below(&mut self, n: u64) -> u64 {
        ((self.next() as u128 * n as u128) >> 64) as u64
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const COUNTRIES: &[&str] = &[
    "DE", "AT", "CH", "FR", "NL", "US", "GB", "SE", "ES", "BR", "IN", "CA",
];
const INDUSTRIES: &[&str] = &[
    "Software",
    "Financial Services",
    "E-commerce",
    "Retail",
    "Manufacturing",
    "Education",
    "Healthcare",
];
const TITLES: &[&str] = &[
    "VP Marketing",
    "Head of Sales",
    "Marketing Manager",
    "Director IT",
    "Student",
    "Developer",
    "Chief Revenue Officer",
    "Analyst",
];
const STACKS: &[&str] = &[
    r#"["salesforce","slack"]"#,
    r#"["hubspot"]"#,
    r#"["excel"]"#,
    r#"["zoho","gmail"]"#,
    r#"[]"#,
];
const PAGES: &[&str] = &[
    "/",
    "/blog/scoring-101",
    "/blog/mql-vs-sql",
    "/pricing",
    "/pricing/enterprise",
    "/docs",
    "/customers",
    "/product/tour",
];
const FORMS: &[&str] = &["demo", "contact", "newsletter", "webinar"];

/// Writes an RFC 3339 timestamp for `epoch` seconds, in UTC or, for some
/// messages, in UTC+02:00 (same instant) to exercise offset handling.
fn timestamp(out: &mut String, epoch: i64, millis: u32, plus_two: bool) {
    let shifted = if plus_two { epoch + 7_200 } else { epoch };
    let days = shifted.div_euclid(86_400);
    let secs = shifted.rem_euclid(86_400);
    let (year, month, day) = leadscore_core::time::civil_from_days(days);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}{}",
        secs / 3_600,
        secs / 60 % 60,
        secs % 60,
        if plus_two { "+02:00" } else { "Z" }
    );
}

/// Builds one contact's lines.
struct ContactWriter<'c> {
    config: &'c Config,
    rng: Rng,
    index: u64,
    sequence: u32,
    out: String,
    late: String,
    events: u64,
    /// Whether the message being written is dated at or after the end of
    /// the period (a CRM follow-up days after the last day): it has not
    /// happened yet, so it is drawn (the random stream of the contact's
    /// other messages stays the same) but not written.
    after_end: bool,
}

/// Who a message is from.
#[derive(Clone, Copy)]
enum Who {
    Anonymous,
    User,
    Both,
}

impl ContactWriter<'_> {
    fn head(&mut self, kind: &str, who: Who, at: i64) -> String {
        let mut line = String::with_capacity(256);
        let _ = write!(line, r#"{{"type":"{kind}","#);
        let i = self.index;
        match who {
            Who::Anonymous => {
                let _ = write!(line, r#""anonymousId":"a{i:08}","#);
            }
            Who::User => {
                let _ = write!(line, r#""userId":"u{i:08}","#);
            }
            Who::Both => {
                let _ = write!(line, r#""userId":"u{i:08}","anonymousId":"a{i:08}","#);
            }
        }
        self.sequence += 1;
        let _ = write!(
            line,
            r#""messageId":"{:x}-{i}-{}","timestamp":""#,
            self.config.seed, self.sequence
        );
        let millis = self.rng.below(1000) as u32;
        let plus_two = self.rng.chance(0.1);
        timestamp(&mut line, at, millis, plus_two);
        line.push('"');
        self.after_end = at >= self.config.end();
        line
    }

    fn emit(&mut self, late: bool, line: String) {
        // A few SDK retries resend the very same message.
        let resent = self.rng.chance(0.003);
        if self.after_end {
            return;
        }
        let target = if late { &mut self.late } else { &mut self.out };
        target.push_str(&line);
        target.push('\n');
        self.events += 1;
        if resent {
            target.push_str(&line);
            target.push('\n');
            self.events += 1;
        }
    }

    fn track(&mut self, who: Who, at: i64, event: &str, properties: &str) {
        self.track_at(false, who, at, event, properties)
    }

    fn track_at(&mut self, late: bool, who: Who, at: i64, event: &str, properties: &str) {
        let mut line = self.head("track", who, at);
        let _ = write!(
            line,
            r#","event":"{event}","properties":{{{properties}}}}}"#
        );
        self.emit(late, line);
    }

    fn page(&mut self, who: Who, at: i64, path: &str) {
        let mut line = self.head("page", who, at);
        let name = if path.starts_with("/pricing") {
            "Pricing"
        } else {
            "Page"
        };
        let _ = write!(
            line,
            r#","name":"{name}","properties":{{"path":"{path}","url":"https://shop.example.com{path}"}},"context":{{"userAgent":"synth"}}}}"#
        );
        self.emit(false, line);
    }

    fn identify(&mut self, who: Who, at: i64, traits: &str) {
        let mut line = self.head("identify", who, at);
        let _ = write!(line, r#","traits":{{{traits}}}}}"#);
        self.emit(false, line);
    }

    fn write(mut self) -> (String, u64) {
        let c = *self.config;
        let r = &mut self.rng;
        let engagement = match r.below(100) {
            0..50 => 0.01,
            50..85 => 0.04,
            _ => 0.12,
        };
        // Interest fades: after an exponentially distributed active period
        // (mean 60 days) sessions become ten times rarer.
        let active_days = (-60.0 * (1.0 - r.unit()).ln()) as i64;
        let open_rate = [0.1, 0.35, 0.6][r.below(3) as usize];
        let span = i64::from(c.days.max(1)) * 86_400;
        let mut now = c.start + (r.unit() * 0.8 * span as f64) as i64;
        let end = c.end();

        // Anonymous browsing before sign-up.
        for _ in 0..self.rng.below(5) {
            now += 60 + self.rng.below(7_200) as i64;
            let path = self.rng.pick(PAGES);
            self.page(Who::Anonymous, now, path);
            if self.rng.chance(0.4) {
                let sku = self.rng.below(500);
                self.track(
                    Who::Anonymous,
                    now + 5,
                    "Product Viewed",
                    &format!(r#""sku":"SKU-{sku}","price":{}"#, 5 + sku % 200),
                );
            }
        }

        // Sign-up: identify links the anonymous id.
        now += 120;
        let signup = now;
        let i = self.index;
        let r = &mut self.rng;
        let email = if r.chance(0.01) {
            format!("u{i}@competitor.example")
        } else if r.chance(0.04) {
            String::new()
        } else {
            format!("u{i}@mail.example")
        };
        let mut traits = format!(
            r#""email":"{email}","consent":{},"country":"{}","job_title":"{}","budget":{},"purchase_type":"{}""#,
            r.chance(0.8),
            r.pick(COUNTRIES),
            r.pick(TITLES),
            [0, 150, 600, 2_500, 10_000][r.below(5) as usize],
            r.pick(&["subscription", "one-off", "gift"]),
        );
        if r.chance(0.9) {
            let _ = write!(
                traits,
                r#","segment":"{}""#,
                r.pick(&["consumer", "smb", "enterprise"])
            );
        }
        if r.chance(0.85) {
            traits.push_str(r#","onboarded":true"#);
        }
        self.identify(Who::Both, now, &traits);

        // Company (group) traits for most.
        if self.rng.chance(0.6) {
            let mut line = self.head("group", Who::User, now + 30);
            let r = &mut self.rng;
            let employees = [8, 45, 120, 800, 3_000, 12_000][r.below(6) as usize];
            let _ = write!(
                line,
                r#","groupId":"g{}","traits":{{"name":"Company {}","employees":{employees},"industry":"{}","country":"{}","revenue":{},"tech_stack":{}}}}}"#,
                i / 5,
                i / 5,
                r.pick(INDUSTRIES),
                r.pick(COUNTRIES),
                employees * 150_000,
                r.pick(STACKS)
            );
            self.emit(false, line);
        }

        // Daily life until the end of the period.
        let email_day = self.rng.below(7) as i64;
        let mut unsubscribed = false;
        let mut day_start = now - now.rem_euclid(86_400) + 86_400;
        while day_start < end {
            let day_index = (day_start - c.start) / 86_400;
            if !unsubscribed && day_index % 7 == email_day {
                let at = day_start + 9 * 3_600 + self.rng.below(3_600) as i64;
                let campaign = format!(r#""campaign":"weekly-{}""#, day_index / 7);
                self.track(Who::User, at, "Email Delivered", &campaign);
                if self.rng.chance(0.01) {
                    self.track(Who::User, at + 60, "Email Bounced", r#""type":"hard""#);
                } else if self.rng.chance(open_rate) {
                    let opened = at + 600 + self.rng.below(20_000) as i64;
                    self.track(Who::User, opened, "Email Opened", &campaign);
                    if self.rng.chance(0.3) {
                        self.track(Who::User, opened + 30, "Email Link Clicked", &campaign);
                    }
                }
                if self.rng.chance(0.004) {
                    self.track(Who::User, at + 30_000, "Unsubscribed", &campaign);
                    unsubscribed = true;
                }
            }
            let interest = if day_start < signup + active_days * 86_400 {
                engagement
            } else {
                engagement / 10.0
            };
            if self.rng.chance(interest) {
                let at = day_start + 10 * 3_600 + self.rng.below(36_000) as i64;
                self.session(at);
            }
            if self.rng.chance(0.001) {
                let consent = self.rng.chance(0.5);
                self.identify(
                    Who::User,
                    day_start + 43_200,
                    &format!(r#""consent":{consent}"#),
                );
            }
            day_start += 86_400;
        }
        let mut out = self.out;
        out.push_str(&self.late);
        (out, self.events)
    }

    fn session(&mut self, mut at: i64) {
        for _ in 0..1 + self.rng.below(4) {
            at += 20 + self.rng.below(300) as i64;
            let path = self.rng.pick(PAGES);
            self.page(Who::User, at, path);
        }
        let views = self.rng.below(5);
        for _ in 0..views {
            at += 15 + self.rng.below(200) as i64;
            let sku = self.rng.below(500);
            self.track(
                Who::User,
                at,
                "Product Viewed",
                &format!(r#""sku":"SKU-{sku}","price":{}"#, 5 + sku % 200),
            );
        }
        if views > 0 && self.rng.chance(0.25) {
            at += 30;
            self.track(Who::User, at, "Product Added", r#""quantity":1"#);
            if self.rng.chance(0.4) {
                at += 300;
                let total = 20 + self.rng.below(400);
                self.track(
                    Who::User,
                    at,
                    "Order Completed",
                    &format!(r#""total":{total},"currency":"EUR""#),
                );
            }
        }
        if self.rng.chance(0.06) {
            let form = self.rng.pick(FORMS);
            at += 60;
            self.track(
                Who::User,
                at,
                "Form Submitted",
                &format!(r#""form":"{form}""#),
            );
            if form == "demo" && self.rng.chance(0.6) {
                // Sales activity, imported from the CRM days later.
                let meeting = at + 86_400 * (1 + self.rng.below(4) as i64);
                self.track_at(
                    true,
                    Who::User,
                    meeting,
                    "Meeting Booked",
                    r#""source":"crm""#,
                );
                if self.rng.chance(0.5) {
                    let outcome = self.rng.pick(&["interested", "not-now", "qualified"]);
                    self.track_at(
                        true,
                        Who::User,
                        meeting + 3_600,
                        "Call Completed",
                        &format!(r#""outcome":"{outcome}""#),
                    );
                }
                if self.rng.chance(0.2) {
                    self.track_at(
                        true,
                        Who::User,
                        meeting + 86_400 * 14,
                        "Opportunity Lost",
                        r#""reason":"budget""#,
                    );
                }
            }
        }
    }
}

/// One contact's JSON lines and how many messages they hold.
pub fn contact_lines(config: &Config, index: u64) -> (String, u64) {
    ContactWriter {
        config,
        rng: Rng::new(config.seed, index),
        index,
        sequence: 0,
        out: String::new(),
        late: String::new(),
        after_end: false,
        events: 0,
    }
    .write()
}

/// Writes the whole stream as JSON lines; returns the number of messages.
/// Generates in parallel, writes in contact order.
pub fn write_events(
    config: &Config,
    out: &mut impl Write,
    mut progress: impl FnMut(u64),
) -> io::Result<u64> {
    const CHUNK: u64 = 256;
    const WAVE: u64 = 64;
    let mut total = 0;
    let mut next = 0;
    while next < config.contacts {
        let wave_end = (next + CHUNK * WAVE).min(config.contacts);
        let chunks: Vec<(String, u64)> = (next..wave_end)
            .step_by(CHUNK as usize)
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|from| {
                let mut text = String::new();
                let mut events = 0;
                for index in from..(from + CHUNK).min(wave_end) {
                    let (lines, n) = contact_lines(config, index);
                    text.push_str(&lines);
                    events += n;
                }
                (text, events)
            })
            .collect();
        for (text, events) in chunks {
            out.write_all(text.as_bytes())?;
            total += events;
        }
        next = wave_end;
        progress(next);
    }
    Ok(total)
}

/// Writes a CRM export of about a third of the contacts as CSV (`id` plus
/// traits), the kind of file `--contacts` reads. Returns the row count.
pub fn write_contacts(config: &Config, out: &mut impl Write) -> io::Result<u64> {
    writeln!(out, "id,crm_owner,lifecycle,annual_value")?;
    let mut rows = 0;
    for index in 0..config.contacts {
        let mut r = Rng::new(config.seed ^ 0x00C0_FFEE, index);
        if r.chance(0.33) {
            let owner = r.pick(&["ana", "ben", "chen", "dara"]);
            let lifecycle = r.pick(&["lead", "lead", "customer", ""]);
            writeln!(out, "u{index:08},{owner},{lifecycle},{}", r.below(20) * 500)?;
            rows += 1;
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_valid_rfc3339() {
        let mut s = String::new();
        timestamp(&mut s, DEFAULT_START + 59 * 86_400 + 3_661, 7, false);
        assert_eq!(s, "2025-03-01T01:01:01.007Z");
        s.clear();
        timestamp(&mut s, DEFAULT_START - 1, 0, true);
        assert_eq!(s, "2025-01-01T01:59:59.000+02:00");
    }

    #[test]
    fn deterministic_per_seed_and_independent_of_threads() {
        let config = Config::new(300, 60, 7);
        let mut a = Vec::new();
        let n = write_events(&config, &mut a, |_| {}).unwrap();
        let mut b = Vec::new();
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| write_events(&config, &mut b, |_| {}).unwrap());
        assert_eq!(a, b);
        assert_eq!(n as usize, a.iter().filter(|c| **c == b'\n').count());
        let mut c = Vec::new();
        write_events(&Config::new(300, 60, 8), &mut c, |_| {}).unwrap();
        assert_ne!(a, c);
    }
}

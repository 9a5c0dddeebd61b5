//! The REST API: contacts, leaderboard, summary, models, outcomes,
//! activation jobs, the score stream and the challenger comparison.

use crate::harness::{basic, bearer, Server};
use crate::track;
use leadscore_store::Admin as _;
use leadscore_store::Store as _;
use serde_json::{json, Value};

#[test]
fn leaderboard_summary_explanation_events_models_and_erasure() {
    let server = Server::start();
    let read = bearer(&server.read_key);
    let admin = bearer(&server.admin_key);
    for (i, user) in ["ann", "ben", "cid", "dee", "eve"].iter().enumerate() {
        for k in 0..=i {
            let m = json!({"userId": user, "event": "Form Submitted", "messageId": format!("{user}{k}"),
                           "timestamp": format!("2025-03-0{}T10:00:00Z", k + 1), "properties": {"form": "demo"}});
            assert_eq!(
                server.post("/v1/track", &basic(&server.write_key), &m).0,
                200
            );
        }
    }
    // Two pages of two, then one: every contact once, highest first, all
    // scored as of the first page's time (the events are from March 2025:
    // their points have decayed since, and the list shows them decayed).
    let mut seen = Vec::new();
    let mut as_of = None;
    let mut path = "/api/v1/scores?limit=2".to_string();
    loop {
        let (status, page) = server.get(&path, &read);
        assert_eq!(status, 200, "{page}");
        let time = page["as_of"].as_str().unwrap().to_string();
        assert_eq!(as_of.get_or_insert_with(|| time.clone()), &time, "{page}");
        for c in page["contacts"].as_array().unwrap() {
            let id = c["contact_id"].as_str().unwrap().to_string();
            let (_, then) = server.get(&format!("/api/v1/contacts/{id}/score?as_of={time}"), &read);
            assert_eq!(c["score"], then["score"], "{id}");
            seen.push((c["score"]["score"].as_f64().unwrap(), id));
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/scores?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0].0 >= w[1].0));
    let (_, stored) = server.get("/api/v1/contacts/eve/history", &read);
    let entries = stored["entries"].as_array().unwrap();
    // A span of the history: entries whose event time is in [from, to).
    let (from, to) = ("2025-03-02T10:00:00Z", "2025-03-04T10:00:00Z");
    let (status, span) = server.get(
        &format!("/api/v1/contacts/eve/history?from={from}&to={to}"),
        &read,
    );
    assert_eq!(status, 200, "{span}");
    let times: Vec<&str> = span["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["at"].as_str().unwrap())
        .collect();
    assert_eq!(
        times,
        ["2025-03-02T10:00:00Z", "2025-03-03T10:00:00Z"],
        "{span}"
    );
    // Dates work too (midnight UTC), as on the command line.
    let (_, by_date) = server.get(
        "/api/v1/contacts/eve/history?from=2025-03-02&to=2025-03-04",
        &read,
    );
    assert_eq!(by_date, span);
    let (status, bad) = server.get("/api/v1/contacts/eve/history?from=soon", &read);
    assert_eq!(status, 400, "{bad}");
    assert!(bad["error"].as_str().unwrap().starts_with("from:"), "{bad}");
    let at_last_event = entries.last().unwrap()["new"]["score"].as_f64().unwrap();
    let eve = seen.iter().find(|(_, id)| id == "eve").unwrap().0;
    assert!(
        eve < at_last_event,
        "eve: {eve} listed, {at_last_event} at her last event"
    );
    let (_, bad) = server.get("/api/v1/scores?order=sideways", &read);
    assert!(bad["error"].as_str().unwrap().contains("order"), "{bad}");
    for cursor in ["12~ann", "x~1~ann", "1~x~ann", "1~2"] {
        let (status, bad) = server.get(&format!("/api/v1/scores?cursor={cursor}"), &read);
        assert_eq!(status, 400, "{cursor}: {bad}");
    }
    // As of a past time: each contact's score then (from its messages up
    // to it), pages continuing that listing; before anyone was seen, none.
    let then = "2025-03-02T12:00:00Z";
    let mut listed = Vec::new();
    let mut path = format!("/api/v1/scores?limit=3&as_of={then}");
    loop {
        let (status, page) = server.get(&path, &read);
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["as_of"], then, "{page}");
        for c in page["contacts"].as_array().unwrap() {
            let id = c["contact_id"].as_str().unwrap();
            let (_, exact) =
                server.get(&format!("/api/v1/contacts/{id}/score?as_of={then}"), &read);
            assert_eq!(c["score"], exact["score"], "{id}");
            assert!(c["last_event"].as_str().unwrap() <= then, "{c}");
            listed.push(id.to_string());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => {
                assert!(cursor.starts_with('r'), "{cursor}");
                let (status, bad) = server.get(
                    &format!("/api/v1/scores?limit=3&cursor={cursor}&as_of=2025-03-03"),
                    &read,
                );
                assert_eq!(status, 400, "{bad}");
                path = format!("/api/v1/scores?limit=3&cursor={cursor}&as_of={then}");
            }
            None => break,
        }
    }
    assert_eq!(listed.len(), 5, "{listed:?}");
    let (_, before) = server.get("/api/v1/scores?as_of=2025-02-01", &read);
    assert_eq!(before["contacts"], json!([]), "{before}");
    let (_, nobody) = server.get("/api/v1/segments/summary?as_of=2025-02-01", &read);
    assert_eq!(nobody["contacts"], 0, "{nobody}");
    let (status, bad) = server.get("/api/v1/segments/summary?as_off=2025-02-01", &read);
    assert_eq!(status, 400, "{bad}");
    let (_, summary) = server.get("/api/v1/segments/summary", &read);
    assert!(summary["as_of"].is_string(), "{summary}");
    let binned: u64 = summary["histogram"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["contacts"].as_u64().unwrap())
        .sum();
    assert_eq!(
        binned + summary["excluded"].as_u64().unwrap(),
        5,
        "{summary}"
    );
    let (_, explained) = server.get("/api/v1/contacts/eve/explanation", &read);
    assert!(
        !explained["explanation"]["rules"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{explained}"
    );
    let (_, events) = server.get("/api/v1/contacts/eve/events?limit=3", &read);
    assert_eq!(events["events"].as_array().unwrap().len(), 3);
    assert_eq!(events["next_cursor"], 3);
    let (_, past) = server.get(
        "/api/v1/contacts/eve/score?as_of=2025-03-01T12:00:00Z",
        &read,
    );
    let (_, now) = server.get("/api/v1/contacts/eve/score", &read);
    assert_ne!(past["score"], now["score"]);
    // Models: a bad one names its place; a good one becomes version 2.
    let (status, bad) = server.text(
        "POST",
        "/api/v1/models?name=bad.toml",
        &admin,
        "[model]\nname = \"x\"\n[[fit]]\nid = \"f\"\nwhen = 'traits.a =='\npoints = 1\n",
    );
    assert_eq!(status, 422, "{bad}");
    assert!(
        bad["error"].as_str().unwrap().contains("bad.toml:5:"),
        "{bad}"
    );
    let (status, added) = server.text(
        "POST",
        "/api/v1/models?name=email.toml",
        &admin,
        include_str!("../../../../examples/email.toml"),
    );
    assert_eq!(status, 201, "{added}");
    assert_eq!(added["model"]["version"], 2);
    let (_, diff) = server.get("/api/v1/models/1/diff/2", &read);
    assert!(!diff["changes"].as_array().unwrap().is_empty(), "{diff}");
    // A dry run scores both models as of the time asked (default now).
    let email = include_str!("../../../../examples/email.toml");
    let (status, dry) = server.text(
        "POST",
        "/api/v1/models/dry-run?as_of=2031-01-01",
        &admin,
        email,
    );
    assert_eq!(status, 200, "{dry}");
    assert_eq!(dry["dry_run"]["as_of"], "2031-01-01T00:00:00Z", "{dry}");
    let (status, bad) = server.text("POST", "/api/v1/models/dry-run?as_of=soon", &admin, email);
    assert_eq!(status, 400, "{bad}");
    assert!(bad["error"].as_str().unwrap().contains("as_of"), "{bad}");
    // GDPR.
    let (_, export) = server.get("/api/v1/contacts/ann/export", &admin);
    assert_eq!(export["events"].as_array().unwrap().len(), 1);
    assert_eq!(
        server
            .request("DELETE", "/api/v1/contacts/ann", &admin, None)
            .0,
        200
    );
    assert_eq!(server.get("/api/v1/contacts/ann", &read).0, 404);
}

#[test]
fn outcomes_are_recorded_for_evaluation() {
    let server = Server::start();
    let key = basic(&server.write_key);
    let (status, body) = server.post("/api/v1/outcomes", &key, &json!({"outcomes": [
        {"contact_id": "ann", "outcome": "won", "value": 5000.0, "at": "2025-04-01T00:00:00+02:00"},
        {"contact_id": "ben", "outcome": "disqualified"},
        {"contact_id": "dee", "outcome": "lost", "at": "2025-05-02"},
    ]}));
    assert_eq!(
        (status, body["recorded"].clone()),
        (201, json!(3)),
        "{body}"
    );
    let (status, body) = server.post(
        "/api/v1/outcomes",
        &key,
        &json!({"outcomes": [
        {"contact_id": "cid", "outcome": "won"}, {"contact_id": "", "outcome": "won"}]}),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().starts_with("outcomes[1]"),
        "{body}"
    );
    let (status, body) = server.post(
        "/api/v1/outcomes",
        &key,
        &json!({"contact_id": "x", "outcome": "won", "at": "soon"}),
    );
    assert_eq!(status, 400, "{body}");
    // Sent again (a retry, or the same CRM export): nothing new.
    let (status, body) = server.post(
        "/api/v1/outcomes",
        &key,
        &json!({"outcomes": [
            {"contact_id": "ann", "outcome": "won", "value": 5000.0, "at": "2025-03-31T22:00:00Z"},
            {"contact_id": "dee", "outcome": "lost", "at": "2025-05-02"},
            {"contact_id": "dee", "outcome": "lost", "at": "2025-05-02", "value": 1.0},
        ]}),
    );
    assert_eq!(
        (status, body["recorded"].clone(), body["duplicates"].clone()),
        (201, json!(1), json!(2)),
        "{body}"
    );
    let store = server.stop();
    let recorded = store.outcomes().unwrap();
    assert_eq!(recorded.len(), 4, "a rejected request stores nothing");
    assert_eq!(
        recorded[3].value,
        Some(1.0),
        "another value is another outcome"
    );
    assert_eq!(recorded[0].at.to_string(), "2025-03-31T22:00:00Z");
    assert_eq!(recorded[1].outcome, "disqualified");
    assert_eq!(recorded[2].at.to_string(), "2025-05-02T00:00:00Z");
}

#[test]
fn a_model_is_activated_in_the_background_while_events_keep_coming() {
    let server = Server::start();
    let admin = bearer(&server.admin_key);
    for i in 0..40 {
        let m = track(&format!("c{i}"), &format!("e{i}"), "Email Opened");
        assert_eq!(
            server.post("/v1/track", &basic(&server.write_key), &m).0,
            200
        );
    }
    let (status, added) = server.text(
        "POST",
        "/api/v1/models?name=email.toml",
        &admin,
        include_str!("../../../../examples/email.toml"),
    );
    assert_eq!(status, 201, "{added}");
    let (status, started) = server.request("POST", "/api/v1/models/2/activate", &admin, None);
    assert_eq!(status, 202, "{started}");
    let job = started["job"].as_u64().unwrap();
    // Ingestion is not blocked meanwhile.
    assert_eq!(
        server
            .post(
                "/v1/track",
                &basic(&server.write_key),
                &track("late", "l1", "Email Opened")
            )
            .0,
        200
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let finished = loop {
        let (_, state) = server.get(&format!("/api/v1/jobs/{job}"), &admin);
        if state["state"] != "running" {
            break state;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "activation still running: {state}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(finished["state"], "done", "{finished}");
    assert!(
        finished["report"]["contacts"].as_u64().unwrap() >= 40,
        "{finished}"
    );
    let (_, models) = server.get("/api/v1/models", &admin);
    assert_eq!(models["models"][1]["active"], true, "{models}");
    assert_eq!(
        server
            .request("POST", "/api/v1/models/9/activate", &admin, None)
            .0,
        404
    );
    assert_eq!(server.get("/api/v1/jobs/99", &admin).0, 404);
    let store = server.stop();
    assert_eq!(store.contact("late").unwrap().unwrap().model_version, 2);
    // The job is kept in the store: a restarted or another process answers.
    let kept = store.job(job as i64).unwrap().unwrap();
    assert_eq!(kept.state, "done");
    assert_eq!(serde_json::to_value(&kept).unwrap(), finished);
}

#[test]
fn score_changes_are_pushed_as_server_sent_events() {
    use std::io::{BufRead, BufReader, Write};
    let server = Server::start();
    let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /api/v1/stream/scores?contact=sse-anon HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\n\r\n",
        bearer(&server.read_key)
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    while !head.ends_with("\r\n\r\n") {
        reader.read_line(&mut head).unwrap();
    }
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_lowercase()
            .contains("content-type: text/event-stream"),
        "{head}"
    );
    // Another contact's change is filtered out; this one's arrives, under
    // its canonical id once identified.
    for (user, id) in [("someone-else", "s1"), ("sse-anon", "s2")] {
        let (status, _) = server.post(
            "/v1/track",
            &basic(&server.write_key),
            &json!({"anonymousId": user, "event": "Form Submitted", "messageId": id,
                    "timestamp": "2025-03-01T10:00:00Z", "properties": {"form": "demo"}}),
        );
        assert_eq!(status, 200);
    }
    let mut event = String::new();
    let data = loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "stream ended");
        // Chunked transfer: skip chunk sizes and blank lines.
        if line.starts_with("event:") {
            event = line.trim().to_string();
        } else if let Some(data) = line.strip_prefix("data:") {
            break data.trim().to_string();
        }
    };
    assert_eq!(event, "event: score");
    let change: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(change["contact"], "sse-anon");
    assert_eq!(change["cause"], "message s2");
    assert!(change["new"]["score"].as_f64().unwrap() > 0.0, "{change}");
    // Without a key: 401.
    let (status, _) = server.get("/api/v1/stream/scores", "");
    assert_eq!(status, 401);
    // Shutting down ends the open stream instead of waiting for it.
    server.stop();
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut reader, &mut rest);
}

#[test]
fn a_challenger_is_compared_in_shadow_on_recorded_outcomes() {
    let server = Server::start();
    let admin = bearer(&server.admin_key);
    let read = bearer(&server.read_key);
    let (status, body) = server.get("/api/v1/models/compare", &read);
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("no challenger"),
        "{body}"
    );
    // A challenger that ignores form submissions.
    let source = include_str!("../../../../examples/b2b.toml")
        .replace("points = 15\ncap = 30", "points = 0")
        .replace("nth = \"1\"\npoints = 20", "nth = \"1\"\npoints = 0");
    assert_ne!(source, include_str!("../../../../examples/b2b.toml"));
    let (status, added) = server.text("POST", "/api/v1/models?name=c.toml", &admin, &source);
    assert_eq!(status, 201, "{added}");
    let version = added["model"]["version"].as_u64().unwrap();
    let no_challenger = server.get("/api/v1/contacts/c0/explanation?model=challenger", &read);
    assert_eq!(no_challenger.0, 409, "{}", no_challenger.1);
    let (status, _) = server.post(
        &format!("/api/v1/models/{version}/challenger"),
        &admin,
        &json!({}),
    );
    assert_eq!(status, 200);
    for i in 0..12 {
        let user = format!("c{i}");
        let mut events = vec![
            json!({"type": "identify", "userId": user, "messageId": format!("{user}-i"),
            "timestamp": "2025-03-01T09:00:00Z", "traits": {"consent": true}}),
        ];
        if i % 2 == 0 {
            events.push(
                json!({"type": "track", "userId": user, "event": "Form Submitted",
                "messageId": format!("{user}-f"), "timestamp": "2025-03-01T10:00:00Z",
                "properties": {"form": "demo"}}),
            );
        }
        let (status, _) = server.post(
            "/v1/batch",
            &basic(&server.write_key),
            &json!({"batch": events}),
        );
        assert_eq!(status, 200);
        let outcome = json!({"contact_id": user, "outcome": if i % 2 == 0 { "won" } else { "lost" },
            "at": "2025-04-01T00:00:00Z"});
        let (status, _) = server.post("/api/v1/outcomes", &basic(&server.write_key), &outcome);
        assert_eq!(status, 201);
    }
    // Contacts without an outcome, and one whose outcome is recorded under
    // the anonymous id its identify linked.
    let mut others: Vec<Value> = (0..6)
        .map(|i| {
            json!({"type": "track", "userId": format!("n{i}"), "event": "Form Submitted",
            "messageId": format!("n{i}-f"), "timestamp": "2025-03-02T10:00:00Z",
            "properties": {"form": "demo"}})
        })
        .collect();
    others.push(
        json!({"type": "page", "anonymousId": "anon-s", "name": "Pricing",
        "messageId": "s-p", "timestamp": "2025-03-01T08:00:00Z"}),
    );
    others.push(
        json!({"type": "identify", "userId": "s", "anonymousId": "anon-s",
        "messageId": "s-i", "timestamp": "2025-03-01T09:00:00Z", "traits": {"consent": true}}),
    );
    let (status, _) = server.post(
        "/v1/batch",
        &basic(&server.write_key),
        &json!({"batch": others}),
    );
    assert_eq!(status, 200);
    // And one keyed by an id no contact holds: left out, and counted.
    let outcome = json!({"outcomes": [
        {"contact_id": "anon-s", "outcome": "won", "at": "2025-04-01T00:00:00Z"},
        {"contact_id": "ghost@example.com", "outcome": "won", "at": "2025-04-01T00:00:00Z"},
    ]});
    assert_eq!(
        server
            .post("/api/v1/outcomes", &basic(&server.write_key), &outcome)
            .0,
        201
    );
    // One contact in shadow: the challenger gives no points for the form.
    let explained = |model: &str| {
        server.get(
            &format!("/api/v1/contacts/c0/explanation?as_of=2025-03-02T00:00:00Z{model}"),
            &read,
        )
    };
    let (status, active) = explained("");
    assert_eq!(status, 200, "{active}");
    let (status, shadow) = explained("&model=challenger");
    assert_eq!(status, 200, "{shadow}");
    assert_eq!(shadow["model_version"], version);
    assert_eq!(active["model_version"].as_u64().unwrap() + 1, version);
    let score = |v: &Value| v["score"]["score"].as_f64().unwrap();
    assert!(score(&shadow) < score(&active), "{shadow} {active}");
    let (status, same) = explained(&format!("&model={}", active["model_version"]));
    assert_eq!((status, score(&same)), (200, score(&active)));
    assert_eq!(explained("&model=newest").0, 400);
    assert_eq!(explained("&model=99").0, 404);
    let (status, bad) = server.get("/api/v1/models/compare?top_share=0", &read);
    assert_eq!(status, 400, "{bad}");
    let (status, c) = server.get("/api/v1/models/compare", &read);
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["challenger"], version);
    assert_eq!(c["comparison"]["contacts"], 13);
    // Which recorded values counted as converted.
    let counted = |side: &str| -> u64 {
        c["outcomes"][side]
            .as_object()
            .unwrap()
            .values()
            .map(|n| n.as_u64().unwrap())
            .sum()
    };
    assert!(
        counted("converted") > 0 && counted("not_converted") > 0,
        "{c}"
    );
    assert_eq!(c["outcomes"]["suspicious"], json!([]), "{c}");
    assert_eq!(c["unknown_contacts"], 1, "{c}");
    assert!(
        c["comparison"]["champion_auc"].as_f64().unwrap()
            > c["comparison"]["challenger_auc"].as_f64().unwrap(),
        "{c}"
    );
    assert!(
        c["comparison"]["verdict"]
            .as_str()
            .unwrap()
            .starts_with("the champion"),
        "{c}"
    );
    // The same comparison as over the whole log, as `leadscore compare`
    // computes it (the server reads only the contacts with outcomes).
    let store = server.stop();
    use leadscore_eval::evaluate::{compare, outcomes_by_contact, points, Policy, Settings};
    let recorded = store.outcomes().unwrap();
    assert_eq!(
        counted("converted") + counted("not_converted"),
        recorded.len() as u64
    );
    let known = outcomes_by_contact(
        recorded
            .iter()
            .map(|o| (o.contact_id.as_str(), o.outcome.as_str(), o.at)),
        &["converted".to_string(), "won".to_string()],
    );
    let mut stored = Vec::new();
    store
        .each_log(&mut |log| stored.extend(log.messages))
        .unwrap();
    let contacts =
        leadscore_core::batch::contacts_as_of(stored, Vec::new(), leadscore_store::now());
    let policy = Policy::parse("before:7d").unwrap();
    let (_, champion) = store.active_model().unwrap().unwrap();
    let (_, challenger) = store.challenger().unwrap().unwrap();
    let a = points(&champion, &contacts, &known, policy).unwrap();
    let b = points(&challenger, &contacts, &known, policy).unwrap();
    let expected = compare(&a, &b, 0.1, &Settings::default()).unwrap();
    assert_eq!(c["comparison"], serde_json::to_value(expected).unwrap());
}

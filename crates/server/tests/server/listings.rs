//! Pages of a leaderboard as of a past time: cut from one computation
//! (kept while the pages are read), computed afresh without a cursor, and
//! never showing a contact erased meanwhile.

use crate::harness::{basic, bearer, Server};
use serde_json::{json, Value};

/// Form submissions before `then` for each user (`n` for the n-th).
fn submit(server: &Server, users: &[&str]) {
    for (i, user) in users.iter().enumerate() {
        for k in 0..=i {
            let m = json!({"userId": user, "event": "Form Submitted",
                           "messageId": format!("{user}-{k}"),
                           "timestamp": format!("2025-03-0{}T10:00:00Z", k + 1),
                           "properties": {"form": "demo"}});
            assert_eq!(
                server.post("/v1/track", &basic(&server.write_key), &m).0,
                200
            );
        }
    }
}

/// The ids of every page from `cursor` on (all pages without one), and
/// the cursors met.
fn pages(server: &Server, read: &str, mut cursor: Option<String>) -> (Vec<String>, Vec<String>) {
    let then = "2025-03-09T00:00:00Z";
    let (mut ids, mut cursors) = (Vec::new(), Vec::new());
    loop {
        let path = match &cursor {
            None => format!("/api/v1/scores?limit=2&as_of={then}"),
            Some(c) => format!("/api/v1/scores?limit=2&as_of={then}&cursor={c}"),
        };
        let (status, page): (u16, Value) = server.get(&path, read);
        assert_eq!(status, 200, "{page}");
        for c in page["contacts"].as_array().unwrap() {
            ids.push(c["contact_id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => {
                cursors.push(c.to_string());
                cursor = Some(c.to_string());
            }
            None => return (ids, cursors),
        }
    }
}

/// The whole listing as of the same time, in one page.
fn whole(server: &Server, read: &str) -> Vec<String> {
    let (_, page) = server.get("/api/v1/scores?limit=1000&as_of=2025-03-09", read);
    page["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["contact_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn pages_of_a_past_listing_come_from_one_computation() {
    let server = Server::start();
    let read = bearer(&server.read_key);
    let admin = bearer(&server.admin_key);
    submit(&server, &["ann", "ben", "cid", "dee", "eve"]);
    let before = whole(&server, &read);
    let (all, cursors) = pages(&server, &read, None);
    assert_eq!(all, before);
    assert_eq!(all.len(), 5);
    assert!(
        cursors
            .iter()
            .all(|c| c.starts_with('r') && c.contains('.')),
        "the pages name their kept listing: {cursors:?}"
    );

    // A late contact, first seen before the listing's time: the pages of
    // the listing already begun stay as computed; a new listing has it.
    submit(&server, &["zed"]);
    let (rest, _) = pages(&server, &read, Some(cursors[0].clone()));
    assert_eq!(rest, before[2..], "the listing begun");
    let (fresh, cursors) = pages(&server, &read, None);
    assert!(
        fresh.contains(&"zed".to_string()) && fresh.len() == 6,
        "{fresh:?}"
    );

    // A contact erased meanwhile is on no later page.
    let erased = fresh[3].clone();
    let path = format!("/api/v1/contacts/{erased}");
    assert_eq!(server.request("DELETE", &path, &admin, None).0, 200);
    let (rest, _) = pages(&server, &read, Some(cursors[0].clone()));
    let expected: Vec<String> = fresh[2..]
        .iter()
        .filter(|id| **id != erased)
        .cloned()
        .collect();
    assert_eq!(rest, expected, "after erasing {erased}");

    // A kept listing's number that is gone (or never was) computes the
    // page again; a malformed one is refused.
    let now = whole(&server, &read);
    let (_, cursors) = pages(&server, &read, None);
    let gone = cursors[0].replacen('.', ".9", 1);
    let (rest, _) = pages(&server, &read, Some(gone));
    assert_eq!(rest, now[2..]);
    for bad in [
        "r1741478400000000000.x~1~ann",
        "1741478400000000000.3~1~ann",
    ] {
        let (status, answer) = server.get(&format!("/api/v1/scores?limit=2&cursor={bad}"), &read);
        assert_eq!(status, 400, "{bad}: {answer}");
    }
}

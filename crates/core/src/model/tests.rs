//! Model checking: every error names file:line:column and the rule.

use super::*;

fn errors(source: &str) -> Vec<String> {
    match Model::from_toml("m.toml", source) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn cel_syntax_error_points_into_the_condition() {
    let e = errors("[model]\nname = \"x\"\n[[fit]]\nid = \"size\"\nwhen = 'traits.employees >= '\npoints = 1\n");
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("m.toml:5:29: rule `size`: invalid CEL"),
        "{}",
        e[0]
    );
}

#[test]
fn unknown_variable_is_placed_exactly() {
    let e = errors("[model]\nname = \"x\"\n[[engagement]]\nid = \"p\"\nevent = \"$page\"\nwhen = '''properties.a == 1 && traitz.b'''\npoints = 1\n");
    assert!(
        e[0].starts_with("m.toml:6:32: rule `p`: unknown variable `traitz`"),
        "{}",
        e[0]
    );
}

#[test]
fn unknown_key_names_the_rule() {
    let e = errors("[model]\nname = \"x\"\n[[engagement]]\nid = \"v\"\nevent = \"V\"\npoints = 1\nweight = 3\n");
    assert!(
        e[0].starts_with("m.toml:7:1: rule `v`: unknown field `weight`"),
        "{}",
        e[0]
    );
}

#[test]
fn bad_durations_duplicates_and_streak_conflicts_are_all_reported() {
    let e = errors(
        r#"[model]
name = "x"
[score]
half_life = "90 days"
[[engagement]]
id = "a"
event = "V"
points = 1
limit = { count = 3, per = "1y" }
[[inactivity]]
id = "a"
after = "60d"
points = -1
[[streak]]
id = "s"
event = "Email Delivered"
reset = ["Email Opened", "Email Delivered"]
length = 4
points = -30
"#,
    );
    let text = e.join("\n");
    assert!(
        text.contains("m.toml:4:13: rule `[score]`: `half_life`: expected a duration"),
        "{text}"
    );
    assert!(
        text.contains("m.toml:9:28: rule `a`: `limit.per`: expected a duration"),
        "{text}"
    );
    assert!(
        text.contains("m.toml:11:6: rule `a`: duplicate rule id \"a\" (first used at m.toml:6)"),
        "{text}"
    );
    assert!(
        text.contains(
            "m.toml:17:26: rule `s`: event \"Email Delivered\" is both counted and a reset"
        ),
        "{text}"
    );
    assert_eq!(e.len(), 4, "{text}");
}

#[test]
fn fit_needs_a_complete_shape() {
    let e = errors("[model]\nname = \"x\"\n[[fit]]\nid = \"f\"\npoints = 3\n");
    assert!(
        e[0].contains("needs either `when` and `points`, or `cases`"),
        "{}",
        e[0]
    );
}

#[test]
fn labels_must_be_distinct() {
    let e = errors("[model]\nname = \"x\"\n[[tier]]\nname = \"hot\"\nmin = 70\n[[tier]]\nname = \"hot\"\nmin = 70\n");
    assert_eq!(e.len(), 2, "{e:?}");
}

#[test]
fn dispatch_interns_names_once() {
    let m = Model::from_toml(
        "m.toml",
        "[model]\nname = \"x\"\n[[engagement]]\nid = \"a\"\nevent = \"V\"\npoints = 1\n[[engagement]]\nid = \"b\"\nevent = \"V\"\npoints = 2\n[[streak]]\nid = \"s\"\nevent = \"D\"\nreset = [\"V\"]\nlength = 2\npoints = 1\n[[fit]]\nid = \"f\"\nwhen = 'count(\"V\") > 1'\npoints = 1\n",
    )
    .unwrap();
    let v = m.dispatch(m.event_id("V").unwrap());
    assert_eq!(v.engagements, [0, 1]);
    assert_eq!(v.streak_resets, [0]);
    assert_eq!(v.activity_slots, [0]);
    assert!(m.event_id("W").is_none());
    assert!(m.contact_rules_use_activity());
    assert_eq!(m.summary(), "0 exclude, 1 fit, 2 engagement, 1 streak, 0 inactivity, 0 tier, 0 grade, 0 stage, 0 trigger");
}

#[test]
fn stored_versions_skip_the_checks_added_for_new_models() {
    let source = r#"
[model]
name = "m"

[[tier]]
name = "hot"
min = 40

[[trigger]]
id = "t"
when = 'tier == "Hot"'
actions = [{ type = "campaign", campaign = "c" }]
"#;
    let err = Model::from_toml("m.toml", source).unwrap_err().to_string();
    assert!(err.contains("`tier` is never \"Hot\""), "{err}");
    // A store that accepted this version before the check keeps working.
    assert!(Model::from_stored_toml("m.toml", source).is_ok());
    // Every other check still applies to stored versions.
    let broken = source.replace("min = 40", "min = nan");
    assert!(Model::from_stored_toml("m.toml", &broken).is_err());
}

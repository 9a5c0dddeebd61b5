//! "Bad input never panics" (SPEC §5) for conditions: random token soup in
//! engagement, fit, exclusion and trigger conditions either fails to
//! compile with an error or compiles and scores, explains and fires over
//! messages whose properties and traits have every JSON type, including the
//! extremes (i64::MAX, 1.5e300, nulls, nested arrays) — never a panic.

use leadscore_core::batch::contacts_as_of;
use leadscore_core::event::Message;
use leadscore_core::fold::sort_log;
use leadscore_core::model::Model;
use leadscore_core::time::Timestamp;
use leadscore_core::triggers::simulate;
use proptest::prelude::*;

/// Pieces of CEL: variables, fields, macros, the spec's functions,
/// operators and literals at their limits (overflow, division by zero).
const TOKENS: &[&str] = &[
    "properties",
    "traits",
    "company",
    "context",
    "event",
    "score",
    "raw",
    "fit",
    "tier",
    "grade",
    "stage",
    "status",
    ".",
    ".",
    ".",
    "price",
    "path",
    "plan",
    "employees",
    "country",
    "tags",
    "x",
    "size()",
    ".startsWith(\"/p\")",
    ".contains(\"a\")",
    ".matches(\"^a+$\")",
    ".exists(v, v > 1)",
    ".all(v, v == \"a\")",
    ".map(v, v * 2)",
    ".filter(v, v > 0)",
    ".endsWith(\"x\")",
    "count(\"Product Viewed\")",
    "days_since(\"Product Viewed\")",
    "count(\"$page\")",
    "has(",
    "size(",
    "int(",
    "double(",
    "string(",
    "uint(",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    "?",
    "!",
    "-",
    "+",
    "*",
    "/",
    "%",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "&&",
    "||",
    " in ",
    "0",
    "1",
    "-1",
    "9223372036854775807",
    "-9223372036854775808",
    "1.5",
    "1e308",
    "1u",
    "18446744073709551615u",
    "\"a\"",
    "\"\"",
    "true",
    "false",
    "null",
    "[1, 2]",
    "{\"a\": 1}",
    "\"/pricing\"",
    "1/0",
    "1%0",
    "-(-9223372036854775808)",
];

const LOG: &[&str] = &[
    r#"{"type":"track","event":"Product Viewed","userId":"u1","messageId":"m1","timestamp":"2025-01-01T00:00:00Z","properties":{"price":10,"tags":[1,2,"a"],"x":{"y":null},"path":"/p"}}"#,
    r#"{"type":"page","name":"Home","userId":"u1","messageId":"m2","timestamp":"2025-01-02T00:00:00Z","properties":{"path":"/pricing","price":1.5e300}}"#,
    r#"{"type":"identify","userId":"u1","messageId":"m3","timestamp":"2025-01-01T00:00:00Z","traits":{"country":"DE","employees":9223372036854775807,"plan":null,"tags":[],"x":-0.0}}"#,
    r#"{"type":"group","userId":"u1","groupId":"g","messageId":"m4","timestamp":"2025-01-01T00:00:00Z","traits":{"employees":"many","size":[1]}}"#,
    r#"{"type":"track","event":"Product Viewed","anonymousId":"a2","messageId":"m5","timestamp":"2025-01-03T00:00:00Z","properties":{"price":"10","tags":{"a":1},"x":[[]]}}"#,
];

/// A model with `expr` as the condition of the rule kind `place` selects
/// (0 engagement, 1 fit and exclusion, 2 trigger), `true` elsewhere.
fn model_text(expr: &str, place: usize) -> String {
    let mut when = ["true"; 3];
    when[place] = expr;
    let [e, f, g] = when;
    format!(
        "[model]\nname = 'f'\n[score]\nhalf_life = '30d'\n\
         [[engagement]]\nid = 'e'\nevent = 'Product Viewed'\nwhen = '{e}'\npoints = 5\n\
         [[fit]]\nid = 'f'\nwhen = '{f}'\npoints = 3\n\
         [[exclude]]\nid = 'x'\nwhen = '({f}) && false'\nreason = 'r'\n\
         [[tier]]\nname = 'hot'\nmin = 1\n\
         [[trigger]]\nid = 't'\nwhen = '{g}'\nactions = [{{ type = 'campaign', campaign = 'c' }}]\n"
    )
}

/// Syntactically valid CEL over the variables every rule kind has
/// (`traits`, `company`), built from leaves by operators, macros and
/// functions, so most of it compiles and reaches evaluation.
fn arb_expr() -> impl Strategy<Value = String> {
    let leaf = prop::sample::select(vec![
        "traits.employees",
        "traits.country",
        "traits.tags",
        "traits.x",
        "traits.plan",
        "company.employees",
        "company.size",
        "traits",
        "0",
        "0",
        "1",
        "1",
        "-1",
        "9223372036854775807",
        "-9223372036854775808",
        "18446744073709551615u",
        "0u",
        "1.5",
        "1e308",
        "-0.0",
        "\"a\"",
        "\"\"",
        "true",
        "null",
        "[1, \"a\", 2.5]",
        "{\"a\": 1}",
        "count(\"Product Viewed\")",
        "days_since(\"Product Viewed\")",
    ])
    .prop_map(String::from);
    leaf.prop_recursive(4, 24, 2, |inner| {
        let binary = prop::sample::select(vec![
            "+", "-", "*", "/", "%", "==", "!=", "<", "<=", ">", ">=", "&&", "||", " in ",
        ]);
        prop_oneof![
            (inner.clone(), binary, inner.clone()).prop_map(|(a, op, b)| format!("({a}{op}{b})")),
            inner.clone().prop_map(|a| format!("-{a}")),
            inner.clone().prop_map(|a| format!("!{a}")),
            (inner.clone(), inner.clone(), inner.clone())
                .prop_map(|(c, a, b)| format!("({c} ? {a} : {b})")),
            (
                inner.clone(),
                prop::sample::select(vec![
                    "size({})",
                    "int({})",
                    "uint({})",
                    "double({})",
                    "string({})",
                    "{}.exists(v, v > 1)",
                    "{}.all(v, v == 2)",
                    "{}.map(v, v * 2)[0]",
                    "{}.filter(v, v / 0 > 1)",
                    "{}[0]",
                    "{}[\"a\"]",
                    "{}.startsWith(\"a\")",
                    "{}.matches(\"^a+$\")",
                    "has({}.y)",
                ])
            )
                .prop_map(|(a, f)| f.replace("{}", &a)),
        ]
    })
}

/// Scores, explains and fires `model` over [`LOG`].
fn fold_everything(model: &Model) -> Result<(), TestCaseError> {
    let messages: Vec<Message> = LOG
        .iter()
        .map(|l| Message::from_json_text(l.as_bytes(), None).unwrap())
        .collect();
    let t = Timestamp::parse("2025-07-01T00:00:00Z").unwrap();
    for mut contact in contacts_as_of(messages, Vec::new(), t) {
        sort_log(&mut contact.messages);
        let (score, _) = contact.explain_as_of(model, t);
        prop_assert!(score.score.is_finite());
        simulate(model, contact.base_traits.as_ref(), &contact.messages, t);
    }
    Ok(())
}

proptest! {
    #![proptest_config(crate::harness::cases(1024))]
    #[test]
    fn random_conditions_never_panic(
        tokens in prop::collection::vec(prop::sample::select(TOKENS), 1..9),
        place in 0..3usize,
    ) {
        if let Ok(model) = Model::from_toml("m.toml", &model_text(&tokens.concat(), place)) {
            fold_everything(&model)?;
        }
    }

    #[test]
    fn well_formed_conditions_compile_and_never_panic(expr in arb_expr(), place in 0..3usize) {
        let model = Model::from_toml("m.toml", &model_text(&expr, place));
        // Only a wrong literal type for a function may be refused when compiled.
        match model {
            Ok(model) => fold_everything(&model)?,
            Err(e) => prop_assert!(!e.to_string().contains("unknown variable"), "{expr}: {e}"),
        }
    }
}

/// The property's cases include conditions that compile and hit the
/// awkward values (so it is not only exercising the compiler's errors).
#[test]
fn the_token_soup_reaches_evaluation() {
    for (expr, places) in [
        ("properties.price / 0 > 1", 0..1),
        ("properties.tags.exists(v, v > 1)", 0..1),
        ("traits.employees + 1 > 0", 0..3),
        ("-(-9223372036854775808) < 0", 0..3),
        ("company.size.all(v, v == \"a\")", 0..3),
        ("score / 0 > 1", 2..3),
    ] {
        for place in places {
            Model::from_toml("m.toml", &model_text(expr, place))
                .unwrap_or_else(|e| panic!("{expr}: {e}"));
        }
    }
}

/// The example models' sources.
fn example_sources() -> Vec<String> {
    ["b2b", "ecommerce", "email"]
        .iter()
        .map(|name| {
            let path = format!("{}/../../examples/{name}.toml", env!("CARGO_MANIFEST_DIR"));
            std::fs::read_to_string(path).unwrap()
        })
        .collect()
}

/// Whether an error line starts with `m.toml:LINE:COLUMN:`.
fn placed(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("error: m.toml:") else {
        return false;
    };
    let mut parts = rest.splitn(3, ':');
    parts.next().is_some_and(|l| l.parse::<u32>().is_ok())
        && parts.next().is_some_and(|c| c.parse::<u32>().is_ok())
}

proptest! {
    #![proptest_config(crate::harness::cases(512))]
    /// SPEC §5: a model error names the file, line and column. Every
    /// error of an example model with a few characters deleted, inserted
    /// or replaced does, on a line of its own (continuation lines indent).
    #[test]
    fn every_model_error_names_its_place(
        which in 0..3usize,
        edits in prop::collection::vec((0.0..1.0f64, 0..3u8, prop::sample::select(
            "()[]{}<>\"'.,:;=!&|+-*/%?019abxyz_ \n\\$#tfnhd".chars().collect::<Vec<_>>())), 1..4),
    ) {
        let mut text: Vec<char> = example_sources()[which].chars().collect();
        for (at, op, c) in edits {
            let i = ((text.len() as f64) * at) as usize;
            match op {
                0 if i < text.len() => { text.remove(i); }
                1 => text.insert(i, c),
                _ if i < text.len() => text[i] = c,
                _ => {}
            }
        }
        let text: String = text.into_iter().collect();
        if let Err(errors) = Model::from_toml("m.toml", &text) {
            for line in errors.to_string().lines().filter(|l| !l.starts_with(' ')) {
                prop_assert!(placed(line), "{line}\nin:\n{text}");
            }
        }
    }
}

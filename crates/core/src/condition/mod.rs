//! Conditions: CEL expressions parsed by the `cel` crate once at load and
//! compiled into a small tree that evaluates directly over borrowed event JSON.
//!
//! Why not `cel`'s interpreter: it needs every event's properties converted
//! into its own values and functions that own their data, while `count()` and
//! `days_since()` must read the contact being scored; see `docs/decisions.md`.

mod compile;
mod eval;
mod value;

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::event::LazyObject;

pub use compile::{CompileError, Names, Place};
use eval::eval;
use value::{Arith, Val};

/// A compiled condition.
#[derive(Debug, Clone)]
pub struct Condition {
    source: String,
    root: Node,
    uses_activity: bool,
    uses_time: bool,
    reads_traits: bool,
    reads_company: bool,
}

/// Variables bound by the scorer for one evaluation. `None` fields are not
/// available where the condition runs (compile-time checks make sure it never
/// asks for them).
#[derive(Default, Clone, Copy)]
pub struct Scope<'a> {
    /// `event`: the track event name or the page/screen name.
    pub event: Option<&'a str>,
    /// `properties`.
    pub properties: Option<&'a LazyObject>,
    /// `context`.
    pub context: Option<&'a LazyObject>,
    /// `traits` as of the evaluation time.
    pub traits: Option<&'a Map<String, Value>>,
    /// `company` as of the evaluation time.
    pub company: Option<&'a Map<String, Value>>,
    /// `count()` and `days_since()`.
    pub activity: Option<&'a dyn Activity>,
    /// `score`, `tier`, … (triggers only).
    pub outcome: Option<&'a Outcome<'a>>,
}

/// The contact's activity, for `count("Name")` and `days_since("Name")`;
/// `slot` is the index the model gave the name at compile time.
pub trait Activity {
    /// Number of matching events with timestamp <= t.
    fn count(&self, slot: usize) -> u64;
    /// Days (fractional) since the latest matching event, if any.
    fn days_since(&self, slot: usize) -> Option<f64>;
}

/// Score variables visible to trigger conditions.
#[derive(Debug, Clone, Copy)]
pub struct Outcome<'a> {
    /// Clamped score.
    pub score: f64,
    /// Unclamped score.
    pub raw: f64,
    /// Fit total.
    pub fit: f64,
    /// Engagement total.
    pub engagement: f64,
    /// Tier name or "".
    pub tier: &'a str,
    /// Grade name or "".
    pub grade: &'a str,
    /// Stage name or "".
    pub stage: &'a str,
    /// `active` or `excluded`.
    pub status: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    Event,
    Properties,
    Context,
    Traits,
    Company,
    Score,
    Raw,
    Fit,
    Engagement,
    Tier,
    Grade,
    Stage,
    Status,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    StartsWith,
    EndsWith,
    Contains,
    LowerAscii,
    UpperAscii,
    Trim,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Convert {
    Size,
    Int,
    Double,
    String,
}

#[derive(Debug, Clone)]
enum Literal {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Double(f64),
    Str(String),
}

impl Literal {
    fn val(&self) -> Val<'_> {
        match self {
            Literal::Null => Val::Null,
            Literal::Bool(b) => Val::Bool(*b),
            Literal::Int(i) => Val::Int(*i),
            Literal::UInt(u) => Val::UInt(*u),
            Literal::Double(d) => Val::Double(*d),
            Literal::Str(s) => Val::Str(Cow::Borrowed(s)),
        }
    }
}

#[derive(Debug, Clone)]
enum Node {
    Literal(Literal),
    Var(Var),
    /// A comprehension variable, by depth in the local stack.
    Local(usize),
    Select(Box<Node>, String),
    Has(Box<Node>, String),
    Index(Box<Node>, Box<Node>),
    List(Vec<Node>),
    Map(Vec<(Node, Node)>),
    Not(Box<Node>),
    Neg(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Ternary(Box<Node>, Box<Node>, Box<Node>),
    Compare(Cmp, Box<Node>, Box<Node>),
    Arith(Arith, Box<Node>, Box<Node>),
    In(Box<Node>, Box<Node>),
    /// `x in [literal, ...]`, the common case, without building a list.
    InLiterals(Box<Node>, Vec<Literal>),
    Method(Method, Box<Node>, Vec<Node>),
    /// `var.a.b`: fields of a variable, looked up without intermediate values.
    Path(Var, Vec<String>),
    /// `x.startsWith("lit")` (or `endsWith`, `contains`) with a literal.
    StrTest(Method, Box<Node>, String),
    /// `x == lit` (`true`: `x != lit`).
    EqLiteral(bool, Box<Node>, Literal),
    Matches(Box<Node>, regex::Regex),
    Convert(Convert, Box<Node>),
    Count(usize),
    DaysSince(usize),
    NotStrictlyFalse(Box<Node>),
    Comprehension(Box<Comprehension>),
}

impl Node {
    /// Calls `f` on each direct child.
    fn for_each_child(&self, f: &mut dyn FnMut(&Node)) {
        match self {
            Node::Literal(_)
            | Node::Var(_)
            | Node::Local(_)
            | Node::Path(..)
            | Node::Count(_)
            | Node::DaysSince(_) => {}
            Node::Select(x, _)
            | Node::Has(x, _)
            | Node::Not(x)
            | Node::Neg(x)
            | Node::InLiterals(x, _)
            | Node::StrTest(_, x, _)
            | Node::EqLiteral(_, x, _)
            | Node::Matches(x, _)
            | Node::Convert(_, x)
            | Node::NotStrictlyFalse(x) => f(x),
            Node::Index(a, b)
            | Node::And(a, b)
            | Node::Or(a, b)
            | Node::Compare(_, a, b)
            | Node::Arith(_, a, b)
            | Node::In(a, b) => {
                f(a);
                f(b);
            }
            Node::Ternary(a, b, c) => {
                f(a);
                f(b);
                f(c);
            }
            Node::List(items) => items.iter().for_each(f),
            Node::Map(pairs) => pairs.iter().for_each(|(k, v)| {
                f(k);
                f(v);
            }),
            Node::Method(_, x, args) => {
                f(x);
                args.iter().for_each(f);
            }
            Node::Comprehension(c) => {
                for n in [&c.range, &c.init, &c.cond, &c.step, &c.result] {
                    f(n);
                }
            }
        }
    }
}

/// A label a trigger condition can compare with a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    /// `tier`.
    Tier,
    /// `grade`.
    Grade,
    /// `stage`.
    Stage,
    /// `status`.
    Status,
}

impl Condition {
    /// The names the condition compares a label with, as written:
    /// `tier == "hot"`, `stage != "SQL"`, `grade in ["A", "B"]` (for
    /// checking them against the model's names).
    pub fn label_literals(&self) -> Vec<(Label, String)> {
        fn label(node: &Node) -> Option<Label> {
            match node {
                Node::Var(Var::Tier) => Some(Label::Tier),
                Node::Var(Var::Grade) => Some(Label::Grade),
                Node::Var(Var::Stage) => Some(Label::Stage),
                Node::Var(Var::Status) => Some(Label::Status),
                _ => None,
            }
        }
        fn visit(node: &Node, out: &mut Vec<(Label, String)>) {
            let found = match node {
                Node::EqLiteral(_, x, lit) => label(x).map(|l| (l, std::slice::from_ref(lit))),
                Node::InLiterals(x, lits) => label(x).map(|l| (l, lits.as_slice())),
                _ => None,
            };
            if let Some((l, literals)) = found {
                out.extend(literals.iter().filter_map(|lit| match lit {
                    Literal::Str(s) => Some((l, s.clone())),
                    _ => None,
                }));
            }
            node.for_each_child(&mut |child| visit(child, out));
        }
        let mut out = Vec::new();
        visit(&self.root, &mut out);
        out
    }
}

impl Condition {
    /// The top-level keys of `traits` and `company` the condition reads
    /// by name (`traits.country`, `has(company.employees)`,
    /// `traits["job title"]`), as `("traits" | "company", key)`, sorted.
    pub fn fields_read(&self) -> Vec<(&'static str, String)> {
        fn object(node: &Node) -> Option<&'static str> {
            match node {
                Node::Var(Var::Traits) => Some("traits"),
                Node::Var(Var::Company) => Some("company"),
                _ => None,
            }
        }
        fn visit(node: &Node, out: &mut Vec<(&'static str, String)>) {
            let found = match node {
                Node::Path(Var::Traits, path) => path.first().map(|f| ("traits", f.clone())),
                Node::Path(Var::Company, path) => path.first().map(|f| ("company", f.clone())),
                Node::Select(x, f) | Node::Has(x, f) => object(x).map(|o| (o, f.clone())),
                Node::Index(x, key) => match (object(x), key.as_ref()) {
                    (Some(o), Node::Literal(Literal::Str(f))) => Some((o, f.clone())),
                    _ => None,
                },
                _ => None,
            };
            out.extend(found);
            node.for_each_child(&mut |child| visit(child, out));
        }
        let mut out = Vec::new();
        visit(&self.root, &mut out);
        out.sort();
        out.dedup();
        out
    }
}

#[derive(Debug, Clone)]
struct Comprehension {
    range: Node,
    /// Locals are pushed as [iter, accu].
    init: Node,
    cond: Node,
    step: Node,
    result: Node,
}

impl Condition {
    /// Compiles `source` for use at `place`; functions' event names are
    /// registered in `names`. Errors carry a byte offset into `source`.
    pub fn compile(
        source: &str,
        place: Place,
        names: &mut dyn Names,
    ) -> Result<Condition, CompileError> {
        let compiled = compile::compile(source, place, names)?;
        Ok(Condition {
            source: source.to_string(),
            root: compiled.root,
            uses_activity: compiled.uses_activity,
            uses_time: compiled.uses_time,
            reads_traits: compiled.reads_traits,
            reads_company: compiled.reads_company,
        })
    }

    /// The CEL text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the condition calls `count()` or `days_since()` (its value can
    /// change with time and activity, not only with traits).
    pub fn uses_activity(&self) -> bool {
        self.uses_activity
    }

    /// Whether the condition calls `days_since()` (its value changes with t
    /// alone, without any new message).
    pub fn uses_time(&self) -> bool {
        self.uses_time
    }

    /// Whether the condition reads `traits`.
    pub fn reads_traits(&self) -> bool {
        self.reads_traits
    }

    /// Whether the condition reads `company`.
    pub fn reads_company(&self) -> bool {
        self.reads_company
    }

    /// Evaluates to true only if the expression yields `true`; any failure
    /// or non-boolean result is false (SPEC §3.1).
    pub fn holds(&self, scope: &Scope<'_>) -> bool {
        let mut locals = Vec::new();
        matches!(eval(&self.root, scope, &mut locals), Ok(Val::Bool(true)))
    }
}

/// Score variables that move with decay between messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moving {
    /// `score`.
    Score,
    /// `raw`.
    Raw,
    /// `engagement`.
    Engagement,
}

/// How a condition's value can change with time alone, between messages:
/// what the trigger scheduler needs to find the exact points where it may
/// flip without evaluating it at every tick.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TimeTerms {
    /// `score`/`raw`/`engagement` compared with a number literal.
    pub moving: Vec<(Moving, f64)>,
    /// `days_since()` (by slot) compared with a number literal, in days.
    pub days: Vec<(usize, f64)>,
    /// Reads `tier` or `stage`, which change where the score crosses their
    /// minimums.
    pub labels: bool,
    /// Uses a moving variable or `days_since()` in any other way (arithmetic,
    /// conversions, lists): its value may change at any tick.
    pub opaque: bool,
}

impl Condition {
    /// How the condition depends on time between messages.
    pub fn time_terms(&self) -> TimeTerms {
        let mut terms = TimeTerms::default();
        terms.walk(&self.root);
        terms
    }
}

impl TimeTerms {
    fn walk(&mut self, node: &Node) {
        match node {
            Node::Compare(_, a, b) if self.compared(a, b) || self.compared(b, a) => {}
            Node::EqLiteral(_, a, lit) if self.compared(a, &Node::Literal(lit.clone())) => {}
            Node::Var(Var::Score | Var::Raw | Var::Engagement) | Node::DaysSince(_) => {
                self.opaque = true
            }
            Node::Var(Var::Tier | Var::Stage) => self.labels = true,
            _ => node.for_each_child(&mut |child| self.walk(child)),
        }
    }

    /// Records `term <op> literal` when `term` moves with time.
    fn compared(&mut self, term: &Node, other: &Node) -> bool {
        let number = match other {
            Node::Literal(Literal::Int(i)) => *i as f64,
            Node::Literal(Literal::UInt(u)) => *u as f64,
            Node::Literal(Literal::Double(d)) => *d,
            _ => return false,
        };
        match term {
            Node::Var(Var::Score) => self.moving.push((Moving::Score, number)),
            Node::Var(Var::Raw) => self.moving.push((Moving::Raw, number)),
            Node::Var(Var::Engagement) => self.moving.push((Moving::Engagement, number)),
            Node::DaysSince(slot) => self.days.push((*slot, number)),
            _ => return false,
        }
        true
    }
}

#[cfg(test)]
mod tests;

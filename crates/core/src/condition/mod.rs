//! Conditions: CEL expressions parsed by the `cel` crate once at load and
//! compiled into a small tree that evaluates directly over borrowed event JSON.
//!
//! Why not `cel`'s interpreter: it needs every event's properties converted
//! into its own values and functions that own their data, while `count()` and
//! `days_since()` must read the contact being scored; see `docs/decisions.md`.

mod compile;
mod value;

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::event::LazyObject;
use crate::json_scan::{Field, Scalar};

pub use compile::{CompileError, Names, Place};
use value::{arithmetic, compare, equal, to_double, to_int, to_string, Arith, Eval, Fail, Val};

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

fn var<'a>(v: Var, scope: &Scope<'a>) -> Eval<'a> {
    let outcome = || scope.outcome.ok_or(Fail);
    Ok(match v {
        Var::Event => Val::Str(Cow::Borrowed(scope.event.ok_or(Fail)?)),
        Var::Properties => Val::JsonMap(scope.properties.ok_or(Fail)?.get()),
        Var::Context => Val::JsonMap(scope.context.ok_or(Fail)?.get()),
        Var::Traits => Val::JsonMap(scope.traits.ok_or(Fail)?),
        Var::Company => Val::JsonMap(scope.company.ok_or(Fail)?),
        Var::Score => Val::Double(outcome()?.score),
        Var::Raw => Val::Double(outcome()?.raw),
        Var::Fit => Val::Double(outcome()?.fit),
        Var::Engagement => Val::Double(outcome()?.engagement),
        Var::Tier => Val::Str(Cow::Borrowed(outcome()?.tier)),
        Var::Grade => Val::Str(Cow::Borrowed(outcome()?.grade)),
        Var::Stage => Val::Str(Cow::Borrowed(outcome()?.stage)),
        Var::Status => Val::Str(Cow::Borrowed(outcome()?.status)),
    })
}

/// The message object a variable names, when it is one kept as text.
fn lazy<'a>(v: Var, scope: &Scope<'a>) -> Option<&'a LazyObject> {
    match v {
        Var::Properties => scope.properties,
        Var::Context => scope.context,
        _ => None,
    }
}

/// A scalar read from a message's text, typed as parsing would type it.
fn scalar(found: Scalar<'_>) -> Option<Val<'_>> {
    Some(match found {
        Scalar::Null => Val::Null,
        Scalar::Bool(b) => Val::Bool(b),
        Scalar::Number(n) => Val::from_number(&n.parse().ok()?),
        Scalar::Str(s) => Val::Str(Cow::Borrowed(s)),
    })
}

/// Follows `fields` from `root`, walking JSON objects directly.
fn path<'a>(root: Val<'a>, fields: &[String]) -> Eval<'a> {
    let Val::JsonMap(mut map) = root else {
        return fields.iter().try_fold(root, |v, f| v.field(f));
    };
    let (last, within) = fields.split_last().ok_or(Fail)?;
    for field in within {
        match map.get(field) {
            Some(Value::Object(inner)) => map = inner,
            _ => return Err(Fail),
        }
    }
    map.get(last).map(Val::from_json).ok_or(Fail)
}

fn truth(v: Eval<'_>) -> Result<bool, Fail> {
    match v? {
        Val::Bool(b) => Ok(b),
        _ => Err(Fail),
    }
}

fn string_arg<'a>(v: Eval<'a>) -> Result<Cow<'a, str>, Fail> {
    match v? {
        Val::Str(s) => Ok(s),
        _ => Err(Fail),
    }
}

fn eval<'a>(node: &'a Node, scope: &Scope<'a>, locals: &mut Vec<Val<'a>>) -> Eval<'a> {
    match node {
        Node::Literal(l) => Ok(l.val()),
        Node::Var(v) => var(*v, scope),
        Node::Local(i) => locals.get(*i).cloned().ok_or(Fail),
        Node::Select(operand, field) => eval(operand, scope, locals)?.field(field),
        Node::Path(root, fields) => match (lazy(*root, scope), fields.as_slice()) {
            (Some(object), [field]) => match object.scan(field) {
                Field::Found(found) => scalar(found).ok_or(Fail),
                Field::Missing => Err(Fail),
                Field::Unknown => path(var(*root, scope)?, fields),
            },
            _ => path(var(*root, scope)?, fields),
        },
        Node::StrTest(method, target, literal) => {
            let target = string_arg(eval(target, scope, locals))?;
            Ok(Val::Bool(match method {
                Method::StartsWith => target.starts_with(literal.as_str()),
                Method::EndsWith => target.ends_with(literal.as_str()),
                _ => target.contains(literal.as_str()),
            }))
        }
        Node::EqLiteral(negate, target, literal) => {
            let value = eval(target, scope, locals)?;
            Ok(Val::Bool(equal(&value, &literal.val()) != *negate))
        }
        Node::Has(operand, field) => {
            let scanned = match **operand {
                Node::Var(root) => lazy(root, scope).map(|object| object.scan(field)),
                _ => None,
            };
            Ok(Val::Bool(match scanned {
                Some(Field::Found(_)) => true,
                Some(Field::Missing) => false,
                _ => eval(operand, scope, locals)?.has_field(field)?,
            }))
        }
        Node::Index(operand, key) => {
            let container = eval(operand, scope, locals)?;
            container.index(&eval(key, scope, locals)?)
        }
        Node::List(items) => Ok(Val::List(
            items
                .iter()
                .map(|i| eval(i, scope, locals))
                .collect::<Result<_, _>>()?,
        )),
        Node::Map(entries) => {
            let mut out = Vec::with_capacity(entries.len());
            for (k, v) in entries {
                out.push((eval(k, scope, locals)?, eval(v, scope, locals)?));
            }
            Ok(Val::Map(out))
        }
        Node::Not(x) => Ok(Val::Bool(!truth(eval(x, scope, locals))?)),
        Node::Neg(x) => match eval(x, scope, locals)? {
            Val::Int(i) => i.checked_neg().map(Val::Int).ok_or(Fail),
            Val::Double(d) => Ok(Val::Double(-d)),
            _ => Err(Fail),
        },
        // CEL's commutative logic: an error on one side is absorbed when the
        // other side decides the result.
        Node::And(a, b) => match truth(eval(a, scope, locals)) {
            Ok(false) => Ok(Val::Bool(false)),
            left => match (left, truth(eval(b, scope, locals))) {
                (_, Ok(false)) => Ok(Val::Bool(false)),
                (Ok(true), Ok(true)) => Ok(Val::Bool(true)),
                _ => Err(Fail),
            },
        },
        Node::Or(a, b) => match truth(eval(a, scope, locals)) {
            Ok(true) => Ok(Val::Bool(true)),
            left => match (left, truth(eval(b, scope, locals))) {
                (_, Ok(true)) => Ok(Val::Bool(true)),
                (Ok(false), Ok(false)) => Ok(Val::Bool(false)),
                _ => Err(Fail),
            },
        },
        Node::Ternary(c, a, b) => {
            if truth(eval(c, scope, locals))? {
                eval(a, scope, locals)
            } else {
                eval(b, scope, locals)
            }
        }
        Node::Compare(op, a, b) => {
            let (a, b) = (eval(a, scope, locals)?, eval(b, scope, locals)?);
            Ok(Val::Bool(match op {
                Cmp::Eq => equal(&a, &b),
                Cmp::Ne => !equal(&a, &b),
                Cmp::Lt => compare(&a, &b)?.is_lt(),
                Cmp::Le => compare(&a, &b)?.is_le(),
                Cmp::Gt => compare(&a, &b)?.is_gt(),
                Cmp::Ge => compare(&a, &b)?.is_ge(),
            }))
        }
        Node::Arith(op, a, b) => {
            let a = eval(a, scope, locals)?;
            arithmetic(*op, a, eval(b, scope, locals)?)
        }
        Node::In(needle, haystack) => {
            let needle = eval(needle, scope, locals)?;
            Ok(Val::Bool(
                eval(haystack, scope, locals)?.contains_value(&needle)?,
            ))
        }
        Node::InLiterals(needle, literals) => {
            let needle = eval(needle, scope, locals)?;
            Ok(Val::Bool(literals.iter().any(|l| equal(&l.val(), &needle))))
        }
        Node::Method(method, target, args) => {
            let target = string_arg(eval(target, scope, locals))?;
            let arg = |i: usize, locals: &mut Vec<Val<'a>>| -> Result<Cow<'a, str>, Fail> {
                string_arg(eval(&args[i], scope, locals))
            };
            Ok(match method {
                Method::StartsWith => Val::Bool(target.starts_with(arg(0, locals)?.as_ref())),
                Method::EndsWith => Val::Bool(target.ends_with(arg(0, locals)?.as_ref())),
                Method::Contains => Val::Bool(target.contains(arg(0, locals)?.as_ref())),
                Method::LowerAscii => Val::Str(Cow::Owned(target.to_ascii_lowercase())),
                Method::UpperAscii => Val::Str(Cow::Owned(target.to_ascii_uppercase())),
                Method::Trim => Val::Str(Cow::Owned(target.trim().to_string())),
            })
        }
        Node::Matches(target, regex) => Ok(Val::Bool(
            regex.is_match(&string_arg(eval(target, scope, locals))?),
        )),
        Node::Convert(convert, x) => {
            let x = eval(x, scope, locals)?;
            match convert {
                Convert::Size => x.size().map(Val::Int),
                Convert::Int => to_int(x),
                Convert::Double => to_double(x),
                Convert::String => to_string(x),
            }
        }
        Node::Count(slot) => {
            let n = scope.activity.ok_or(Fail)?.count(*slot);
            Ok(Val::Int(i64::try_from(n).map_err(|_| Fail)?))
        }
        Node::DaysSince(slot) => scope
            .activity
            .ok_or(Fail)?
            .days_since(*slot)
            .map(Val::Double)
            .ok_or(Fail),
        Node::NotStrictlyFalse(x) => Ok(Val::Bool(!matches!(
            eval(x, scope, locals),
            Ok(Val::Bool(false))
        ))),
        Node::Comprehension(c) => {
            let items = eval(&c.range, scope, locals)?.elements()?;
            let base = locals.len();
            let init = eval(&c.init, scope, locals)?;
            locals.push(Val::Null);
            locals.push(init);
            let mut outcome = Ok(());
            for item in items {
                locals[base] = item;
                match truth(eval(&c.cond, scope, locals)) {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => {
                        outcome = Err(e);
                        break;
                    }
                }
                match eval(&c.step, scope, locals) {
                    Ok(next) => locals[base + 1] = next,
                    Err(e) => {
                        outcome = Err(e);
                        break;
                    }
                }
            }
            let result = outcome.and_then(|()| eval(&c.result, scope, locals));
            locals.truncate(base);
            result
        }
    }
}

#[cfg(test)]
mod tests;

//! Evaluating a compiled condition over borrowed event JSON and the
//! contact's scope: variables, field paths, operators, methods, macros and
//! the activity functions. Any failure makes the whole condition false.

use std::borrow::Cow;

use serde_json::Value;

use super::value::{arithmetic, compare, equal, to_double, to_int, to_string, Eval, Fail, Val};
use super::{Cmp, Convert, Method, Node, Scope, Var};
use crate::event::LazyObject;
use crate::json_scan::{Field, Scalar};

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

pub(super) fn eval<'a>(node: &'a Node, scope: &Scope<'a>, locals: &mut Vec<Val<'a>>) -> Eval<'a> {
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

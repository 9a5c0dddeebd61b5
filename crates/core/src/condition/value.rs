//! Runtime values of conditions: borrowed views of event JSON plus the few
//! owned values that literals and operators produce.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::{Map, Value};

/// Evaluation failed (missing key, type mismatch, overflow): the condition is
/// false. No detail is kept; `check` catches what can be caught at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fail;

/// The result of evaluating a node.
pub type Eval<'a> = Result<Val<'a>, Fail>;

/// A CEL value, borrowing from the event or contact where it can.
#[derive(Debug, Clone)]
pub enum Val<'a> {
    /// `null`.
    Null,
    /// `bool`.
    Bool(bool),
    /// `int`.
    Int(i64),
    /// `uint`.
    UInt(u64),
    /// `double`.
    Double(f64),
    /// `string`.
    Str(Cow<'a, str>),
    /// A JSON array.
    JsonList(&'a [Value]),
    /// A list built by a literal or an operator.
    List(Vec<Val<'a>>),
    /// A JSON object (properties, traits, context, …).
    JsonMap(&'a Map<String, Value>),
    /// A map literal.
    Map(Vec<(Val<'a>, Val<'a>)>),
}

impl<'a> Val<'a> {
    /// Views a JSON value.
    pub fn from_json(value: &'a Value) -> Val<'a> {
        match value {
            Value::Null => Val::Null,
            Value::Bool(b) => Val::Bool(*b),
            Value::Number(n) => Val::from_number(n),
            Value::String(s) => Val::Str(Cow::Borrowed(s)),
            Value::Array(items) => Val::JsonList(items),
            Value::Object(map) => Val::JsonMap(map),
        }
    }

    /// Views a JSON number: `int` when it fits, then `uint`, else `double`.
    pub fn from_number(n: &serde_json::Number) -> Val<'a> {
        if let Some(i) = n.as_i64() {
            Val::Int(i)
        } else if let Some(u) = n.as_u64() {
            Val::UInt(u)
        } else {
            Val::Double(n.as_f64().unwrap_or(f64::NAN))
        }
    }

    /// A number as f64, if it is one.
    fn as_f64(&self) -> Option<f64> {
        match *self {
            Val::Int(i) => Some(i as f64),
            Val::UInt(u) => Some(u as f64),
            Val::Double(d) => Some(d),
            _ => None,
        }
    }

    fn is_number(&self) -> bool {
        matches!(self, Val::Int(_) | Val::UInt(_) | Val::Double(_))
    }

    /// Number of elements of a list or map, or code points of a string.
    pub fn size(&self) -> Result<i64, Fail> {
        Ok(match self {
            Val::Str(s) => s.chars().count() as i64,
            Val::JsonList(items) => items.len() as i64,
            Val::List(items) => items.len() as i64,
            Val::JsonMap(map) => map.len() as i64,
            Val::Map(entries) => entries.len() as i64,
            _ => return Err(Fail),
        })
    }

    /// The elements of a list, or the keys of a map (what comprehensions
    /// iterate).
    pub fn elements(&self) -> Result<Vec<Val<'a>>, Fail> {
        Ok(match self {
            Val::JsonList(items) => items.iter().map(Val::from_json).collect(),
            Val::List(items) => items.clone(),
            Val::JsonMap(map) => map
                .keys()
                .map(|k| Val::Str(Cow::Borrowed(k.as_str())))
                .collect(),
            Val::Map(entries) => entries.iter().map(|(k, _)| k.clone()).collect(),
            _ => return Err(Fail),
        })
    }

    /// `self[key]` for maps and lists; a missing key fails.
    pub fn index(&self, key: &Val<'_>) -> Eval<'a> {
        match (self, key) {
            (Val::JsonMap(map), Val::Str(k)) => map.get(k.as_ref()).map(Val::from_json).ok_or(Fail),
            (Val::Map(entries), k) => entries
                .iter()
                .find(|(key, _)| equal(key, k))
                .map(|(_, v)| v.clone())
                .ok_or(Fail),
            (Val::JsonList(items), k) => {
                let i = list_index(k, items.len())?;
                Ok(Val::from_json(&items[i]))
            }
            (Val::List(items), k) => {
                let i = list_index(k, items.len())?;
                Ok(items[i].clone())
            }
            _ => Err(Fail),
        }
    }

    /// `self.field`; fails on a missing field or a non-map.
    pub fn field(&self, field: &str) -> Eval<'a> {
        match self {
            Val::JsonMap(map) => map.get(field).map(Val::from_json).ok_or(Fail),
            Val::Map(_) => self.index(&Val::Str(Cow::Borrowed(field))),
            _ => Err(Fail),
        }
    }

    /// Whether `self.field` is present (`has()`); fails on a non-map.
    pub fn has_field(&self, field: &str) -> Result<bool, Fail> {
        match self {
            Val::JsonMap(map) => Ok(map.contains_key(field)),
            Val::Map(_) => Ok(self.field(field).is_ok()),
            _ => Err(Fail),
        }
    }

    /// `needle in self`: list membership or map key presence.
    pub fn contains_value(&self, needle: &Val<'_>) -> Result<bool, Fail> {
        Ok(match self {
            Val::JsonList(items) => items.iter().any(|v| equal(&Val::from_json(v), needle)),
            Val::List(items) => items.iter().any(|v| equal(v, needle)),
            Val::JsonMap(map) => match needle {
                Val::Str(k) => map.contains_key(k.as_ref()),
                _ => false,
            },
            Val::Map(entries) => entries.iter().any(|(k, _)| equal(k, needle)),
            _ => return Err(Fail),
        })
    }
}

fn list_index(key: &Val<'_>, len: usize) -> Result<usize, Fail> {
    let i = match *key {
        Val::Int(i) => usize::try_from(i).map_err(|_| Fail)?,
        Val::UInt(u) => usize::try_from(u).map_err(|_| Fail)?,
        Val::Double(d) if d.fract() == 0.0 && d >= 0.0 => d as usize,
        _ => return Err(Fail),
    };
    (i < len).then_some(i).ok_or(Fail)
}

/// Compares two numbers exactly across int, uint and double.
fn compare_numbers(a: &Val<'_>, b: &Val<'_>) -> Option<Ordering> {
    match (a, b) {
        (Val::Int(x), Val::Int(y)) => Some(x.cmp(y)),
        (Val::UInt(x), Val::UInt(y)) => Some(x.cmp(y)),
        (Val::Int(x), Val::UInt(y)) => Some(if *x < 0 {
            Ordering::Less
        } else {
            (*x as u64).cmp(y)
        }),
        (Val::UInt(_), Val::Int(_)) => compare_numbers(b, a).map(Ordering::reverse),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

/// CEL equality, with numbers equal across int/uint/double (SPEC §3.1).
/// Values of different kinds are unequal, never an error.
pub fn equal(a: &Val<'_>, b: &Val<'_>) -> bool {
    if a.is_number() && b.is_number() {
        return compare_numbers(a, b) == Some(Ordering::Equal);
    }
    match (a, b) {
        (Val::Null, Val::Null) => true,
        (Val::Bool(x), Val::Bool(y)) => x == y,
        (Val::Str(x), Val::Str(y)) => x == y,
        (Val::JsonList(_) | Val::List(_), Val::JsonList(_) | Val::List(_)) => {
            match (a.elements(), b.elements()) {
                (Ok(x), Ok(y)) => x.len() == y.len() && x.iter().zip(&y).all(|(p, q)| equal(p, q)),
                _ => false,
            }
        }
        (Val::JsonMap(_) | Val::Map(_), Val::JsonMap(_) | Val::Map(_)) => {
            let (Ok(keys), Ok(size_b)) = (a.elements(), b.size()) else {
                return false;
            };
            keys.len() as i64 == size_b
                && keys.iter().all(|k| match (a.index(k), b.index(k)) {
                    (Ok(x), Ok(y)) => equal(&x, &y),
                    _ => false,
                })
        }
        _ => false,
    }
}

/// CEL ordering: numbers (across types), strings, booleans; else a failure.
pub fn compare(a: &Val<'_>, b: &Val<'_>) -> Result<Ordering, Fail> {
    if a.is_number() && b.is_number() {
        return compare_numbers(a, b).ok_or(Fail);
    }
    match (a, b) {
        (Val::Str(x), Val::Str(y)) => Ok(x.cmp(y)),
        (Val::Bool(x), Val::Bool(y)) => Ok(x.cmp(y)),
        _ => Err(Fail),
    }
}

/// Arithmetic operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arith {
    /// `+` (also string and list concatenation).
    Add,
    /// `-`.
    Sub,
    /// `*`.
    Mul,
    /// `/` (integer division on ints).
    Div,
    /// `%`.
    Rem,
}

/// Applies an arithmetic operator. Ints stay ints (overflow and division by
/// zero fail); a mix of int and double computes in double.
pub fn arithmetic<'a>(op: Arith, a: Val<'a>, b: Val<'a>) -> Eval<'a> {
    match (op, &a, &b) {
        (Arith::Add, Val::Str(x), Val::Str(y)) => {
            return Ok(Val::Str(Cow::Owned(format!("{x}{y}"))))
        }
        (Arith::Add, Val::JsonList(_) | Val::List(_), Val::JsonList(_) | Val::List(_)) => {
            let mut items = a.elements()?;
            items.extend(b.elements()?);
            return Ok(Val::List(items));
        }
        _ => {}
    }
    match (a, b) {
        (Val::Int(x), Val::Int(y)) => {
            let r = match op {
                Arith::Add => x.checked_add(y),
                Arith::Sub => x.checked_sub(y),
                Arith::Mul => x.checked_mul(y),
                Arith::Div => x.checked_div(y),
                Arith::Rem => x.checked_rem(y),
            };
            r.map(Val::Int).ok_or(Fail)
        }
        (Val::UInt(x), Val::UInt(y)) => {
            let r = match op {
                Arith::Add => x.checked_add(y),
                Arith::Sub => x.checked_sub(y),
                Arith::Mul => x.checked_mul(y),
                Arith::Div => x.checked_div(y),
                Arith::Rem => x.checked_rem(y),
            };
            r.map(Val::UInt).ok_or(Fail)
        }
        (x, y) => {
            let (x, y) = (x.as_f64().ok_or(Fail)?, y.as_f64().ok_or(Fail)?);
            Ok(Val::Double(match op {
                Arith::Add => x + y,
                Arith::Sub => x - y,
                Arith::Mul => x * y,
                Arith::Div => x / y,
                Arith::Rem => x % y,
            }))
        }
    }
}

/// `int(x)`: truncates doubles, parses strings.
pub fn to_int<'a>(v: Val<'a>) -> Eval<'a> {
    match v {
        Val::Int(i) => Ok(Val::Int(i)),
        Val::UInt(u) => i64::try_from(u).map(Val::Int).map_err(|_| Fail),
        Val::Double(d) if d.is_finite() && d.abs() < 9.2e18 => Ok(Val::Int(d.trunc() as i64)),
        Val::Str(s) => s.trim().parse().map(Val::Int).map_err(|_| Fail),
        Val::Bool(b) => Ok(Val::Int(b as i64)),
        _ => Err(Fail),
    }
}

/// `double(x)`: converts numbers, parses strings.
pub fn to_double<'a>(v: Val<'a>) -> Eval<'a> {
    match v {
        Val::Str(s) => s.trim().parse().map(Val::Double).map_err(|_| Fail),
        other => other.as_f64().map(Val::Double).ok_or(Fail),
    }
}

/// `string(x)` of a scalar.
pub fn to_string<'a>(v: Val<'a>) -> Eval<'a> {
    Ok(Val::Str(Cow::Owned(match v {
        Val::Str(s) => return Ok(Val::Str(s)),
        Val::Int(i) => i.to_string(),
        Val::UInt(u) => u.to_string(),
        Val::Double(d) => d.to_string(),
        Val::Bool(b) => b.to_string(),
        Val::Null => "null".to_string(),
        _ => return Err(Fail),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_equal_across_types() {
        let fifty = json!(50.0);
        assert!(equal(&Val::from_json(&fifty), &Val::Int(50)));
        assert!(equal(&Val::UInt(3), &Val::Int(3)));
        assert!(!equal(&Val::Int(-1), &Val::UInt(u64::MAX)));
        assert_eq!(compare(&Val::Int(-1), &Val::UInt(0)), Ok(Ordering::Less));
        assert_eq!(
            compare(&Val::Double(49.5), &Val::Int(50)),
            Ok(Ordering::Less)
        );
    }

    #[test]
    fn different_kinds_are_unequal_and_unordered() {
        assert!(!equal(&Val::Str("1".into()), &Val::Int(1)));
        assert_eq!(compare(&Val::Str("1".into()), &Val::Int(1)), Err(Fail));
    }

    #[test]
    fn int_arithmetic_is_checked() {
        assert!(arithmetic(Arith::Add, Val::Int(i64::MAX), Val::Int(1)).is_err());
        assert!(arithmetic(Arith::Div, Val::Int(1), Val::Int(0)).is_err());
        assert!(matches!(
            arithmetic(Arith::Div, Val::Int(7), Val::Int(2)),
            Ok(Val::Int(3))
        ));
        assert!(
            matches!(arithmetic(Arith::Mul, Val::Int(2), Val::Double(1.5)), Ok(Val::Double(d)) if d == 3.0)
        );
    }
}

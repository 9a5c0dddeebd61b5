//! From the `cel` crate's AST to our evaluation tree, rejecting unknown
//! variables and functions with the byte offset of the culprit.

use cel::common::ast::operators as op;
use cel::common::ast::{Expr, LiteralValue, SourceInfo};
use cel::IdedExpr;

use super::{Arith, Cmp, Comprehension, Convert, Literal, Method, Node, Var};

/// Where a condition is used; decides which variables and functions it may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// `when` of an engagement or streak rule: the event being matched.
    Event,
    /// `exclude` and `fit`: the contact as of t, with `count()`/`days_since()`.
    Contact,
    /// `trigger`: the contact plus its score.
    Trigger,
}

impl Place {
    fn variables(self) -> &'static [(&'static str, Var)] {
        const EVENT: &[(&str, Var)] = &[
            ("event", Var::Event),
            ("properties", Var::Properties),
            ("context", Var::Context),
            ("traits", Var::Traits),
            ("company", Var::Company),
        ];
        const CONTACT: &[(&str, Var)] = &[("traits", Var::Traits), ("company", Var::Company)];
        const TRIGGER: &[(&str, Var)] = &[
            ("traits", Var::Traits),
            ("company", Var::Company),
            ("score", Var::Score),
            ("raw", Var::Raw),
            ("fit", Var::Fit),
            ("engagement", Var::Engagement),
            ("tier", Var::Tier),
            ("grade", Var::Grade),
            ("stage", Var::Stage),
            ("status", Var::Status),
        ];
        match self {
            Place::Event => EVENT,
            Place::Contact => CONTACT,
            Place::Trigger => TRIGGER,
        }
    }

    fn allows_activity(self) -> bool {
        !matches!(self, Place::Event)
    }
}

/// Gives each event name used in `count()`/`days_since()` a slot.
pub trait Names {
    /// The slot of `name`, registering it on first use.
    fn slot(&mut self, name: &str) -> usize;
}

/// A condition that cannot be compiled; `offset` is a byte offset into the
/// CEL source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    /// Byte offset of the problem in the expression.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

struct Compiler<'n> {
    place: Place,
    names: &'n mut dyn Names,
    info: SourceInfo,
    locals: Vec<String>,
    uses_activity: bool,
    uses_time: bool,
    reads_traits: bool,
    reads_company: bool,
}

/// A compiled condition tree and what it depends on.
pub(super) struct Compiled {
    pub(super) root: Node,
    pub(super) uses_activity: bool,
    pub(super) uses_time: bool,
    pub(super) reads_traits: bool,
    pub(super) reads_company: bool,
}

pub(super) fn compile(
    source: &str,
    place: Place,
    names: &mut dyn Names,
) -> Result<Compiled, CompileError> {
    if source.trim().is_empty() {
        return Err(CompileError {
            offset: 0,
            message: "empty condition".to_string(),
        });
    }
    let (ast, info) = cel::parser::Parser::new()
        .parse_with_source_info(source)
        .map_err(|errors| {
            let first = errors.errors.into_iter().next();
            let (offset, message) = match first {
                Some(e) => (offset_of(source, e.pos), e.msg),
                None => (0, "syntax error".to_string()),
            };
            CompileError {
                offset,
                message: format!("invalid CEL: {message}"),
            }
        })?;
    let mut compiler = Compiler {
        place,
        names,
        info,
        locals: Vec::new(),
        uses_activity: false,
        uses_time: false,
        reads_traits: false,
        reads_company: false,
    };
    let root = compiler.node(&ast)?;
    Ok(Compiled {
        root,
        uses_activity: compiler.uses_activity,
        uses_time: compiler.uses_time,
        reads_traits: compiler.reads_traits,
        reads_company: compiler.reads_company,
    })
}

/// Converts the parser's 1-based (line, column in characters) to a byte offset.
fn offset_of(source: &str, (line, column): (isize, isize)) -> usize {
    let mut offset = 0;
    for (i, text) in source.split_inclusive('\n').enumerate() {
        if i + 1 == line.max(1) as usize {
            let chars = (column.max(1) - 1) as usize;
            return offset
                + text
                    .char_indices()
                    .nth(chars)
                    .map_or(text.len(), |(b, _)| b);
        }
        offset += text.len();
    }
    source.len()
}

impl Compiler<'_> {
    fn error(&self, expr: &IdedExpr, message: impl Into<String>) -> CompileError {
        CompileError {
            offset: self
                .info
                .offset_for(expr.id)
                .map_or(0, |(start, _)| start as usize),
            message: message.into(),
        }
    }

    fn boxed(&mut self, expr: &IdedExpr) -> Result<Box<Node>, CompileError> {
        self.node(expr).map(Box::new)
    }

    fn node(&mut self, expr: &IdedExpr) -> Result<Node, CompileError> {
        Ok(match &expr.expr {
            Expr::Literal(l) => Node::Literal(self.literal(expr, l)?),
            Expr::Ident(name) => self.ident(expr, name)?,
            Expr::Select(select) => {
                let operand = self.boxed(&select.operand)?;
                let field = select.field.clone();
                match (select.test, *operand) {
                    (true, operand) => Node::Has(Box::new(operand), field),
                    (false, Node::Var(root)) => Node::Path(root, vec![field]),
                    (false, Node::Path(root, mut fields)) => {
                        fields.push(field);
                        Node::Path(root, fields)
                    }
                    (false, operand) => Node::Select(Box::new(operand), field),
                }
            }
            Expr::List(list) => {
                if !list.optional_indices.is_empty() {
                    return Err(self.error(expr, "not supported yet: optional list elements"));
                }
                Node::List(
                    list.elements
                        .iter()
                        .map(|e| self.node(e))
                        .collect::<Result<_, _>>()?,
                )
            }
            Expr::Map(map) => {
                let mut entries = Vec::new();
                for entry in &map.entries {
                    match &entry.expr {
                        cel::common::ast::EntryExpr::MapEntry(e) if !e.optional => {
                            entries.push((self.node(&e.key)?, self.node(&e.value)?))
                        }
                        _ => {
                            return Err(self.error(expr, "not supported yet: optional map entries"))
                        }
                    }
                }
                Node::Map(entries)
            }
            Expr::Call(call) => self.call(expr, call)?,
            Expr::Comprehension(c) => {
                if c.iter_var2.is_some() {
                    return Err(self.error(expr, "not supported yet: two-variable comprehensions"));
                }
                let range = self.node(&c.iter_range)?;
                let init = self.node(&c.accu_init)?;
                self.locals.push(c.iter_var.clone());
                self.locals.push(c.accu_var.clone());
                let body = (|| {
                    Ok::<_, CompileError>((
                        self.node(&c.loop_cond)?,
                        self.node(&c.loop_step)?,
                        self.node(&c.result)?,
                    ))
                })();
                self.locals.truncate(self.locals.len() - 2);
                let (cond, step, result) = body?;
                Node::Comprehension(Box::new(Comprehension {
                    range,
                    init,
                    cond,
                    step,
                    result,
                }))
            }
            Expr::Struct(_) => return Err(self.error(expr, "not supported yet: message literals")),
            Expr::Unspecified => return Err(self.error(expr, "empty expression")),
        })
    }

    fn literal(&self, expr: &IdedExpr, literal: &LiteralValue) -> Result<Literal, CompileError> {
        Ok(match literal {
            LiteralValue::Boolean(b) => Literal::Bool(*b.inner()),
            LiteralValue::Int(i) => Literal::Int(*i.inner()),
            LiteralValue::UInt(u) => Literal::UInt(*u.inner()),
            LiteralValue::Double(d) => Literal::Double(*d.inner()),
            LiteralValue::String(s) => Literal::Str(s.inner().to_string()),
            LiteralValue::Null => Literal::Null,
            LiteralValue::Bytes(_) => {
                return Err(self.error(expr, "not supported yet: bytes literals"))
            }
        })
    }

    fn ident(&mut self, expr: &IdedExpr, name: &str) -> Result<Node, CompileError> {
        if let Some(depth) = self.locals.iter().rposition(|l| l == name) {
            return Ok(Node::Local(depth));
        }
        let variables = self.place.variables();
        match variables.iter().find(|(n, _)| *n == name) {
            Some((_, v)) => {
                self.reads_traits |= *v == Var::Traits;
                self.reads_company |= *v == Var::Company;
                Ok(Node::Var(*v))
            }
            None => {
                let known: Vec<&str> = variables.iter().map(|(n, _)| *n).collect();
                Err(self.error(
                    expr,
                    format!(
                        "unknown variable `{name}` (available here: {})",
                        known.join(", ")
                    ),
                ))
            }
        }
    }

    fn call(
        &mut self,
        expr: &IdedExpr,
        call: &cel::common::ast::CallExpr,
    ) -> Result<Node, CompileError> {
        let name = call.func_name.as_str();
        let args = &call.args;
        let arity = |n: usize| -> Result<(), CompileError> {
            if args.len() == n {
                Ok(())
            } else {
                Err(self.error(
                    expr,
                    format!("`{name}` takes {n} argument(s), found {}", args.len()),
                ))
            }
        };
        if let Some(target) = &call.target {
            let method = match name {
                "startsWith" => Method::StartsWith,
                "endsWith" => Method::EndsWith,
                "contains" => Method::Contains,
                "lowerAscii" => Method::LowerAscii,
                "upperAscii" => Method::UpperAscii,
                "trim" => Method::Trim,
                "size" => {
                    arity(0)?;
                    return Ok(Node::Convert(Convert::Size, self.boxed(target)?));
                }
                "matches" => {
                    arity(1)?;
                    return self.matches(target, &args[0]);
                }
                other => return Err(self.error(expr, format!("unknown method `{other}`"))),
            };
            arity(
                if matches!(
                    method,
                    Method::LowerAscii | Method::UpperAscii | Method::Trim
                ) {
                    0
                } else {
                    1
                },
            )?;
            let target = self.boxed(target)?;
            let args: Vec<Node> = args
                .iter()
                .map(|a| self.node(a))
                .collect::<Result<_, _>>()?;
            return Ok(match (method, args.as_slice()) {
                (
                    Method::StartsWith | Method::EndsWith | Method::Contains,
                    [Node::Literal(Literal::Str(lit))],
                ) => Node::StrTest(method, target, lit.clone()),
                _ => Node::Method(method, target, args),
            });
        }
        let binary = |c: &mut Self| -> Result<(Box<Node>, Box<Node>), CompileError> {
            Ok((c.boxed(&args[0])?, c.boxed(&args[1])?))
        };
        Ok(match name {
            op::LOGICAL_AND => {
                let (a, b) = binary(self)?;
                Node::And(a, b)
            }
            op::LOGICAL_OR => {
                let (a, b) = binary(self)?;
                Node::Or(a, b)
            }
            op::LOGICAL_NOT => Node::Not(self.boxed(&args[0])?),
            op::NEGATE => Node::Neg(self.boxed(&args[0])?),
            op::CONDITIONAL => Node::Ternary(
                self.boxed(&args[0])?,
                self.boxed(&args[1])?,
                self.boxed(&args[2])?,
            ),
            op::NOT_STRICTLY_FALSE => Node::NotStrictlyFalse(self.boxed(&args[0])?),
            op::INDEX => {
                let (a, b) = binary(self)?;
                Node::Index(a, b)
            }
            op::EQUALS
            | op::NOT_EQUALS
            | op::LESS
            | op::LESS_EQUALS
            | op::GREATER
            | op::GREATER_EQUALS => {
                let cmp = match name {
                    op::EQUALS => Cmp::Eq,
                    op::NOT_EQUALS => Cmp::Ne,
                    op::LESS => Cmp::Lt,
                    op::LESS_EQUALS => Cmp::Le,
                    op::GREATER => Cmp::Gt,
                    _ => Cmp::Ge,
                };
                let (a, b) = binary(self)?;
                match (cmp, *a, *b) {
                    (Cmp::Eq | Cmp::Ne, x, Node::Literal(l))
                    | (Cmp::Eq | Cmp::Ne, Node::Literal(l), x) => {
                        Node::EqLiteral(cmp == Cmp::Ne, Box::new(x), l)
                    }
                    (cmp, a, b) => Node::Compare(cmp, Box::new(a), Box::new(b)),
                }
            }
            op::ADD | op::SUBSTRACT | op::MULTIPLY | op::DIVIDE | op::MODULO => {
                let arith = match name {
                    op::ADD => Arith::Add,
                    op::SUBSTRACT => Arith::Sub,
                    op::MULTIPLY => Arith::Mul,
                    op::DIVIDE => Arith::Div,
                    _ => Arith::Rem,
                };
                let (a, b) = binary(self)?;
                Node::Arith(arith, a, b)
            }
            op::IN => {
                let needle = self.boxed(&args[0])?;
                match self.node(&args[1])? {
                    Node::List(items) if items.iter().all(|i| matches!(i, Node::Literal(_))) => {
                        let literals = items
                            .into_iter()
                            .map(|i| match i {
                                Node::Literal(l) => l,
                                _ => unreachable!("checked above"),
                            })
                            .collect();
                        Node::InLiterals(needle, literals)
                    }
                    haystack => Node::In(needle, Box::new(haystack)),
                }
            }
            "size" | "int" | "double" | "string" => {
                arity(1)?;
                let convert = match name {
                    "size" => Convert::Size,
                    "int" => Convert::Int,
                    "double" => Convert::Double,
                    _ => Convert::String,
                };
                Node::Convert(convert, self.boxed(&args[0])?)
            }
            "matches" => {
                arity(2)?;
                self.matches(&args[0], &args[1])?
            }
            "count" | "days_since" => {
                arity(1)?;
                if !self.place.allows_activity() {
                    return Err(self.error(
                        expr,
                        format!("`{name}()` is not available in an engagement or streak condition (only in exclude, fit and trigger)"),
                    ));
                }
                let event = match &args[0].expr {
                    Expr::Literal(LiteralValue::String(s)) => s.inner().to_string(),
                    _ => {
                        return Err(self.error(
                            &args[0],
                            format!("`{name}()` takes an event name as a string literal, e.g. {name}(\"Order Completed\")"),
                        ))
                    }
                };
                self.uses_activity = true;
                let slot = self.names.slot(&event);
                if name == "count" {
                    Node::Count(slot)
                } else {
                    self.uses_time = true;
                    Node::DaysSince(slot)
                }
            }
            other => return Err(self.error(expr, format!("unknown function `{other}`"))),
        })
    }

    fn matches(&mut self, target: &IdedExpr, pattern: &IdedExpr) -> Result<Node, CompileError> {
        let Expr::Literal(LiteralValue::String(p)) = &pattern.expr else {
            return Err(self.error(
                pattern,
                "not supported yet: `matches()` with a pattern that is not a string literal",
            ));
        };
        let regex = regex::Regex::new(p.inner()).map_err(|e| {
            self.error(
                pattern,
                format!(
                    "invalid regular expression {:?}: {}",
                    p.inner(),
                    regex_problem(&e)
                ),
            )
        })?;
        Ok(Node::Matches(self.boxed(target)?, regex))
    }
}

/// A regex error on one line: the regex crate's syntax errors draw the
/// pattern with a caret under the fault, over several lines, the last one
/// starting `error:` like a message of its own.
fn regex_problem(e: &regex::Error) -> String {
    let text = e.to_string();
    let lines: Vec<&str> = text.lines().collect();
    let what = lines.iter().rev().find_map(|l| l.strip_prefix("error: "));
    // The caret line is indented like the pattern line above it (4 spaces).
    let at = lines
        .iter()
        .find(|l| l.trim() != "" && l.trim().chars().all(|c| c == '^'))
        .and_then(|l| l.find('^'))
        .map(|column| column.saturating_sub(4) + 1);
    match (what, at) {
        (Some(what), Some(at)) => format!("{what} at character {at}"),
        (Some(what), None) => what.to_string(),
        _ => lines.iter().map(|l| l.trim()).collect::<Vec<_>>().join(" "),
    }
}

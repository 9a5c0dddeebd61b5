//! Model errors with places: file, line, column, rule id.

use std::fmt;
use std::ops::Range;

/// One problem in a model file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelError {
    /// The model file's name as given by the caller.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// The rule (or tier/grade/stage name) the problem is in, when known.
    pub rule: Option<String>,
    /// What was expected and what was found.
    pub message: String,
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        // A rule id and a message can quote the file's text, newlines and
        // all (a TOML string with `\n`): each line after the first is
        // indented, so that every unindented line of a report starts with
        // a place.
        let text = match &self.rule {
            Some(rule) => format!("rule `{rule}`: {}", self.message),
            None => self.message.clone(),
        };
        let mut lines = text.split('\n');
        f.write_str(lines.next().unwrap_or_default())?;
        for line in lines {
            let indent = if line.starts_with(' ') { "" } else { "  " };
            write!(f, "\n{indent}{line}")?;
        }
        Ok(())
    }
}

/// All problems found in a model file (never empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelErrors(pub Vec<ModelError>);

impl fmt::Display for ModelErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "error: {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ModelErrors {}

/// Converts a byte offset into a 1-based (line, column in characters).
pub fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..floor_char_boundary(source, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Collects errors while a model is checked.
pub(crate) struct Errors<'s> {
    file: &'s str,
    source: &'s str,
    pub(crate) list: Vec<ModelError>,
}

impl<'s> Errors<'s> {
    pub(crate) fn new(file: &'s str, source: &'s str) -> Errors<'s> {
        Errors {
            file,
            source,
            list: Vec::new(),
        }
    }

    /// Records a problem at a byte offset of the source.
    pub(crate) fn at(&mut self, offset: usize, rule: Option<&str>, message: impl Into<String>) {
        let (line, column) = line_column(self.source, offset);
        self.list.push(ModelError {
            file: self.file.to_string(),
            line,
            column,
            rule: rule.map(str::to_string),
            message: message.into(),
        });
    }

    /// Records a problem about a spanned value.
    pub(crate) fn span(
        &mut self,
        span: Range<usize>,
        rule: Option<&str>,
        message: impl Into<String>,
    ) {
        self.at(span.start, rule, message)
    }

    /// The byte offset where a TOML string's content starts, given the span
    /// of the string token (quotes included).
    pub(crate) fn string_content_start(&self, span: &Range<usize>) -> usize {
        let token = &self.source[span.start.min(self.source.len())..];
        if token.starts_with("'''") || token.starts_with("\"\"\"") {
            // A newline right after the opening delimiter is not part of the string.
            let after = &token[3..];
            let skip = if after.starts_with("\r\n") {
                2
            } else if after.starts_with('\n') {
                1
            } else {
                0
            };
            span.start + 3 + skip
        } else if token.starts_with('\'') || token.starts_with('"') {
            span.start + 1
        } else {
            span.start
        }
    }

    pub(crate) fn source(&self) -> &'s str {
        self.source
    }

    pub(crate) fn file(&self) -> &'s str {
        self.file
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_are_one_based() {
        let s = "ab\ncdé\nf";
        assert_eq!(line_column(s, 0), (1, 1));
        assert_eq!(line_column(s, 3), (2, 1));
        assert_eq!(line_column(s, 7), (2, 4));
        assert_eq!(line_column(s, 8), (3, 1));
        assert_eq!(line_column(s, 99), (3, 2));
    }

    #[test]
    fn a_quoted_newline_does_not_start_a_line_without_a_place() {
        let source = "[[trigger]]\nactions = [{ type = \"campai\\n\" }]\n";
        let errors = crate::model::Model::from_toml("m.toml", source).unwrap_err();
        let text = errors.to_string();
        assert!(text.contains("campai\n"), "{text}");
        for line in text.lines().filter(|l| !l.starts_with(' ')) {
            assert!(line.starts_with("error: m.toml:2:"), "{line}\nin:\n{text}");
        }
    }

    /// The same for a rule id with a newline (found by the robustness
    /// property test).
    #[test]
    fn a_rule_id_with_a_newline_does_not_start_a_line_without_a_place() {
        let error = ModelError {
            file: "m.toml".into(),
            line: 3,
            column: 7,
            rule: Some("fit\n".into()),
            message: "invalid CEL: missing ')'".into(),
        };
        assert_eq!(
            ModelErrors(vec![error]).to_string(),
            "error: m.toml:3:7: rule `fit\n  `: invalid CEL: missing ')'"
        );
    }
}

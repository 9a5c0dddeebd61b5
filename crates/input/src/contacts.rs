//! Contacts CSV: one row per contact, `id` column (configurable), every other
//! column a trait. Numbers become numbers, `true`/`false` booleans, empty
//! cells are absent (SPEC §2).

use std::io::Read;

use serde_json::{Map, Number, Value};

/// One contacts-file row: the id and its traits.
pub type ContactRow = (String, Map<String, Value>);

/// A contacts file that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ContactsError {
    /// File name.
    pub file: String,
    /// 1-based line (1 is the header).
    pub line: u64,
    /// What was wrong.
    pub message: String,
}

/// A cell as a trait: a boolean (`true`/`false` in any case, as
/// spreadsheets write them), a number, else text. Identifiers that only
/// look like numbers keep their text: a leading zero (postal code `01067`)
/// or a plus sign (phone number `+4930…`) would be lost as a number.
fn cell_value(cell: &str) -> Option<Value> {
    if cell.is_empty() {
        return None;
    }
    let unsigned = cell.strip_prefix('-').unwrap_or(cell).as_bytes();
    let identifier = cell.starts_with('+')
        || (unsigned.len() > 1 && unsigned[0] == b'0' && unsigned[1].is_ascii_digit());
    Some(match cell {
        _ if cell.eq_ignore_ascii_case("true") => Value::Bool(true),
        _ if cell.eq_ignore_ascii_case("false") => Value::Bool(false),
        _ if identifier => Value::String(cell.to_string()),
        _ => {
            if let Ok(i) = cell.parse::<i64>() {
                Value::Number(i.into())
            } else if let Some(n) = cell
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .and_then(Number::from_f64)
            {
                Value::Number(n)
            } else {
                Value::String(cell.to_string())
            }
        }
    })
}

/// Reads `(id, traits)` rows: every column but the id becomes a trait of the
/// same name.
pub fn read_contacts(
    reader: impl Read,
    file: &str,
    id_column: &str,
) -> Result<Vec<ContactRow>, ContactsError> {
    read_contacts_mapped(reader, file, id_column, &ColumnMap::new())
}

/// Column → trait renames: `Some(trait)` renames, `None` leaves the column
/// out.
pub type ColumnMap = std::collections::BTreeMap<String, Option<String>>;

/// [`read_contacts`] with columns renamed or left out by `map`; a mapped
/// column that the file does not have is an error.
pub fn read_contacts_mapped(
    reader: impl Read,
    file: &str,
    id_column: &str,
    map: &ColumnMap,
) -> Result<Vec<ContactRow>, ContactsError> {
    let error = |line: u64, message: String| ContactsError {
        file: file.to_string(),
        line,
        message,
    };
    let mut csv = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(reader);
    let headers = csv
        .headers()
        .map_err(|e| error(1, format!("cannot read the header: {e}")))?
        .clone();
    let id_at = headers.iter().position(|h| h == id_column).ok_or_else(|| {
        error(
            1,
            format!(
                "no `{id_column}` column (columns: {})",
                headers.iter().collect::<Vec<_>>().join(", ")
            ),
        )
    })?;
    if let Some(missing) = map
        .keys()
        .find(|k| !headers.iter().any(|h| h == k.as_str()))
    {
        return Err(error(
            1,
            format!(
                "no `{missing}` column to map (columns: {})",
                headers.iter().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    // The trait name of each column (None: left out).
    let names: Vec<Option<String>> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| match map.get(h) {
            _ if i == id_at => None,
            Some(renamed) => renamed.clone(),
            None => Some(h.to_string()),
        })
        .collect();
    // Two columns becoming the same trait would keep one silently.
    let mut seen = std::collections::BTreeMap::new();
    for (header, name) in headers.iter().zip(&names) {
        let Some(name) = name else { continue };
        if let Some(first) = seen.insert(name.as_str(), header) {
            return Err(error(
                1,
                format!("columns `{first}` and `{header}` would both become trait `{name}`"),
            ));
        }
    }
    let mut rows = Vec::new();
    for record in csv.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            error(line, format!("malformed CSV: {e}"))
        })?;
        let line = record.position().map_or(0, |p| p.line());
        let id = record.get(id_at).unwrap_or_default().trim();
        if id.is_empty() {
            return Err(error(line, format!("empty `{id_column}`")));
        }
        let traits: Map<String, Value> = names
            .iter()
            .zip(record.iter())
            .filter_map(|(name, cell)| Some((name.clone()?, cell_value(cell)?)))
            .collect();
        rows.push((id.to_string(), traits));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn typed_cells_and_absent_empties() {
        let rows = read_contacts(
            "id,country,employees,budget,consent,note\nu1,DE,50,1.5,true,\n".as_bytes(),
            "c.csv",
            "id",
        )
        .unwrap();
        assert_eq!(rows[0].0, "u1");
        assert_eq!(
            Value::Object(rows[0].1.clone()),
            json!({"country": "DE", "employees": 50, "budget": 1.5, "consent": true})
        );
    }

    #[test]
    fn identifiers_that_look_like_numbers_keep_their_text() {
        let rows = read_contacts(
            "id,zip,phone,n,neg,f,zero,ok\nu1,01067,+4930123,42,-7,0.5,0,TRUE\n".as_bytes(),
            "c.csv",
            "id",
        )
        .unwrap();
        assert_eq!(
            Value::Object(rows[0].1.clone()),
            json!({"zip": "01067", "phone": "+4930123", "n": 42, "neg": -7, "f": 0.5, "zero": 0, "ok": true})
        );
    }

    #[test]
    fn columns_are_renamed_or_left_out() {
        let map = ColumnMap::from([
            ("Country".to_string(), Some("country".to_string())),
            ("note".to_string(), None),
        ]);
        let rows = read_contacts_mapped(
            "id,Country,note,budget\nu1,DE,hi,3\n".as_bytes(),
            "c.csv",
            "id",
            &map,
        )
        .unwrap();
        assert_eq!(
            Value::Object(rows[0].1.clone()),
            json!({"country": "DE", "budget": 3})
        );
        let bad = ColumnMap::from([("Land".to_string(), Some("country".to_string()))]);
        let e = read_contacts_mapped("id,Country\nu1,DE\n".as_bytes(), "c.csv", "id", &bad)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "c.csv:1: no `Land` column to map (columns: id, Country)"
        );
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = read_contacts("email,x\na,1\n".as_bytes(), "c.csv", "id").unwrap_err();
        assert_eq!(e.to_string(), "c.csv:1: no `id` column (columns: email, x)");
        let e = read_contacts("id,x\na,1\n,2\n".as_bytes(), "c.csv", "id").unwrap_err();
        assert_eq!(e.to_string(), "c.csv:3: empty `id`");
        let e = read_contacts("id,x\na,1\nb,2,3\n".as_bytes(), "c.csv", "id").unwrap_err();
        assert!(e.to_string().starts_with("c.csv:3: malformed CSV"), "{e}");
        let e = read_contacts("id,plan,plan\na,x,y\n".as_bytes(), "c.csv", "id").unwrap_err();
        assert_eq!(
            e.to_string(),
            "c.csv:1: columns `plan` and `plan` would both become trait `plan`"
        );
        let map = ColumnMap::from([("Plan".to_string(), Some("plan".to_string()))]);
        let e = read_contacts_mapped("id,plan,Plan\na,x,y\n".as_bytes(), "c.csv", "id", &map)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "c.csv:1: columns `plan` and `Plan` would both become trait `plan`"
        );
    }
}

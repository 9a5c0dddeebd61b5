//! Prepared statements whose texts and blobs are bound without a copy.
//!
//! rusqlite binds every text with `SQLITE_TRANSIENT`, so SQLite allocates a
//! copy of each one, and frees it when the parameter is bound again; for
//! the statements run once per ingested message (the event, with its whole
//! JSON body, and the ledger's entries) that and preparing the ledger's
//! statements were about 2.5k instructions a message (docs/performance.md,
//! session 28). Here texts and blobs are bound with `SQLITE_STATIC`, which
//! SQLite allows while they outlive the binding: [`Borrowed::execute`]
//! borrows its parameters for the call and clears every binding before it
//! returns. [`Prepared`] keeps the statements of one connection prepared.

use std::cell::RefCell;
use std::ffi::{c_int, c_uint, CStr};
use std::ptr::NonNull;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{ffi, Connection};

/// One parameter.
#[derive(Clone, Copy, Debug)]
pub(super) enum Param<'a> {
    Null,
    Integer(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

/// For statements run through rusqlite (which copies texts and blobs).
impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            Param::Null => ValueRef::Null,
            Param::Integer(n) => ValueRef::Integer(n),
            Param::Real(x) => ValueRef::Real(x),
            Param::Text(text) => ValueRef::Text(text.as_bytes()),
            Param::Blob(bytes) => ValueRef::Blob(bytes),
        }))
    }
}

impl<'a> From<&'a str> for Param<'a> {
    fn from(text: &'a str) -> Self {
        Param::Text(text)
    }
}

impl From<i64> for Param<'_> {
    fn from(n: i64) -> Self {
        Param::Integer(n)
    }
}

impl<'a> From<Option<&'a str>> for Param<'a> {
    fn from(text: Option<&'a str>) -> Self {
        text.map_or(Param::Null, Param::Text)
    }
}

impl From<f64> for Param<'_> {
    fn from(x: f64) -> Self {
        Param::Real(x)
    }
}

impl<'a> From<&'a [u8]> for Param<'a> {
    fn from(bytes: &'a [u8]) -> Self {
        Param::Blob(bytes)
    }
}

impl From<Option<i64>> for Param<'_> {
    fn from(n: Option<i64>) -> Self {
        n.map_or(Param::Null, Param::Integer)
    }
}

/// Statements prepared once on one connection and kept while it is open.
///
/// Declared before the connection in its owner, so that they are finalized
/// before it closes.
pub(super) struct Prepared {
    /// The connection's handle.
    db: *mut ffi::sqlite3,
    held: RefCell<Vec<(&'static str, NonNull<ffi::sqlite3_stmt>)>>,
}

// SAFETY: the statements belong to one connection, which is `Send`; they
// move with it, and `Prepared` is not `Sync`, so only the thread that holds
// the connection runs them.
unsafe impl Send for Prepared {}

impl Prepared {
    pub(super) fn new(conn: &Connection) -> Prepared {
        Prepared {
            // SAFETY: only compared, never used through this field.
            db: unsafe { conn.handle() },
            held: RefCell::new(Vec::new()),
        }
    }

    /// `sql`'s statement on `conn`: kept when `conn` is this one's
    /// connection (or a transaction on it), else prepared for the caller
    /// alone.
    pub(super) fn statement<'c>(
        &'c self,
        conn: &'c Connection,
        sql: &'static str,
    ) -> rusqlite::Result<Borrowed<'c>> {
        // SAFETY: compared only.
        if unsafe { conn.handle() } != self.db {
            return Borrowed::prepare(conn, sql);
        }
        let mut held = self.held.borrow_mut();
        let stmt = match held.iter().find(|(text, _)| std::ptr::eq(*text, sql)) {
            Some(&(_, stmt)) => stmt,
            None => {
                let stmt = prepare(conn, sql)?;
                held.push((sql, stmt));
                stmt
            }
        };
        Ok(Borrowed {
            conn,
            stmt,
            owned: false,
        })
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        for (_, stmt) in self.held.get_mut().drain(..) {
            // SAFETY: prepared on the connection, still open (see the
            // type's comment), finalized once.
            unsafe {
                ffi::sqlite3_finalize(stmt.as_ptr());
            }
        }
    }
}

/// A statement to run on `conn`.
pub(super) struct Borrowed<'c> {
    conn: &'c Connection,
    stmt: NonNull<ffi::sqlite3_stmt>,
    /// Finalized when dropped (else a [`Prepared`] one).
    owned: bool,
}

/// `sql` (one statement) prepared on `conn` to be run many times.
fn prepare(conn: &Connection, sql: &str) -> rusqlite::Result<NonNull<ffi::sqlite3_stmt>> {
    let len = c_int::try_from(sql.len()).map_err(|_| rusqlite::Error::InvalidQuery)?;
    let mut stmt = std::ptr::null_mut();
    // SAFETY: the handle is `conn`'s, open while it is borrowed; `sql` is
    // valid for `len` bytes; `stmt` is written by SQLite.
    let rc = unsafe {
        ffi::sqlite3_prepare_v3(
            conn.handle(),
            sql.as_ptr().cast(),
            len,
            ffi::SQLITE_PREPARE_PERSISTENT as c_uint,
            &mut stmt,
            std::ptr::null_mut(),
        )
    };
    if rc != ffi::SQLITE_OK {
        return Err(error(conn, rc));
    }
    NonNull::new(stmt).ok_or(rusqlite::Error::InvalidQuery)
}

impl<'c> Borrowed<'c> {
    /// `sql` prepared on `conn` for the caller alone.
    pub(super) fn prepare(conn: &'c Connection, sql: &str) -> rusqlite::Result<Borrowed<'c>> {
        Ok(Borrowed {
            conn,
            stmt: prepare(conn, sql)?,
            owned: true,
        })
    }

    /// Binds `params` (in order, from the first), runs the statement to
    /// its end and returns the number of rows it changed.
    pub(super) fn execute(&mut self, params: &[Param<'_>]) -> rusqlite::Result<usize> {
        let stmt = self.stmt.as_ptr();
        let mut rc = ffi::SQLITE_OK;
        for (i, param) in params.iter().enumerate() {
            let index = c_int::try_from(i + 1).map_err(|_| rusqlite::Error::InvalidQuery)?;
            // SAFETY: `stmt` is prepared and not finalized. A text or blob
            // is bound with SQLITE_STATIC: it is borrowed for this call, and
            // every binding is cleared below before the call returns.
            rc = unsafe {
                match *param {
                    Param::Null => ffi::sqlite3_bind_null(stmt, index),
                    Param::Integer(n) => ffi::sqlite3_bind_int64(stmt, index, n),
                    Param::Real(x) => ffi::sqlite3_bind_double(stmt, index, x),
                    Param::Text(text) => ffi::sqlite3_bind_text64(
                        stmt,
                        index,
                        text.as_ptr().cast(),
                        text.len() as u64,
                        ffi::SQLITE_STATIC(),
                        ffi::SQLITE_UTF8 as u8,
                    ),
                    Param::Blob(bytes) => ffi::sqlite3_bind_blob64(
                        stmt,
                        index,
                        bytes.as_ptr().cast(),
                        bytes.len() as u64,
                        ffi::SQLITE_STATIC(),
                    ),
                }
            };
            if rc != ffi::SQLITE_OK {
                break;
            }
        }
        let result = if rc != ffi::SQLITE_OK {
            Err(error(self.conn, rc))
        } else {
            // SAFETY: as above.
            match unsafe { ffi::sqlite3_step(stmt) } {
                ffi::SQLITE_DONE => Ok(self.conn.changes() as usize),
                ffi::SQLITE_ROW => Err(rusqlite::Error::ExecuteReturnedResults),
                rc => Err(error(self.conn, rc)),
            }
        };
        // SAFETY: as above. Reset returns the step's error again, already
        // taken; clearing drops every borrowed text.
        unsafe {
            ffi::sqlite3_reset(stmt);
            ffi::sqlite3_clear_bindings(stmt);
        }
        result
    }
}

impl Drop for Borrowed<'_> {
    fn drop(&mut self) {
        if self.owned {
            // SAFETY: prepared by `Borrowed::prepare`, finalized once.
            unsafe {
                ffi::sqlite3_finalize(self.stmt.as_ptr());
            }
        }
    }
}

/// The connection's error for `rc`, with SQLite's message.
fn error(conn: &Connection, rc: c_int) -> rusqlite::Error {
    // SAFETY: the handle is open; SQLite's message is a NUL-terminated
    // string valid until the next call on the connection, copied here.
    let message = unsafe {
        let text = ffi::sqlite3_errmsg(conn.handle());
        (!text.is_null()).then(|| CStr::from_ptr(text).to_string_lossy().into_owned())
    };
    rusqlite::Error::SqliteFailure(ffi::Error::new(rc), message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Connection {
        // As the store opens SQLite: its page cache goes in first (a test
        // of this process checks that it could).
        crate::pcache::install();
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (a TEXT UNIQUE, b INTEGER, c TEXT)")
            .unwrap();
        conn
    }

    fn rows(conn: &Connection) -> Vec<(Option<String>, Option<i64>, Option<String>)> {
        conn.prepare("SELECT a, b, c FROM t ORDER BY rowid")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    const INSERT: &str = "INSERT INTO t (a, b, c) VALUES (?1, ?2, ?3) ON CONFLICT (a) DO NOTHING";

    #[test]
    fn texts_are_stored_and_every_binding_is_cleared_after_a_run() {
        let conn = conn();
        let prepared = Prepared::new(&conn);
        let mut insert = prepared.statement(&conn, INSERT).unwrap();
        let first = String::from("first");
        let third = String::from("a text freed after the run");
        assert_eq!(
            insert
                .execute(&[first.as_str().into(), 7.into(), third.as_str().into()])
                .unwrap(),
            1
        );
        drop(third);
        // Parameters not given are NULL: nothing of the last run is left.
        assert_eq!(insert.execute(&["second".into()]).unwrap(), 1);
        assert_eq!(insert.execute(&[first.as_str().into()]).unwrap(), 0);
        assert_eq!(
            rows(&conn),
            [
                (
                    Some("first".into()),
                    Some(7),
                    Some("a text freed after the run".into())
                ),
                (Some("second".into()), None, None)
            ]
        );
    }

    #[test]
    fn a_statement_is_prepared_once_on_its_connection_and_apart_on_another() {
        let conn = conn();
        let prepared = Prepared::new(&conn);
        let a = prepared.statement(&conn, INSERT).unwrap();
        let b = prepared.statement(&conn, INSERT).unwrap();
        assert_eq!(a.stmt, b.stmt);
        assert!(!a.owned);
        let tx = conn.unchecked_transaction().unwrap();
        assert_eq!(prepared.statement(&tx, INSERT).unwrap().stmt, a.stmt);
        drop(tx);
        let other = self::conn();
        let c = prepared.statement(&other, INSERT).unwrap();
        assert_ne!(c.stmt, a.stmt);
        assert!(c.owned);
        let mut c = c;
        c.execute(&["elsewhere".into()]).unwrap();
        assert_eq!(rows(&other).len(), 1);
        assert!(rows(&conn).is_empty());
    }

    #[test]
    fn errors_carry_sqlites_code_and_message() {
        let conn = conn();
        conn.execute_batch("CREATE TABLE u (a TEXT NOT NULL)")
            .unwrap();
        let prepared = Prepared::new(&conn);
        let mut insert = prepared
            .statement(&conn, "INSERT INTO u (a) VALUES (?1)")
            .unwrap();
        let e = insert.execute(&[Param::Null]).unwrap_err();
        assert_eq!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::ConstraintViolation)
        );
        assert!(
            e.to_string().contains("NOT NULL constraint failed: u.a"),
            "{e}"
        );
        // Too many parameters: refused before the statement runs.
        let e = insert.execute(&["x".into(), "y".into()]).unwrap_err();
        assert!(e.to_string().contains("column index out of range"), "{e}");
        // The statement still runs after either.
        assert_eq!(insert.execute(&["x".into()]).unwrap(), 1);
        let e = prepared
            .statement(&conn, "INSERT INTO nowhere VALUES (1)")
            .err()
            .unwrap();
        assert!(e.to_string().contains("no such table: nowhere"), "{e}");
        let e = insert_returning(&conn).unwrap_err();
        assert!(matches!(e, rusqlite::Error::ExecuteReturnedResults), "{e}");
    }

    fn insert_returning(conn: &Connection) -> rusqlite::Result<usize> {
        Borrowed::prepare(conn, "SELECT 1")?.execute(&[])
    }
}

//! DuckDB through its C API, the library duckdb-rs builds and exposes as
//! `duckdb::ffi`. duckdb-rs runs every statement as extract, prepare,
//! execute: DuckDB parses it, binds and plans it, and binds and plans it
//! again when it runs, because a statement that changes the catalog always
//! rebinds. `duckdb_query` parses, plans and runs once, which is most of
//! airlock's own cost per statement on a deploy (benches B1). These are the
//! handful of calls airlock needs: open, connect, run, read text, interrupt.

use std::ffi::{c_void, CStr, CString};
use std::os::raw::c_char;
use std::path::Path;
use std::ptr;
use std::sync::Arc;

use anyhow::{anyhow, Result};
use duckdb::ffi;

/// An open database file (or `:memory:`); closed when the last connection goes.
pub struct Database {
    raw: ffi::duckdb_database,
}

// SAFETY: a DuckDB database handle may be used from any thread; DuckDB locks internally.
unsafe impl Send for Database {}
unsafe impl Sync for Database {}

impl Database {
    /// Opens `path` (`None`: in memory) with DuckDB configuration options,
    /// e.g. `("threads", "2")`, `("access_mode", "READ_ONLY")`.
    pub fn open(path: Option<&Path>, options: &[(&str, String)]) -> Result<Arc<Self>> {
        let c_path = match path {
            Some(p) => CString::new(p.to_str().ok_or_else(|| anyhow!("the path {} is not UTF-8", p.display()))?)
                .map_err(|_| anyhow!("the path {} contains a NUL byte", p.display()))?,
            None => CString::new(":memory:").expect("no NUL"),
        };
        let config = Config::new()?;
        for (name, value) in options {
            config.set(name, value)?;
        }
        let mut raw: ffi::duckdb_database = ptr::null_mut();
        let mut error: *mut c_char = ptr::null_mut();
        // SAFETY: every pointer is valid for the call; `error` is ours to free
        let state = unsafe { ffi::duckdb_open_ext(c_path.as_ptr(), &mut raw, config.raw, &mut error) };
        if state != ffi::DuckDBSuccess {
            let message = if error.is_null() {
                "DuckDB gave no reason".to_string()
            } else {
                // SAFETY: DuckDB returned a NUL-terminated string allocated for us
                let text = unsafe { CStr::from_ptr(error) }.to_string_lossy().into_owned();
                unsafe { ffi::duckdb_free(error as *mut c_void) };
                text
            };
            return Err(anyhow!(message));
        }
        Ok(Arc::new(Database { raw }))
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        // SAFETY: opened by `open`; every connection holds an Arc, so none is left
        unsafe { ffi::duckdb_close(&mut self.raw) };
    }
}

struct Config {
    raw: ffi::duckdb_config,
}

impl Config {
    fn new() -> Result<Self> {
        let mut raw: ffi::duckdb_config = ptr::null_mut();
        // SAFETY: `raw` receives a configuration we destroy on drop
        if unsafe { ffi::duckdb_create_config(&mut raw) } != ffi::DuckDBSuccess {
            return Err(anyhow!("DuckDB could not create a configuration"));
        }
        Ok(Config { raw })
    }

    fn set(&self, name: &str, value: &str) -> Result<()> {
        let (n, v) = (CString::new(name)?, CString::new(value)?);
        // SAFETY: both strings outlive the call
        if unsafe { ffi::duckdb_set_config(self.raw, n.as_ptr(), v.as_ptr()) } != ffi::DuckDBSuccess {
            return Err(anyhow!("DuckDB refused the setting {name} = {value}"));
        }
        Ok(())
    }
}

impl Drop for Config {
    fn drop(&mut self) {
        // SAFETY: created by `new`; DuckDB copies the options when it opens
        unsafe { ffi::duckdb_destroy_config(&mut self.raw) };
    }
}

/// One connection: its own transaction and session settings.
pub struct Connection {
    raw: ffi::duckdb_connection,
    _db: Arc<Database>,
}

// SAFETY: a DuckDB connection may move between threads, and `duckdb_interrupt`
// is made to be called from another thread while a statement runs; DuckDB
// serializes statements on one connection itself.
unsafe impl Send for Connection {}
unsafe impl Sync for Connection {}

/// A query's columns and its rows, every value as text.
pub struct Text {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl Connection {
    pub fn open(db: &Arc<Database>) -> Result<Self> {
        let mut raw: ffi::duckdb_connection = ptr::null_mut();
        // SAFETY: the database is open while `db` lives, and the connection keeps it
        if unsafe { ffi::duckdb_connect(db.raw, &mut raw) } != ffi::DuckDBSuccess {
            return Err(anyhow!("DuckDB refused a new connection"));
        }
        Ok(Connection { raw, _db: db.clone() })
    }

    /// Runs SQL; the rows it changed (what DuckDB counts: CREATE TABLE AS,
    /// INSERT, UPDATE, DELETE; 0 otherwise).
    pub fn execute(&self, sql: &str) -> Result<u64> {
        let mut result = QueryResult::run(self, sql)?;
        // SAFETY: a successful result
        Ok(unsafe { ffi::duckdb_rows_changed(&mut result.raw) })
    }

    /// Runs a query whose columns are all VARCHAR and reads every row.
    pub fn query_text(&self, sql: &str) -> Result<Text> {
        let mut result = QueryResult::run(self, sql)?;
        // SAFETY: a successful result; column names live as long as it does
        let width = unsafe { ffi::duckdb_column_count(&mut result.raw) };
        let columns = (0..width)
            .map(|i| {
                let name = unsafe { ffi::duckdb_column_name(&mut result.raw, i) };
                if name.is_null() { String::new() } else { unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned() }
            })
            .collect();
        let mut rows = Vec::new();
        loop {
            // SAFETY: the chunk is destroyed by its guard; each vector is VARCHAR
            // (the caller casts every column), so its data is `duckdb_string_t`
            let chunk = Chunk(unsafe { ffi::duckdb_fetch_chunk(result.raw) });
            if chunk.0.is_null() {
                break;
            }
            let size = unsafe { ffi::duckdb_data_chunk_get_size(chunk.0) } as usize;
            if size == 0 {
                break;
            }
            let first = rows.len();
            rows.extend((0..size).map(|_| Vec::with_capacity(width as usize)));
            for col in 0..width {
                let vector = unsafe { ffi::duckdb_data_chunk_get_vector(chunk.0, col) };
                let data = unsafe { ffi::duckdb_vector_get_data(vector) } as *mut ffi::duckdb_string_t;
                let validity = unsafe { ffi::duckdb_vector_get_validity(vector) };
                for (row, out) in rows[first..].iter_mut().enumerate() {
                    let valid = validity.is_null() || unsafe { ffi::duckdb_validity_row_is_valid(validity, row as u64) };
                    out.push(valid.then(|| unsafe {
                        let s = data.add(row);
                        let len = ffi::duckdb_string_t_length(*s) as usize;
                        let bytes = std::slice::from_raw_parts(ffi::duckdb_string_t_data(s) as *const u8, len);
                        String::from_utf8_lossy(bytes).into_owned()
                    }));
                }
            }
        }
        Ok(Text { columns, rows })
    }

    /// Stops whatever this connection is running (from any thread).
    pub fn interrupt(&self) {
        // SAFETY: the connection is open while `self` lives
        unsafe { ffi::duckdb_interrupt(self.raw) };
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // SAFETY: connected by `open`, disconnected once
        unsafe { ffi::duckdb_disconnect(&mut self.raw) };
    }
}

/// A result, destroyed on drop whether the statement succeeded or not.
struct QueryResult {
    raw: ffi::duckdb_result,
}

impl QueryResult {
    fn run(conn: &Connection, sql: &str) -> Result<Self> {
        let c_sql = CString::new(sql).map_err(|_| anyhow!("the SQL contains a NUL byte"))?;
        // SAFETY: a zeroed duckdb_result is what the C API expects to fill in
        let mut result = QueryResult { raw: unsafe { std::mem::zeroed() } };
        let state = unsafe { ffi::duckdb_query(conn.raw, c_sql.as_ptr(), &mut result.raw) };
        if state != ffi::DuckDBSuccess {
            // SAFETY: the error string lives as long as the result
            let error = unsafe { ffi::duckdb_result_error(&mut result.raw) };
            let message = if error.is_null() { "DuckDB failed without a message".to_string() } else { unsafe { CStr::from_ptr(error) }.to_string_lossy().into_owned() };
            return Err(anyhow!(message));
        }
        Ok(result)
    }
}

impl Drop for QueryResult {
    fn drop(&mut self) {
        // SAFETY: filled in by duckdb_query (on failure too)
        unsafe { ffi::duckdb_destroy_result(&mut self.raw) };
    }
}

struct Chunk(ffi::duckdb_data_chunk);

impl Drop for Chunk {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: fetched by duckdb_fetch_chunk, destroyed once
            unsafe { ffi::duckdb_destroy_data_chunk(&mut self.0) };
        }
    }
}

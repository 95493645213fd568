//! The accounting spool: every accounting record is committed to disk before it is sent and
//! removed only when a server has acknowledged it, so that a crash, a `kill -9` or a power cut
//! neither loses a record nor sends one twice from our side (a record sent but not yet
//! acknowledged when the server died is sent again: RADIUS servers drop duplicates by
//! Acct-Session-Id, Acct-Status-Type and Event-Timestamp).
//!
//! The spool is its own SQLite file in the state folder ([`SPOOL_FILE`], 0600, WAL journal,
//! `synchronous=FULL`: a commit is on disk when it returns). Three tables:
//!
//! - `pending`: records waiting for an acknowledgement, in the order they were written;
//! - `open_sessions`: the sessions that have a Start but no Stop yet, with the counters of their
//!   last Interim-Update (the checkpoint). After a crash, [`Spool::recover`] turns each one into
//!   a Stop with the last checkpointed counters, in the same transaction that closes it;
//! - `accounting_log`: the history of every record (also the only accounting there is on a
//!   server without RADIUS), which [`Spool::export_csv`] writes out.
//!
//! [`Spool::push`] writes a record everywhere it belongs in one transaction: a Start also opens
//! its session, an Interim-Update also checkpoints it, a Stop also closes it. A crash therefore
//! never leaves a Stop spooled while its session still looks open (which would give a second
//! Stop on recovery), nor a Start spooled without its open session (which would give none).
//!
//! Bounds ([`SpoolLimits`]): above `warn_depth` pending records a loud `error!` alarm is logged
//! (once at the threshold, then again every quarter of the way to the maximum, and again after
//! the depth fell below half the threshold and rose back). At `max_depth` new Interim-Updates
//! are refused ([`SpoolError::Full`]; their session is still checkpointed and the history still
//! gets them): they are the only records whose loss costs nothing in the end, since the Stop
//! carries the totals. Starts, Stops and Accounting-On/Off are always kept, past the maximum.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::{Value, json};
use tracing::{error, warn};

use super::record::{AcctRecord, AcctStatus, TerminateCause};
use super::store::{self, StoreError};

/// File name of the spool inside the state folder.
pub const SPOOL_FILE: &str = "accounting.db";

/// The schema version this build writes (2: `pending.next_try` and its index).
const SCHEMA_VERSION: i64 = 2;

/// The file in error messages.
const WHAT: &str = "accounting spool";

/// The number of a record in the spool (its row id; increases with every record written).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpoolId(pub i64);

/// A session's traffic counters as seen from the server: input is from the client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Octets received from the client.
    pub input_octets: u64,
    /// Packets received from the client.
    pub input_packets: u64,
    /// Octets sent to the client.
    pub output_octets: u64,
    /// Packets sent to the client.
    pub output_packets: u64,
}

/// How far the spool may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolLimits {
    /// Pending records at which new Interim-Updates are refused.
    pub max_depth: u64,
    /// Pending records above which an alarm is logged.
    pub warn_depth: u64,
    /// Whether records are sent somewhere (RADIUS). Without, they only go to the history.
    pub send: bool,
}

impl Default for SpoolLimits {
    fn default() -> Self {
        SpoolLimits {
            max_depth: 100_000,
            warn_depth: 10_000,
            send: true,
        }
    }
}

/// Errors of the spool, in words an admin can act on.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The spool file could not be opened, read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing an export failed.
    #[error("CSV export: {0}")]
    Export(std::io::Error),
    /// The spool is full and the record was an Interim-Update, which is refused then.
    #[error(
        "accounting spool full ({depth} records waiting, maximum {max}): Interim-Update not kept"
    )]
    Full {
        /// Records waiting.
        depth: u64,
        /// The configured maximum.
        max: u64,
    },
}

/// The on-disk accounting spool, open-session table and history.
#[derive(Debug)]
pub struct Spool {
    conn: Connection,
    path: PathBuf,
    limits: SpoolLimits,
    depth: u64,
    /// The depth at which the last alarm was logged, while above the threshold.
    alarmed_at: Option<u64>,
    /// How many times pending rows were read ([`Spool::due`]): a diagnostic for tests.
    reads: std::cell::Cell<u64>,
}

impl Spool {
    /// Opens (creating if needed) [`SPOOL_FILE`] in `state`, a folder made 0700 if missing.
    pub fn open(state: &Path, limits: SpoolLimits) -> Result<Self, SpoolError> {
        Self::init(Some(state), limits)
    }

    /// Opens an in-memory spool (tests).
    pub fn in_memory(limits: SpoolLimits) -> Result<Self, SpoolError> {
        Self::init(None, limits)
    }

    fn init(state: Option<&Path>, limits: SpoolLimits) -> Result<Self, SpoolError> {
        let opened = store::open(state, SPOOL_FILE, WHAT, SCHEMA_VERSION)?;
        let mut spool = Spool {
            conn: opened.conn,
            path: opened.path,
            limits,
            depth: 0,
            alarmed_at: None,
            reads: std::cell::Cell::new(0),
        };
        spool.migrate(opened.version)?;
        let depth: i64 =
            spool.db(spool
                .conn
                .query_row("SELECT count(*) FROM pending", [], |r| r.get(0)))?;
        spool.depth = u64::try_from(depth).unwrap_or(0);
        Ok(spool)
    }

    fn db<T>(&self, r: rusqlite::Result<T>) -> Result<T, SpoolError> {
        db_err(&self.path, r)
    }

    fn migrate(&self, version: i64) -> Result<(), SpoolError> {
        // WAL: readers (the web UI) do not block the writer; FULL: a commit survives a power cut.
        let _mode: String = self.db(self
            .conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)))?;
        self.db(self.conn.execute_batch("PRAGMA synchronous=FULL"))?;
        if version < 1 {
            self.db(self.conn.execute_batch(
                "BEGIN;
                 CREATE TABLE pending (
                     id INTEGER PRIMARY KEY AUTOINCREMENT,
                     record TEXT NOT NULL,
                     created INTEGER NOT NULL DEFAULT (unixepoch()),
                     tries INTEGER NOT NULL DEFAULT 0,
                     last_try INTEGER
                 );
                 CREATE TABLE open_sessions (
                     session_id TEXT NOT NULL PRIMARY KEY,
                     start_record TEXT NOT NULL,
                     session_time INTEGER NOT NULL DEFAULT 0,
                     input_octets INTEGER NOT NULL DEFAULT 0,
                     input_packets INTEGER NOT NULL DEFAULT 0,
                     output_octets INTEGER NOT NULL DEFAULT 0,
                     output_packets INTEGER NOT NULL DEFAULT 0,
                     updated INTEGER NOT NULL DEFAULT (unixepoch())
                 );
                 CREATE TABLE accounting_log (
                     id INTEGER PRIMARY KEY AUTOINCREMENT,
                     time INTEGER NOT NULL,
                     status TEXT NOT NULL,
                     session_id TEXT NOT NULL,
                     user TEXT NOT NULL,
                     framed_ip TEXT,
                     calling_station TEXT NOT NULL,
                     session_time INTEGER NOT NULL,
                     input_octets INTEGER NOT NULL,
                     output_octets INTEGER NOT NULL,
                     input_packets INTEGER NOT NULL,
                     output_packets INTEGER NOT NULL,
                     terminate_cause TEXT
                 );
                 CREATE INDEX accounting_log_time ON accounting_log (time);
                 PRAGMA user_version = 1;
                 COMMIT;",
            ))?;
        }
        if version < 2 {
            // Idempotent: a file that already has the column (a migration cut short between
            // its statements cannot happen, they are one transaction, but a hand-made file
            // could) only gets what it lacks.
            let tx = self.db(self.conn.unchecked_transaction())?;
            let has: bool = self.db(tx.query_row(
                "SELECT count(*) FROM pragma_table_info('pending') WHERE name = 'next_try'",
                [],
                |r| r.get::<_, i64>(0).map(|n| n > 0),
            ))?;
            if !has {
                self.db(tx.execute_batch(
                    "ALTER TABLE pending ADD COLUMN next_try INTEGER NOT NULL DEFAULT 0",
                ))?;
            }
            self.db(tx.execute_batch(
                "CREATE INDEX IF NOT EXISTS pending_next_try ON pending (next_try, id);
                 PRAGMA user_version = 2;",
            ))?;
            self.db(tx.commit())?;
        }
        // The in-flight and back-off state (next_try) is only meaningful within one run: at
        // start every pending record is due, so that records in flight when the previous run
        // stopped are sent again. One indexed UPDATE, once per start.
        self.db(self
            .conn
            .execute("UPDATE pending SET next_try = 0 WHERE next_try > 0", []))?;
        Ok(())
    }

    /// The configured limits.
    pub fn limits(&self) -> SpoolLimits {
        self.limits
    }

    /// Records waiting for an acknowledgement.
    pub fn depth(&self) -> u64 {
        self.depth
    }

    /// Whether the spool is at its maximum (new Interim-Updates are refused).
    pub fn is_full(&self) -> bool {
        self.limits.send && self.depth >= self.limits.max_depth
    }

    /// Writes `rec` in one transaction to the history, to the pending records (when the spool
    /// sends) and to the open-session table (a Start opens, an Interim-Update checkpoints, a
    /// Stop closes). Returns the record's id, or `None` when the spool does not send. At the
    /// maximum depth an Interim-Update is refused with [`SpoolError::Full`] after its
    /// checkpoint and history entry are written; every other record is always kept. The
    /// record is on disk (committed) when this returns `Ok`.
    pub fn push(&mut self, rec: &AcctRecord) -> Result<Option<SpoolId>, SpoolError> {
        let mut full = None;
        let id = self.batch(|b| match b.push(rec) {
            Err(e @ SpoolError::Full { .. }) => {
                full = Some(e);
                Ok(None)
            }
            r => r,
        })?;
        match full {
            Some(e) => Err(e),
            None => Ok(id),
        }
    }

    /// Runs `f` on one transaction: every push, acknowledgement, try and retry it makes is
    /// committed together (one disk sync) when it returns `Ok`, or none of them when it returns
    /// an error (the transaction is rolled back). Nothing `f` pushed may be reported spooled
    /// before this returns `Ok`. An Interim-Update refused by [`Batch::push`] because the spool
    /// is full ([`SpoolError::Full`]) still gets its checkpoint and history entry if `f` goes
    /// on and returns `Ok`.
    pub fn batch<T>(
        &mut self,
        f: impl FnOnce(&mut Batch<'_>) -> Result<T, SpoolError>,
    ) -> Result<T, SpoolError> {
        let (out, depth, refused) = {
            let path = self.path.clone();
            let tx = db_err(&path, self.conn.transaction())?;
            let mut b = Batch {
                tx,
                path,
                limits: self.limits,
                depth: self.depth,
                refused: Vec::new(),
            };
            let out = f(&mut b)?;
            let Batch {
                tx,
                path,
                depth,
                refused,
                ..
            } = b;
            db_err(&path, tx.commit())?;
            (out, depth, refused)
        };
        for (session, depth_then) in refused {
            error!(
                session = %session,
                depth = depth_then,
                max = self.limits.max_depth,
                "ACCOUNTING SPOOL FULL: Interim-Update not kept (Starts and Stops still are); \
                 check that the RADIUS accounting servers answer"
            );
        }
        let grew = depth > self.depth;
        self.depth = depth;
        if self.depth < self.limits.warn_depth / 2 {
            self.alarmed_at = None;
        }
        if grew {
            self.alarm();
        }
        Ok(out)
    }

    /// Logs the depth alarm when due (see the module documentation).
    fn alarm(&mut self) {
        let warn_at = self.limits.warn_depth;
        if self.depth < warn_at / 2 {
            self.alarmed_at = None;
        }
        if self.depth <= warn_at {
            return;
        }
        let step = (self.limits.max_depth.saturating_sub(warn_at) / 4).max(1);
        let due = match self.alarmed_at {
            None => true,
            Some(at) => self.depth >= at.saturating_add(step),
        };
        if due {
            self.alarmed_at = Some(self.depth);
            error!(
                depth = self.depth,
                warn = warn_at,
                max = self.limits.max_depth,
                "ACCOUNTING BACKLOG: {} records wait for the RADIUS accounting servers; at {} \
                 Interim-Updates will be refused",
                self.depth,
                self.limits.max_depth
            );
        }
    }

    /// Up to `limit` pending records, oldest first. A row that cannot be read back (written by
    /// hand, damaged) is logged and skipped, never deleted.
    pub fn pending(&self, limit: usize) -> Result<Vec<(SpoolId, AcctRecord)>, SpoolError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self.db(self
            .conn
            .prepare("SELECT id, record FROM pending ORDER BY id LIMIT ?1"))?;
        let rows = self.db(stmt.query_map(params![limit], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        }))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, text) = self.db(row)?;
            match decode(&text) {
                Some(rec) => out.push((SpoolId(id), rec)),
                None => error!(
                    id,
                    "accounting spool: pending record {id} cannot be read; kept"
                ),
            }
        }
        Ok(out)
    }

    /// Up to `limit` records that are due at `now_ms` (Unix milliseconds: `next_try <= now_ms`),
    /// earliest due first, then oldest. Reads only those rows (through the `next_try` index).
    /// A row that cannot be read back is logged and skipped, never deleted.
    pub fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<(SpoolId, AcctRecord)>, SpoolError> {
        self.reads.set(self.reads.get() + 1);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self.db(self.conn.prepare(
            "SELECT id, record FROM pending INDEXED BY pending_next_try
             WHERE next_try <= ?1 ORDER BY next_try, id LIMIT ?2",
        ))?;
        let rows = self.db(stmt.query_map(params![now_ms, limit], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        }))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, text) = self.db(row)?;
            match decode(&text) {
                Some(rec) => out.push((SpoolId(id), rec)),
                None => error!(
                    id,
                    "accounting spool: pending record {id} cannot be read; kept"
                ),
            }
        }
        Ok(out)
    }

    /// How many times [`Spool::due`] read the pending records.
    pub fn reads(&self) -> u64 {
        self.reads.get()
    }

    /// The earliest `next_try` (Unix milliseconds) of the pending records, `None` when there
    /// are none. One index lookup.
    pub fn earliest_due(&self) -> Result<Option<i64>, SpoolError> {
        self.db(self.conn.query_row(
            "SELECT min(next_try) FROM pending INDEXED BY pending_next_try",
            [],
            |r| r.get(0),
        ))
    }

    /// When a pending record is next due (Unix milliseconds), if it is pending.
    pub fn next_try(&self, id: SpoolId) -> Result<Option<i64>, SpoolError> {
        self.db(self
            .conn
            .query_row(
                "SELECT next_try FROM pending WHERE id = ?1",
                params![id.0],
                |r| r.get(0),
            )
            .optional())
    }

    /// Removes an acknowledged record. Acknowledging an unknown (already removed) id is not an
    /// error.
    pub fn ack(&mut self, id: SpoolId) -> Result<(), SpoolError> {
        self.batch(|b| b.ack(id))
    }

    /// Counts a sending attempt of a record (`tries`, `last_try`).
    pub fn note_try(&mut self, id: SpoolId) -> Result<(), SpoolError> {
        self.batch(|b| b.note_try(id, None))
    }

    /// The number of attempts made for a record, if it is pending.
    pub fn tries(&self, id: SpoolId) -> Result<Option<u32>, SpoolError> {
        self.db(self
            .conn
            .query_row(
                "SELECT tries FROM pending WHERE id = ?1",
                params![id.0],
                |r| r.get(0),
            )
            .optional())
    }

    /// Records a session as open (normally done by [`Spool::push`] of its Start).
    pub fn session_open(&mut self, start: &AcctRecord) -> Result<(), SpoolError> {
        tx_open(&self.path, &self.conn, start)
    }

    /// Records a session's counters and session time (normally done by [`Spool::push`] of an
    /// Interim-Update). Unknown sessions are ignored.
    pub fn checkpoint(
        &mut self,
        session_id: &str,
        counters: &Counters,
        session_time_s: u32,
    ) -> Result<(), SpoolError> {
        let mut rec = AcctRecord {
            session_id: session_id.to_string(),
            session_time_s,
            ..AcctRecord::default()
        };
        set_counters(&mut rec, counters);
        tx_checkpoint(&self.path, &self.conn, &rec)
    }

    /// Forgets an open session (normally done by [`Spool::push`] of its Stop).
    pub fn session_closed(&mut self, session_id: &str) -> Result<(), SpoolError> {
        tx_close(&self.path, &self.conn, session_id)
    }

    /// The ids of the sessions recorded as open.
    pub fn open_sessions(&self) -> Result<Vec<String>, SpoolError> {
        let mut stmt = self.db(self
            .conn
            .prepare("SELECT session_id FROM open_sessions ORDER BY session_id"))?;
        let rows = self.db(stmt.query_map([], |r| r.get::<_, String>(0)))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(self.db(row)?);
        }
        Ok(out)
    }

    /// After a start: every session still recorded as open (the server stopped without
    /// closing it) gets a Stop with its last checkpointed counters and session time, `cause`
    /// (normally NAS-Reboot) and `unix_now` as its event time. The Stops are spooled and
    /// logged and the sessions closed in one transaction: a crash during recovery leaves
    /// either everything before it or everything after it. Returns the Stops.
    pub fn recover(
        &mut self,
        unix_now: u64,
        cause: TerminateCause,
    ) -> Result<Vec<AcctRecord>, SpoolError> {
        let path = self.path.clone();
        let send = self.limits.send;
        let tx = db_err(&path, self.conn.transaction())?;
        let mut stops = Vec::new();
        {
            let mut stmt = db_err(
                &path,
                tx.prepare(
                    "SELECT session_id, start_record, session_time, input_octets, input_packets,
                            output_octets, output_packets
                     FROM open_sessions ORDER BY rowid",
                ),
            )?;
            let rows = db_err(
                &path,
                stmt.query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        [
                            r.get::<_, i64>(3)?,
                            r.get::<_, i64>(4)?,
                            r.get::<_, i64>(5)?,
                            r.get::<_, i64>(6)?,
                        ],
                    ))
                }),
            )?;
            for row in rows {
                let (session_id, start, time, c) = db_err(&path, row)?;
                let mut stop = decode(&start).unwrap_or_else(|| {
                    error!(session = %session_id, "open session's Start cannot be read; Stop sent with the session id only");
                    AcctRecord::default()
                });
                stop.session_id = session_id;
                stop.status = Some(AcctStatus::Stop);
                stop.session_time_s = u32::try_from(time).unwrap_or(0);
                let [io, ip, oo, op] = c.map(|v| u64::try_from(v).unwrap_or(0));
                set_counters(
                    &mut stop,
                    &Counters {
                        input_octets: io,
                        input_packets: ip,
                        output_octets: oo,
                        output_packets: op,
                    },
                );
                stop.terminate_cause = Some(cause);
                stop.event_time = unix_now;
                stops.push(stop);
            }
        }
        let mut added = 0;
        for stop in &stops {
            if send {
                tx_pending(&path, &tx, stop)?;
                added += 1;
            }
            tx_log(&path, &tx, stop)?;
        }
        db_err(&path, tx.execute("DELETE FROM open_sessions", []))?;
        db_err(&path, tx.commit())?;
        self.depth += added;
        if !stops.is_empty() {
            warn!(
                sessions = stops.len(),
                cause = cause.name(),
                "sessions left open by the previous run closed with a Stop (last checkpointed counters)"
            );
        }
        self.alarm();
        Ok(stops)
    }

    /// Writes the history as CSV (a header line, then one line per record, oldest first), from
    /// `since` (seconds since the Unix epoch, inclusive) on. Returns the number of records.
    /// Text fields that a spreadsheet would take for a formula (starting with `=`, `+`, `-`,
    /// `@`) get a leading `'`; fields with a comma, a quote or a line break are quoted.
    pub fn export_csv(&self, out: &mut dyn Write, since: Option<u64>) -> Result<u64, SpoolError> {
        let io = SpoolError::Export;
        out.write_all(CSV_HEADER.as_bytes()).map_err(io)?;
        let since = since.map_or(i64::MIN, |s| i64::try_from(s).unwrap_or(i64::MAX));
        let mut stmt = self.db(self.conn.prepare(
            "SELECT time, status, session_id, user, framed_ip, calling_station, session_time,
                    input_octets, output_octets, input_packets, output_packets, terminate_cause
             FROM accounting_log WHERE time >= ?1 ORDER BY id",
        ))?;
        let mut rows = self.db(stmt.query(params![since]))?;
        let mut n = 0;
        while let Some(r) = self.db(rows.next())? {
            let text = |i| -> Result<String, SpoolError> {
                Ok(self.db(r.get::<_, Option<String>>(i))?.unwrap_or_default())
            };
            let num =
                |i| -> Result<String, SpoolError> { Ok(self.db(r.get::<_, i64>(i))?.to_string()) };
            let fields = [
                num(0)?,
                csv_field(&text(1)?),
                csv_field(&text(2)?),
                csv_field(&text(3)?),
                csv_field(&text(4)?),
                csv_field(&text(5)?),
                num(6)?,
                num(7)?,
                num(8)?,
                num(9)?,
                num(10)?,
                csv_field(&text(11)?),
            ];
            out.write_all(fields.join(",").as_bytes()).map_err(io)?;
            out.write_all(b"\r\n").map_err(io)?;
            n += 1;
        }
        out.flush().map_err(io)?;
        Ok(n)
    }

    /// The history, newest first: at most `limit` records, from `since` (Unix seconds,
    /// inclusive) on.
    pub fn history(&self, since: Option<u64>, limit: usize) -> Result<Vec<HistoryRow>, SpoolError> {
        let since = since.map_or(i64::MIN, |s| i64::try_from(s).unwrap_or(i64::MAX));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self.db(self.conn.prepare(
            "SELECT time, status, session_id, user, framed_ip, calling_station, session_time,
                    input_octets, output_octets, input_packets, output_packets, terminate_cause
             FROM accounting_log WHERE time >= ?1 ORDER BY id DESC LIMIT ?2",
        ))?;
        let count = |v: i64| u64::try_from(v).unwrap_or(0);
        let rows = self.db(stmt.query_map(params![since, limit], |r| {
            Ok(HistoryRow {
                time: r.get(0)?,
                status: r.get(1)?,
                session_id: r.get(2)?,
                user: r.get(3)?,
                framed_ip: r.get::<_, Option<String>>(4)?.and_then(|a| a.parse().ok()),
                calling_station: r.get(5)?,
                session_time: count(r.get(6)?),
                input_octets: count(r.get(7)?),
                output_octets: count(r.get(8)?),
                input_packets: count(r.get(9)?),
                output_packets: count(r.get(10)?),
                terminate_cause: r.get(11)?,
            })
        }))?;
        rows.map(|r| self.db(r)).collect()
    }
}

/// The writes of one [`Spool::batch`] transaction.
pub struct Batch<'a> {
    tx: Transaction<'a>,
    path: PathBuf,
    limits: SpoolLimits,
    /// The depth as it will be after the commit.
    depth: u64,
    /// Interim-Updates refused as the spool was full: session and depth, logged after commit.
    refused: Vec<(String, u64)>,
}

impl std::fmt::Debug for Batch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("depth", &self.depth)
            .finish_non_exhaustive()
    }
}

impl Batch<'_> {
    /// As [`Spool::push`], within the batch: the id is only valid once the batch committed.
    pub fn push(&mut self, rec: &AcctRecord) -> Result<Option<SpoolId>, SpoolError> {
        let interim = rec.status == Some(AcctStatus::InterimUpdate);
        let full = self.limits.send && self.depth >= self.limits.max_depth;
        let refuse = interim && full;
        let path = &self.path;
        match rec.status {
            Some(AcctStatus::Start) => tx_open(path, &self.tx, rec)?,
            Some(AcctStatus::InterimUpdate) => tx_checkpoint(path, &self.tx, rec)?,
            Some(AcctStatus::Stop) => tx_close(path, &self.tx, &rec.session_id)?,
            _ => {}
        }
        let id = if self.limits.send && !refuse {
            Some(tx_pending(path, &self.tx, rec)?)
        } else {
            None
        };
        tx_log(path, &self.tx, rec)?;
        if refuse {
            self.refused.push((rec.session_id.clone(), self.depth));
            return Err(SpoolError::Full {
                depth: self.depth,
                max: self.limits.max_depth,
            });
        }
        if id.is_some() {
            self.depth += 1;
        }
        Ok(id)
    }

    /// As [`Spool::ack`], within the batch.
    pub fn ack(&mut self, id: SpoolId) -> Result<(), SpoolError> {
        let n = db_err(
            &self.path,
            self.tx
                .execute("DELETE FROM pending WHERE id = ?1", params![id.0]),
        )?;
        if n > 0 {
            self.depth = self.depth.saturating_sub(1);
        }
        Ok(())
    }

    /// Counts a sending attempt of a record (`tries`, `last_try`) and, with `lease_until`
    /// (Unix milliseconds), makes it not due before then (it is in flight).
    pub fn note_try(&mut self, id: SpoolId, lease_until: Option<i64>) -> Result<(), SpoolError> {
        db_err(
            &self.path,
            self.tx.execute(
                "UPDATE pending SET tries = tries + 1, last_try = unixepoch(),
                     next_try = coalesce(?2, next_try)
                 WHERE id = ?1",
                params![id.0, lease_until],
            ),
        )?;
        Ok(())
    }

    /// A send failed: the record is due again at `now_ms + min(base_ms * 2^(tries - 1),
    /// max_ms)` (the back-off doubles with each try). Returns that time, `None` when the
    /// record is not pending.
    pub fn retry_later(
        &mut self,
        id: SpoolId,
        now_ms: i64,
        base_ms: i64,
        max_ms: i64,
    ) -> Result<Option<i64>, SpoolError> {
        let tries: Option<i64> = db_err(
            &self.path,
            self.tx
                .query_row(
                    "SELECT tries FROM pending WHERE id = ?1",
                    params![id.0],
                    |r| r.get(0),
                )
                .optional(),
        )?;
        let Some(tries) = tries else { return Ok(None) };
        let shift = u32::try_from(tries.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
        let delay = base_ms.saturating_mul(1i64 << shift).min(max_ms).max(0);
        let at = now_ms.saturating_add(delay);
        db_err(
            &self.path,
            self.tx.execute(
                "UPDATE pending SET next_try = ?2 WHERE id = ?1",
                params![id.0, at],
            ),
        )?;
        Ok(Some(at))
    }
}

/// One record of the accounting history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    /// Unix seconds.
    pub time: i64,
    /// "Start", "Stop", "Interim-Update", "Accounting-On"...
    pub status: String,
    pub session_id: String,
    pub user: String,
    pub framed_ip: Option<std::net::Ipv4Addr>,
    pub calling_station: String,
    pub session_time: u64,
    pub input_octets: u64,
    pub output_octets: u64,
    pub input_packets: u64,
    pub output_packets: u64,
    pub terminate_cause: Option<String>,
}

/// The first line of [`Spool::export_csv`].
pub const CSV_HEADER: &str = "time,status,session_id,user,framed_ip,calling_station,session_time,input_octets,output_octets,input_packets,output_packets,terminate_cause\r\n";

/// One CSV field (RFC 4180): quoted when it holds a comma, a quote or a line break (quotes
/// doubled), and with a `'` in front when a spreadsheet would run it as a formula.
fn csv_field(s: &str) -> String {
    let mut s = s.to_string();
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        s.insert(0, '\'');
    }
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn db_err<T>(path: &Path, r: rusqlite::Result<T>) -> Result<T, SpoolError> {
    r.map_err(|source| {
        SpoolError::Store(StoreError::Database {
            what: WHAT,
            path: path.to_path_buf(),
            source,
        })
    })
}

/// SQLite integers are signed: counters past `i64::MAX` (never in practice) are stored as it.
fn sql_int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Sets the counter fields of a record.
pub fn set_counters(rec: &mut AcctRecord, c: &Counters) {
    rec.input_octets = c.input_octets;
    rec.input_packets = c.input_packets;
    rec.output_octets = c.output_octets;
    rec.output_packets = c.output_packets;
}

fn tx_open(path: &Path, conn: &Connection, rec: &AcctRecord) -> Result<(), SpoolError> {
    db_err(
        path,
        conn.execute(
            "INSERT OR REPLACE INTO open_sessions (session_id, start_record) VALUES (?1, ?2)",
            params![rec.session_id, encode(rec)],
        ),
    )?;
    Ok(())
}

fn tx_checkpoint(path: &Path, conn: &Connection, rec: &AcctRecord) -> Result<(), SpoolError> {
    db_err(
        path,
        conn.execute(
            "UPDATE open_sessions SET session_time = ?2, input_octets = ?3, input_packets = ?4,
                 output_octets = ?5, output_packets = ?6, updated = unixepoch()
             WHERE session_id = ?1",
            params![
                rec.session_id,
                rec.session_time_s,
                sql_int(rec.input_octets),
                sql_int(rec.input_packets),
                sql_int(rec.output_octets),
                sql_int(rec.output_packets)
            ],
        ),
    )?;
    Ok(())
}

fn tx_close(path: &Path, conn: &Connection, session_id: &str) -> Result<(), SpoolError> {
    db_err(
        path,
        conn.execute(
            "DELETE FROM open_sessions WHERE session_id = ?1",
            params![session_id],
        ),
    )?;
    Ok(())
}

fn tx_pending(path: &Path, tx: &Transaction<'_>, rec: &AcctRecord) -> Result<SpoolId, SpoolError> {
    db_err(
        path,
        tx.execute(
            "INSERT INTO pending (record) VALUES (?1)",
            params![encode(rec)],
        ),
    )?;
    Ok(SpoolId(tx.last_insert_rowid()))
}

fn tx_log(path: &Path, tx: &Transaction<'_>, rec: &AcctRecord) -> Result<(), SpoolError> {
    db_err(
        path,
        tx.execute(
            "INSERT INTO accounting_log (time, status, session_id, user, framed_ip,
                 calling_station, session_time, input_octets, output_octets, input_packets,
                 output_packets, terminate_cause)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                sql_int(rec.event_time),
                rec.status.map_or("", AcctStatus::name),
                rec.session_id,
                rec.user,
                rec.framed_ip.map(|a| a.to_string()),
                rec.calling_station,
                rec.session_time_s,
                sql_int(rec.input_octets),
                sql_int(rec.output_octets),
                sql_int(rec.input_packets),
                sql_int(rec.output_packets),
                rec.terminate_cause.map(TerminateCause::name)
            ],
        ),
    )?;
    Ok(())
}

/// A record as the JSON text stored in the spool.
fn encode(r: &AcctRecord) -> String {
    json!({
        "status": r.status.map(AcctStatus::code),
        "session_id": r.session_id,
        "user": r.user,
        "nas_port": r.nas_port,
        "framed_ip": r.framed_ip.map(|a| a.to_string()),
        "calling_station": r.calling_station,
        "called_station": r.called_station,
        "class": r.class.iter().map(hex::encode).collect::<Vec<_>>(),
        "session_time": r.session_time_s,
        "input_octets": r.input_octets,
        "input_packets": r.input_packets,
        "output_octets": r.output_octets,
        "output_packets": r.output_packets,
        "terminate_cause": r.terminate_cause.map(TerminateCause::code),
        "event_time": r.event_time,
    })
    .to_string()
}

/// The record of a stored JSON text; `None` when it is not one.
fn decode(text: &str) -> Option<AcctRecord> {
    let v: Value = serde_json::from_str(text).ok()?;
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    let code = |k: &str| {
        v.get(k)
            .and_then(Value::as_u64)
            .and_then(|c| u32::try_from(c).ok())
    };
    let mut class = Vec::new();
    for c in v.get("class").and_then(Value::as_array)? {
        class.push(hex::decode(c.as_str()?).ok()?);
    }
    Some(AcctRecord {
        status: Some(AcctStatus::from_code(code("status")?)?),
        session_id: s("session_id"),
        user: s("user"),
        nas_port: u32::try_from(n("nas_port")).ok()?,
        framed_ip: v
            .get("framed_ip")
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<Ipv4Addr>().ok()),
        calling_station: s("calling_station"),
        called_station: s("called_station"),
        class,
        session_time_s: u32::try_from(n("session_time")).ok()?,
        input_octets: n("input_octets"),
        input_packets: n("input_packets"),
        output_octets: n("output_octets"),
        output_packets: n("output_packets"),
        terminate_cause: code("terminate_cause").and_then(TerminateCause::from_code),
        event_time: n("event_time"),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// A Start record for session `id`.
    pub(crate) fn start(id: &str) -> AcctRecord {
        AcctRecord {
            status: Some(AcctStatus::Start),
            session_id: id.to_string(),
            user: "alice".into(),
            nas_port: 7,
            framed_ip: Some(Ipv4Addr::new(10, 0, 0, 7)),
            calling_station: "192.0.2.1".into(),
            called_station: "198.51.100.1".into(),
            class: vec![vec![1, 2, 3], vec![]],
            event_time: 1_700_000_000,
            ..AcctRecord::default()
        }
    }

    fn interim(id: &str, n: u64) -> AcctRecord {
        let mut r = start(id);
        r.status = Some(AcctStatus::InterimUpdate);
        r.session_time_s = u32::try_from(n).unwrap();
        set_counters(
            &mut r,
            &Counters {
                input_octets: n * 1000,
                input_packets: n,
                output_octets: n * 2000,
                output_packets: 2 * n,
            },
        );
        r
    }

    fn limits(max: u64, warn: u64) -> SpoolLimits {
        SpoolLimits {
            max_depth: max,
            warn_depth: warn,
            send: true,
        }
    }

    fn pending_ids(s: &Spool) -> Vec<SpoolId> {
        s.pending(100).unwrap().iter().map(|x| x.0).collect()
    }

    #[test]
    fn encode_decode_round_trip_and_damage() {
        let mut r = interim("s1", 5);
        r.status = Some(AcctStatus::Stop);
        r.terminate_cause = Some(TerminateCause::IdleTimeout);
        r.input_octets = u64::MAX;
        assert_eq!(decode(&encode(&r)), Some(r));
        let on = AcctRecord {
            status: Some(AcctStatus::AccountingOn),
            ..AcctRecord::default()
        };
        assert_eq!(decode(&encode(&on)), Some(on));
        for bad in [
            "",
            "{}",
            "[1]",
            "{\"status\":99,\"class\":[]}",
            "{\"status\":1,\"class\":[\"zz\"]}",
        ] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn push_pending_ack_in_order() {
        let mut s = Spool::in_memory(limits(100, 50)).unwrap();
        let a = s.push(&start("a")).unwrap().unwrap();
        let b = s.push(&interim("a", 1)).unwrap().unwrap();
        let c = s.push(&start("b")).unwrap().unwrap();
        assert!(a < b && b < c);
        assert_eq!(s.depth(), 3);
        let p = s.pending(2).unwrap();
        assert_eq!(pending_ids(&s), [a, b, c]);
        assert_eq!(p[1].1, interim("a", 1));
        s.note_try(b).unwrap();
        s.note_try(b).unwrap();
        assert_eq!(s.tries(b).unwrap(), Some(2));
        s.ack(b).unwrap();
        s.ack(b).unwrap(); // twice is harmless
        assert_eq!(s.depth(), 2);
        assert_eq!(s.tries(b).unwrap(), None);
        assert_eq!(pending_ids(&s), [a, c]);
    }

    #[test]
    fn full_spool_refuses_interims_only() {
        let mut s = Spool::in_memory(limits(2, 1)).unwrap();
        s.push(&start("a")).unwrap();
        s.push(&interim("a", 1)).unwrap();
        assert!(s.is_full());
        assert!(matches!(
            s.push(&interim("a", 2)),
            Err(SpoolError::Full { depth: 2, max: 2 })
        ));
        // The refused interim still checkpointed the session.
        let stops = {
            let mut t = Spool::in_memory(limits(2, 1)).unwrap();
            t.push(&start("x")).unwrap();
            t.push(&interim("x", 1)).unwrap();
            let _ = t.push(&interim("x", 9));
            t.recover(5, TerminateCause::NasReboot).unwrap()
        };
        assert_eq!(stops[0].session_time_s, 9);
        // Starts and Stops pass the maximum.
        s.push(&start("b")).unwrap().unwrap();
        let mut stop = interim("a", 3);
        stop.status = Some(AcctStatus::Stop);
        s.push(&stop).unwrap().unwrap();
        assert_eq!(s.depth(), 4);
        assert_eq!(s.open_sessions().unwrap(), ["b"]);
    }

    #[test]
    fn alarm_steps() {
        let mut s = Spool::in_memory(limits(18, 10)).unwrap();
        let mut alarms = Vec::new();
        for i in 0..20 {
            let before = s.alarmed_at;
            s.push(&start(&format!("s{i}"))).unwrap();
            if s.alarmed_at != before {
                alarms.push(s.depth());
            }
        }
        // Above 10, then every (18-10)/4 = 2.
        assert_eq!(alarms, [11, 13, 15, 17, 19]);
        for (id, _) in s.pending(100).unwrap() {
            s.ack(id).unwrap();
        }
        assert_eq!((s.depth(), s.alarmed_at), (0, None));
    }

    #[test]
    fn recover_makes_one_stop_per_open_session() {
        let mut s = Spool::in_memory(limits(100, 50)).unwrap();
        s.push(&start("a")).unwrap();
        s.push(&interim("a", 4)).unwrap();
        s.push(&start("b")).unwrap();
        s.push(&start("c")).unwrap();
        let mut stop = interim("c", 1);
        stop.status = Some(AcctStatus::Stop);
        s.push(&stop).unwrap();
        let stops = s.recover(1_800_000_000, TerminateCause::NasReboot).unwrap();
        assert_eq!(stops.len(), 2);
        let mut want = interim("a", 4);
        want.status = Some(AcctStatus::Stop);
        want.terminate_cause = Some(TerminateCause::NasReboot);
        want.event_time = 1_800_000_000;
        assert_eq!(stops[0], want);
        assert_eq!(stops[1].session_id, "b");
        assert_eq!(stops[1].input_octets, 0);
        assert_eq!(s.depth(), 7);
        assert!(s.open_sessions().unwrap().is_empty());
        assert!(s.recover(1, TerminateCause::NasReboot).unwrap().is_empty());
        // The explicit calls do the same.
        s.session_open(&start("d")).unwrap();
        s.checkpoint(
            "d",
            &Counters {
                input_octets: 5,
                ..Counters::default()
            },
            3,
        )
        .unwrap();
        s.checkpoint("nope", &Counters::default(), 3).unwrap();
        let st = s.recover(2, TerminateCause::LostService).unwrap();
        assert_eq!((st[0].input_octets, st[0].session_time_s), (5, 3));
        s.session_open(&start("e")).unwrap();
        s.session_closed("e").unwrap();
        assert!(s.recover(3, TerminateCause::NasReboot).unwrap().is_empty());
    }

    #[test]
    fn without_sending_only_the_history_is_kept() {
        let mut s = Spool::in_memory(SpoolLimits {
            send: false,
            ..limits(1, 1)
        })
        .unwrap();
        assert_eq!(s.push(&start("a")).unwrap(), None);
        assert_eq!(s.push(&interim("a", 1)).unwrap(), None);
        assert_eq!(s.depth(), 0);
        assert!(!s.is_full());
        assert_eq!(s.recover(9, TerminateCause::NasReboot).unwrap().len(), 1);
        let mut out = Vec::new();
        assert_eq!(s.export_csv(&mut out, None).unwrap(), 3);
    }

    #[test]
    fn csv_export_escapes_and_filters() {
        let mut s = Spool::in_memory(limits(100, 50)).unwrap();
        let mut a = start("s,1");
        a.user = "=HYPERLINK(\"x\")".into();
        a.event_time = 100;
        s.push(&a).unwrap();
        let mut b = interim("s2", 2);
        b.user = "line\nbreak".into();
        b.framed_ip = None;
        b.event_time = 200;
        s.push(&b).unwrap();
        let mut c = interim("s2", 3);
        c.status = Some(AcctStatus::Stop);
        c.terminate_cause = Some(TerminateCause::UserRequest);
        c.event_time = 300;
        s.push(&c).unwrap();
        let mut out = Vec::new();
        assert_eq!(s.export_csv(&mut out, None).unwrap(), 3);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            format!(
                "{CSV_HEADER}\
                 100,Start,\"s,1\",\"'=HYPERLINK(\"\"x\"\")\",10.0.0.7,192.0.2.1,0,0,0,0,0,\r\n\
                 200,Interim-Update,s2,\"line\nbreak\",,192.0.2.1,2,2000,4000,2,4,\r\n\
                 300,Stop,s2,alice,10.0.0.7,192.0.2.1,3,3000,6000,3,6,User-Request\r\n"
            )
        );
        let mut out = Vec::new();
        assert_eq!(s.export_csv(&mut out, Some(200)).unwrap(), 2);
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("-1"), "'-1");

        // The same records for the web UI: newest first, limited, filtered.
        let all = s.history(None, 10).unwrap();
        let seen: Vec<_> = all.iter().map(|r| (r.time, r.status.as_str())).collect();
        assert_eq!(
            seen,
            [(300, "Stop"), (200, "Interim-Update"), (100, "Start")]
        );
        assert_eq!(all[0].terminate_cause.as_deref(), Some("User-Request"));
        assert_eq!(all[0].framed_ip, Some(std::net::Ipv4Addr::new(10, 0, 0, 7)));
        assert_eq!((all[0].input_octets, all[0].output_packets), (3000, 6));
        assert_eq!(all[1].framed_ip, None);
        assert_eq!(s.history(None, 1).unwrap().len(), 1);
        assert_eq!(s.history(Some(200), 10).unwrap().len(), 2);
    }

    #[test]
    fn due_reads_only_due_rows_by_the_index() {
        let mut s = Spool::in_memory(limits(100, 50)).unwrap();
        let a = s.push(&start("a")).unwrap().unwrap();
        let b = s.push(&start("b")).unwrap().unwrap();
        let c = s.push(&start("c")).unwrap().unwrap();
        assert_eq!(s.earliest_due().unwrap(), Some(0));
        let due = |s: &Spool, now| -> Vec<SpoolId> {
            s.due(now, 10).unwrap().into_iter().map(|x| x.0).collect()
        };
        assert_eq!(due(&s, 1000), [a, b, c]);
        // a in flight until 5000, b failed: back-off from its tries.
        s.batch(|t| {
            t.note_try(a, Some(5000))?;
            t.note_try(b, None)?;
            t.note_try(b, None)?;
            assert_eq!(t.retry_later(b, 1000, 100, 10_000)?, Some(1200));
            assert_eq!(t.retry_later(SpoolId(999), 1000, 100, 10_000)?, None);
            Ok(())
        })
        .unwrap();
        assert_eq!(s.next_try(a).unwrap(), Some(5000));
        assert_eq!(s.tries(b).unwrap(), Some(2));
        assert_eq!(due(&s, 1000), [c]);
        assert_eq!(due(&s, 1200), [c, b]);
        assert_eq!(due(&s, 9000), [c, b, a]);
        assert_eq!(s.due(9000, 1).unwrap().len(), 1);
        // The back-off is capped.
        s.batch(|t| {
            for _ in 0..40 {
                t.note_try(c, None)?;
            }
            assert_eq!(t.retry_later(c, 0, 100, 10_000)?, Some(10_000));
            Ok(())
        })
        .unwrap();
        assert_eq!(s.earliest_due().unwrap(), Some(1200));
        // The query plan uses the index.
        let plan: String = s
            .conn
            .query_row(
                "EXPLAIN QUERY PLAN SELECT id, record FROM pending INDEXED BY pending_next_try
                 WHERE next_try <= 5 ORDER BY next_try, id LIMIT 3",
                [],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("pending_next_try"), "{plan}");
    }

    #[test]
    fn batch_commits_together_or_not_at_all() {
        let mut s = Spool::in_memory(limits(3, 50)).unwrap();
        let ids = s
            .batch(|b| {
                let x = b.push(&start("a"))?;
                let y = b.push(&start("b"))?;
                Ok([x, y])
            })
            .unwrap();
        assert_eq!(s.depth(), 2);
        assert_eq!(pending_ids(&s), ids.map(Option::unwrap));
        // An error rolls the whole batch back.
        let r: Result<(), _> = s.batch(|b| {
            b.ack(ids[0].unwrap())?;
            b.push(&start("c"))?;
            Err(SpoolError::Export(std::io::Error::other("stop")))
        });
        assert!(r.is_err());
        assert_eq!(s.depth(), 2);
        assert_eq!(s.open_sessions().unwrap(), ["a", "b"]);
        // Full within a batch: the interim is refused, the others are kept.
        let (full, stop) = s
            .batch(|b| {
                b.push(&start("c"))?;
                let full = b.push(&interim("a", 1));
                let mut stop = interim("b", 2);
                stop.status = Some(AcctStatus::Stop);
                Ok((full, b.push(&stop)?))
            })
            .unwrap();
        assert!(matches!(full, Err(SpoolError::Full { depth: 3, max: 3 })));
        assert!(stop.is_some());
        assert_eq!(s.depth(), 4);
        // Several acknowledgements in one transaction.
        s.batch(|b| {
            for (id, _) in s_pending(&ids) {
                b.ack(id)?;
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(s.depth(), 2);
    }

    fn s_pending(ids: &[Option<SpoolId>; 2]) -> Vec<(SpoolId, ())> {
        ids.iter().map(|i| (i.unwrap(), ())).collect()
    }

    #[test]
    fn old_schema_file_is_migrated_once() {
        let dir = std::env::temp_dir().join(format!("rg-spool-v1-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        {
            // A file as the previous build wrote it (schema 1, no next_try), with a record.
            let conn = Connection::open(dir.join(SPOOL_FILE)).unwrap();
            conn.execute_batch(
                "CREATE TABLE pending (
                     id INTEGER PRIMARY KEY AUTOINCREMENT,
                     record TEXT NOT NULL,
                     created INTEGER NOT NULL DEFAULT (unixepoch()),
                     tries INTEGER NOT NULL DEFAULT 0,
                     last_try INTEGER
                 );
                 CREATE TABLE open_sessions (
                     session_id TEXT NOT NULL PRIMARY KEY,
                     start_record TEXT NOT NULL,
                     session_time INTEGER NOT NULL DEFAULT 0,
                     input_octets INTEGER NOT NULL DEFAULT 0,
                     input_packets INTEGER NOT NULL DEFAULT 0,
                     output_octets INTEGER NOT NULL DEFAULT 0,
                     output_packets INTEGER NOT NULL DEFAULT 0,
                     updated INTEGER NOT NULL DEFAULT (unixepoch())
                 );
                 CREATE TABLE accounting_log (
                     id INTEGER PRIMARY KEY AUTOINCREMENT,
                     time INTEGER NOT NULL,
                     status TEXT NOT NULL,
                     session_id TEXT NOT NULL,
                     user TEXT NOT NULL,
                     framed_ip TEXT,
                     calling_station TEXT NOT NULL,
                     session_time INTEGER NOT NULL,
                     input_octets INTEGER NOT NULL,
                     output_octets INTEGER NOT NULL,
                     input_packets INTEGER NOT NULL,
                     output_packets INTEGER NOT NULL,
                     terminate_cause TEXT
                 );
                 CREATE INDEX accounting_log_time ON accounting_log (time);
                 PRAGMA user_version = 1;",
            )
            .unwrap();
            conn.execute(
                "INSERT INTO pending (record, tries) VALUES (?1, 3)",
                params![encode(&start("old"))],
            )
            .unwrap();
        }
        let version = |s: &Spool| -> i64 {
            s.conn
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap()
        };
        let first = {
            let mut s = Spool::open(&dir, limits(100, 50)).unwrap();
            assert_eq!(version(&s), 2);
            assert_eq!(s.depth(), 1);
            let due = s.due(0, 10).unwrap();
            assert_eq!(due.len(), 1);
            assert_eq!(due[0].1, start("old"));
            assert_eq!(s.tries(due[0].0).unwrap(), Some(3));
            s.batch(|b| b.retry_later(due[0].0, 1000, 100, 100_000))
                .unwrap();
            s.push(&start("new")).unwrap().unwrap();
            due[0].0
        };
        // Opening again: no second migration; every record is due again at start.
        let s = Spool::open(&dir, limits(100, 50)).unwrap();
        assert_eq!(version(&s), 2);
        assert_eq!(s.next_try(first).unwrap(), Some(0));
        assert_eq!(s.due(0, 10).unwrap().len(), 2);
        // The migration step itself is idempotent (column and index already there).
        s.migrate(1).unwrap();
        let indexes: i64 = s
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'pending_next_try'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(indexes, 1);
        drop(s);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn file_is_private_wal_and_acked_records_stay_gone() {
        let dir = std::env::temp_dir().join(format!("rg-spool-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let (a, c) = {
            let mut s = Spool::open(&dir, limits(100, 50)).unwrap();
            let a = s.push(&start("a")).unwrap().unwrap();
            let b = s.push(&start("b")).unwrap().unwrap();
            let c = s.push(&start("c")).unwrap().unwrap();
            s.ack(b).unwrap();
            let mode: String = s
                .conn
                .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                .unwrap();
            assert_eq!(mode, "wal");
            let sync: i64 = s
                .conn
                .query_row("PRAGMA synchronous", [], |r| r.get(0))
                .unwrap();
            assert_eq!(sync, 2);
            (a, c)
        };
        let meta = fs::metadata(dir.join(SPOOL_FILE)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let s = Spool::open(&dir, limits(100, 50)).unwrap();
        assert_eq!(s.depth(), 2);
        assert_eq!(pending_ids(&s), [a, c]);
        s.conn.execute_batch("PRAGMA user_version = 99").unwrap();
        drop(s);
        assert!(matches!(
            Spool::open(&dir, limits(100, 50)),
            Err(SpoolError::Store(StoreError::NewerSchema { found: 99, .. }))
        ));
        fs::remove_dir_all(&dir).unwrap();
    }
}

//! How statements reach the server: [`Db`] (a pool) and [`DbConn`] (one connection) are
//! the executors every query of the console runs on.
//!
//! On a session of its own (a direct connection, or PgBouncer in session pooling mode) a
//! statement is sent as sqlx sends it, and the session's settings were set once when the
//! connection opened.
//!
//! Behind a transaction pooler (PgBouncer in transaction pooling mode) a client keeps a
//! server connection only while a transaction is open. sqlx sends a statement with
//! parameters in two round trips (parse, then bind and execute), and between them the
//! pooler may hand the server connection to another client: the bind then runs whatever
//! that client parsed last (measured: about half of all statements of two clients ran
//! the other's statement), and named prepared statements meet other clients' names. So
//! there every statement runs in a transaction of its own: `BEGIN`, the session's settings
//! for that transaction (`set_config(…, true)`: nothing outlives it on the server
//! connection the next client gets), the statement, unnamed, then `COMMIT`. Nothing here
//! sends `DEALLOCATE ALL`: sqlx names no statement here (its own catalogue queries use
//! the simple protocol), and a PgBouncer that keeps prepared statements for its other
//! clients (`max_prepared_statements`, 1.21+) would lose theirs under them. A transaction
//! cut short (its future dropped: a cancelled request) closes its connection instead of
//! giving it back: the pooler then drops the server connection, and the server, which
//! checks its client every second, abandons the statement; its transaction never commits.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};
use sqlx::error::BoxDynError;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgQueryResult, PgRow, PgStatement, PgTypeInfo};
use sqlx::{Describe, Either, Execute, Executor, PgConnection, PgPool, Postgres, SqlStr};

use super::session::{SessionSettings, apply};
use crate::core::error::{Error, Result};

type Item = Either<PgQueryResult, PgRow>;

/// A pool of connections and the way its statements reach the server.
#[derive(Debug, Clone)]
pub struct Db {
    pool: PgPool,
    /// Behind a transaction pooler: the settings every transaction starts with.
    per_transaction: Option<Arc<SessionSettings>>,
}

impl Db {
    /// A pool whose connections are sessions of their own, their settings already set.
    pub fn sessions(pool: PgPool) -> Db {
        Db { pool, per_transaction: None }
    }

    /// A pool behind a transaction pooler: every statement runs in a transaction of its
    /// own that starts with `settings`.
    pub fn per_transaction(pool: PgPool, settings: SessionSettings) -> Db {
        Db { pool, per_transaction: Some(Arc::new(settings)) }
    }

    /// Whether statements go through a transaction pooler.
    pub fn transaction_pooled(&self) -> bool {
        self.per_transaction.is_some()
    }

    /// The pool itself, for work that needs a session of its own (migrations, a
    /// snapshot held across statements); an error behind a transaction pooler.
    pub fn session_pool(&self, what: &str) -> Result<&PgPool> {
        match self.per_transaction {
            None => Ok(&self.pool),
            Some(_) => Err(needs_a_session(what)),
        }
    }

    /// A connection of the pool, held until dropped.
    pub async fn acquire(&self) -> Result<DbConn> {
        Ok(self.acquire_conn().await?)
    }

    async fn acquire_conn(&self) -> sqlx::Result<DbConn> {
        let conn = self.pool.acquire().await?;
        let per_transaction = self.per_transaction.as_deref().cloned();
        Ok(DbConn { conn: Some(Held::Pooled(conn)), per_transaction, busy: false })
    }

    /// A transaction on a connection of the pool (rolled back unless committed).
    pub async fn begin(&self) -> Result<DbTx> {
        self.acquire().await?.begin().await
    }

    /// A transaction begun with `begin` (a `BEGIN ISOLATION LEVEL …`), on a connection of
    /// the pool (rolled back unless committed).
    pub async fn begin_with(&self, begin: &'static str) -> Result<DbTx> {
        self.acquire().await?.begin_with(begin).await
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// What cannot run behind a transaction pooler, said as an error.
pub fn needs_a_session(what: &str) -> Error {
    Error::BadInput(format!(
        "{what} needs a database session of its own, which a transaction pooler does not keep: \
         connect to the server directly or through session pooling for it (without --pooling transaction)"
    ))
}

enum Held {
    Pooled(PoolConnection<Postgres>),
    Own(PgConnection),
}

/// One connection, held: a pooled one or one of its own.
pub struct DbConn {
    /// None once closed.
    conn: Option<Held>,
    per_transaction: Option<SessionSettings>,
    /// A transaction is open that nobody else ends: dropped now, the connection is closed.
    busy: bool,
}

impl std::fmt::Debug for DbConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbConn").field("per_transaction", &self.per_transaction.is_some()).finish()
    }
}

impl DbConn {
    /// A connection of its own (settings already set, or `per_transaction`).
    pub fn own(conn: PgConnection, per_transaction: Option<SessionSettings>) -> DbConn {
        DbConn { conn: Some(Held::Own(conn)), per_transaction, busy: false }
    }

    fn raw(&mut self) -> sqlx::Result<&mut PgConnection> {
        match self.conn.as_mut() {
            Some(Held::Pooled(c)) => Ok(c),
            Some(Held::Own(c)) => Ok(c),
            None => Err(sqlx::Error::PoolClosed),
        }
    }

    /// The connection itself, for what needs its session (its backend pid, a session
    /// setting); None behind a transaction pooler.
    pub fn session(&mut self) -> Option<&mut PgConnection> {
        if self.per_transaction.is_some() { None } else { self.raw().ok() }
    }

    /// Whether statements go through a transaction pooler.
    pub fn transaction_pooled(&self) -> bool {
        self.per_transaction.is_some()
    }

    /// The settings every transaction starts with behind a transaction pooler.
    pub(super) fn per_transaction_settings(&mut self) -> Option<&mut SessionSettings> {
        self.per_transaction.as_mut()
    }

    /// Closes the connection (a pooled one is not given back).
    pub async fn close(mut self) {
        let raw = match self.conn.take() {
            Some(Held::Pooled(c)) => c.detach(),
            Some(Held::Own(c)) => c,
            None => return,
        };
        let _ = sqlx::Connection::close(raw).await;
    }

    /// A transaction on this connection (rolled back unless committed).
    pub async fn begin(self) -> Result<DbTx> {
        self.begin_with("BEGIN").await
    }

    /// A transaction begun with `begin` (`BEGIN`, or `BEGIN ISOLATION LEVEL …`), with the
    /// session's settings behind a transaction pooler (rolled back unless committed).
    pub async fn begin_with(mut self, begin: &'static str) -> Result<DbTx> {
        let local = self.per_transaction.clone();
        self.busy = true;
        let conn = self.raw()?;
        sqlx::raw_sql(begin).execute(&mut *conn).await?;
        if let Some(s) = &local {
            apply(conn, s, true).await?;
        }
        Ok(DbTx { conn: self })
    }

    /// Runs one statement in a transaction of its own that starts with the session's
    /// settings (behind a transaction pooler), collecting what it returns.
    async fn scoped<'q, E: 'q + Execute<'q, Postgres>>(&mut self, query: E) -> sqlx::Result<Vec<Item>> {
        let settings = self.per_transaction.clone().unwrap_or_default();
        self.busy = true;
        let conn = self.raw()?;
        sqlx::raw_sql("BEGIN").execute(&mut *conn).await?;
        let result = async {
            apply(&mut *conn, &settings, true).await?;
            let items: Vec<Item> = (&mut *conn).fetch_many(Unnamed(query)).try_collect().await?;
            sqlx::raw_sql("COMMIT").execute(&mut *conn).await?;
            Ok(items)
        }
        .await;
        if result.is_err() {
            // Ends the transaction whatever state it is in; if even that fails the
            // connection stays marked busy and is closed when dropped.
            sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await?;
        }
        self.busy = false;
        result
    }
}

impl Drop for DbConn {
    fn drop(&mut self) {
        if self.busy
            && let Some(Held::Pooled(c)) = self.conn.take()
        {
            // In the middle of a transaction: never back into the pool. Dropping the
            // detached connection closes its socket.
            drop(c.detach());
        }
    }
}

/// A transaction: rolled back when dropped without a commit (its connection closed).
#[derive(Debug)]
pub struct DbTx {
    conn: DbConn,
}

impl DbTx {
    /// Commits.
    pub async fn commit(mut self) -> Result<()> {
        sqlx::raw_sql("COMMIT").execute(self.conn.raw()?).await?;
        self.conn.busy = false;
        Ok(())
    }

    /// Rolls back.
    pub async fn rollback(mut self) -> Result<()> {
        sqlx::raw_sql("ROLLBACK").execute(self.conn.raw()?).await?;
        self.conn.busy = false;
        Ok(())
    }
}

/// A query sent as an unnamed statement, whatever it asked for.
struct Unnamed<E>(E);

impl<'q, E: Execute<'q, Postgres>> Execute<'q, Postgres> for Unnamed<E> {
    fn sql(self) -> SqlStr {
        self.0.sql()
    }

    fn statement(&self) -> Option<&PgStatement> {
        self.0.statement()
    }

    fn take_arguments(&mut self) -> std::result::Result<Option<PgArguments>, BoxDynError> {
        self.0.take_arguments()
    }

    fn persistent(&self) -> bool {
        false
    }
}

fn stream_of<'e>(items: Vec<Item>) -> BoxStream<'e, sqlx::Result<Item>> {
    stream::iter(items.into_iter().map(Ok)).boxed()
}

impl<'c> Executor<'c> for &'c Db {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, sqlx::Result<Item>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if self.per_transaction.is_none() {
            return self.pool.fetch_many(query);
        }
        stream::once(async move { self.acquire_conn().await?.scoped(query).await })
            .map_ok(stream_of)
            .try_flatten()
            .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, sqlx::Result<Option<PgRow>>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if self.per_transaction.is_none() {
            return self.pool.fetch_optional(query);
        }
        Box::pin(async move {
            let items = self.acquire_conn().await?.scoped(query).await?;
            Ok(items.into_iter().find_map(Either::right))
        })
    }

    fn prepare_with<'e>(self, sql: SqlStr, parameters: &'e [PgTypeInfo]) -> BoxFuture<'e, sqlx::Result<PgStatement>>
    where
        'c: 'e,
    {
        self.pool.prepare_with(sql, parameters)
    }

    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, sqlx::Result<Describe<Postgres>>>
    where
        'c: 'e,
    {
        self.pool.describe(sql)
    }
}

/// A stream that fails at once.
fn failed_stream<'e>(e: sqlx::Error) -> BoxStream<'e, sqlx::Result<Item>> {
    stream::once(async move { Err(e) }).boxed()
}

impl<'c> Executor<'c> for &'c mut DbConn {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, sqlx::Result<Item>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if self.per_transaction.is_some() {
            return stream::once(self.scoped(query)).map_ok(stream_of).try_flatten().boxed();
        }
        match self.raw() {
            Ok(conn) => conn.fetch_many(query),
            Err(e) => failed_stream(e),
        }
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, sqlx::Result<Option<PgRow>>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if self.per_transaction.is_some() {
            return Box::pin(async move { Ok(self.scoped(query).await?.into_iter().find_map(Either::right)) });
        }
        match self.raw() {
            Ok(conn) => conn.fetch_optional(query),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }

    fn prepare_with<'e>(self, sql: SqlStr, parameters: &'e [PgTypeInfo]) -> BoxFuture<'e, sqlx::Result<PgStatement>>
    where
        'c: 'e,
    {
        match self.raw() {
            Ok(conn) => conn.prepare_with(sql, parameters),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }

    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, sqlx::Result<Describe<Postgres>>>
    where
        'c: 'e,
    {
        match self.raw() {
            Ok(conn) => conn.describe(sql),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }
}

impl<'c> Executor<'c> for &'c mut DbTx {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, sqlx::Result<Item>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        // Inside the transaction the server connection stays put; behind a pooler the
        // statement still must not keep a name (another client's may be on that server).
        let pooled = self.conn.transaction_pooled();
        match self.conn.raw() {
            Ok(conn) if pooled => conn.fetch_many(Unnamed(query)),
            Ok(conn) => conn.fetch_many(query),
            Err(e) => failed_stream(e),
        }
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, sqlx::Result<Option<PgRow>>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let pooled = self.conn.transaction_pooled();
        match self.conn.raw() {
            Ok(conn) if pooled => conn.fetch_optional(Unnamed(query)),
            Ok(conn) => conn.fetch_optional(query),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }

    fn prepare_with<'e>(self, sql: SqlStr, parameters: &'e [PgTypeInfo]) -> BoxFuture<'e, sqlx::Result<PgStatement>>
    where
        'c: 'e,
    {
        (&mut self.conn).prepare_with(sql, parameters)
    }

    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, sqlx::Result<Describe<Postgres>>>
    where
        'c: 'e,
    {
        (&mut self.conn).describe(sql)
    }
}

//! Where the store's writes go: on Postgres, the pool; on SQLite, one
//! connection of its own, held by one write (or one transaction) at a time.
//!
//! SQLite takes one writer at a time, and a writer that finds the database
//! locked sleeps (1 ms, then longer) before it tries again: this process's
//! writes queue for one connection instead. That connection is not a pool
//! of one: a pool pings a connection when it is taken and again when it is
//! given back, two more round trips to SQLite's worker thread for each write,
//! and every write of the process goes through this connection.
//!
//! `&Writer` is an [`Executor`] like `&Pool`, and [`Writer::begin`] gives a
//! transaction that dereferences to the connection like sqlx's.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::future::BoxFuture;
use futures_util::stream::{self, BoxStream, StreamExt};
use sqlx::any::{AnyConnectOptions, AnyQueryResult, AnyRow, AnyStatement, AnyTypeInfo};
use sqlx::{Any, AnyConnection, AnyPool, Connection, Either, Execute, Executor, SqlStr};
use tokio::sync::{Mutex, OwnedMutexGuard};

/// The settings every SQLite connection gets.
pub(crate) const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;";

#[derive(Clone, Debug)]
pub(crate) enum Writer {
    Pool(AnyPool),
    Single(Arc<Single>),
}

pub(crate) struct Single {
    /// `None` once the connection was found broken: the next write opens a
    /// new one.
    conn: Arc<Mutex<Option<AnyConnection>>>,
    options: AnyConnectOptions,
    /// A transaction was dropped unfinished, or a write failed: the
    /// connection is tested before its next use.
    suspect: AtomicBool,
}

impl std::fmt::Debug for Single {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Single").finish_non_exhaustive()
    }
}

type Held = OwnedMutexGuard<Option<AnyConnection>>;

async fn connect(options: &AnyConnectOptions) -> Result<AnyConnection, sqlx::Error> {
    let mut conn = AnyConnection::connect_with(options).await?;
    conn.execute(SQLITE_PRAGMAS).await?;
    Ok(conn)
}

impl Single {
    /// The connection, for one write or transaction.
    async fn take(&self) -> Result<Held, sqlx::Error> {
        let mut held = Arc::clone(&self.conn).lock_owned().await;
        if self.suspect.swap(false, Ordering::AcqRel)
            && let Some(conn) = held.as_mut()
            && conn.ping().await.is_err()
        {
            *held = None;
        }
        if held.is_none() {
            *held = Some(connect(&self.options).await?);
        }
        Ok(held)
    }

    /// After a failed write: a connection whose worker thread is gone is
    /// dropped; after any other error it is tested before the next use.
    fn failed(&self, held: &mut Held, error: &sqlx::Error) {
        if matches!(error, sqlx::Error::WorkerCrashed) {
            **held = None;
        } else {
            self.suspect.store(true, Ordering::Release);
        }
    }
}

fn conn(held: &mut Held) -> &mut AnyConnection {
    held.as_mut()
        .expect("`Single::take` hands out a connected writer")
}

impl Writer {
    /// One connection of its own on SQLite.
    pub(crate) async fn sqlite(options: AnyConnectOptions) -> Result<Writer, sqlx::Error> {
        let conn = connect(&options).await?;
        Ok(Writer::Single(Arc::new(Single {
            conn: Arc::new(Mutex::new(Some(conn))),
            options,
            suspect: AtomicBool::new(false),
        })))
    }

    /// Starts a transaction: committed by [`WriteTx::commit`], rolled back
    /// when dropped before.
    pub(crate) async fn begin(&self) -> Result<WriteTx, sqlx::Error> {
        match self {
            Writer::Pool(pool) => Ok(WriteTx(Some(Tx::Pool(pool.begin().await?)))),
            Writer::Single(single) => {
                let mut held = single.take().await?;
                if let Err(e) = sqlx::query("BEGIN").execute(conn(&mut held)).await {
                    single.failed(&mut held, &e);
                    return Err(e);
                }
                Ok(WriteTx(Some(Tx::Single {
                    held,
                    single: Arc::clone(single),
                })))
            }
        }
    }
}

/// A transaction on the writer (`None` once committed or rolled back).
pub(crate) struct WriteTx(Option<Tx>);

enum Tx {
    Pool(sqlx::Transaction<'static, Any>),
    Single { held: Held, single: Arc<Single> },
}

impl WriteTx {
    pub(crate) async fn commit(mut self) -> Result<(), sqlx::Error> {
        match self.0.take().expect("an open transaction") {
            Tx::Pool(tx) => tx.commit().await,
            Tx::Single { mut held, single } => {
                match sqlx::query("COMMIT").execute(conn(&mut held)).await {
                    Ok(_) => Ok(()),
                    Err(e) => {
                        // A failed COMMIT may leave the transaction open.
                        let _ = sqlx::query("ROLLBACK").execute(conn(&mut held)).await;
                        single.failed(&mut held, &e);
                        Err(e)
                    }
                }
            }
        }
    }

    pub(crate) async fn rollback(mut self) -> Result<(), sqlx::Error> {
        match self.0.take().expect("an open transaction") {
            Tx::Pool(tx) => tx.rollback().await,
            Tx::Single { mut held, single } => {
                let result = sqlx::query("ROLLBACK").execute(conn(&mut held)).await;
                if let Err(e) = &result {
                    single.failed(&mut held, e);
                }
                result.map(|_| ())
            }
        }
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        // Dropped unfinished (an error, or a canceled caller). sqlx's own
        // transaction queues its rollback on the connection; this one keeps
        // the connection until the rollback ran, so no other write runs
        // inside the unfinished transaction.
        if let Some(Tx::Single { mut held, single }) = self.0.take() {
            single.suspect.store(true, Ordering::Release);
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(async move {
                        if sqlx::query("ROLLBACK")
                            .execute(conn(&mut held))
                            .await
                            .is_err()
                        {
                            *held = None;
                        }
                    });
                }
                // Closing the connection rolls the transaction back.
                Err(_) => *held = None,
            }
        }
    }
}

impl std::ops::Deref for WriteTx {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match self.0.as_ref().expect("an open transaction") {
            Tx::Pool(tx) => tx,
            Tx::Single { held, .. } => held
                .as_ref()
                .expect("`Single::take` hands out a connected writer"),
        }
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self.0.as_mut().expect("an open transaction") {
            Tx::Pool(tx) => tx,
            Tx::Single { held, .. } => conn(held),
        }
    }
}

impl<'p> Executor<'p> for &'_ Writer {
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Any>,
    {
        match self {
            Writer::Pool(pool) => pool.fetch_many(query),
            Writer::Single(single) => {
                let single = Arc::clone(single);
                // A write returns few rows: they are collected while the
                // connection is held.
                stream::once(async move {
                    let mut held = single.take().await?;
                    let results: Vec<_> = conn(&mut held).fetch_many(query).collect().await;
                    if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
                        single.failed(&mut held, e);
                    }
                    Ok::<_, sqlx::Error>(results)
                })
                .flat_map(|results| match results {
                    Ok(results) => stream::iter(results),
                    Err(e) => stream::iter(vec![Err(e)]),
                })
                .boxed()
            }
        }
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<AnyRow>, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Any>,
    {
        match self {
            Writer::Pool(pool) => pool.fetch_optional(query),
            Writer::Single(single) => {
                let single = Arc::clone(single);
                Box::pin(async move {
                    let mut held = single.take().await?;
                    let result = conn(&mut held).fetch_optional(query).await;
                    if let Err(e) = &result {
                        single.failed(&mut held, e);
                    }
                    result
                })
            }
        }
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<AnyStatement, sqlx::Error>>
    where
        'p: 'e,
    {
        match self {
            Writer::Pool(pool) => pool.prepare_with(sql, parameters),
            Writer::Single(single) => {
                let single = Arc::clone(single);
                Box::pin(async move {
                    let mut held = single.take().await?;
                    conn(&mut held).prepare_with(sql, parameters).await
                })
            }
        }
    }
}

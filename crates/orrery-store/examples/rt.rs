//! Temporary: round-trip costs.
use sqlx::{AnyConnection, Connection, Executor};
use std::time::Instant;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("x.db").display());
        let mut c = AnyConnection::connect(&url).await.unwrap();
        c.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;").await.unwrap();
        c.execute("CREATE TABLE t (id BIGINT PRIMARY KEY, v BIGINT)").await.unwrap();
        c.execute("INSERT INTO t VALUES (1, 0)").await.unwrap();
        let n = 5000;
        let t = Instant::now();
        for _ in 0..n { c.ping().await.unwrap(); }
        println!("ping {:?}", t.elapsed() / n);
        let t = Instant::now();
        for _ in 0..n { sqlx::query("SELECT v FROM t WHERE id = $1").bind(1i64).fetch_optional(&mut c).await.unwrap(); }
        println!("select {:?}", t.elapsed() / n);
        let t = Instant::now();
        for _ in 0..n { sqlx::query("UPDATE t SET v = v + 1 WHERE id = $1").bind(1i64).execute(&mut c).await.unwrap(); }
        println!("update autocommit {:?}", t.elapsed() / n);
        let t = Instant::now();
        for _ in 0..n {
            sqlx::query("BEGIN").execute(&mut c).await.unwrap();
            sqlx::query("UPDATE t SET v = v + 1 WHERE id = $1").bind(1i64).execute(&mut c).await.unwrap();
            sqlx::query("UPDATE t SET v = v + 1 WHERE id = $1").bind(1i64).execute(&mut c).await.unwrap();
            sqlx::query("COMMIT").execute(&mut c).await.unwrap();
        }
        println!("tx of 2 updates {:?}", t.elapsed() / n);
        let t = Instant::now();
        for _ in 0..n {
            sqlx::query("BEGIN; UPDATE t SET v = v + 1 WHERE id = $1; UPDATE t SET v = v + 1 WHERE id = $1; COMMIT").bind(1i64).execute(&mut c).await.unwrap();
        }
        println!("one multi-statement tx {:?}", t.elapsed() / n);
    });
}

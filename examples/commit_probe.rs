use sqlx::Connection;
use std::time::Instant;
#[tokio::main(flavor = "current_thread")]
async fn main() {
    sqlx::any::install_default_drivers();
    let dir = std::env::temp_dir().join(format!("probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}/p.db?mode=rwc", dir.display());
    let n = 5000;
    // 1. pool with ping on acquire
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    let t = Instant::now();
    for _ in 0..n {
        sqlx::query("SELECT 1").execute(&pool).await.unwrap();
    }
    println!(
        "pool (test_before_acquire=true): {:.1} us/stmt",
        t.elapsed().as_micros() as f64 / n as f64
    );
    let pool2 = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .test_before_acquire(false)
        .connect(&url)
        .await
        .unwrap();
    let t = Instant::now();
    for _ in 0..n {
        sqlx::query("SELECT 1").execute(&pool2).await.unwrap();
    }
    println!(
        "pool (test_before_acquire=false): {:.1} us/stmt",
        t.elapsed().as_micros() as f64 / n as f64
    );
    let mut conn = pool2.acquire().await.unwrap();
    let t = Instant::now();
    for _ in 0..n {
        sqlx::query("SELECT 1").execute(&mut *conn).await.unwrap();
    }
    println!(
        "one connection, Any: {:.1} us/stmt",
        t.elapsed().as_micros() as f64 / n as f64
    );
    drop(conn);
    let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let t = Instant::now();
    for _ in 0..n {
        sqlx::query("SELECT 1").execute(&mut c).await.unwrap();
    }
    println!(
        "one connection, native sqlite: {:.1} us/stmt",
        t.elapsed().as_micros() as f64 / n as f64
    );
    let _ = std::fs::remove_dir_all(&dir);
}

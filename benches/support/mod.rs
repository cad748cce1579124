//! What the load benchmarks share: signed requests sent at a fixed rate (open loop)
//! or flat out (closed loop), latency percentiles, resident memory, the server as a
//! child process, and failing loudly.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;

pub type Http = Client<HttpConnector, Full<Bytes>>;

pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// One signed request to send.
pub struct Signed {
    pub path: String,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

/// Builds request `i`.
pub type Make = Arc<dyn Fn(usize) -> Signed + Send + Sync>;

/// Whether an answer (status, body) is the one the workload expects.
pub type Check = fn(u16, &[u8]) -> Result<(), String>;

/// Where the load goes, and what a good answer is.
#[derive(Clone)]
pub struct Server {
    pub http: Http,
    pub base: String,
    pub check: Check,
}

pub async fn send(server: &Server, make: &Make, i: usize) -> Result<Duration, String> {
    let (http, base) = (&server.http, &server.base);
    let signed = make(i);
    let mut req = hyper::Request::post(format!("{base}{}", signed.path))
        .header("content-type", signed.content_type);
    for (k, v) in signed.headers {
        req = req.header(k, v);
    }
    let req = req.body(Full::new(Bytes::from(signed.body))).unwrap();
    let started = Instant::now();
    let resp = http.request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let took = started.elapsed();
    (server.check)(status.as_u16(), &body)?;
    Ok(took)
}

/// Fixed-rate (open-loop) phase: latency percentiles at `rate` requests/s.
pub async fn at_rate(
    server: &Server,
    make: &Make,
    rate: u64,
    count: usize,
    offset: usize,
) -> Vec<Duration> {
    let mut tasks = Vec::with_capacity(count);
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = tokio::time::Instant::now();
    for i in 0..count {
        tokio::time::sleep_until(start + interval * i as u32).await;
        let (server, make) = (server.clone(), make.clone());
        tasks.push(tokio::spawn(async move {
            send(&server, &make, offset + i).await
        }));
    }
    let mut out = Vec::with_capacity(count);
    for t in tasks {
        match t.await.unwrap() {
            Ok(d) => out.push(d),
            Err(e) => fail(format!("a request failed: {e}")),
        }
    }
    out.sort();
    out
}

/// Closed-loop phase: `concurrency` workers as fast as they can for `seconds`, or
/// until `limit` requests. Returns (latencies, elapsed, max RSS).
pub async fn flat_out(
    server: &Server,
    make: &Make,
    concurrency: usize,
    seconds: u64,
    limit: usize,
    offset: usize,
    pid: u32,
) -> (Vec<Duration>, Duration, u64) {
    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let max_rss = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, max_rss) = (stop.clone(), max_rss.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                max_rss.fetch_max(rss_kib(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (server, make, next) = (server.clone(), make.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= limit || Instant::now() >= deadline {
                    break;
                }
                match send(&server, &make, offset + i).await {
                    Ok(d) => lat.push(d),
                    Err(e) => fail(format!("a request failed: {e}")),
                }
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    all.sort();
    (all, elapsed, max_rss.load(Ordering::Relaxed))
}

/// Stops the benchmark with a clear error: a phase that did not get what it needs
/// would measure something else.
pub fn fail(why: String) -> ! {
    eprintln!("benchmark failed: {why}");
    std::process::exit(1)
}

pub struct Child(pub std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `base` answers `/readyz`, or fails.
pub async fn ready(http: &Http, base: &str) {
    for _ in 0..200 {
        let ok = http
            .request(
                hyper::Request::get(format!("{base}/readyz"))
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await
            .is_ok_and(|r| r.status() == 200);
        if ok {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    fail(format!("waiver serve did not become ready at {base}"));
}

/// A client for many concurrent connections.
pub fn client() -> Http {
    Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(1024)
        .build(HttpConnector::new())
}

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

/// Where the load goes (request `i` to `bases[i % bases.len()]`: replicas share it
/// round-robin, as a load balancer would), and what a good answer is.
#[derive(Clone)]
pub struct Server {
    pub http: Http,
    pub bases: Vec<String>,
    pub check: Check,
}

/// Sends request `i`; its latency runs from `since` (when it was due: an open-loop
/// request that had to wait for a slow predecessor counts the wait).
pub async fn send_since(
    server: &Server,
    make: &Make,
    i: usize,
    since: Instant,
) -> Result<Duration, String> {
    let (http, base) = (&server.http, &server.bases[i % server.bases.len()]);
    let signed = make(i);
    let mut req = hyper::Request::post(format!("{base}{}", signed.path))
        .header("content-type", signed.content_type);
    for (k, v) in signed.headers {
        req = req.header(k, v);
    }
    let req = req.body(Full::new(Bytes::from(signed.body))).unwrap();
    let started = since;
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

pub async fn send(server: &Server, make: &Make, i: usize) -> Result<Duration, String> {
    send_since(server, make, i, Instant::now()).await
}

/// What a phase measured: sorted latencies of the good answers, and the bad ones.
#[derive(Default)]
pub struct Outcome {
    pub latencies: Vec<Duration>,
    pub errors: usize,
    /// The first few errors, to show.
    pub first_errors: Vec<String>,
}

impl Outcome {
    fn add(&mut self, r: Result<Duration, String>) {
        match r {
            Ok(d) => self.latencies.push(d),
            Err(e) => {
                self.errors += 1;
                if self.first_errors.len() < 3 {
                    self.first_errors.push(e);
                }
            }
        }
    }

    fn merge(&mut self, other: Outcome) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        for e in other.first_errors {
            if self.first_errors.len() < 3 {
                self.first_errors.push(e);
            }
        }
    }

    pub fn sent(&self) -> usize {
        self.latencies.len() + self.errors
    }

    pub fn p(&self, q: f64) -> Duration {
        percentile(&self.latencies, q)
    }
}

/// Fixed-rate (open-loop) phase: `count` requests at `rate` requests/s, each timed
/// from when it was due.
pub async fn at_rate(
    server: &Server,
    make: &Make,
    rate: u64,
    count: usize,
    offset: usize,
) -> Outcome {
    let mut tasks = Vec::with_capacity(count);
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = tokio::time::Instant::now();
    let start_std = Instant::now();
    for i in 0..count {
        let due = interval * i as u32;
        tokio::time::sleep_until(start + due).await;
        let (server, make) = (server.clone(), make.clone());
        tasks.push(tokio::spawn(async move {
            send_since(&server, &make, offset + i, start_std + due).await
        }));
    }
    let mut out = Outcome::default();
    for t in tasks {
        out.add(t.await.unwrap());
    }
    out.latencies.sort();
    out
}

/// Closed-loop phase: `concurrency` workers as fast as they can for `seconds`, or
/// until `limit` requests. Returns (outcome, elapsed, the highest resident memory of
/// any of `pids`).
pub async fn flat_out(
    server: &Server,
    make: &Make,
    concurrency: usize,
    seconds: u64,
    limit: usize,
    offset: usize,
    pids: &[u32],
) -> (Outcome, Duration, u64) {
    let pids = pids.to_vec();
    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let max_rss = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, max_rss) = (stop.clone(), max_rss.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                for pid in &pids {
                    max_rss.fetch_max(rss_kib(*pid), Ordering::Relaxed);
                }
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
            let mut out = Outcome::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= limit || Instant::now() >= deadline {
                    break;
                }
                out.add(send(&server, &make, offset + i).await);
            }
            out
        }));
    }
    let mut all = Outcome::default();
    for w in workers {
        all.merge(w.await.unwrap());
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    all.latencies.sort();
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

//! The metrics endpoint against real TCP clients on 127.0.0.1 (SPEC §4.5
//! "Metrics endpoint"): scrapes work, `HEAD` works, a client trickling bytes
//! is cut off at the per-request deadline, and connections beyond the cap
//! are refused without starving a later scrape. Limits are small so the
//! tests are quick.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flowy::daemon::http::{self, Limits};
use flowy::daemon::metrics::{self, Metrics};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

struct Server {
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start(limits: Limits) -> Server {
    let metrics = Arc::new(Metrics::default());
    metrics::add(&metrics.reloads, 2);
    let listener = http::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(http::serve_with(listener, metrics.clone(), limits));
    Server {
        addr,
        metrics,
        task,
    }
}

/// Send a whole request, read the response until the server closes
/// (bounded in time). A refused connection may be reset: what arrived
/// before (a 503, or nothing) is the answer then.
async fn request(addr: SocketAddr, text: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut out = Vec::new();
    if s.write_all(text.as_bytes()).await.is_ok() {
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out));
        let _ = read.await.expect("response within 10 s");
    }
    String::from_utf8(out).unwrap()
}

/// Open a connection that sends half a request line and then nothing.
async fn idle_client(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /met").await.unwrap();
    s
}

/// True once the peer has closed (or reset) the connection.
async fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(wait, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A 503 or a partial answer: keep reading to the close.
            Ok(Ok(_)) => {}
        }
    }
}

fn header_and_body(response: &str) -> (&str, &str) {
    response
        .split_once("\r\n\r\n")
        .expect("a header block ending in an empty line")
}

fn content_length(header: &str) -> usize {
    header
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("Content-Length header")
        .parse()
        .unwrap()
}

#[tokio::test]
async fn get_metrics_answers_the_text_exposition() {
    let server = start(Limits::default()).await;
    let ok = request(server.addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let (header, body) = header_and_body(&ok);
    assert!(header.starts_with("HTTP/1.0 200 OK"), "{ok}");
    assert!(header.contains("Content-Type: text/plain; version=0.0.4"));
    assert_eq!(content_length(header), body.len());
    assert!(body.contains("flowy_reloads_total 2\n"), "{body}");
    assert!(body.contains("flowy_metrics_connections_refused_total 0\n"));
    let missing = request(server.addr, "GET /nope HTTP/1.0\r\n\r\n").await;
    assert!(missing.starts_with("HTTP/1.0 404"), "{missing}");
    let post = request(server.addr, "POST /metrics HTTP/1.0\r\n\r\n").await;
    assert!(post.starts_with("HTTP/1.0 404"), "{post}");
}

#[tokio::test]
async fn head_metrics_answers_headers_without_a_body() {
    let server = start(Limits::default()).await;
    let head = request(server.addr, "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let (header, body) = header_and_body(&head);
    assert!(header.starts_with("HTTP/1.0 200 OK"), "{head}");
    assert!(header.contains("Content-Type: text/plain; version=0.0.4"));
    // The length of the body a GET would get, but no body.
    let get = request(server.addr, "GET /metrics HTTP/1.0\r\n\r\n").await;
    let get_len = header_and_body(&get).1.len();
    assert!(get_len > 0);
    assert_eq!(content_length(header), get_len);
    assert_eq!(body, "", "HEAD sent a body");
}

#[tokio::test]
async fn a_client_trickling_bytes_is_cut_off_at_the_deadline() {
    let deadline = Duration::from_millis(600);
    let server = start(Limits {
        deadline,
        max_connections: 4,
    })
    .await;
    // Before connecting, so that the server's deadline starts after it.
    let started = Instant::now();
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    // One byte every 200 ms — well inside any per-read timeout — of a
    // request line that never ends; 30 bytes would take 6 s (10 deadlines).
    let mut cut = false;
    for b in b"GET /metrics?aaaaaaaaaaaaaaaaa".iter() {
        if s.write_all(&[*b]).await.is_err()
            || closed_within(&mut s, Duration::from_millis(200)).await
        {
            cut = true;
            break;
        }
    }
    assert!(cut, "the trickling client was never disconnected");
    assert!(
        started.elapsed() >= deadline,
        "cut before its deadline: {:?}",
        started.elapsed()
    );
    assert_eq!(metrics::get(&server.metrics.metrics_requests_timed_out), 1);
    // The endpoint still serves.
    let ok = request(server.addr, "GET /metrics HTTP/1.0\r\n\r\n").await;
    assert!(ok.starts_with("HTTP/1.0 200 OK"), "{ok}");
}

#[tokio::test]
async fn connections_beyond_the_cap_are_refused_and_a_scrape_gets_through() {
    let deadline = Duration::from_millis(800);
    let server = start(Limits {
        deadline,
        max_connections: 2,
    })
    .await;
    // Fill every slot, then a crowd beyond the cap.
    let mut holders = vec![
        idle_client(server.addr).await,
        idle_client(server.addr).await,
    ];
    let mut crowd = Vec::new();
    for _ in 0..20 {
        crowd.push(idle_client(server.addr).await);
    }
    // Each one over the cap is answered 503 and closed without waiting.
    for c in &mut crowd {
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut out))
            .await
            .expect("an excess connection is closed at once")
            .ok();
        let out = String::from_utf8_lossy(&out);
        assert!(out.is_empty() || out.starts_with("HTTP/1.0 503"), "{out}");
    }
    assert!(metrics::get(&server.metrics.metrics_connections_refused) >= 20);
    // The slot holders are cut at their deadline, so a scrape retried for
    // a bounded time (ten deadlines) is served.
    let give_up = Instant::now() + deadline * 10;
    let mut refused = 0;
    loop {
        let answer = request(server.addr, "GET /metrics HTTP/1.0\r\n\r\n").await;
        if answer.starts_with("HTTP/1.0 200 OK") {
            break;
        }
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.0 503"),
            "{answer}"
        );
        refused += 1;
        assert!(
            Instant::now() < give_up,
            "scrape starved by idle connections"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused > 0, "the cap never refused the scrape");
    for h in &mut holders {
        assert!(closed_within(h, deadline * 5).await, "slot holder kept");
    }
}

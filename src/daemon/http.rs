//! A minimal HTTP/1.0 responder for `GET`/`HEAD /metrics`: enough for
//! Prometheus and curl, without pulling a web framework into the daemon.
//!
//! Hostile clients are bounded (SPEC §4.5): each connection has one deadline
//! for reading the request and writing the response, so a client trickling
//! bytes is cut off however it paces them; and at most `max_connections`
//! are served at once, excess ones are answered `503` and closed at once
//! instead of queueing without bound. A legitimate scrape therefore waits at
//! most one deadline for a slot.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::metrics::{self, Metrics};

/// Requests larger than this are not metrics scrapes.
const MAX_REQUEST: usize = 8 * 1024;

/// What one client may take from the endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Whole request read plus response written.
    pub deadline: Duration,
    /// Connections served at the same time.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(5),
            max_connections: 32,
        }
    }
}

/// Bind the metrics listener (bind errors surface at startup, not later).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serve scrapes with the default limits until the task is aborted.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    serve_with(listener, metrics, Limits::default()).await
}

/// Serve scrapes until the task is aborted.
pub async fn serve_with(listener: TcpListener, metrics: Arc<Metrics>, limits: Limits) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        match listener.accept().await {
            Ok((stream, _)) => match slots.clone().try_acquire_owned() {
                Ok(slot) => {
                    let metrics = metrics.clone();
                    tokio::spawn(async move {
                        serve_one(stream, &metrics, limits.deadline).await;
                        drop(slot);
                    });
                }
                Err(_) => refuse(stream, &metrics),
            },
            Err(e) => {
                tracing::warn!(error = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Over the cap: a best-effort `503` that never waits on the client, then close.
fn refuse(stream: TcpStream, metrics: &Metrics) {
    metrics::add(&metrics.metrics_connections_refused, 1);
    // Consume a request that has already arrived, so that closing sends
    // the 503 and a FIN rather than a reset.
    let _ = stream.try_read(&mut [0u8; 1024]);
    let _ = stream.try_write(
        b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\nConnection: close\r\n\r\n",
    );
}

async fn serve_one(stream: TcpStream, metrics: &Metrics, deadline: Duration) {
    match tokio::time::timeout(deadline, respond(stream, metrics)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "metrics request failed"),
        Err(_) => {
            metrics::add(&metrics.metrics_requests_timed_out, 1);
            tracing::debug!("metrics request exceeded its deadline");
        }
    }
}

async fn read_head(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(buf)
}

/// Request methods the endpoint answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Get,
    /// As `GET`, headers only.
    Head,
}

fn parse_request_line(head: &[u8]) -> Option<(Method, String)> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let method = match parts.next()? {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        _ => return None,
    };
    Some((method, parts.next()?.to_string()))
}

async fn respond(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let head = read_head(&mut stream).await?;
    let request = parse_request_line(&head);
    let (status, ctype, body) = match request.as_ref().map(|(_, p)| p.as_str()) {
        Some("/metrics") => ("200 OK", metrics::CONTENT_TYPE, metrics.render()),
        Some("/") => (
            "200 OK",
            "text/plain; charset=utf-8",
            "flowy: see /metrics\n".to_string(),
        ),
        _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
    };
    let header = format!(
        "HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(header.as_bytes()).await?;
    if !matches!(request, Some((Method::Head, _))) {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        let p = |s: &str| parse_request_line(s.as_bytes());
        assert_eq!(
            p("GET /metrics HTTP/1.1\r\n\r\n"),
            Some((Method::Get, "/metrics".into()))
        );
        assert_eq!(
            p("HEAD /metrics HTTP/1.0\r\n"),
            Some((Method::Head, "/metrics".into()))
        );
        assert_eq!(p("POST /metrics HTTP/1.0\r\n"), None);
        assert_eq!(p("GET\r\n"), None);
        assert_eq!(p(""), None);
    }
}

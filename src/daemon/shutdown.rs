//! Orderly shutdown (SPEC §4.3): stop receiving, then let every stage drain
//! into the next, upstream first, so that each record that was read is
//! processed, every group closes and every match is written and flushed.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::dispatch::Control;
use super::metrics::Metrics;
use super::output::OutMsg;
use super::pipeline::RunningQuery;

pub struct Handles {
    pub stop: watch::Sender<bool>,
    pub receivers: Vec<JoinHandle<()>>,
    pub decoder: std::thread::JoinHandle<()>,
    pub dispatcher: JoinHandle<()>,
    pub output: std::thread::JoinHandle<()>,
    pub metrics_task: Option<JoinHandle<()>>,
}

async fn join_thread(name: &str, t: std::thread::JoinHandle<()>) {
    match tokio::task::spawn_blocking(move || t.join()).await {
        Ok(Ok(())) => {}
        _ => tracing::error!("{name} thread failed"),
    }
}

impl Handles {
    /// Each step ends when the one before it has closed its channel:
    /// sockets → decoder → dispatcher (which finishes every query) →
    /// branch and merger tasks → output.
    pub async fn drain(
        self,
        running: Vec<RunningQuery>,
        output: mpsc::Sender<OutMsg>,
        control: mpsc::Sender<Control>,
        metrics: &Arc<Metrics>,
    ) {
        let _ = self.stop.send(true);
        for r in self.receivers {
            let _ = r.await;
        }
        join_thread("decode", self.decoder).await;
        drop(control);
        if let Err(e) = self.dispatcher.await {
            tracing::error!(error = %e, "dispatcher failed");
        }
        for q in running {
            q.join(metrics).await;
        }
        // Queries retired by a late reload hold their own senders and end
        // on their own; the output thread ends once the last sender is gone.
        drop(output);
        join_thread("output", self.output).await;
        if let Some(t) = self.metrics_task {
            t.abort();
        }
    }
}

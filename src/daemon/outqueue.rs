//! The output queue (SPEC §4.5): formatted matches waiting for the sink,
//! bounded in bytes. A full queue either makes the producer wait
//! (`when_full = "block"`, backpressure up to the sockets) or drops the
//! new matches (`"drop"`), which are counted.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::output::rotate::Target;

use super::metrics::{add, set, Metrics, SinkMetrics};

/// One sink's counters and the totals over every sink, bumped together.
#[derive(Clone)]
pub struct Counters {
    pub all: Arc<Metrics>,
    pub sink: Arc<SinkMetrics>,
}

impl Counters {
    /// The counters of the sink labelled `label`.
    pub fn new(all: Arc<Metrics>, label: &str) -> Counters {
        let sink = all.register_sink(label);
        Counters { all, sink }
    }

    /// Matches handed to the sink.
    pub fn handed(&self, n: u64) {
        add(&self.all.output_matches, n);
        add(&self.sink.matches, n);
    }

    pub fn written(&self, n: u64) {
        add(&self.all.output_lines, n);
        add(&self.sink.lines, n);
    }

    /// Matches lost to a failed write.
    pub fn failed(&self, n: u64) {
        add(&self.all.output_write_errors, n);
        add(&self.all.output_not_written, n);
        add(&self.sink.write_errors, n);
        add(&self.sink.not_written, n);
    }

    /// Matches dropped with the queue full.
    pub fn dropped(&self, n: u64) {
        add(&self.all.output_dropped, n);
        add(&self.all.output_not_written, n);
        add(&self.sink.dropped, n);
        add(&self.sink.not_written, n);
    }

    fn queued(&self, bytes: usize) {
        set(&self.sink.queue_bytes, bytes as u64);
    }
}

/// Formatted matches: `ends` are the offsets where each match ends.
#[derive(Debug, Default)]
pub struct Chunk {
    pub buf: Vec<u8>,
    pub ends: Vec<usize>,
    /// The header of the lines' format (CSV's), which the writer puts
    /// before them if the sink has none yet; one format per chunk.
    pub header: Option<&'static [u8]>,
}

impl Chunk {
    pub fn matches(&self) -> u64 {
        self.ends.len() as u64
    }
}

pub enum Item {
    Lines(Chunk),
    /// Reopen the output (logrotate moved the file away, or a reload
    /// changed where it goes).
    Reopen(Target),
    /// Fire once every item before it is written.
    Barrier(tokio::sync::oneshot::Sender<()>),
}

#[derive(Default)]
struct State {
    items: VecDeque<Item>,
    /// Bytes of queued chunks plus the chunk being written.
    bytes: usize,
    closed: bool,
}

pub struct Queue {
    state: Mutex<State>,
    /// Signalled on every change: the writer waits for items, a blocked
    /// producer for room.
    changed: Condvar,
    capacity: usize,
    drop_when_full: AtomicBool,
    counters: Counters,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// The queue was full and `when_full = "drop"`: this many matches are gone.
    Dropped(u64),
}

impl Queue {
    pub fn new(capacity: usize, drop_when_full: bool, counters: Counters) -> Self {
        Queue {
            state: Mutex::default(),
            changed: Condvar::new(),
            capacity,
            drop_when_full: AtomicBool::new(drop_when_full),
            counters,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Plain data: a panic elsewhere ends the process anyway.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_drop_when_full(&self, drop: bool) {
        self.drop_when_full.store(drop, Ordering::Relaxed);
        self.changed.notify_all();
    }

    /// Queue `chunk`, waiting for room unless the policy is to drop. A chunk
    /// larger than the whole queue is taken when the queue is empty, so it
    /// cannot wait forever.
    pub fn push(&self, chunk: Chunk) -> Pushed {
        let len = chunk.buf.len();
        let mut st = self.lock();
        loop {
            if st.bytes == 0 || st.bytes + len <= self.capacity {
                st.bytes += len;
                self.counters.queued(st.bytes);
                st.items.push_back(Item::Lines(chunk));
                self.changed.notify_all();
                return Pushed::Queued;
            }
            if self.drop_when_full.load(Ordering::Relaxed) {
                let n = chunk.matches();
                self.counters.dropped(n);
                return Pushed::Dropped(n);
            }
            st = self.changed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Control items take no room and never wait.
    pub fn push_control(&self, item: Item) {
        self.lock().items.push_back(item);
        self.changed.notify_all();
    }

    /// No more items will come; the writer ends once the queue is empty.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    /// The next item, waiting for one; `None` once closed and empty.
    pub fn pop(&self) -> Option<Item> {
        let mut st = self.lock();
        loop {
            if let Some(item) = st.items.pop_front() {
                return Some(item);
            }
            if st.closed {
                return None;
            }
            st = self.changed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// A popped chunk of `len` bytes has left (written or failed).
    pub fn release(&self, len: usize) {
        let mut st = self.lock();
        st.bytes = st.bytes.saturating_sub(len);
        self.counters.queued(st.bytes);
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(len: usize, matches: usize) -> Chunk {
        Chunk {
            buf: vec![b'x'; len],
            ends: (1..=matches).map(|i| i * len / matches).collect(),
            header: None,
        }
    }

    fn counters() -> Counters {
        Counters::new(Arc::new(Metrics::default()), "out")
    }

    #[test]
    fn drop_policy_counts_what_does_not_fit() {
        let c = counters();
        let q = Queue::new(100, true, c.clone());
        assert_eq!(q.push(chunk(60, 2)), Pushed::Queued);
        assert_eq!(q.push(chunk(60, 3)), Pushed::Dropped(3));
        assert_eq!(q.push(chunk(40, 1)), Pushed::Queued);
        assert_eq!(super::super::metrics::get(&c.sink.queue_bytes), 100);
        assert_eq!(super::super::metrics::get(&c.sink.dropped), 3);
        assert_eq!(super::super::metrics::get(&c.all.output_dropped), 3);
        let Some(Item::Lines(popped)) = q.pop() else {
            panic!("a chunk")
        };
        q.release(popped.buf.len());
        assert_eq!(super::super::metrics::get(&c.sink.queue_bytes), 40);
    }

    #[test]
    fn block_policy_waits_for_room_and_takes_oversized_chunks_alone() {
        let q = Arc::new(Queue::new(100, false, counters()));
        assert_eq!(q.push(chunk(500, 1)), Pushed::Queued);
        let producer = {
            let q = q.clone();
            std::thread::spawn(move || q.push(chunk(10, 1)))
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!producer.is_finished(), "must wait while the queue is full");
        let Some(Item::Lines(c)) = q.pop() else {
            panic!("a chunk")
        };
        q.release(c.buf.len());
        assert_eq!(producer.join().unwrap(), Pushed::Queued);
        q.close();
        assert!(matches!(q.pop(), Some(Item::Lines(_))));
        assert!(q.pop().is_none());
    }
}

//! The per-VM export pipeline as a pure state machine: a bounded queue of encoded spans, batches
//! in flight, retries with backoff by the OTLP rules, and exact counts. The glue feeds it time and
//! host responses; nothing here calls the host.
//!
//! Spans are encoded straight into the request buffer of the batch they will leave in, after room
//! kept for the request's header, so a batch is sent as it was filled.

mod failures;
mod retry;

pub use failures::{FailureCause, FailureLog};
pub use retry::{is_retryable, RetryPolicy, DEADLINE_EXCEEDED};

use std::collections::VecDeque;
use std::rc::Rc;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportSettings {
    pub max_queue_size: usize,
    pub max_batch_size: usize,
    pub scheduled_delay_ms: u64,
    /// Batches in flight or waiting to retry, at most.
    pub max_in_flight: usize,
    pub retry: RetryPolicy,
    /// Bytes kept at the start of every batch buffer for the request's header, written when the
    /// batch leaves (`poll`'s `finish`).
    pub batch_header_room: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success {
        rejected_spans: u64,
    },
    Failure {
        grpc_status: u32,
        retry_delay_ms: Option<u64>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dispatch {
    pub batch_id: u64,
    pub payload: Payload,
    pub spans: usize,
}

/// A batch's request: its buffer from where the header `finish` wrote begins. Shared with the
/// batch kept for a retry, so a retry sends the same bytes without copying them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payload {
    buffer: Rc<Vec<u8>>,
    start: usize,
}

impl std::ops::Deref for Payload {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.buffer[self.start..]
    }
}

#[derive(Default, Clone, Copy, PartialEq, Eq, Debug)]
pub struct ExportStats {
    pub sampled: u64,
    pub exported: u64,
    pub dropped: u64,
    /// Waiting, in flight, or awaiting retry.
    pub queued: u64,
    pub export_requests: u64,
    pub export_failures: u64,
    pub retries: u64,
}

struct Batch {
    id: u64,
    payload: Payload,
    spans: usize,
    attempts: u32,
    retry_at_ms: u64,
}

/// Spans waiting to leave, encoded one after another in their batch's buffer, after its header
/// room.
struct Filling {
    buffer: Vec<u8>,
    spans: usize,
}

impl Filling {
    /// `max_batch_size` spans, or `MAX_BATCH_BYTES`.
    fn is_full(&self, max_batch_size: usize) -> bool {
        self.spans >= max_batch_size || self.buffer.len() >= MAX_BATCH_BYTES
    }
}

/// A batch holding this many bytes is full, whatever its span count: gRPC servers refuse a
/// message over 4 MiB by default (the OpenTelemetry Collector's OTLP receiver among them, with
/// RESOURCE_EXHAUSTED and no retry hint), which a `maxExportBatchSize` of large spans would
/// reach. A quarter under it, so that the span that crosses the line and the request's header
/// still fit.
const MAX_BATCH_BYTES: usize = 3 * 1024 * 1024;

pub struct Exporter {
    settings: ExportSettings,
    /// Batches taking spans, oldest first; only the last may be short of full (`is_full`).
    waiting: VecDeque<Filling>,
    waiting_spans: usize,
    in_flight: Vec<Batch>,
    awaiting_retry: Vec<Batch>,
    next_batch_id: u64,
    last_flush_ms: Option<u64>,
    draining: bool,
    jitter_state: u64,
    stats: ExportStats,
}

impl Exporter {
    pub fn new(settings: ExportSettings, jitter_seed: u64) -> Self {
        Exporter {
            waiting: VecDeque::new(),
            waiting_spans: 0,
            settings,
            in_flight: Vec::new(),
            awaiting_retry: Vec::new(),
            next_batch_id: 1,
            last_flush_ms: None,
            draining: false,
            jitter_state: jitter_seed | 1,
            stats: ExportStats::default(),
        }
    }

    /// Takes one sampled span, which `write_span` appends, framed, to the buffer it is handed; a
    /// full queue drops it (counted) without it being encoded, never blocks or grows.
    pub fn enqueue(&mut self, write_span: impl FnOnce(&mut Vec<u8>)) -> bool {
        self.stats.sampled += 1;
        if self.waiting_spans >= self.settings.max_queue_size || self.draining {
            self.stats.dropped += 1;
            return false;
        }
        let max_batch_size = self.settings.max_batch_size;
        let batch = match self.waiting.back_mut() {
            Some(batch) if !batch.is_full(max_batch_size) => batch,
            _ => {
                let buffer = vec![0; self.settings.batch_header_room];
                self.waiting.push_back(Filling { buffer, spans: 0 });
                self.waiting.back_mut().expect("a batch was just added")
            }
        };
        write_span(&mut batch.buffer);
        batch.spans += 1;
        self.waiting_spans += 1;
        self.stats.queued += 1;
        true
    }

    /// Batches fill in order: a full one is waiting exactly when the oldest is full.
    pub fn has_full_batch(&self) -> bool {
        self.waiting
            .front()
            .is_some_and(|batch| batch.is_full(self.settings.max_batch_size))
    }

    fn outstanding(&self) -> usize {
        self.in_flight.len() + self.awaiting_retry.len()
    }

    /// The next batch to send, if any: a due retry first, else a new batch when a full one is
    /// waiting or the scheduled delay has passed. `finish` writes a new batch's request header
    /// into the end of its buffer's header room and says where the request starts.
    pub fn poll(&mut self, now_ms: u64, finish: &dyn Fn(&mut [u8]) -> usize) -> Option<Dispatch> {
        if self.in_flight.len() >= self.settings.max_in_flight {
            return None;
        }
        if let Some(due) = self
            .awaiting_retry
            .iter()
            .position(|b| b.retry_at_ms <= now_ms)
        {
            let mut batch = self.awaiting_retry.swap_remove(due);
            batch.attempts += 1;
            self.stats.export_requests += 1;
            self.stats.retries += 1;
            let dispatch = Dispatch {
                batch_id: batch.id,
                payload: batch.payload.clone(),
                spans: batch.spans,
            };
            self.in_flight.push(batch);
            return Some(dispatch);
        }
        // Before the first flush there is nothing to wait for: the first spans leave at once.
        let schedule_due = self
            .last_flush_ms
            .is_none_or(|last| now_ms >= last + self.settings.scheduled_delay_ms);
        let due = self.draining || self.has_full_batch() || schedule_due;
        if self.waiting_spans == 0 || !due || self.outstanding() >= self.settings.max_in_flight {
            if self.waiting_spans == 0 {
                self.last_flush_ms = Some(now_ms);
            }
            return None;
        }
        let Filling { mut buffer, spans } = self.waiting.pop_front()?;
        self.waiting_spans -= spans;
        let start = finish(&mut buffer);
        let payload = Payload {
            buffer: Rc::new(buffer),
            start,
        };
        let id = self.next_batch_id;
        self.next_batch_id += 1;
        self.last_flush_ms = Some(now_ms);
        self.stats.export_requests += 1;
        let dispatch = Dispatch {
            batch_id: id,
            payload: payload.clone(),
            spans,
        };
        self.in_flight.push(Batch {
            id,
            payload,
            spans,
            attempts: 1,
            retry_at_ms: 0,
        });
        Some(dispatch)
    }

    fn take_in_flight(&mut self, batch_id: u64) -> Option<Batch> {
        let index = self.in_flight.iter().position(|b| b.id == batch_id)?;
        Some(self.in_flight.swap_remove(index))
    }

    fn count_out(&mut self, spans: usize, exported: u64) {
        let spans = spans as u64;
        let exported = exported.min(spans);
        self.stats.exported += exported;
        self.stats.dropped += spans - exported;
        self.stats.queued -= spans;
    }

    /// The host refused to start the call (e.g. the cluster does not exist yet): retryable.
    pub fn dispatch_failed(&mut self, batch_id: u64, now_ms: u64) {
        self.complete(
            batch_id,
            Outcome::Failure {
                grpc_status: retry::UNAVAILABLE,
                retry_delay_ms: None,
            },
            now_ms,
        );
    }

    pub fn complete(&mut self, batch_id: u64, outcome: Outcome, now_ms: u64) {
        let Some(mut batch) = self.take_in_flight(batch_id) else {
            return;
        };
        match outcome {
            Outcome::Success { rejected_spans } => {
                let rejected = rejected_spans.min(batch.spans as u64);
                let exported = batch.spans as u64 - rejected;
                self.count_out(batch.spans, exported);
            }
            Outcome::Failure {
                grpc_status,
                retry_delay_ms,
            } => {
                self.stats.export_failures += 1;
                let retry = !self.draining
                    && is_retryable(grpc_status, retry_delay_ms.is_some())
                    && batch.attempts < self.settings.retry.max_attempts;
                if retry {
                    let delay = retry_delay_ms.unwrap_or_else(|| {
                        self.settings
                            .retry
                            .backoff_ms(batch.attempts, next_random(&mut self.jitter_state))
                    });
                    batch.retry_at_ms = now_ms + delay;
                    self.awaiting_retry.push(batch);
                } else {
                    self.count_out(batch.spans, 0);
                }
            }
        }
    }

    /// From now on everything waiting leaves at once and failures are not retried: the plugin
    /// is being retired.
    pub fn begin_drain(&mut self) {
        self.draining = true;
        for mut batch in std::mem::take(&mut self.awaiting_retry) {
            batch.retry_at_ms = 0;
            self.awaiting_retry.push(batch);
        }
    }

    pub fn stats(&self) -> ExportStats {
        self.stats
    }

    /// Counts everything still held as dropped and forgets it.
    pub fn shutdown(&mut self) -> ExportStats {
        let held: usize = self.waiting_spans
            + self.in_flight.iter().map(|b| b.spans).sum::<usize>()
            + self.awaiting_retry.iter().map(|b| b.spans).sum::<usize>();
        self.waiting.clear();
        self.waiting_spans = 0;
        self.in_flight.clear();
        self.awaiting_retry.clear();
        self.count_out(held, 0);
        self.stats
    }
}

fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[cfg(test)]
mod tests;

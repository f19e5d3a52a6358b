//! The root context: configuration, the per-plugin exporter, its tick and its gRPC callouts.

use super::host;
use super::metrics::StatsPublisher;
use super::plugin::Plugin;
use super::stream::{record_ended, EndedSpan, SidetraceStream};
use crate::config::Config;
use crate::export::{ExportSettings, Exporter, Outcome, RetryPolicy};
use crate::ids::IdGenerator;
use crate::otlp::{decode_export_response, grpc_service_target, retry_delay_from_status_details};
use crate::span::Attribute;
use crate::span_facts::FactsHeader;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

const SERVICE: &str = "opentelemetry.proto.collector.trace.v1.TraceService";
const METHOD: &str = "Export";
/// While a full batch (or a retry) waits, the root ticks this often, or every
/// `scheduledDelayMs` if that is shorter: a full batch leaves within this long.
const MAX_TICK_MS: u64 = 50;
/// Otherwise a tick sends what has waited the scheduled delay and publishes counters: once a
/// second (or every `scheduledDelayMs`, if shorter) does both, and spares a sidecar that sees
/// less than a batch a second twenty wake-ups a second per worker.
const IDLE_TICK_MS: u64 = 1000;
const GRPC_OK: u32 = 0;
const DEADLINE_EXCEEDED: u32 = 4;

thread_local! {
    /// Configured root contexts in this VM (one VM per thread).
    static LIVE_ROOTS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Counts this root context out and says how many stay in the VM.
fn live_roots_after_this_one() -> u32 {
    LIVE_ROOTS.with(|live| {
        let left = live.get().saturating_sub(1);
        live.set(left);
        left
    })
}

/// State shared between the root context and its streams.
pub struct Shared {
    pub plugin: Plugin,
    /// A finished span's attribute list and name, kept empty between spans for their
    /// allocations (`Cell::take` leaves empty ones while a span holds them).
    pub scratch: Cell<(Vec<Attribute<'static>>, String)>,
    pub exporter: RefCell<Exporter>,
    pub ids: RefCell<IdGenerator>,
    pub stats: StatsPublisher,
    pub pace: TickPace,
    /// Spans whose streams are over and whose facts came in the facts header, waiting to be
    /// recorded together (`stream::record_ended`).
    pub ended: RefCell<Vec<(EndedSpan, FactsHeader)>>,
}

/// How often the root ticks: every `MAX_TICK_MS` (or the scheduled delay, if shorter) while the
/// exporter has a full batch or a retry waiting (`Exporter::needs_fast_tick`), every
/// `IDLE_TICK_MS` (or the scheduled delay, if shorter) otherwise. It is set again after each span
/// is queued (by its stream) and on each export's answer (by the root); the host applies a tick
/// period to the root of the context that asks. Never set inside a tick: Envoy
/// replaces the timer whose callback runs, so a pace a tick would change waits for the next
/// answer.
pub struct TickPace {
    busy_ms: u32,
    idle_ms: u32,
    busy: Cell<bool>,
}

impl TickPace {
    /// Idle: the root asks for `idle_ms` when it is configured.
    fn new(scheduled_delay_ms: u64) -> Self {
        let busy_ms = scheduled_delay_ms.clamp(1, MAX_TICK_MS);
        TickPace {
            busy_ms: busy_ms as u32,
            idle_ms: scheduled_delay_ms.min(IDLE_TICK_MS).max(busy_ms) as u32,
            busy: Cell::new(false),
        }
    }

    /// One host call when the pace changes; none while it stays.
    #[inline(never)]
    pub fn set(&self, busy: bool) {
        if self.busy.replace(busy) != busy {
            host::set_tick_period_ms(if busy { self.busy_ms } else { self.idle_ms });
        }
    }
}

impl Shared {
    /// The pace the exporter's state asks for (`TickPace`); never from inside a tick.
    #[inline(never)]
    pub fn follow_exporter_pace(&self) {
        self.pace.set(self.exporter.borrow().needs_fast_tick());
    }

    pub fn publish_stats(&self) {
        self.stats.publish(self.exporter.borrow().stats());
    }
}

/// One export on the wire: a gRPC stream carrying a single request message.
struct InFlight {
    token: u32,
    batch_id: u64,
    deadline_ms: u64,
    rejected_spans: u64,
    retry_delay_ms: Option<u64>,
}

pub struct SidetraceRoot {
    shared: Option<Rc<Shared>>,
    /// Exports on the wire, at most `batch.maxConcurrentExports`: a list is all it takes.
    in_flight: Vec<InFlight>,
    /// Set once `on_done` asked us to finish: no new batches wait for the schedule.
    draining: bool,
    /// Nothing more to do: the host may forget this context.
    finished: bool,
}

impl SidetraceRoot {
    pub fn new() -> Self {
        SidetraceRoot {
            shared: None,
            in_flight: Vec::new(),
            draining: false,
            finished: false,
        }
    }

    fn now_ms() -> u64 {
        host::now_unix_nanos() / 1_000_000
    }

    /// Sends every batch the exporter is ready to send.
    fn flush(&mut self) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let now = Self::now_ms();
        let collector = &shared.plugin.config.collector;
        let metadata: Vec<(&[u8], &[u8])> = collector
            .headers
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
            .collect();
        let target = grpc_service_target(&collector.cluster, collector.authority.as_deref());
        loop {
            let encoder = &shared.plugin.encoder;
            let dispatch = shared
                .exporter
                .borrow_mut()
                .poll(now, &|buffer| encoder.finish(buffer));
            let Some(dispatch) = dispatch else { break };
            // A stream, not a unary callout: Envoy hands a stream's trailing metadata to the
            // module (the RetryInfo of RESOURCE_EXHAUSTED lives there); a unary callout gets none.
            let sent =
                host::send_grpc_message(&target, SERVICE, METHOD, &metadata, &dispatch.payload);
            match sent {
                Ok(token) => {
                    self.in_flight.push(InFlight {
                        token,
                        batch_id: dispatch.batch_id,
                        deadline_ms: now + collector.timeout_ms,
                        rejected_spans: 0,
                        retry_delay_ms: None,
                    });
                }
                Err(status) => {
                    host::log_warn(&format!(
                        "sidetrace: export to cluster `{}` could not start (status {status}); will retry",
                        collector.cluster
                    ));
                    shared
                        .exporter
                        .borrow_mut()
                        .dispatch_failed(dispatch.batch_id, now);
                    break;
                }
            }
        }
        shared.publish_stats();
    }

    fn complete(&mut self, batch_id: u64, outcome: Outcome) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        shared
            .exporter
            .borrow_mut()
            .complete(batch_id, outcome, Self::now_ms());
        self.flush();
        if self.draining && self.in_flight.is_empty() && !self.finished {
            self.finished = true;
            host::done();
        }
    }

    /// Streams have no deadline of their own: exports past `collector.timeoutMs` are cancelled
    /// and count as DEADLINE_EXCEEDED.
    fn expire_overdue(&mut self) {
        let now = Self::now_ms();
        let overdue: Vec<u32> = self
            .in_flight
            .iter()
            .filter(|export| now >= export.deadline_ms)
            .map(|export| export.token)
            .collect();
        for token in overdue {
            host::cancel_grpc(token);
            if let Some(export) = self.take_in_flight(token) {
                self.complete(
                    export.batch_id,
                    Outcome::Failure {
                        grpc_status: DEADLINE_EXCEEDED,
                        retry_delay_ms: None,
                    },
                );
            }
        }
    }

    fn in_flight_mut(&mut self, token: u32) -> Option<&mut InFlight> {
        self.in_flight
            .iter_mut()
            .find(|export| export.token == token)
    }

    fn take_in_flight(&mut self, token: u32) -> Option<InFlight> {
        let at = self
            .in_flight
            .iter()
            .position(|export| export.token == token)?;
        Some(self.in_flight.swap_remove(at))
    }

    fn exporter_settings(plugin: &Plugin) -> ExportSettings {
        let config = &plugin.config;
        ExportSettings {
            max_queue_size: config.batch.max_queue_size,
            max_batch_size: config.batch.max_export_batch_size,
            scheduled_delay_ms: config.batch.scheduled_delay_ms,
            max_in_flight: config.batch.max_concurrent_exports,
            retry: RetryPolicy {
                initial_backoff_ms: config.retry.initial_backoff_ms,
                max_backoff_ms: config.retry.max_backoff_ms,
                max_attempts: config.retry.max_attempts,
            },
            batch_header_room: plugin.encoder.header_room(),
        }
    }

    pub fn on_grpc_message(&mut self, token_id: u32, message_size: usize) {
        let Some(export) = self.in_flight_mut(token_id) else {
            return;
        };
        match decode_export_response(&host::grpc_message(message_size)) {
            Ok(rejected) => export.rejected_spans = rejected,
            Err(reason) => {
                host::log_warn(&format!("sidetrace: unreadable export response: {reason}"))
            }
        }
    }

    pub fn on_grpc_trailing_metadata(&mut self, token_id: u32) {
        let details = host::grpc_trailer("grpc-status-details-bin");
        if let Some(export) = self.in_flight_mut(token_id) {
            export.retry_delay_ms = details
                .as_deref()
                .and_then(retry_delay_from_status_details)
                .map(|delay| delay.as_millis() as u64);
        }
    }

    pub fn on_grpc_close(&mut self, token_id: u32, status_code: u32) {
        let Some(export) = self.take_in_flight(token_id) else {
            return;
        };
        let outcome = if status_code == GRPC_OK {
            Outcome::Success {
                rejected_spans: export.rejected_spans,
            }
        } else {
            host::log_warn(&format!(
                "sidetrace: export failed with gRPC status {status_code}"
            ));
            Outcome::Failure {
                grpc_status: status_code,
                retry_delay_ms: export.retry_delay_ms,
            }
        };
        self.complete(export.batch_id, outcome);
        if let Some(shared) = &self.shared {
            shared.follow_exporter_pace();
        }
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// `false` while exports are still on the wire; `host::done` follows when they settle.
    pub fn on_done(&mut self) -> bool {
        self.finished = self.retire();
        self.finished
    }

    fn retire(&mut self) -> bool {
        super::metrics::flush_pending();
        let Some(shared) = self.shared.clone() else {
            return true;
        };
        // Spans waiting to be recorded go into the queue first, to leave with the rest.
        record_ended(&shared);
        self.draining = true;
        if live_roots_after_this_one() == 0 {
            // The VM goes with its last plugin, and no export response would outlive it: what
            // is still held cannot be delivered, so it is counted as dropped now.
            let held = shared.exporter.borrow().stats().queued;
            shared.exporter.borrow_mut().shutdown();
            shared.publish_stats();
            if held > 0 {
                host::log_warn(&format!(
                    "sidetrace: VM shutting down; {held} spans not sent, counted as dropped"
                ));
            }
            return true;
        }
        let held = shared.exporter.borrow().stats().queued;
        if held > 0 {
            host::log_info(&format!(
                "sidetrace: plugin retiring; sending the {held} spans it holds"
            ));
        }
        // A retiring plugin (config push, VM shutdown) sends what it holds once, now; whatever
        // cannot leave is counted as dropped rather than forgotten.
        shared.exporter.borrow_mut().begin_drain();
        self.flush();
        if self.in_flight.is_empty() {
            shared.exporter.borrow_mut().shutdown();
            shared.publish_stats();
            return true;
        }
        // Exports still on the wire: their answers, or Envoy's timeouts, finish the plugin, and
        // the tick notices an export overdue past its own deadline.
        false
    }

    pub fn on_configure(&mut self, configuration_size: usize) -> bool {
        let bytes = host::plugin_configuration(configuration_size);
        let config = match Config::from_json(&bytes) {
            Ok(config) => config,
            Err(error) => {
                host::log_error(&error.to_string());
                return false;
            }
        };
        let pace = TickPace::new(config.batch.scheduled_delay_ms);
        host::set_tick_period_ms(pace.idle_ms);
        let mut ids = IdGenerator::from_entropy();
        let jitter_seed = ids.span_id().0;
        let plugin = Plugin::new(config);
        let settings = Self::exporter_settings(&plugin);
        super::metrics::ids();
        if self.shared.is_none() {
            LIVE_ROOTS.with(|live| live.set(live.get() + 1));
        }
        self.shared = Some(Rc::new(Shared {
            plugin,
            exporter: RefCell::new(Exporter::new(settings, u64::from_le_bytes(jitter_seed))),
            ids: RefCell::new(ids),
            stats: StatsPublisher::new(),
            pace,
            scratch: Cell::new((Vec::with_capacity(24), String::with_capacity(64))),
            ended: RefCell::new(Vec::new()),
        }));
        true
    }

    pub fn on_tick(&mut self) {
        if let Some(shared) = &self.shared {
            record_ended(shared);
        }
        super::metrics::flush_pending();
        self.expire_overdue();
        self.flush();
    }

    /// A stream of this plugin; none before a configuration was accepted, so an unconfigured
    /// plugin lets traffic through untouched.
    pub fn new_stream(&self) -> Option<SidetraceStream> {
        Some(SidetraceStream::new(self.shared.clone()?))
    }
}

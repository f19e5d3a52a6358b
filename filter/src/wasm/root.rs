//! The root context: configuration, the per-plugin exporter, its tick and its gRPC callouts.

use super::host;
use super::metrics::StatsPublisher;
use super::plugin::Plugin;
use super::stream::SidetraceStream;
use crate::config::Config;
use crate::export::{ExportSettings, Exporter, Outcome, RetryPolicy};
use crate::ids::IdGenerator;
use crate::otlp::{decode_export_response, grpc_service_target, retry_delay_from_status_details};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, MapType};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

const SERVICE: &str = "opentelemetry.proto.collector.trace.v1.TraceService";
const METHOD: &str = "Export";
/// Ticks run more often than `scheduledDelayMs` so a full batch leaves within this long.
const MAX_TICK_MS: u64 = 50;
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
    pub exporter: RefCell<Exporter>,
    pub ids: RefCell<IdGenerator>,
    pub stats: StatsPublisher,
}

impl Shared {
    pub fn publish_stats(&self) {
        self.stats.publish(self.exporter.borrow().stats());
    }
}

/// One export on the wire: a gRPC stream carrying a single request message.
struct InFlight {
    batch_id: u64,
    deadline_ms: u64,
    rejected_spans: u64,
    retry_delay_ms: Option<u64>,
}

pub struct SidetraceRoot {
    shared: Option<Rc<Shared>>,
    /// gRPC stream token → the export it carries.
    in_flight: HashMap<u32, InFlight>,
    /// Set once `on_done` asked us to finish: no new batches wait for the schedule.
    draining: bool,
}

impl SidetraceRoot {
    pub fn new() -> Self {
        SidetraceRoot {
            shared: None,
            in_flight: HashMap::new(),
            draining: false,
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
        let metadata: Vec<(&str, &[u8])> = collector
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_bytes()))
            .collect();
        let target_bytes = grpc_service_target(&collector.cluster, collector.authority.as_deref());
        let target = match std::str::from_utf8(&target_bytes) {
            Ok(target) => target,
            Err(_) => {
                host::log_warn("sidetrace: `collector.authority` too long to pass to Envoy; using the cluster's own");
                collector.cluster.as_str()
            }
        };
        loop {
            let encoder = &shared.plugin.encoder;
            let dispatch = shared
                .exporter
                .borrow_mut()
                .poll(now, &|spans| encoder.encode_request(spans));
            let Some(dispatch) = dispatch else { break };
            // A stream, not a unary callout: Envoy hands a stream's trailing metadata to the
            // module (the RetryInfo of RESOURCE_EXHAUSTED lives there); a unary callout gets none.
            let sent = hostcalls::open_grpc_stream(target, SERVICE, METHOD, metadata.clone())
                .and_then(|token| {
                    hostcalls::send_grpc_stream_message(token, Some(&dispatch.payload), true)
                        .map(|_| token)
                        .inspect_err(|_| {
                            let _ = hostcalls::cancel_grpc_stream(token);
                        })
                });
            match sent {
                Ok(token) => {
                    self.in_flight.insert(
                        token,
                        InFlight {
                            batch_id: dispatch.batch_id,
                            deadline_ms: now + collector.timeout_ms,
                            rejected_spans: 0,
                            retry_delay_ms: None,
                        },
                    );
                }
                Err(status) => {
                    host::log_warn(&format!(
                        "sidetrace: export to cluster `{}` could not start ({status:?}); will retry",
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
        if self.draining && self.in_flight.is_empty() {
            self.done();
        }
    }

    /// Streams have no deadline of their own: exports past `collector.timeoutMs` are cancelled
    /// and count as DEADLINE_EXCEEDED.
    fn expire_overdue(&mut self) {
        let now = Self::now_ms();
        let overdue: Vec<u32> = self
            .in_flight
            .iter()
            .filter(|(_, e)| now >= e.deadline_ms)
            .map(|(token, _)| *token)
            .collect();
        for token in overdue {
            let _ = hostcalls::cancel_grpc_stream(token);
            if let Some(export) = self.in_flight.remove(&token) {
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

    fn exporter_settings(config: &Config) -> ExportSettings {
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
        }
    }
}

impl Context for SidetraceRoot {
    fn on_grpc_stream_message(&mut self, token_id: u32, message_size: usize) {
        let body = hostcalls::get_buffer(BufferType::GrpcReceiveBuffer, 0, message_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        let Some(export) = self.in_flight.get_mut(&token_id) else {
            return;
        };
        match decode_export_response(&body) {
            Ok(rejected) => export.rejected_spans = rejected,
            Err(reason) => {
                host::log_warn(&format!("sidetrace: unreadable export response: {reason}"))
            }
        }
    }

    fn on_grpc_stream_trailing_metadata(&mut self, token_id: u32, _num_elements: u32) {
        let details = hostcalls::get_map_value_bytes(
            MapType::GrpcReceiveTrailingMetadata,
            "grpc-status-details-bin",
        )
        .ok()
        .flatten();
        if let Some(export) = self.in_flight.get_mut(&token_id) {
            export.retry_delay_ms = details
                .as_deref()
                .and_then(retry_delay_from_status_details)
                .map(|delay| delay.as_millis() as u64);
        }
    }

    fn on_grpc_stream_close(&mut self, token_id: u32, status_code: u32) {
        let Some(export) = self.in_flight.remove(&token_id) else {
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
    }

    fn on_done(&mut self) -> bool {
        super::metrics::flush_pending();
        let Some(shared) = self.shared.clone() else {
            return true;
        };
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
        false
    }
}

impl RootContext for SidetraceRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let config = match Config::from_json(&bytes) {
            Ok(config) => config,
            Err(error) => {
                host::log_error(&error.to_string());
                return false;
            }
        };
        let settings = Self::exporter_settings(&config);
        let tick = config.batch.scheduled_delay_ms.clamp(1, MAX_TICK_MS);
        let mut ids = IdGenerator::from_entropy();
        let jitter_seed = ids.span_id().0;
        let plugin = Plugin::new(config);
        super::metrics::ids();
        if self.shared.is_none() {
            LIVE_ROOTS.with(|live| live.set(live.get() + 1));
        }
        self.shared = Some(Rc::new(Shared {
            plugin,
            exporter: RefCell::new(Exporter::new(settings, u64::from_le_bytes(jitter_seed))),
            ids: RefCell::new(ids),
            stats: StatsPublisher::new(),
        }));
        self.set_tick_period(Duration::from_millis(tick));
        true
    }

    fn on_tick(&mut self) {
        super::metrics::flush_pending();
        self.expire_overdue();
        self.flush();
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let shared = self.shared.clone()?;
        Some(Box::new(SidetraceStream::new(shared)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

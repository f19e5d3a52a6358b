//! The root context: reads the configuration once, owns the exporter, ticks, sends batches
//! over gRPC and feeds the answers back to the exporter.

use super::host::{self, FactsExpressions};
use super::http::SidetraceHttp;
use super::metrics::Metrics;
use crate::config::Config;
use crate::export::{
    ExportSettings, Exporter, FailureCause, FailureLog, Outcome, RetryPolicy, DEADLINE_EXCEEDED,
};
use crate::ids::IdGenerator;
use crate::otlp::{decode_export_response, grpc_service_target, retry_delay_from_status_details};
use crate::plugin::Plugin;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, Status};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

const SERVICE: &str = "opentelemetry.proto.collector.trace.v1.TraceService";
const METHOD: &str = "Export";
/// The root ticks this often, or every `scheduledDelayMs` if that is shorter: a full batch
/// leaves within a tick, and requests never send anything themselves. Everything that fills
/// between two ticks leaves in the same burst of work on the worker, and the requests waiting
/// behind that burst are the latency's tail: a short tick keeps each burst near one batch.
const MAX_TICK_MS: u64 = 20;
const GRPC_OK: u32 = 0;

thread_local! {
    /// Configured root contexts in this VM (one VM per worker thread).
    static LIVE_ROOTS: Cell<u32> = const { Cell::new(0) };
}

/// What a root context shares with its streams.
pub struct Shared {
    pub plugin: Plugin,
    pub facts: FactsExpressions,
    pub exporter: RefCell<Exporter>,
    pub ids: RefCell<IdGenerator>,
    pub metrics: RefCell<Metrics>,
    /// Where each span's name is written before it is encoded, kept from span to span.
    pub span_name: RefCell<String>,
}

/// One export on the wire: a gRPC stream carrying a single request message. A stream, not a
/// unary call: Envoy hands a stream's trailing metadata to the module, where the RetryInfo of
/// RESOURCE_EXHAUSTED lives.
struct InFlight {
    token: u32,
    batch_id: u64,
    deadline_ms: u64,
    rejected_spans: u64,
    retry_delay_ms: Option<u64>,
}

#[derive(Default)]
pub struct SidetraceRoot {
    shared: Option<Rc<Shared>>,
    /// Where exports go: the cluster's name, or a serialized `GrpcService` naming an authority.
    target: String,
    in_flight: Vec<InFlight>,
    failures: FailureLog,
    /// Set once the host asked this plugin to finish.
    draining: bool,
}

fn now_ms() -> u64 {
    host::now_unix_nanos() / 1_000_000
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

/// The export target as the host takes it, a string: a serialized `GrpcService` is text only
/// while its lengths fit one byte each.
fn export_target(config: &Config) -> Result<String, String> {
    let collector = &config.collector;
    String::from_utf8(grpc_service_target(
        &collector.cluster,
        collector.authority.as_deref(),
    ))
    .map_err(|_| {
        "sidetrace config: `collector.authority`: together with `collector.cluster` it must \
         stay under 124 bytes"
            .to_string()
    })
}

impl SidetraceRoot {
    fn shared(&self) -> Option<Rc<Shared>> {
        self.shared.clone()
    }

    fn publish(&self, shared: &Shared) {
        let stats = shared.exporter.borrow().stats();
        shared.metrics.borrow_mut().publish(stats);
    }

    /// Logs an export failure, once a minute for each cause.
    fn report(&mut self, cause: FailureCause, detail: Option<&str>) {
        let Some(shared) = &self.shared else { return };
        if self.failures.should_log(cause, now_ms()) {
            log::warn!(
                "{}",
                cause.describe(&shared.plugin.config.collector.cluster, detail)
            );
        }
    }

    /// Sends every batch the exporter is ready to send.
    fn flush(&mut self, now: u64) {
        let Some(shared) = self.shared() else { return };
        let collector = &shared.plugin.config.collector;
        let metadata: Vec<(&str, &[u8])> = collector
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes()))
            .collect();
        loop {
            let encoder = &shared.plugin.encoder;
            let dispatch = shared
                .exporter
                .borrow_mut()
                .poll(now, &|buffer| encoder.finish(buffer));
            let Some(dispatch) = dispatch else { break };
            let opened =
                hostcalls::open_grpc_stream(&self.target, SERVICE, METHOD, metadata.clone());
            let sent = opened.and_then(|token| {
                hostcalls::send_grpc_stream_message(token, Some(&dispatch.payload), true)
                    .map(|()| token)
                    .inspect_err(|_| {
                        let _ = hostcalls::cancel_grpc_stream(token);
                    })
            });
            match sent {
                Ok(token) => self.in_flight.push(InFlight {
                    token,
                    batch_id: dispatch.batch_id,
                    deadline_ms: now + collector.timeout_ms,
                    rejected_spans: 0,
                    retry_delay_ms: None,
                }),
                Err(status) => {
                    let cause = match status {
                        Status::ParseFailure => FailureCause::ClusterMissing,
                        _ => FailureCause::StreamNotOpened,
                    };
                    self.report(cause, None);
                    shared
                        .exporter
                        .borrow_mut()
                        .dispatch_failed(dispatch.batch_id, now);
                    break;
                }
            }
        }
        self.publish(&shared);
    }

    fn complete(&mut self, batch_id: u64, outcome: Outcome) {
        let Some(shared) = self.shared() else { return };
        let now = now_ms();
        shared
            .exporter
            .borrow_mut()
            .complete(batch_id, outcome, now);
        self.flush(now);
        if self.draining && self.in_flight.is_empty() {
            shared.exporter.borrow_mut().shutdown();
            self.publish(&shared);
            let _ = hostcalls::done();
        }
    }

    /// Exports past `collector.timeoutMs` are cancelled and count as DEADLINE_EXCEEDED.
    fn expire_overdue(&mut self, now: u64) {
        let overdue: Vec<u32> = self
            .in_flight
            .iter()
            .filter(|export| now >= export.deadline_ms)
            .map(|export| export.token)
            .collect();
        for token in overdue {
            let _ = hostcalls::cancel_grpc_stream(token);
            if let Some(export) = self.take_in_flight(token) {
                self.report(FailureCause::DeadlineExceeded, None);
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
}

impl Context for SidetraceRoot {
    fn on_grpc_stream_message(&mut self, token_id: u32, message_size: usize) {
        let message = self
            .get_grpc_stream_message(0, message_size)
            .unwrap_or_default();
        let Some(export) = self.in_flight_mut(token_id) else {
            return;
        };
        match decode_export_response(&message) {
            Ok(rejected) => export.rejected_spans = rejected,
            Err(reason) => log::warn!("sidetrace: unreadable export response: {reason}"),
        }
    }

    fn on_grpc_stream_trailing_metadata(&mut self, token_id: u32, _num_elements: u32) {
        let details = self.get_grpc_stream_trailing_metadata_value("grpc-status-details-bin");
        if let Some(export) = self.in_flight_mut(token_id) {
            export.retry_delay_ms = details
                .as_deref()
                .and_then(retry_delay_from_status_details)
                .map(|delay| delay.as_millis() as u64);
        }
    }

    fn on_grpc_stream_close(&mut self, token_id: u32, status_code: u32) {
        let Some(export) = self.take_in_flight(token_id) else {
            return;
        };
        let outcome = if status_code == GRPC_OK {
            Outcome::Success {
                rejected_spans: export.rejected_spans,
            }
        } else {
            let (_, message) = self.get_grpc_status();
            self.report(
                FailureCause::of_grpc_status(status_code),
                message.as_deref(),
            );
            Outcome::Failure {
                grpc_status: status_code,
                retry_delay_ms: export.retry_delay_ms,
            }
        };
        self.complete(export.batch_id, outcome);
    }

    /// `false` while exports are still on the wire; `done` follows when they settle.
    fn on_done(&mut self) -> bool {
        let Some(shared) = self.shared() else {
            return true;
        };
        self.draining = true;
        let last_in_vm = LIVE_ROOTS.with(|live| {
            let left = live.get().saturating_sub(1);
            live.set(left);
            left == 0
        });
        let held = shared.exporter.borrow().stats().queued;
        if last_in_vm {
            // The VM goes with its last plugin, and no export's answer would outlive it: what
            // is still held cannot be delivered, so it is counted as dropped now.
            shared.exporter.borrow_mut().shutdown();
            self.publish(&shared);
            if held > 0 {
                log::warn!(
                    "sidetrace: VM shutting down; {held} spans not sent, counted as dropped"
                );
            }
            return true;
        }
        if held > 0 {
            log::info!("sidetrace: plugin retiring; sending the {held} spans it holds");
        }
        // A retiring plugin (a configuration push) sends what it holds once, now; whatever
        // cannot leave is counted as dropped rather than forgotten.
        shared.exporter.borrow_mut().begin_drain();
        self.flush(now_ms());
        if self.in_flight.is_empty() {
            shared.exporter.borrow_mut().shutdown();
            self.publish(&shared);
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
                log::error!("{error}");
                return false;
            }
        };
        let target = match export_target(&config) {
            Ok(target) => target,
            Err(error) => {
                log::error!("{error}");
                return false;
            }
        };
        let tick_ms = config.batch.scheduled_delay_ms.clamp(1, MAX_TICK_MS);
        self.set_tick_period(Duration::from_millis(tick_ms));
        let plugin = Plugin::new(config, &host::node_info(), &|name| std::env::var(name).ok());
        log::info!(
            "sidetrace {}: configured; spans export to cluster `{}`",
            env!("CARGO_PKG_VERSION"),
            plugin.config.collector.cluster
        );
        let mut ids = IdGenerator::from_entropy();
        let jitter_seed = u64::from_le_bytes(ids.span_id().0);
        if self.shared.is_none() {
            LIVE_ROOTS.with(|live| live.set(live.get() + 1));
        }
        self.target = target;
        self.shared = Some(Rc::new(Shared {
            exporter: RefCell::new(Exporter::new(exporter_settings(&plugin), jitter_seed)),
            facts: FactsExpressions::compile(plugin.config.record_body_sizes),
            ids: RefCell::new(ids),
            metrics: RefCell::new(Metrics::define()),
            span_name: RefCell::new(String::new()),
            plugin,
        }));
        true
    }

    fn on_tick(&mut self) {
        let now = now_ms();
        self.expire_overdue(now);
        self.flush(now);
    }

    /// A plugin that has no accepted configuration lets traffic through untouched.
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(SidetraceHttp::new(self.shared())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

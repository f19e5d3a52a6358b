//! The filter's counters in Envoy's stats (Envoy prefixes them `wasmcustom.`). Per-request
//! counts gather in the plugin and reach Envoy once per tick; the exporter's counts are pushed
//! as deltas of its own statistics, so Envoy's numbers never drift from the exporter's.

use crate::export::ExportStats;
use crate::plugin::StartCounts;
use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

/// The metric ids of one VM's counters, defined when a plugin is configured (Envoy hands the
/// same id back for a name defined again).
pub struct Metrics {
    spans_started: Option<u32>,
    spans_sampled: Option<u32>,
    spans_exported: Option<u32>,
    spans_dropped: Option<u32>,
    spans_queued: Option<u32>,
    export_requests: Option<u32>,
    export_failures: Option<u32>,
    invalid_context: Option<u32>,
    outbound_without_context: Option<u32>,
    facts_read_one_by_one: Option<u32>,
    spans_recorded_unsampled: Option<u32>,
    linear_memory_bytes: Option<u32>,
    published_memory_bytes: u64,
    /// What is counted but not yet pushed.
    pending: StartCounts,
    pending_one_by_one: i64,
    pending_recorded_unsampled: i64,
    published: ExportStats,
}

fn define(metric_type: MetricType, name: &str) -> Option<u32> {
    hostcalls::define_metric(metric_type, name).ok()
}

fn add(id: Option<u32>, delta: i64) {
    if let (Some(id), true) = (id, delta != 0) {
        let _ = hostcalls::increment_metric(id, delta);
    }
}

impl Metrics {
    pub fn define() -> Metrics {
        use MetricType::{Counter, Gauge};
        Metrics {
            spans_started: define(Counter, "sidetrace.spans_started"),
            spans_sampled: define(Counter, "sidetrace.spans_sampled"),
            spans_exported: define(Counter, "sidetrace.spans_exported"),
            spans_dropped: define(Counter, "sidetrace.spans_dropped"),
            spans_queued: define(Gauge, "sidetrace.spans_queued"),
            export_requests: define(Counter, "sidetrace.export_requests"),
            export_failures: define(Counter, "sidetrace.export_failures"),
            invalid_context: define(Counter, "sidetrace.invalid_context"),
            outbound_without_context: define(Counter, "sidetrace.outbound_without_context"),
            // Spans whose facts took one attribute read each: the host evaluates no
            // expressions, or the stream lacked one of the facts (no route, no response).
            facts_read_one_by_one: define(Counter, "sidetrace.facts_read_one_by_one"),
            // Spans of unsampled requests recorded because they failed or were slow; they are
            // counted in `spans_sampled` too, as every span handed to the exporter is.
            spans_recorded_unsampled: define(Counter, "sidetrace.spans_recorded_unsampled"),
            // The VM's, shared by its plugins: each sets it whole rather than adding to it.
            linear_memory_bytes: define(Gauge, "sidetrace.linear_memory_bytes"),
            published_memory_bytes: 0,
            pending: StartCounts::default(),
            pending_one_by_one: 0,
            pending_recorded_unsampled: 0,
            published: ExportStats::default(),
        }
    }

    pub fn count_start(&mut self, counts: StartCounts) {
        self.pending.spans_started += counts.spans_started;
        self.pending.invalid_context += counts.invalid_context;
        self.pending.outbound_without_context += counts.outbound_without_context;
    }

    pub fn count_facts_read_one_by_one(&mut self) {
        self.pending_one_by_one += 1;
    }

    pub fn count_recorded_unsampled(&mut self) {
        self.pending_recorded_unsampled += 1;
    }

    /// Pushes the per-request counts gathered since the last push, what changed in the
    /// exporter's statistics, and the VM's memory.
    pub fn publish(&mut self, now: ExportStats) {
        let memory_bytes = linear_memory_bytes();
        if let (Some(id), true) = (
            self.linear_memory_bytes,
            memory_bytes != self.published_memory_bytes,
        ) {
            let _ = hostcalls::record_metric(id, memory_bytes);
            self.published_memory_bytes = memory_bytes;
        }
        let pending = std::mem::take(&mut self.pending);
        add(self.spans_started, pending.spans_started);
        add(self.invalid_context, pending.invalid_context);
        add(
            self.outbound_without_context,
            pending.outbound_without_context,
        );
        add(
            self.facts_read_one_by_one,
            std::mem::take(&mut self.pending_one_by_one),
        );
        add(
            self.spans_recorded_unsampled,
            std::mem::take(&mut self.pending_recorded_unsampled),
        );
        let before = std::mem::replace(&mut self.published, now);
        let delta = |after: u64, before: u64| after as i64 - before as i64;
        add(self.spans_sampled, delta(now.sampled, before.sampled));
        add(self.spans_exported, delta(now.exported, before.exported));
        add(self.spans_dropped, delta(now.dropped, before.dropped));
        add(self.spans_queued, delta(now.queued, before.queued));
        add(
            self.export_requests,
            delta(now.export_requests, before.export_requests),
        );
        add(
            self.export_failures,
            delta(now.export_failures, before.export_failures),
        );
    }
}

/// The VM's linear memory: the module's own share of Envoy's memory, where V8's compiled code
/// and its heap are not. A wasm memory never shrinks, so this is also its high-water mark.
fn linear_memory_bytes() -> u64 {
    const WASM_PAGE_BYTES: u64 = 65_536;
    core::arch::wasm32::memory_size::<0>() as u64 * WASM_PAGE_BYTES
}

//! The filter's counters, visible in Envoy's /stats (Envoy prefixes custom metrics with
//! `wasmcustom.`). Defined once per VM; exporter counts are pushed as deltas of its own exact
//! statistics, so the host's numbers can never drift from the exporter's.

use super::abi::{METRIC_COUNTER, METRIC_GAUGE};
use super::host;
use crate::export::ExportStats;
use std::cell::{Cell, RefCell};

pub const SPANS_STARTED: &str = "sidetrace.spans_started";
pub const SPANS_SAMPLED: &str = "sidetrace.spans_sampled";
pub const SPANS_EXPORTED: &str = "sidetrace.spans_exported";
pub const SPANS_DROPPED: &str = "sidetrace.spans_dropped";
pub const SPANS_QUEUED: &str = "sidetrace.spans_queued";
pub const EXPORT_REQUESTS: &str = "sidetrace.export_requests";
pub const EXPORT_FAILURES: &str = "sidetrace.export_failures";
pub const INVALID_CONTEXT: &str = "sidetrace.invalid_context";
pub const OUTBOUND_WITHOUT_CONTEXT: &str = "sidetrace.outbound_without_context";
/// Spans whose facts took one attribute read each: the host evaluates no expressions, or the
/// stream lacked one of them (no route matched, no response).
pub const FACTS_READ_ONE_BY_ONE: &str = "sidetrace.facts_read_one_by_one";
/// Spans that could have taken their facts from the route's `factsHeader` and found none that
/// parsed: a route that does not add it, or adds it in another format.
pub const FACTS_HEADER_UNREAD: &str = "sidetrace.facts_header_unread";

#[derive(Clone, Copy)]
pub struct MetricIds {
    pub spans_started: u32,
    pub spans_sampled: u32,
    pub spans_exported: u32,
    pub spans_dropped: u32,
    pub spans_queued: u32,
    pub export_requests: u32,
    pub export_failures: u32,
    pub invalid_context: u32,
    pub outbound_without_context: u32,
    pub facts_read_one_by_one: u32,
    pub facts_header_unread: u32,
}

thread_local! {
    static IDS: Cell<Option<MetricIds>> = const { Cell::new(None) };
}

fn define(kind: u32, name: &str) -> u32 {
    host::define_metric(kind, name).unwrap_or(u32::MAX)
}

/// The VM's metric ids, defined on first use.
pub fn ids() -> MetricIds {
    IDS.with(|cell| {
        if let Some(ids) = cell.get() {
            return ids;
        }
        let ids = MetricIds {
            spans_started: define(METRIC_COUNTER, SPANS_STARTED),
            spans_sampled: define(METRIC_COUNTER, SPANS_SAMPLED),
            spans_exported: define(METRIC_COUNTER, SPANS_EXPORTED),
            spans_dropped: define(METRIC_COUNTER, SPANS_DROPPED),
            spans_queued: define(METRIC_GAUGE, SPANS_QUEUED),
            export_requests: define(METRIC_COUNTER, EXPORT_REQUESTS),
            export_failures: define(METRIC_COUNTER, EXPORT_FAILURES),
            invalid_context: define(METRIC_COUNTER, INVALID_CONTEXT),
            outbound_without_context: define(METRIC_COUNTER, OUTBOUND_WITHOUT_CONTEXT),
            facts_read_one_by_one: define(METRIC_COUNTER, FACTS_READ_ONE_BY_ONE),
            facts_header_unread: define(METRIC_COUNTER, FACTS_HEADER_UNREAD),
        };
        cell.set(Some(ids));
        ids
    })
}

/// Per-request counts wait here and reach the host once per tick: a host call per request per
/// counter is the most expensive way to count.
#[derive(Clone, Copy, Default)]
pub struct PendingCounts {
    pub spans_started: i64,
    pub invalid_context: i64,
    pub outbound_without_context: i64,
    pub facts_read_one_by_one: i64,
    pub facts_header_unread: i64,
}

thread_local! {
    static PENDING: Cell<PendingCounts> = const {
        Cell::new(PendingCounts {
            spans_started: 0,
            invalid_context: 0,
            outbound_without_context: 0,
            facts_read_one_by_one: 0,
            facts_header_unread: 0,
        })
    };
}

pub fn count(update: impl FnOnce(&mut PendingCounts)) {
    PENDING.with(|cell| {
        let mut pending = cell.get();
        update(&mut pending);
        cell.set(pending);
    });
}

/// Sends the counts gathered since the last flush.
pub fn flush_pending() {
    let pending = PENDING.with(|cell| cell.replace(PendingCounts::default()));
    let ids = ids();
    add(ids.spans_started, pending.spans_started);
    add(ids.invalid_context, pending.invalid_context);
    add(
        ids.outbound_without_context,
        pending.outbound_without_context,
    );
    add(ids.facts_read_one_by_one, pending.facts_read_one_by_one);
    add(ids.facts_header_unread, pending.facts_header_unread);
}

pub fn add(id: u32, delta: i64) {
    if delta != 0 && id != u32::MAX {
        host::increment_metric(id, delta);
    }
}

/// Pushes what changed in an exporter's statistics since the last push.
pub struct StatsPublisher {
    published: RefCell<ExportStats>,
}

impl StatsPublisher {
    pub fn new() -> Self {
        StatsPublisher {
            published: RefCell::new(ExportStats::default()),
        }
    }

    pub fn publish(&self, now: ExportStats) {
        let mut before = self.published.borrow_mut();
        if *before == now {
            return;
        }
        let ids = ids();
        let delta = |after: u64, before: u64| after as i64 - before as i64;
        add(ids.spans_sampled, delta(now.sampled, before.sampled));
        add(ids.spans_exported, delta(now.exported, before.exported));
        add(ids.spans_dropped, delta(now.dropped, before.dropped));
        add(ids.spans_queued, delta(now.queued, before.queued));
        add(
            ids.export_requests,
            delta(now.export_requests, before.export_requests),
        );
        add(
            ids.export_failures,
            delta(now.export_failures, before.export_failures),
        );
        *before = now;
    }
}

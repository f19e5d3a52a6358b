//! One HTTP stream: the tracing decision on the request's headers, and the span handed to the
//! exporter once the stream is over. The decisions are the tracer's and the plugin's; this only
//! carries facts between them and Envoy.

use super::host::{self, RequestHeaders};
use super::root::Shared;
use crate::otlp::append_span;
use crate::plugin::StartCounts;
use crate::span::facts::{FactsQuery, SpanFacts};
use crate::span::http::{flags_worth_reading, RequestFields};
use crate::span::record::{encode_recorded_span, RecordedBecause, Recording, StreamEnd};
use crate::span::SpanKind;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;

pub struct SidetraceHttp {
    /// `None` while the plugin has no accepted configuration: the stream is left alone.
    shared: Option<Rc<Shared>>,
    /// Present only while a sampled span is being recorded.
    recording: Option<Box<Recording>>,
}

impl SidetraceHttp {
    pub fn new(shared: Option<Rc<Shared>>) -> Self {
        SidetraceHttp {
            shared,
            recording: None,
        }
    }
}

impl Context for SidetraceHttp {}

impl HttpContext for SidetraceHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(shared) = self.shared.clone() else {
            return Action::Continue;
        };
        let plugin = &shared.plugin;
        let mut request = RequestHeaders::read();
        let start = plugin
            .tracer
            .start(&mut request, &mut shared.ids.borrow_mut(), || {
                (host::now_unix_nanos() / 1_000_000_000) as u32
            });
        let excluded = plugin.is_excluded(&request);
        let kind = plugin.kind.or_else(|| {
            plugin
                .needs_kind_at_start()
                .then(host::listener_kind)
                .flatten()
        });
        let (recorded, counts) = plugin.admit(&start, kind, excluded, request.unreadable());
        shared.metrics.borrow_mut().count_start(counts);

        let context = &start.context;
        if plugin.config.publish_filter_state {
            host::publish_filter_state(
                &context.trace_id.to_hex(),
                &context.span_id.to_hex(),
                context.is_sampled(),
            );
        }
        // An unsampled request is kept too while `recordUnsampled` may record it at its end.
        if recorded && (start.is_sampled() || plugin.config.record_unsampled.is_on()) {
            let sampled = start.is_sampled();
            self.recording = Some(Box::new(Recording {
                kind,
                start_unix_nanos: host::now_unix_nanos(),
                request: request.into_block(),
                baggage: start.incoming.baggage,
                context: start.context,
                parent: start.parent,
                link: start.link,
                sampled,
            }));
        }
        Action::Continue
    }

    /// The stream is over and Envoy holds every fact of it: the span, if recorded, is
    /// finished and queued.
    fn on_log(&mut self) {
        let (Some(shared), Some(recording)) = (self.shared.clone(), self.recording.take()) else {
            return;
        };
        let end_unix_nanos = host::now_unix_nanos();
        // The kind as far as it is known; an unsampled request reads it for its rule, and what
        // was read then is not asked of the host again.
        let mut known_kind = recording.kind;
        let recorded_because = if recording.sampled {
            None
        } else {
            known_kind = known_kind.or_else(host::listener_kind);
            let duration = end_unix_nanos.saturating_sub(recording.start_unix_nanos);
            let rule = &shared.plugin.config.record_unsampled;
            let kind = known_kind.unwrap_or(SpanKind::Server);
            let Some(because) = RecordedBecause::of(rule, kind, host::response_status(), duration)
            else {
                return;
            };
            shared.metrics.borrow_mut().count_recorded_unsampled();
            Some(because)
        };
        let fields = RequestFields::read(&recording.request);
        let query = FactsQuery {
            kind: known_kind,
            grpc: fields.is_grpc(),
            body_sizes: shared.plugin.config.record_body_sizes,
        };
        let answer = shared.facts.evaluate(&query);
        let decoded = answer
            .as_deref()
            .and_then(|answer| SpanFacts::decode(&query, answer));
        let (kind, facts) = match decoded {
            Some(facts) => (known_kind.or(facts.kind).unwrap_or(SpanKind::Server), facts),
            None => {
                shared.metrics.borrow_mut().count_facts_read_one_by_one();
                let kind = known_kind
                    .or_else(host::listener_kind)
                    .unwrap_or(SpanKind::Server);
                (kind, host::facts_one_by_one(kind, &query))
            }
        };
        let without_context = recording.parent.is_none() && recording.link.is_none();
        if recording.kind.is_none() && without_context && kind == SpanKind::Client {
            // Counted here when the kind was left to the end.
            shared.metrics.borrow_mut().count_start(StartCounts {
                outbound_without_context: 1,
                ..StartCounts::default()
            });
        }
        let response_flags = if flags_worth_reading(facts.status_code) {
            host::response_flags()
        } else {
            String::new()
        };
        let end = StreamEnd {
            end_unix_nanos,
            kind,
            facts,
            response_flags,
            recorded_because,
        };
        shared.exporter.borrow_mut().enqueue(|batch| {
            append_span(batch, |out| {
                encode_recorded_span(
                    &shared.plugin.span,
                    &recording,
                    fields,
                    &end,
                    &mut shared.span_name.borrow_mut(),
                    out,
                )
            })
        });
    }
}

use super::*;

const FAIL: Outcome = Outcome::Failure {
    grpc_status: retry::UNAVAILABLE,
    retry_delay_ms: None,
};
const OK: Outcome = Outcome::Success { rejected_spans: 0 };

fn settings() -> ExportSettings {
    ExportSettings {
        max_queue_size: 10,
        max_batch_size: 4,
        scheduled_delay_ms: 1000,
        max_in_flight: 2,
        retry: RetryPolicy {
            initial_backoff_ms: 100,
            max_backoff_ms: 400,
            max_attempts: 3,
        },
        batch_header_room: 0,
    }
}

/// No header: a payload is its spans' bytes one after another, so tests can see which spans a
/// batch holds.
fn no_header(_: &mut [u8]) -> usize {
    0
}

/// A span the queue holds as `bytes`.
fn span(bytes: Vec<u8>) -> impl FnOnce(&mut Vec<u8>) {
    move |out| out.extend_from_slice(&bytes)
}

fn fill(exporter: &mut Exporter, n: u8) {
    for i in 0..n {
        exporter.enqueue(span(vec![i]));
    }
}

fn assert_invariant(exporter: &Exporter) {
    let s = exporter.stats();
    assert_eq!(s.sampled, s.exported + s.dropped + s.queued, "{s:?}");
}

#[test]
fn flushes_a_full_batch_at_once_and_a_partial_one_after_the_delay() {
    let mut exporter = Exporter::new(settings(), 1);
    fill(&mut exporter, 5);
    let first = exporter
        .poll(0, &no_header)
        .expect("full batch leaves at once");
    assert_eq!((first.spans, first.payload.to_vec()), (4, vec![0, 1, 2, 3]));
    assert_eq!(
        exporter.poll(999, &no_header),
        None,
        "one span waits for the schedule"
    );
    let second = exporter.poll(1000, &no_header).expect("scheduled flush");
    assert_eq!(exporter.poll(1000, &no_header), None);
    assert_eq!(*second.payload, vec![4]);
    exporter.complete(first.batch_id, OK, 1001);
    exporter.complete(
        second.batch_id,
        Outcome::Success { rejected_spans: 0 },
        1002,
    );
    let s = exporter.stats();
    assert_eq!(
        (
            s.sampled,
            s.exported,
            s.dropped,
            s.queued,
            s.export_requests
        ),
        (5, 5, 0, 0, 2)
    );
}

#[test]
fn the_first_spans_leave_at_the_first_poll() {
    let mut exporter = Exporter::new(settings(), 1);
    fill(&mut exporter, 1);
    assert_eq!(exporter.poll(5, &no_header).map(|d| d.spans), Some(1));
    fill(&mut exporter, 1);
    assert_eq!(
        exporter.poll(6, &no_header),
        None,
        "then the schedule applies"
    );
    assert_eq!(exporter.poll(1005, &no_header).map(|d| d.spans), Some(1));
}

#[test]
fn a_full_queue_drops_and_counts() {
    let mut exporter = Exporter::new(settings(), 1);
    fill(&mut exporter, 13);
    let s = exporter.stats();
    assert_eq!((s.sampled, s.dropped, s.queued), (13, 3, 10));
    assert_invariant(&exporter);
}

#[test]
fn in_flight_is_capped() {
    let mut exporter = Exporter::new(settings(), 1);
    fill(&mut exporter, 10);
    assert!(exporter.poll(0, &no_header).is_some());
    assert!(exporter.poll(0, &no_header).is_some());
    assert_eq!(exporter.poll(0, &no_header), None, "two in flight already");
}

#[test]
fn retries_with_backoff_then_succeeds_counting_once() {
    let mut exporter = Exporter::new(settings(), 7);
    fill(&mut exporter, 4);
    let first = exporter.poll(0, &no_header).unwrap();
    exporter.complete(first.batch_id, FAIL, 10);
    assert_eq!(exporter.poll(10, &no_header), None, "backing off");
    let retry = exporter
        .poll(10 + 100, &no_header)
        .expect("due after at most the first step");
    assert_eq!(
        retry.payload, first.payload,
        "the same payload, not re-encoded"
    );
    exporter.complete(retry.batch_id, OK, 200);
    let s = exporter.stats();
    assert_eq!(
        (
            s.exported,
            s.dropped,
            s.queued,
            s.export_requests,
            s.export_failures,
            s.retries
        ),
        (4, 0, 0, 2, 1, 1)
    );
}

#[test]
fn gives_up_after_max_attempts() {
    let mut exporter = Exporter::new(settings(), 3);
    fill(&mut exporter, 4);
    let mut now = 0;
    let mut batch = exporter.poll(now, &no_header).unwrap();
    for _ in 0..2 {
        exporter.complete(batch.batch_id, FAIL, now);
        now += 1000;
        batch = exporter.poll(now, &no_header).unwrap();
    }
    exporter.complete(batch.batch_id, FAIL, now);
    let s = exporter.stats();
    assert_eq!(
        (
            s.exported,
            s.dropped,
            s.queued,
            s.export_requests,
            s.export_failures
        ),
        (0, 4, 0, 3, 3)
    );
    assert_eq!(exporter.poll(now + 10_000, &no_header), None);
}

#[test]
fn codes_decide_retries() {
    let cases: &[(u32, Option<u64>, bool)] = &[
        (14, None, true),
        (4, None, true),
        (1, None, true),
        (10, None, true),
        (11, None, true),
        (15, None, true),
        (8, None, false),
        (8, Some(2000), true),
        (3, None, false),
        (7, None, false),
        (16, None, false),
        (12, None, false),
    ];
    for (code, delay, retried) in cases {
        let mut exporter = Exporter::new(settings(), 5);
        fill(&mut exporter, 4);
        let batch = exporter.poll(0, &no_header).unwrap();
        exporter.complete(
            batch.batch_id,
            Outcome::Failure {
                grpc_status: *code,
                retry_delay_ms: *delay,
            },
            0,
        );
        let s = exporter.stats();
        assert_eq!(s.queued == 4, *retried, "code {code}");
        assert_eq!(s.dropped == 4, !*retried, "code {code}");
    }
}

#[test]
fn retry_info_delay_is_honoured() {
    let mut exporter = Exporter::new(settings(), 5);
    fill(&mut exporter, 4);
    let batch = exporter.poll(0, &no_header).unwrap();
    exporter.complete(
        batch.batch_id,
        Outcome::Failure {
            grpc_status: 8,
            retry_delay_ms: Some(2500),
        },
        100,
    );
    assert_eq!(exporter.poll(2599, &no_header), None);
    assert!(exporter.poll(2600, &no_header).is_some());
}

#[test]
fn partial_success_drops_the_rejected_and_never_retries() {
    let mut exporter = Exporter::new(settings(), 5);
    fill(&mut exporter, 4);
    let batch = exporter.poll(0, &no_header).unwrap();
    exporter.complete(batch.batch_id, Outcome::Success { rejected_spans: 3 }, 5);
    let s = exporter.stats();
    assert_eq!(
        (s.exported, s.dropped, s.queued, s.export_failures),
        (1, 3, 0, 0)
    );
    assert_eq!(exporter.poll(100_000, &no_header), None);
    let mut exporter = Exporter::new(settings(), 5);
    fill(&mut exporter, 4);
    let batch = exporter.poll(0, &no_header).unwrap();
    exporter.complete(batch.batch_id, Outcome::Success { rejected_spans: 99 }, 5);
    assert_eq!(
        exporter.stats().dropped,
        4,
        "rejections beyond the batch are capped"
    );
}

#[test]
fn waiting_retries_hold_back_new_batches_so_memory_stays_bounded() {
    let mut exporter = Exporter::new(settings(), 5);
    fill(&mut exporter, 10);
    let a = exporter.poll(0, &no_header).unwrap();
    let b = exporter.poll(0, &no_header).unwrap();
    exporter.complete(a.batch_id, FAIL, 0);
    exporter.complete(b.batch_id, FAIL, 0);
    fill(&mut exporter, 10);
    assert_eq!(
        exporter.poll(1, &no_header),
        None,
        "two batches await retry"
    );
    let s = exporter.stats();
    assert!(s.queued <= 10 + 2 * 4, "{s:?}");
    assert_invariant(&exporter);
}

#[test]
fn draining_sends_everything_and_shutdown_counts_the_rest() {
    let mut exporter = Exporter::new(settings(), 5);
    fill(&mut exporter, 6);
    let a = exporter.poll(0, &no_header).unwrap();
    exporter.complete(a.batch_id, FAIL, 0);
    exporter.begin_drain();
    let retry = exporter.poll(0, &no_header).expect("retry leaves at once");
    let rest = exporter
        .poll(0, &no_header)
        .expect("partial batch leaves at once");
    assert_eq!(rest.spans, 2);
    exporter.complete(retry.batch_id, FAIL, 0);
    assert!(
        !exporter.enqueue(span(vec![9])),
        "no new spans while draining"
    );
    let s = exporter.shutdown();
    assert_eq!((s.sampled, s.exported, s.dropped, s.queued), (7, 0, 7, 0));
}

#[test]
fn dispatch_refusal_is_retried() {
    let mut exporter = Exporter::new(settings(), 5);
    fill(&mut exporter, 4);
    let batch = exporter.poll(0, &no_header).unwrap();
    exporter.dispatch_failed(batch.batch_id, 0);
    assert_eq!(exporter.stats().queued, 4);
    assert!(exporter.poll(1000, &no_header).is_some());
}

#[test]
fn unknown_batch_ids_are_ignored() {
    let mut exporter = Exporter::new(settings(), 5);
    exporter.complete(42, OK, 0);
    assert_eq!(exporter.stats(), ExportStats::default());
}

#[test]
fn random_sequences_keep_the_counts_exact() {
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for round in 0..200 {
        let mut exporter = Exporter::new(settings(), round);
        let mut now = 0u64;
        let mut in_flight: Vec<u64> = Vec::new();
        for _ in 0..400 {
            match next() % 6 {
                0 | 1 => {
                    exporter.enqueue(span(vec![1, 2, 3]));
                }
                2 => {
                    if let Some(d) = exporter.poll(now, &no_header) {
                        in_flight.push(d.batch_id);
                    }
                }
                3 if !in_flight.is_empty() => {
                    let id = in_flight.swap_remove((next() % in_flight.len() as u64) as usize);
                    let outcome = match next() % 4 {
                        0 => OK,
                        1 => Outcome::Success {
                            rejected_spans: next() % 6,
                        },
                        2 => Outcome::Failure {
                            grpc_status: (next() % 17) as u32,
                            retry_delay_ms: None,
                        },
                        _ => Outcome::Failure {
                            grpc_status: 8,
                            retry_delay_ms: Some(next() % 500),
                        },
                    };
                    exporter.complete(id, outcome, now);
                }
                4 if !in_flight.is_empty() => {
                    let id = in_flight.swap_remove(0);
                    exporter.dispatch_failed(id, now);
                }
                _ => now += next() % 700,
            }
            assert_invariant(&exporter);
            let s = exporter.stats();
            assert!(s.queued as usize <= 10 + 2 * 4, "bounded: {s:?}");
        }
        exporter.shutdown();
        let s = exporter.stats();
        assert_eq!(s.queued, 0);
        assert_eq!(s.sampled, s.exported + s.dropped);
    }
}

#[test]
fn spans_go_after_the_header_room() {
    let mut exporter = Exporter::new(
        ExportSettings {
            batch_header_room: 3,
            ..settings()
        },
        1,
    );
    // The header takes the room's last byte: the request starts there.
    let finish = |buffer: &mut [u8]| {
        buffer[2] = b'H';
        2
    };
    let mut payloads = Vec::new();
    for round in 0..4u8 {
        let spans = 4 - round % 2 * 3;
        for i in 0..spans {
            exporter.enqueue(span(vec![round, i]));
        }
        let batch = exporter.poll(u64::from(round) * 1000, &finish).unwrap();
        payloads.push(batch.payload.to_vec());
        exporter.complete(batch.batch_id, OK, u64::from(round) * 1000 + 1);
    }
    assert_eq!(
        payloads,
        [
            vec![b'H', 0, 0, 0, 1, 0, 2, 0, 3],
            vec![b'H', 1, 0],
            vec![b'H', 2, 0, 2, 1, 2, 2, 2, 3],
            vec![b'H', 3, 0],
        ]
    );
    assert_eq!(exporter.stats().exported, 10);
    assert_invariant(&exporter);
}

#[test]
fn a_dropped_span_is_never_encoded() {
    let mut exporter = Exporter::new(settings(), 1);
    fill(&mut exporter, 10);
    let mut encoded = false;
    assert!(!exporter.enqueue(|_| encoded = true), "the queue is full");
    assert!(!encoded);
    exporter.begin_drain();
    let batch = exporter.poll(0, &no_header).unwrap();
    exporter.complete(batch.batch_id, OK, 1);
    assert!(!exporter.enqueue(|_| encoded = true), "draining");
    assert!(!encoded);
    assert_eq!(exporter.stats().dropped, 2);
    assert_invariant(&exporter);
}

/// However many spans a batch may take, one leaves before its request reaches the 4 MiB a gRPC
/// server takes by default.
#[test]
fn a_batch_is_full_at_its_byte_bound_whatever_its_span_count() {
    let mut exporter = Exporter::new(
        ExportSettings {
            max_queue_size: 1000,
            max_batch_size: 1000,
            ..settings()
        },
        1,
    );
    let span_bytes = 100 * 1024;
    let per_batch = MAX_BATCH_BYTES.div_ceil(span_bytes);
    for _ in 0..per_batch - 1 {
        exporter.enqueue(span(vec![7; span_bytes]));
    }
    assert!(!exporter.has_full_batch());
    assert_eq!(
        exporter.poll(0, &no_header).map(|d| d.spans),
        Some(per_batch - 1),
        "the first spans leave at once"
    );
    for _ in 0..per_batch + 1 {
        exporter.enqueue(span(vec![7; span_bytes]));
    }
    assert!(exporter.has_full_batch());
    let full = exporter
        .poll(1, &no_header)
        .expect("a full batch leaves at once");
    assert_eq!(full.spans, per_batch);
    assert!(
        full.payload.len() < 4 * 1024 * 1024,
        "{}",
        full.payload.len()
    );
    assert!(
        !exporter.has_full_batch(),
        "one span waits in the next batch"
    );
    assert_eq!(exporter.poll(2, &no_header), None);
    assert_invariant(&exporter);
}

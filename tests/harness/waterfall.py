"""Traces as terminal waterfalls: an indented span tree with a duration bar per span."""

WIDTH = 40


def _children(spans):
    by_parent = {}
    for span in spans:
        by_parent.setdefault(span.parent_span_id, []).append(span)
    for group in by_parent.values():
        group.sort(key=lambda s: s.start_ns)
    return by_parent


def render(trace_spans: list, title: str = "") -> str:
    if not trace_spans:
        return "(no spans)"
    ids = {s.span_id for s in trace_spans}
    start = min(s.start_ns for s in trace_spans)
    end = max(s.end_ns for s in trace_spans)
    total = max(end - start, 1)
    by_parent = _children(trace_spans)
    roots = sorted((s for s in trace_spans if s.parent_span_id not in ids), key=lambda s: s.start_ns)
    lines = [f"trace {trace_spans[0].trace_id}  {title}".rstrip(), f"{'':60}|{'':<{WIDTH}}| {total / 1e6:.1f} ms"]

    def walk(span, depth):
        offset = int((span.start_ns - start) / total * WIDTH)
        length = max(1, int((span.end_ns - span.start_ns) / total * WIDTH))
        bar = " " * offset + "█" * min(length, WIDTH - offset)
        status = "" if span.status == "UNSET" else f" {span.status}"
        label = f"{'  ' * depth}{span.service} {span.kind:<6} {span.name}"
        lines.append(f"{label[:59]:<60}|{bar:<{WIDTH}}| {span.duration_ms:6.2f} ms{status}")
        for child in by_parent.get(span.span_id, []):
            walk(child, depth + 1)

    for root in roots:
        walk(root, 0)
    return "\n".join(lines)

import pytest

from harness.mesh import Mesh


@pytest.fixture(scope="module")
def mesh():
    """client → sidecar A inbound → app A → sidecar A outbound → sidecar B inbound → app B."""
    with Mesh({"svc-a": ["svc-b"], "svc-b": []}) as mesh:
        yield mesh


def pytest_terminal_summary(terminalreporter):
    """The fault suite's table: what each scenario sent, kept, dropped and received."""
    from e2e.test_faults import SUMMARY
    if not SUMMARY:
        return
    columns = ["scenario", "requests", "non_upstream_errors", "sampled", "exported", "dropped", "queued", "received",
               "export_failures", "max_rss_mb"]
    widths = {c: max(len(c), *(len(str(row[c])) for row in SUMMARY)) for c in columns}
    terminalreporter.write_sep("=", "fault scenarios (real Envoy, real gRPC receiver)")
    terminalreporter.write_line("  ".join(c.ljust(widths[c]) for c in columns))
    for row in SUMMARY:
        terminalreporter.write_line("  ".join(str(row[c]).ljust(widths[c]) for c in columns))

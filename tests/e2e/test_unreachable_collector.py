"""A collector the sidecar cannot reach, in real Envoy: a missing cluster, a refused connection
and a TLS-only endpoint each give one log line naming the cause and where to look (once per
minute, not once per batch), the failures are counted, and traffic flows."""
import os
import socket
import ssl
import subprocess
import threading
import time

import pytest

from harness import paths, sidecar_config
from harness.apps import App
from harness.envoy import Envoy
from harness.ports import free_port
from harness.polling import poll

REQUESTS = 40


def tls_only_server(port):
    """A TLS listener that completes no plain-text conversation, as a collector behind TLS does
    for a sidecar that speaks plain HTTP/2 to it."""
    workdir = paths.REPO + "/target/tls-collector"
    os.makedirs(workdir, exist_ok=True)
    cert, key = os.path.join(workdir, "cert.pem"), os.path.join(workdir, "key.pem")
    if not os.path.exists(cert):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=otel-collector", "-keyout", key, "-out", cert],
                       check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", port))

    def serve():
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            try:
                context.wrap_socket(connection, server_side=True).close()
            except (ssl.SSLError, OSError):
                connection.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener


def run_sidecar(name, filter_config, collector_port):
    app = App("upstream", free_port())
    app.start()
    admin, inbound = free_port(), free_port()
    config = sidecar_config.sidecar(
        service=name, admin_port=admin, inbound_port=inbound, app=("127.0.0.1", app.port),
        outbound_port=free_port(), upstreams={}, collector=("127.0.0.1", collector_port),
        wasm=paths.wasm_path(), filter_config=filter_config, access_log="/dev/null",
    )
    try:
        with Envoy(sidecar_config.to_yaml(config), f"unreachable-{name}", log_level="warning") as envoy:
            statuses = []
            for _ in range(REQUESTS):
                statuses.append(App.fetch(inbound, "/orders/1", {})[0])
                time.sleep(0.02)
            stats = poll(envoy.sidetrace_stats, lambda s: s.get("export_failures", 0) >= 2, 10)
            return statuses, stats, envoy.log_text()
    finally:
        app.stop()


def config(**collector):
    return sidecar_config.default_filter_config(
        collector={"cluster": sidecar_config.COLLECTOR_CLUSTER, "timeoutMs": 1000, **collector},
        # Small batches leave often, so that one run fails many exports.
        batch={"scheduledDelayMs": 50, "maxExportBatchSize": 4},
        retry={"initialBackoffMs": 50, "maxBackoffMs": 100, "maxAttempts": 2},
    )


CASES = {
    "missing-cluster": (lambda: config(cluster="outbound|4317||otel.observability.svc.cluster.local"),
                        "Envoy has no cluster `outbound|4317||otel.observability.svc.cluster.local`",
                        "istioctl proxy-config cluster"),
    "refused": (lambda: config(), "collector unreachable through cluster `otel-collector`",
                "istioctl proxy-config cluster"),
    "tls-only": (lambda: config(), "collector unreachable through cluster `otel-collector`",
                 "tls mode SIMPLE"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_unreachable_collector_is_named_once_counted_and_never_blocks(case):
    make_config, cause, check = CASES[case]
    port = free_port()
    listener = tls_only_server(port) if case == "tls-only" else None
    try:
        statuses, stats, log = run_sidecar(case, make_config(), port)
    finally:
        if listener:
            listener.close()
    assert statuses == [200] * REQUESTS, "traffic never waits for the collector"
    lines = [line for line in log.splitlines() if "sidetrace: export failed" in line]
    print(f"\n{case}: {stats}\n" + "\n".join(lines))
    assert stats.get("export_failures", 0) >= 2, stats
    assert stats.get("spans_exported", 0) == 0, stats
    assert len(lines) == 1, f"one line per cause per minute, got {len(lines)}"
    assert cause in lines[0] and check in lines[0], lines[0]

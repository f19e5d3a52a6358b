"""The shipped `istio-manifests/unsampled-gate.yaml` in real Envoy: the sidecar istiod builds for
the WasmPlugin (its filter named as each Istio release names it), with the EnvoyFilter applied as
istiod applies it to a pod that opted in. The WasmPlugin's filter must be gone (one span per hop,
not two), an unsampled caller's request must pass both listeners without entering the VM, and
the others must be traced as the WasmPlugin traces them, with the pod's identity."""
import time
import uuid

import pytest

from harness import istio, istio_gate, paths, sidecar_config
from harness.apps import App
from harness.collector import OtlpReceiver
from harness.envoy import Envoy, validate
from harness.ports import free_port

CALLER_SPAN = "00f067aa0ba902b7"
LISTENERS = ("inbound", "outbound")


def gated_sidecar(filter_name, collector_port, app_port, payments_port, pod_labels, module_mounted=True):
    """The checkout pod's sidecar: istiod's filter for the WasmPlugin, then the EnvoyFilter.
    `module_mounted`: the pod's annotations put the module where the EnvoyFilter loads it from."""
    plugin = istio.manifest("wasmplugin.yaml")
    config, ports = istio.sidecar(app_port, {"payments": payments_port}, collector_port)
    config = istio.apply_to_sidecar(config, plugin, paths.wasm_path(), filter_name)
    gate = istio.manifest("unsampled-gate.yaml")
    files = {istio_gate.MODULE_PATH: paths.wasm_path()} if module_mounted else {}
    return istio.apply_envoy_filter(config, gate, pod_labels, files), ports


def http_filters(config, listener):
    listener = next(item for item in config["static_resources"]["listeners"] if item["name"] == listener)
    return [f["name"] for f in listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]]


def settled(read, expected, timeout=5.0):
    """`read()` once it returns `expected` (the filter's counters reach Envoy on its tick), or
    what it returns when `timeout` runs out."""
    deadline = time.time() + timeout
    while (value := read()) != expected and time.time() < deadline:
        time.sleep(0.05)
    return value


def delegations(envoy):
    stats = envoy.stats()
    return {listener: stats.get(f"http.{listener}.composite.filter_delegation_success", 0) for listener in LISTENERS}


@pytest.mark.parametrize("filter_name", istio_gate.replaced_filter_names(istio.manifest("wasmplugin.yaml")))
def test_the_gate_replaces_the_plugins_filter_under_each_release_name(filter_name):
    config, _ = gated_sidecar(filter_name, free_port(), 1, 2, istio_gate.LABEL)
    ungated, _ = gated_sidecar(filter_name, free_port(), 1, 2, {"app": "checkout-app"})
    for listener in LISTENERS:
        assert http_filters(config, listener) == ["sidetrace-gate", "envoy.filters.http.router"], listener
        assert http_filters(ungated, listener) == [filter_name, "envoy.filters.http.router"], "a pod without the label keeps the WasmPlugin"


def test_a_gated_istio_sidecar_skips_unsampled_callers_and_traces_the_rest():
    filter_name = istio.istiod_filter_names(istio.manifest("wasmplugin.yaml"))[-1]
    with OtlpReceiver() as receiver, App("payments", free_port()) as payments, App("checkout", free_port()) as app:
        config, ports = gated_sidecar(filter_name, receiver.port, app.port, payments.port, istio_gate.LABEL)
        app.calls = [("payments", ports["outbound"])]
        with Envoy(sidecar_config.to_yaml(config), "istio-gate", env=istio.PROXY_ENV) as envoy:
            # An unsampled caller: both listeners pass it on untouched and the VM never sees it.
            unsampled = f"00-{uuid.uuid4().hex}-{CALLER_SPAN}-00"
            headers = {"traceparent": unsampled, "tracestate": "vendor=opaque"}
            assert App.call("checkout", ports["inbound"], "/skip", headers) == 200
            for service in (app, payments):
                seen = service.headers_for("/skip")
                assert (seen["traceparent"], seen["tracestate"]) == (unsampled, "vendor=opaque"), service.name
            assert delegations(envoy) == {"inbound": 0, "outbound": 0}

            # A sampled caller: a SERVER and a CLIENT span, one each, as the WasmPlugin records them.
            trace_id = uuid.uuid4().hex
            assert App.call("checkout", ports["inbound"], "/cart/7", {"traceparent": f"00-{trace_id}-{CALLER_SPAN}-01"}) == 200
            receiver.wait_for_spans(2, timeout=15, predicate=lambda s: s.trace_id == trace_id)
            time.sleep(1.5)  # another batch (the plugin's scheduledDelayMs is 1000) would bring any duplicate
            spans = [s for s in receiver.spans() if s.trace_id == trace_id]
            assert delegations(envoy) == {"inbound": 1, "outbound": 1}
            assert sorted(s.kind for s in spans) == ["CLIENT", "SERVER"], envoy.log_tail()
            server = next(s for s in spans if s.kind == "SERVER")
            client = next(s for s in spans if s.kind == "CLIENT")
            assert server.parent_span_id == CALLER_SPAN and client.parent_span_id == server.span_id
            assert payments.headers_for("/cart/7")["traceparent"] == f"00-{trace_id}-{client.span_id}-01"
            assert server.resource["service.name"] == "checkout" and server.resource["k8s.namespace.name"] == "shop"
            assert server.attributes["k8s.cluster"] == "east-1", "HOST env var from the proxy's environment"
            assert server.attributes["deployment.environment"] == "production", "INLINE env var"

            # No context: the filter starts a trace; the app forwards it, so the outbound listener
            # lets the request through only if the trace was sampled (1 % of trace ids).
            assert App.call("checkout", ports["inbound"], "/new", {}) == 200
            started = app.headers_for("/new")["traceparent"]
            assert started.startswith("00-") and len(started) == 55
            assert payments.headers_for("/new")["traceparent"][:35] == started[:35]
            sampled = started.endswith("-01")
            assert delegations(envoy) == {"inbound": 2, "outbound": 1 + sampled}
            if not sampled:
                assert payments.headers_for("/new")["traceparent"] == started

            # Both listeners' plugins run in one VM and count together: the VM saw the sampled
            # caller twice and the new trace once or, sampled, twice.
            started_spans = settled(lambda: envoy.sidetrace_stats().get("spans_started"), 3 + sampled)
            assert started_spans == 3 + sampled
            assert "sidetrace config" not in envoy.log_text(), "the gated pluginConfig is accepted"


def test_a_labelled_pod_without_the_module_file_gets_a_config_envoy_refuses(tmp_path):
    """Why the manifest says the label and the annotations go together."""
    filter_name = istio.istiod_filter_names(istio.manifest("wasmplugin.yaml"))[-1]
    for mounted in (True, False):
        config, _ = gated_sidecar(filter_name, free_port(), 1, 2, istio_gate.LABEL, module_mounted=mounted)
        path = tmp_path / f"mounted-{mounted}.yaml"
        path.write_text(sidecar_config.to_yaml(config))
        result = validate(str(path))
        assert (result.returncode == 0) == mounted, result.stdout[-2000:] + result.stderr[-2000:]
        if not mounted:
            assert istio_gate.MODULE_PATH in result.stdout + result.stderr

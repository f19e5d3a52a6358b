"""The shipped `istio-manifests/unsampled-gate.yaml` in real Envoy: the sidecar istiod builds for
the WasmPlugins (their filters named as each Istio release names them), with the EnvoyFilter
applied as istiod applies it to a pod that opted in. The WasmPlugins' filters must be gone (one
span per hop, not two), an unsampled caller's request must pass both listeners without entering
the VM, and the others must be traced as the WasmPlugins trace them, with the pod's identity."""
import copy
import json
import time
import uuid

import pytest

from harness import istio, istio_gate, paths, sidecar_config, unsampled_gate
from harness.apps import App
from harness.collector import OtlpReceiver
from harness.envoy import Envoy, validate
from harness.ports import free_port

CALLER_SPAN = "00f067aa0ba902b7"
LISTENERS = ("inbound", "outbound")


def with_sampling(percentage):
    """The EnvoyFilter rendered for WasmPlugins sampling `percentage` (the composite's expression
    for new traces depends on it)."""
    plugins = copy.deepcopy(istio.manifests("wasmplugin.yaml"))
    for plugin in plugins:
        istio.wasm_spec(plugin)["pluginConfig"]["randomSamplingPercentage"] = percentage
    return istio_gate.envoy_filter(plugins, istio.manifests("trafficextension.yaml"))


def plugin_sampling(gate):
    """The gated plugins' `randomSamplingPercentage` (the same on both listeners)."""
    percentages = {json.loads(wasm["typed_config"]["config"]["configuration"]["value"])["randomSamplingPercentage"]
                   for wasm in istio_gate.gated_wasm_filters(gate).values()}
    percentage, = percentages
    return percentage


def gated_sidecar(release, collector_port, app_port, payments_port, pod_labels, module_mounted=True, sampling=None):
    """The checkout pod's sidecar: istiod's filters for the WasmPlugins, named as the Istio
    release at index `release` of `istio.FILTER_NAMES` names them, then the EnvoyFilter.
    `module_mounted`: the pod's annotations put the module where the EnvoyFilter loads it from;
    `sampling`, if given, replaces the plugins' sampling percentage."""
    config, ports = istio.sidecar(app_port, {"payments": payments_port}, collector_port)
    for plugin in istio.manifests("wasmplugin.yaml"):
        config = istio.apply_to_sidecar(config, plugin, paths.wasm_path(), istio.istiod_filter_names(plugin)[release])
    gate = istio.manifest("unsampled-gate.yaml") if sampling is None else with_sampling(sampling)
    files = {istio_gate.MODULE_PATH: paths.wasm_path()} if module_mounted else {}
    return istio.apply_envoy_filter(config, gate, pod_labels, files), ports


def http_filters(config, listener):
    listener = next(item for item in config["static_resources"]["listeners"] if item["name"] == listener)
    return [f["name"] for f in listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]]


def delegations(envoy):
    stats = envoy.stats()
    return {listener: stats.get(unsampled_gate.delegation_stat(listener), 0) for listener in LISTENERS}


RELEASES = list(istio.FILTER_NAMES["WasmPlugin"])


@pytest.mark.parametrize("release", range(len(RELEASES)), ids=RELEASES)
def test_the_gate_replaces_the_plugins_filters_under_each_release_name(release):
    config, _ = gated_sidecar(release, free_port(), 1, 2, istio_gate.LABEL)
    ungated, _ = gated_sidecar(release, free_port(), 1, 2, {"app": "checkout-app"})
    for listener, plugin in zip(LISTENERS, istio.manifests("wasmplugin.yaml")):
        assert http_filters(config, listener) == ["sidetrace-gate", "envoy.filters.http.router"], listener
        assert http_filters(ungated, listener) == [istio.istiod_filter_names(plugin)[release], "envoy.filters.http.router"], \
            "a pod without the label keeps the WasmPlugins"


def test_the_gate_replaces_traffic_extensions_deployed_instead():
    config, _ = istio.sidecar(1, {"payments": 2}, free_port())
    for extension in istio.manifests("trafficextension.yaml"):
        config = istio.apply_to_sidecar(config, extension, paths.wasm_path())
    assert http_filters(config, "inbound")[0] == "extensions.istio.io/trafficextension/istio-system.sidetrace-inbound"
    assert http_filters(config, "outbound")[0] == "extensions.istio.io/trafficextension/istio-system.sidetrace-outbound"
    config = istio.apply_envoy_filter(config, istio.manifest("unsampled-gate.yaml"), istio_gate.LABEL, {})
    for listener in LISTENERS:
        assert http_filters(config, listener) == ["sidetrace-gate", "envoy.filters.http.router"], listener


# As shipped (1 %: a new trace is almost always unsampled), and sampling every new trace.
@pytest.mark.parametrize("sampling", [None, 100], ids=["shipped", "100%"])
def test_a_gated_istio_sidecar_skips_unsampled_callers_and_traces_the_rest(sampling):
    with OtlpReceiver() as receiver, App("payments", free_port()) as payments, App("checkout", free_port()) as app:
        config, ports = gated_sidecar(-1, receiver.port, app.port, payments.port, istio_gate.LABEL, sampling=sampling)
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

            # No context: a new trace takes the request's `x-request-id` as trace id, so the
            # composite decides as the filter would. Sent with a request id whose trace is not
            # sampled below 100 %, one sampled from 0.01 %, and one Envoy gives it; the app
            # forwards the request id, so the outbound listener decides the same.
            percentage = sampling if sampling is not None else plugin_sampling(istio.manifest("unsampled-gate.yaml"))
            new_traces = {"/new-low": "2848a896-120d-48c5-9d00-000000000000",
                          "/new-high": "2848a896-120d-48c5-9dff-ffffffffffff", "/new-any": None}
            expected_sampled = 0
            for path, request_id in new_traces.items():
                before = delegations(envoy)
                assert App.call("checkout", ports["inbound"], path, {"x-request-id": request_id} if request_id else {}) == 200
                seen, forwarded = app.headers_for(path), payments.headers_for(path)
                assert forwarded["x-request-id"] == seen["x-request-id"]
                if request_id:
                    assert seen["x-request-id"] == request_id
                sampled = unsampled_gate.root_sampled(seen["x-request-id"], percentage)
                assert sampled is not None, seen["x-request-id"]
                if path != "/new-any":
                    assert sampled == (path == "/new-high" or percentage == 100), path
                if sampled:
                    trace_id = seen["x-request-id"].replace("-", "")
                    assert seen["traceparent"].startswith(f"00-{trace_id}-") and seen["traceparent"].endswith("-03")
                    assert forwarded["traceparent"][:35] == seen["traceparent"][:35]
                else:
                    assert "traceparent" not in seen and "traceparent" not in forwarded, path
                moved = {listener: delegations(envoy)[listener] - before[listener] for listener in LISTENERS}
                assert moved == {"inbound": int(sampled), "outbound": int(sampled)}, path
                expected_sampled += sampled

            # Both listeners' plugins run in one VM and count together: the VM saw the sampled
            # caller twice and each sampled new trace twice.
            stats = envoy.wait_for_sidetrace_stats(lambda stats: stats.get("spans_started") == 2 + 2 * expected_sampled)
            assert stats.get("spans_started") == 2 + 2 * expected_sampled
            assert "sidetrace config" not in envoy.log_text(), "the gated pluginConfig is accepted"


def test_a_labelled_pod_without_the_module_file_gets_a_config_envoy_refuses(tmp_path):
    """Why the manifest says the label and the annotations go together."""
    for mounted in (True, False):
        config, _ = gated_sidecar(-1, free_port(), 1, 2, istio_gate.LABEL, module_mounted=mounted)
        path = tmp_path / f"mounted-{mounted}.yaml"
        path.write_text(sidecar_config.to_yaml(config))
        result = validate(str(path))
        assert (result.returncode == 0) == mounted, result.stdout[-2000:] + result.stderr[-2000:]
        if not mounted:
            assert istio_gate.MODULE_PATH in result.stdout + result.stderr

"""The unsampled gate for Istio sidecars: an EnvoyFilter that takes the WasmPlugins' filters out of
the workloads it selects and puts sidetrace back behind Envoy's composite filter, so requests
carrying an unsampled caller's W3C context, and requests without context whose new trace would
not be sampled, never reach the VM (`unsampled_gate.composite`).

A WasmPlugin cannot do this itself (its filter is one ECDS entry per listener, with no per-route
switch and no matcher around it), and EnvoyFilter patches cannot clone routes, so the route twins
are out of reach; the composite form is what Istio can express. The module comes from a
ConfigMap the pod mounts into its sidecar (istiod's injector reads the two annotations below),
since the composite needs the filter inline, not through the ECDS stream istio-agent rewrites.
"""
import copy
import json

from . import istio, unsampled_gate

# Pods opt in with this label, which the EnvoyFilter's workloadSelector matches; the same pods
# must carry ANNOTATIONS, or Envoy finds no module file and refuses their listeners.
LABEL = {"sidetrace/gate": "unsampled"}
CONFIGMAP = "sidetrace-wasm"
MODULE_DIR = "/var/local/lib/sidetrace"
MODULE_PATH = f"{MODULE_DIR}/sidetrace.wasm"
VOLUME = "sidetrace-wasm"
# Istio's injection template turns each key of these JSON maps into a volume (mount) of that name.
ANNOTATIONS = {
    "sidecar.istio.io/userVolume": '{"%s":{"configMap":{"name":"%s"}}}' % (VOLUME, CONFIGMAP),
    "sidecar.istio.io/userVolumeMount": '{"%s":{"mountPath":"%s","readOnly":true}}' % (VOLUME, MODULE_DIR),
}
W3C_ONLY = {"extract": ["tracecontext", "baggage"], "inject": ["tracecontext", "baggage"]}
ROUTER = "envoy.filters.http.router"


def _http_filter_match(sub_filter: str, context: str = None) -> dict:
    match = {"listener": {"filterChain": {"filter": {"name": istio.HCM, "subFilter": {"name": sub_filter}}}}}
    if context:
        match["context"] = context
    return match


def gated_plugin_config(plugin: dict, direction: str) -> dict:
    """The plugin's `pluginConfig` as the gate needs it: W3C only (other formats are translated,
    so the filter must see every request); the listener's direction fixed (as the shipped
    WasmPlugins have it), so a request without context does not read it (~11,700 Envoy
    instructions); no path excluded (kubelet probes reach istio-agent, not these listeners); and
    new traces' ids taken from `x-request-id`, so the composite's matcher also skips a request
    without context whose new trace the filter would not sample (its expression is rendered for
    the plugin's `randomSamplingPercentage`: render again after changing it)."""
    config = copy.deepcopy(istio.wasm_spec(plugin)["pluginConfig"])
    config.update(propagation=copy.deepcopy(W3C_ONLY), direction=direction, excludePaths=[],
                  traceIdsFromRequestIds=True)
    unsampled_gate.check_applies(config)
    return config


def replaced_filter_names(resources: list) -> list:
    """Every name istiod has given the filters it generates for `resources` (WasmPlugins and
    TrafficExtensions)."""
    return [name for resource in resources for name in istio.istiod_filter_names(resource)]


def envoy_filter(plugins: list, extensions: list) -> dict:
    """The EnvoyFilter for the shipped WasmPlugins (`plugins`, one with `direction: inbound` for
    SERVER, one with `outbound` for CLIENT) and TrafficExtensions (`extensions`, deployed instead
    of them on newer releases): removes the filters istiod generated for either, under each
    release's name, then inserts each WasmPlugin, gated, before the router on the listeners of
    its direction."""
    patches = [{"applyTo": "HTTP_FILTER", "match": _http_filter_match(filter_name), "patch": {"operation": "REMOVE"}}
               for filter_name in replaced_filter_names(plugins + extensions)]
    for context, direction in (("SIDECAR_INBOUND", "inbound"), ("SIDECAR_OUTBOUND", "outbound")):
        plugin, = [p for p in plugins if istio.wasm_spec(p)["pluginConfig"].get("direction") == direction]
        resource = copy.deepcopy(plugin)
        istio.wasm_spec(resource)["pluginConfig"] = gated_plugin_config(plugin, direction)
        wasm = istio.envoy_wasm_filter(resource, MODULE_PATH, f"sidetrace-gated-{direction}")
        # Indented, to read as a block in the manifest.
        wasm["typed_config"]["config"]["configuration"]["value"] = json.dumps(
            istio.wasm_spec(resource)["pluginConfig"], indent=2)
        patches.append({
            "applyTo": "HTTP_FILTER",
            "match": _http_filter_match(ROUTER, context),
            "patch": {"operation": "INSERT_BEFORE",
                      "value": unsampled_gate.composite(wasm, istio.wasm_spec(resource)["pluginConfig"])},
        })
    return {
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": {"name": "sidetrace-unsampled-gate", "namespace": plugins[0]["metadata"].get("namespace", "default")},
        "spec": {"workloadSelector": {"labels": dict(LABEL)}, "configPatches": patches},
    }


def gated_wasm_filters(envoy_filter: dict) -> dict:
    """The Wasm filters `envoy_filter`'s INSERT patches put behind the composite, by patch
    context (the same objects, so changing one changes the EnvoyFilter)."""
    return {patch["match"]["context"]: unsampled_gate.wrapped(patch["patch"]["value"])
            for patch in envoy_filter["spec"]["configPatches"] if patch["patch"]["operation"] == "INSERT_BEFORE"}

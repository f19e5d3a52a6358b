"""Istio's side of a WasmPlugin, done here the way istiod does it: the CRD schemas it validates
against, and the Envoy Wasm filter it generates for each sidecar."""
import copy
import glob
import json
import os

import yaml

from . import paths, sidecar_config
from .ports import free_port

# The collector cluster under the name Istio gives the Service the plugins export to.
COLLECTOR_CLUSTER = "outbound|4317||otel-collector.observability.svc.cluster.local"


def crd_bundle_path() -> str:
    """`shared/istio-crds/` lives beside the repository (CI clones it there)."""
    candidates = [os.environ.get("ISTIO_CRDS")] + sorted(glob.glob(os.path.join(paths.REPO, "..", "shared", "istio-crds", "*.yaml")))
    for candidate in candidates:
        if candidate and os.path.exists(candidate):
            return candidate
    raise FileNotFoundError("Istio CRD schemas not found at ../shared/istio-crds/ (or $ISTIO_CRDS)")


def _openapi_to_jsonschema(node):
    """OpenAPI v3 → JSON Schema: `nullable`, `x-kubernetes-int-or-string`, drop other extensions."""
    if isinstance(node, list):
        return [_openapi_to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key == "format":
            continue
        out[key] = _openapi_to_jsonschema(value)
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
        out.pop("nullable", None)
    return out


def crd_schemas() -> dict:
    """(apiVersion, kind) → JSON Schema of the whole object."""
    schemas = {}
    for doc in yaml.safe_load_all(open(crd_bundle_path())):
        if not doc or doc.get("kind") != "CustomResourceDefinition":
            continue
        group, kind = doc["spec"]["group"], doc["spec"]["names"]["kind"]
        for version in doc["spec"]["versions"]:
            if version.get("served"):
                schemas[(f"{group}/{version['name']}", kind)] = _openapi_to_jsonschema(version["schema"]["openAPIV3Schema"])
    return schemas


def wasm_spec(resource: dict) -> dict:
    """The Wasm part of a WasmPlugin or a TrafficExtension."""
    spec = resource["spec"]
    return spec["wasm"] if resource["kind"] == "TrafficExtension" else spec


# The name istiod gives the HTTP filter it generates for a plugin, by the first Istio release that
# used it (istio/istio: pilot/pkg/model/extensions.go; from 1.30 a WasmPlugin is translated into a
# TrafficExtension, pilot/pkg/config/kube/extensions/translate.go). "extenstions" is istiod's own
# spelling in 1.21-1.25.
FILTER_NAMES = {
    "WasmPlugin": {
        "1.20": "{namespace}.{name}",
        "1.21": "extenstions.istio.io/wasmplugin/{namespace}.{name}",
        "1.26": "extensions.istio.io/wasmplugin/{namespace}.{name}",
        "1.30": "extensions.istio.io/trafficextension/{namespace}.{name}~istio-translated-wasmplugin",
    },
    "TrafficExtension": {"1.30": "extensions.istio.io/trafficextension/{namespace}.{name}"},
}


def istiod_filter_names(resource: dict) -> list:
    """Every name istiod has given `resource`'s filter, oldest release first."""
    names = FILTER_NAMES[resource["kind"]].values()
    return [n.format(namespace=resource["metadata"].get("namespace", "default"), name=resource["metadata"]["name"]) for n in names]


def envoy_wasm_filter(resource: dict, wasm_path: str) -> dict:
    """The `envoy.filters.http.wasm` filter istiod builds: configuration is the JSON of
    pluginConfig in a StringValue, INLINE env values are set, HOST ones name the proxy's own
    environment variables, failStrategy FAIL_OPEN is fail_open. The OCI image is what istio-agent
    pulls to a local file; here that file is the module this repository builds. The HTTP
    filter takes the name the oldest supported istiod gives it."""
    spec = wasm_spec(resource)
    key_values, host_keys = {}, []
    for env in spec.get("vmConfig", {}).get("env", []):
        if env.get("valueFrom", "INLINE") == "HOST":
            host_keys.append(env["name"])
        else:
            key_values[env["name"]] = env.get("value", "")
    environment = {}
    if key_values:
        environment["key_values"] = key_values
    if host_keys:
        environment["host_env_keys"] = host_keys
    # No vm_id, as istiod sets none: plugins with the same module and VM settings share a VM.
    vm_config = {"runtime": "envoy.wasm.runtime.v8", "code": {"local": {"filename": wasm_path}}}
    if environment:
        vm_config["environment_variables"] = environment
    filter_name = istiod_filter_names(resource)[0]
    return {
        "name": filter_name,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": filter_name,
                "root_id": spec.get("pluginName", ""),
                "fail_open": spec.get("failStrategy", "FAIL_CLOSE") == "FAIL_OPEN",
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": json.dumps(spec.get("pluginConfig", {})),
                },
                "vm_config": vm_config,
            },
        },
    }


def listeners_for(resource: dict) -> set:
    """Which of a sidecar's listeners the plugin is attached to, by `match[].mode`."""
    modes = {m.get("mode", "CLIENT_AND_SERVER") for m in resource["spec"].get("match", [])} or {"CLIENT_AND_SERVER"}
    listeners = set()
    if modes & {"SERVER", "CLIENT_AND_SERVER", "UNDEFINED"}:
        listeners.add("inbound")
    if modes & {"CLIENT", "CLIENT_AND_SERVER", "UNDEFINED"}:
        listeners.add("outbound")
    return listeners


def apply_to_sidecar(envoy_config: dict, resource: dict, wasm_path: str) -> dict:
    """Replaces the sidecar's Wasm filter with the one istiod would generate from `resource`."""
    config = copy.deepcopy(envoy_config)
    attached = listeners_for(resource)
    for listener in config["static_resources"]["listeners"]:
        hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
        filters = [f for f in hcm["http_filters"] if f["name"] != sidecar_config.WASM_FILTER]
        if listener["name"] in attached:
            filters.insert(0, envoy_wasm_filter(resource, wasm_path))
        hcm["http_filters"] = filters
    return config


def istio_node_metadata(name, namespace, workload, labels, cluster_id, mesh_id) -> dict:
    """What istio-agent puts in the sidecar's bootstrap node metadata."""
    return {
        "NAME": name,
        "NAMESPACE": namespace,
        "WORKLOAD_NAME": workload,
        "LABELS": labels,
        "CLUSTER_ID": cluster_id,
        "MESH_ID": mesh_id,
        "ISTIO_VERSION": "1.28.0",
    }


# The pod the Istio tests run a sidecar for, and the variables istio-agent's container has.
CHECKOUT_NODE = istio_node_metadata(
    name="checkout-7d9f8c-x2x4q",
    namespace="shop",
    workload="checkout-v2",
    labels={"app": "checkout-app", "service.istio.io/canonical-name": "checkout", "service.istio.io/canonical-revision": "v2"},
    cluster_id="east-1",
    mesh_id="mesh-a",
)
PROXY_ENV = {"ISTIO_META_CLUSTER_ID": "east-1", "POD_NAMESPACE": "shop"}


def manifests(name: str) -> list:
    """The documents of `istio-manifests/<name>`."""
    return [doc for doc in yaml.safe_load_all(open(os.path.join(paths.REPO, "istio-manifests", name))) if doc]


def manifest(name: str, index: int = 0) -> dict:
    """The `index`th document of `istio-manifests/<name>`."""
    return manifests(name)[index]


def sidecar(app_port: int, upstreams: dict, collector_port: int) -> tuple:
    """An Istio-like sidecar of the checkout pod, with its plugin still to apply: inbound
    to the app at `app_port`, outbound to `upstreams` (name → port on loopback), routes and the
    collector under the names Istio gives them. Returns the config and its listeners' ports."""
    ports = {"admin": free_port(), "inbound": free_port(), "outbound": free_port()}
    config = sidecar_config.sidecar(
        service="checkout",
        admin_port=ports["admin"],
        inbound_port=ports["inbound"],
        app=("127.0.0.1", app_port),
        outbound_port=ports["outbound"],
        upstreams={name: ("127.0.0.1", port) for name, port in upstreams.items()},
        collector=("127.0.0.1", collector_port),
        wasm=paths.wasm_path(),
        node_metadata=CHECKOUT_NODE,
    )
    for cluster in config["static_resources"]["clusters"]:
        if cluster["name"] == sidecar_config.COLLECTOR_CLUSTER:
            renamed = copy.deepcopy(cluster)
            renamed["name"] = renamed["load_assignment"]["cluster_name"] = COLLECTOR_CLUSTER
            config["static_resources"]["clusters"].append(renamed)
            break
    # Route names as istiod writes them without a VirtualService (route.DefaultRouteName), and
    # for hosts outside the registry (util.BlackHole).
    for listener in config["static_resources"]["listeners"]:
        hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
        for virtual_host in hcm["route_config"]["virtual_hosts"]:
            for route in virtual_host["routes"]:
                route["name"] = "block_all" if "direct_response" in route else "default"
    return config, ports

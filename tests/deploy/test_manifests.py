"""Every manifest under istio-manifests/ is valid against Istio's own CRD schemas."""
import glob
import json
import os

import jsonschema
import pytest
import yaml

from harness import istio, paths

MANIFESTS = sorted(glob.glob(os.path.join(paths.REPO, "istio-manifests", "*.yaml")))
DOCUMENTS = [(os.path.basename(path), i, doc) for path in MANIFESTS for i, doc in enumerate(yaml.safe_load_all(open(path))) if doc]


@pytest.fixture(scope="module")
def schemas():
    return istio.crd_schemas()


def test_the_kinds_the_deployment_needs_are_there():
    kinds = {doc["kind"] for _, _, doc in DOCUMENTS}
    assert {"WasmPlugin", "TrafficExtension", "Telemetry", "DestinationRule", "ServiceEntry", "Sidecar"} <= kinds


@pytest.mark.parametrize("name,index,doc", DOCUMENTS, ids=[f"{n}#{i}:{d['kind']}" for n, i, d in DOCUMENTS])
def test_valid_against_the_crd_schema(schemas, name, index, doc):
    key = (doc["apiVersion"], doc["kind"])
    assert key in schemas, f"{name}: no served CRD version for {key}"
    jsonschema.validate(doc, schemas[key])


def test_the_validator_rejects_what_istio_rejects(schemas):
    plugin = istio.manifest("wasmplugin.yaml")
    schema = schemas[("extensions.istio.io/v1alpha1", "WasmPlugin")]
    for mutate in (
        lambda s: s.update(failStrategy="FAIL_SOMETIMES"),
        lambda s: s.update(phase="LATE"),
        lambda s: s.update(sha256="not-a-digest"),
        lambda s: s["vmConfig"]["env"].append({"valueFrom": "HOST"}),
    ):
        bad = json.loads(json.dumps(plugin))
        mutate(bad["spec"])
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


# CEL rules are not JSON Schema; these are the ones that matter here, checked by hand.
@pytest.mark.parametrize("name,index,doc", DOCUMENTS, ids=[f"{n}#{i}:{d['kind']}" for n, i, d in DOCUMENTS])
def test_cel_rules(name, index, doc):
    spec = doc["spec"]
    targets = sum(1 for key in ("selector", "targetRef", "targetRefs") if key in spec)
    assert targets <= 1, "only one of targetRefs or selector can be set"
    if doc["kind"] in ("WasmPlugin", "TrafficExtension"):
        wasm = istio.wasm_spec(doc)
        for env in wasm.get("vmConfig", {}).get("env", []):
            assert not (env.get("valueFrom") == "HOST" and "value" in env), f"{env['name']}: value only with INLINE"
        assert wasm["url"].split("://")[0] in ("oci", "http", "https", "file")
        for label in spec.get("selector", {}).get("matchLabels", {}).items():
            assert "*" not in label[0] + label[1]


def test_plugins_fail_open_in_the_stats_phase_and_configure_the_contract():
    contract = {"serviceName", "direction", "match", "randomSamplingPercentage", "disableSpanReporting", "customTags",
                "propagation", "collector", "batch", "retry", "resourceAttributes", "excludePaths", "recordQuery",
                "maxTagLength", "maxAttributes", "trustIncomingContext", "baggageAttributes",
                "writeSamplingThreshold"}
    plugins = [doc for _, _, doc in DOCUMENTS if doc["kind"] in ("WasmPlugin", "TrafficExtension")]
    assert len(plugins) >= 4
    for doc in plugins:
        wasm = istio.wasm_spec(doc)
        assert wasm["failStrategy"] == "FAIL_OPEN"
        assert doc["spec"]["phase"] == "STATS"
        config = wasm["pluginConfig"]
        assert set(config) <= contract, set(config) - contract
        assert config["collector"]["cluster"].startswith("outbound|4317||")


def test_telemetry_keeps_envoys_own_tracer_from_reporting_without_taking_the_mesh_wide_slot():
    telemetry = [doc for _, _, doc in DOCUMENTS if doc["kind"] == "Telemetry"]
    assert telemetry
    for doc in telemetry:
        assert all(t["disableSpanReporting"] for t in doc["spec"]["tracing"])
        # A mesh has one root-namespace Telemetry without a selector, most meshes their own.
        mesh_wide = doc["metadata"]["namespace"] == ROOT_NAMESPACE and not {"selector", "targetRefs"} & set(doc["spec"])
        assert not mesh_wide, f"{doc['metadata']['name']} would conflict with the mesh's own Telemetry"


# Istio's root configuration namespace, where the shipped plugins live.
ROOT_NAMESPACE = "istio-system"
# Set by the sidecar injector on every pod it injects; the gateway injection template does not.
SIDECARS_ONLY = {"security.istio.io/tlsMode": "istio"}
EXPORT_PATH = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def plugins_in(name):
    return [doc for doc in istio.manifests(name) if doc["kind"] in ("WasmPlugin", "TrafficExtension")]


@pytest.mark.parametrize("name", ["wasmplugin.yaml", "trafficextension.yaml"])
def test_the_mesh_wide_plugins_select_sidecars_only(name):
    """istiod gives a gateway's listeners every CLIENT plugin; a selector a gateway pod lacks
    keeps the outbound plugin off gateways."""
    plugins = plugins_in(name)
    assert len(plugins) == 2
    for plugin in plugins:
        assert plugin["metadata"]["namespace"] == ROOT_NAMESPACE
        assert plugin["spec"]["selector"]["matchLabels"] == SIDECARS_ONLY


def test_the_collectors_sidecar_does_not_trace_the_exports():
    for name in ("wasmplugin.yaml", "trafficextension.yaml"):
        for plugin in plugins_in(name):
            assert EXPORT_PATH in istio.wasm_spec(plugin)["pluginConfig"]["excludePaths"], name


def test_the_gateway_plugin_records_one_server_span_and_trusts_no_outside_context():
    plugin, = plugins_in("gateway.yaml")
    assert plugin["spec"]["selector"]["matchLabels"] == {"istio": "ingressgateway"}
    # A gateway's listeners are CLIENT ones to istiod: a SERVER-only plugin would never attach.
    modes = {m.get("mode") for m in plugin["spec"].get("match", [])}
    assert modes <= {"CLIENT", "CLIENT_AND_SERVER", "UNDEFINED", None}
    config = plugin["spec"]["pluginConfig"]
    assert config["direction"] == "inbound"
    assert config["trustIncomingContext"] is False
    assert not SIDECARS_ONLY.items() <= plugin["spec"]["selector"]["matchLabels"].items()


def test_a_narrowed_sidecar_keeps_the_collectors_hosts():
    docs = istio.manifests("collector-egress.yaml")
    sidecar, = [d for d in docs if d["kind"] == "Sidecar"]
    hosts = {h for egress in sidecar["spec"]["egress"] for h in egress["hosts"]}
    entries = [d for d in DOCUMENTS if d[2]["kind"] == "ServiceEntry"] + [("", 0, d) for d in istio.manifests("collector.yaml")]
    collector_hosts = {"observability/otel-collector.observability.svc.cluster.local"}
    collector_hosts |= {f"{d['metadata']['namespace']}/{h}" for _, _, d in entries if d["kind"] == "ServiceEntry"
                        for h in d["spec"]["hosts"]}
    assert collector_hosts <= hosts
    clusters = {istio.wasm_spec(p)["pluginConfig"]["collector"]["cluster"] for p in plugins_in("wasmplugin.yaml")}
    assert {c.split("|")[3] for c in clusters} <= {h.split("/", 1)[1] for h in hosts}


def test_an_outside_collector_is_reached_over_tls():
    docs = istio.manifests("collector-egress.yaml")
    entry, = [d for d in docs if d["kind"] == "ServiceEntry"]
    rule, = [d for d in docs if d["kind"] == "DestinationRule"]
    assert entry["spec"]["location"] == "MESH_EXTERNAL"
    assert rule["spec"]["host"] in entry["spec"]["hosts"]
    port, = [p for p in entry["spec"]["ports"]]
    setting, = rule["spec"]["trafficPolicy"]["portLevelSettings"]
    assert setting["port"]["number"] == port["number"]
    assert setting["tls"] == {"mode": "SIMPLE", "sni": rule["spec"]["host"]}


def test_the_shipped_wasmplugins_differ_only_in_their_direction():
    inbound, outbound = istio.manifests("wasmplugin.yaml")
    assert (inbound["spec"]["match"], inbound["spec"]["pluginConfig"]["direction"]) == ([{"mode": "SERVER"}], "inbound")
    assert (outbound["spec"]["match"], outbound["spec"]["pluginConfig"]["direction"]) == ([{"mode": "CLIENT"}], "outbound")

    def without_direction(plugin):
        spec = json.loads(json.dumps(plugin["spec"]))
        del spec["match"], spec["pluginConfig"]["direction"]
        return spec
    assert without_direction(inbound) == without_direction(outbound), "one VM configuration, so one VM"

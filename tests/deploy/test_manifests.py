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
    assert {"WasmPlugin", "TrafficExtension", "Telemetry", "DestinationRule", "ServiceEntry"} <= kinds


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
                "maxTagLength", "maxAttributes", "trustIncomingContext", "baggageAttributes", "writeSamplingThreshold",
                "responseHeaders"}
    plugins = [doc for _, _, doc in DOCUMENTS if doc["kind"] in ("WasmPlugin", "TrafficExtension")]
    assert len(plugins) >= 4
    for doc in plugins:
        wasm = istio.wasm_spec(doc)
        assert wasm["failStrategy"] == "FAIL_OPEN"
        assert doc["spec"]["phase"] == "STATS"
        config = wasm["pluginConfig"]
        assert set(config) <= contract, set(config) - contract
        assert config["collector"]["cluster"].startswith("outbound|4317||")


def test_telemetry_keeps_envoys_own_tracer_from_reporting():
    telemetry = [doc for _, _, doc in DOCUMENTS if doc["kind"] == "Telemetry"][0]
    assert telemetry["metadata"]["namespace"] == "istio-system", "mesh-wide"
    assert all(t["disableSpanReporting"] for t in telemetry["spec"]["tracing"])


def test_the_shipped_wasmplugins_differ_only_in_their_direction():
    inbound, outbound = istio.manifests("wasmplugin.yaml")
    assert (inbound["spec"]["match"], inbound["spec"]["pluginConfig"]["direction"]) == ([{"mode": "SERVER"}], "inbound")
    assert (outbound["spec"]["match"], outbound["spec"]["pluginConfig"]["direction"]) == ([{"mode": "CLIENT"}], "outbound")

    def without_direction(plugin):
        spec = json.loads(json.dumps(plugin["spec"]))
        del spec["match"], spec["pluginConfig"]["direction"]
        return spec
    assert without_direction(inbound) == without_direction(outbound), "one VM configuration, so one VM"

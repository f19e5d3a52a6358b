"""The Envoy sidecar configuration, generated in one place: the demo, the tests, the committed
standalone config and the docker-compose stack are all renderings of `sidecar()`."""
import json

import yaml

from . import paths

# The access log carries the stream's trace context, published by the filter as filter state.
# A Loki derived field `trace_id=(\w+)` turns it into a link to the trace.
ACCESS_LOG_FORMAT = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% '
    "%RESPONSE_FLAGS% %DURATION%ms direction={direction} "
    "trace_id=%FILTER_STATE(wasm.sidetrace.trace_id:PLAIN)% "
    "span_id=%FILTER_STATE(wasm.sidetrace.span_id:PLAIN)% "
    "sampled=%FILTER_STATE(wasm.sidetrace.sampled:PLAIN)% "
    'request_id=%REQ(X-REQUEST-ID)% authority=%REQ(:AUTHORITY)%\n'
)
COLLECTOR_CLUSTER = "otel-collector"
WASM_FILTER = "envoy.filters.http.wasm"


def default_filter_config(**overrides) -> dict:
    config = {
        "collector": {"cluster": COLLECTOR_CLUSTER, "authority": "otel-collector.observability", "timeoutMs": 2000},
        "randomSamplingPercentage": 100,
        "propagation": {
            "extract": ["tracecontext", "baggage", "b3", "b3multi", "xray", "jaeger"],
            "inject": ["tracecontext", "baggage", "b3multi"],
        },
        "batch": {"scheduledDelayMs": 200},
        "excludePaths": ["/health", "/healthz", "/readyz"],
        # ACCESS_LOG_FORMAT prints the trace context this publishes.
        "publishFilterState": True,
    }
    config.update(overrides)
    return config


def _wasm_filter(wasm: str, filter_config: dict, env: dict) -> dict:
    vm_config = {
        "vm_id": "sidetrace",
        "runtime": "envoy.wasm.runtime.v8",
        "code": {"local": {"filename": wasm}},
    }
    if env:
        vm_config["environment_variables"] = {"key_values": dict(env)}
    return {
        "name": WASM_FILTER,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "sidetrace",
                "root_id": "sidetrace",
                "fail_open": True,
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": json.dumps(filter_config, separators=(",", ":")),
                },
                "vm_config": vm_config,
            },
        },
    }


def _http_connection_manager(stat_prefix, routes, wasm_filter, access_log) -> dict:
    log_format = ACCESS_LOG_FORMAT.replace("{direction}", stat_prefix)
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": stat_prefix,
            "generate_request_id": True,
            "access_log": [{
                "name": "envoy.access_loggers.file",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                    "path": access_log,
                    "log_format": {"text_format_source": {"inline_string": log_format}},
                },
            }],
            "route_config": {"name": stat_prefix, "virtual_hosts": routes},
            "http_filters": [
                wasm_filter,
                {"name": "envoy.filters.http.router",
                 "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}},
            ],
        },
    }


def _cluster(name: str, host: str, port: int, http2: bool = False) -> dict:
    cluster = {
        "name": name,
        "type": "STRICT_DNS" if not host[0].isdigit() else "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}]}],
        },
    }
    if http2:
        cluster["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        }
    return cluster


def _listener(name, direction, bind, port, hcm) -> dict:
    return {
        "name": name,
        "traffic_direction": direction,
        "address": {"socket_address": {"address": bind, "port_value": port}},
        "filter_chains": [{"filters": [hcm]}],
    }


def inbound_only(name: str, port: int, admin_port: int, virtual_hosts: list, filter_config: dict,
                 collector_port: int, clusters=()) -> dict:
    """A bootstrap with one inbound listener on `port` routing by `virtual_hosts`, sidetrace
    configured with `filter_config`, the collector on `collector_port`, and `clusters` besides."""
    wasm = _wasm_filter(paths.wasm_path(), filter_config, {})
    hcm = _http_connection_manager("inbound", virtual_hosts, wasm, "/dev/null")
    return {
        "node": {"id": name, "cluster": name},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": [_listener("inbound", "INBOUND", "127.0.0.1", port, hcm)],
            "clusters": [*clusters, _cluster(COLLECTOR_CLUSTER, "127.0.0.1", collector_port, http2=True)],
        },
    }


def sidecar(
    *,
    service: str,
    admin_port: int,
    inbound_port: int,
    app: tuple,
    outbound_port: int,
    upstreams: dict,
    collector: tuple,
    wasm: str,
    filter_config: dict = None,
    env: dict = None,
    access_log: str = "/dev/stdout",
    node_metadata: dict = None,
    bind: str = "127.0.0.1",
) -> dict:
    """One pod's sidecar: INBOUND listener → the local app, OUTBOUND listener → upstream services
    by `Host`, the filter on both, and the collector cluster over HTTP/2."""
    filter_config = filter_config or default_filter_config()

    def plugin():
        # A fresh copy per listener: YAML would write a shared one as an anchor and an alias.
        return _wasm_filter(wasm, filter_config, env or {})
    inbound_routes = [{
        "name": f"inbound|{service}",
        "domains": ["*"],
        # Unnamed: span names then come from the normalised path. Name a route (e.g. "orders-by-id")
        # to make it the span name.
        "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "local_app", "timeout": "10s"}}],
    }]
    outbound_routes = [
        {
            "name": f"outbound|{name}",
            "domains": [name, f"{name}:*"],
            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": f"outbound|{name}", "timeout": "10s"}}],
        }
        for name in sorted(upstreams)
    ]
    outbound_routes.append({
        "name": "outbound|unknown",
        "domains": ["*"],
        "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": 404, "body": {"inline_string": "no such service\n"}}}],
    })
    clusters = [_cluster("local_app", app[0], app[1])]
    clusters += [_cluster(f"outbound|{name}", host, port) for name, (host, port) in sorted(upstreams.items())]
    clusters.append(_cluster(COLLECTOR_CLUSTER, collector[0], collector[1], http2=True))
    node = {"id": f"sidecar~{service}", "cluster": service}
    if node_metadata:
        node["metadata"] = node_metadata
    bootstrap = {
        "node": node,
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": [
                _listener("inbound", "INBOUND", bind, inbound_port,
                          _http_connection_manager("inbound", inbound_routes, plugin(), access_log)),
                _listener("outbound", "OUTBOUND", bind, outbound_port,
                          _http_connection_manager("outbound", outbound_routes, plugin(), access_log)),
            ],
            "clusters": clusters,
        },
    }
    return bootstrap


def to_yaml(config: dict, header: str = "") -> str:
    return header + yaml.safe_dump(config, sort_keys=False, width=120)

"""A small mesh on loopback: every service is an app behind its own Envoy sidecar with the filter
on inbound and outbound listeners, all exporting to one OTLP receiver."""
import contextlib
import json
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass

from . import paths, sidecar_config
from .apps import App
from .collector import OtlpReceiver
from .envoy import Envoy
from .polling import poll
from .ports import free_port


@dataclass
class Pod:
    name: str
    app: App
    envoy: Envoy
    inbound_port: int
    outbound_port: int
    access_log: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.inbound_port}"

    def wait_for_access_log(self, text: str, count: int = 1, timeout: float = 5.0) -> list:
        """Envoy flushes access logs about once a second."""
        return poll(lambda: [line for line in self.access_log_lines() if text in line],
                    lambda lines: len(lines) >= count, timeout, interval=0.1)

    def access_log_lines(self) -> list:
        try:
            with open(self.access_log) as f:
                return [line.rstrip("\n") for line in f if line.strip()]
        except OSError:
            return []


class Mesh(contextlib.ExitStack):
    """`with Mesh({"frontend": ["checkout"], "checkout": []}) as mesh:` then `mesh.get("frontend", "/")`.
    `filter_config(service) -> dict` and `env(service) -> dict` customise each sidecar."""

    def __init__(self, topology: dict, filter_config=None, env=None, node_metadata=None, receiver=None):
        super().__init__()
        self.topology = topology
        self.filter_config = filter_config or (lambda service: sidecar_config.default_filter_config())
        self.env = env or (lambda service: {})
        self.node_metadata = node_metadata or (lambda service: {"LABELS": {"app": service}, "NAMESPACE": "demo", "NAME": f"{service}-pod"})
        self.receiver = receiver
        self.pods = {}
        self.logdir = tempfile.mkdtemp(prefix="sidetrace-mesh-")

    def __enter__(self):
        super().__enter__()
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self):
        if self.receiver is None:
            self.receiver = self.enter_context(OtlpReceiver())
        inbound = {name: free_port() for name in self.topology}
        wasm = paths.wasm_path()
        for name, calls in self.topology.items():
            app_port, outbound_port, admin_port = free_port(), free_port(), free_port()
            access_log = os.path.join(self.logdir, f"{name}.access.log")
            config = sidecar_config.sidecar(
                service=name,
                admin_port=admin_port,
                inbound_port=inbound[name],
                app=("127.0.0.1", app_port),
                outbound_port=outbound_port,
                upstreams={callee: ("127.0.0.1", inbound[callee]) for callee in self.topology},
                collector=("127.0.0.1", self.receiver.port),
                wasm=wasm,
                filter_config=self.filter_config(name),
                env=self.env(name),
                access_log=access_log,
                node_metadata=self.node_metadata(name),
            )
            app = self.enter_context(App(name, app_port, calls=[(callee, outbound_port) for callee in calls]))
            envoy = self.enter_context(Envoy(sidecar_config.to_yaml(config), name))
            self.pods[name] = Pod(name, app, envoy, inbound[name], outbound_port, access_log)

    def get(self, service: str, path: str, headers: dict = None) -> tuple:
        """GET through the service's inbound sidecar; returns (status, response headers)."""
        request = urllib.request.Request(self.pods[service].url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                response.read()
                return response.status, dict(response.headers)
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers)

    def post(self, service: str, path: str, payload: bytes, headers: dict = None) -> tuple:
        """POST through the service's inbound sidecar; returns (status, decoded JSON reply)."""
        request = urllib.request.Request(self.pods[service].url + path, data=payload, headers=headers or {},
                                         method="POST")
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, json.loads(response.read())

    def wait_for_stats(self, condition, timeout: float = 5.0) -> dict:
        """Per-request counters reach Envoy on the filter's next tick; poll until `condition`."""
        return poll(self.stats, condition, timeout)

    def stats(self) -> dict:
        """The filter's counters summed over every sidecar."""
        total = {}
        for pod in self.pods.values():
            for key, value in pod.envoy.sidetrace_stats().items():
                total[key] = total.get(key, 0) + value
        return total

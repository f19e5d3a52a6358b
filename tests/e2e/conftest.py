import pytest

from harness.mesh import Mesh


@pytest.fixture(scope="module")
def mesh():
    """client → sidecar A inbound → app A → sidecar A outbound → sidecar B inbound → app B."""
    with Mesh({"svc-a": ["svc-b"], "svc-b": []}) as mesh:
        yield mesh

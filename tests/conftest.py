import os
import sys

# The harness package lives beside the tests.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pytest  # noqa: E402

# Its trace checks assert like tests do, so their failures should read like test failures.
pytest.register_assert_rewrite("harness.chains")

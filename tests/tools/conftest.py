"""Fixtures for the tools tests."""
import pytest

from tools_sandbox_world import make_escape_world


@pytest.fixture
def escape_world(tmp_path):
    """tmp/root (the sandbox) beside tmp/outside and tmp/root-evil (same prefix), with links planted inside."""
    return make_escape_world(tmp_path)

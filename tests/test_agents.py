"""Agent kinds: packages add their own through the ``omium.agents`` entry-point group."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from omium import MultiAgentExecutor, WorkflowValidationError, prepare
from omium.agents import registry


@pytest.fixture
def shout_plugin(tmp_path: Path) -> Iterator[None]:
    """An installed distribution (a dist-info on sys.path) declaring the 'shout' kind."""
    dist = tmp_path / "omium_shout-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: omium-shout\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[omium.agents]\nshout = tests.agents_for_tests:ShoutAgent\n")
    sys.path.insert(0, str(tmp_path))
    registry._from_entry_points.cache_clear()
    yield
    sys.path.remove(str(tmp_path))
    registry._from_entry_points.cache_clear()


WF = {"agents": [{"id": "loud", "framework": "shout", "definition": {"text": "hi"}}]}


async def test_entry_point_agent_kind_runs(shout_plugin: None) -> None:
    assert "shout" in registry.known_frameworks()
    async with MultiAgentExecutor() as ex:
        result = await ex.execute("ep1", WF)
    assert result.status == "completed" and result.results["loud"] == {"shout": "HI"}


def test_plugin_checks_its_own_definition(shout_plugin: None) -> None:
    with pytest.raises(WorkflowValidationError) as err:
        prepare({"agents": [{"id": "loud", "framework": "shout", "definition": {}}]})
    assert str(err.value.problems[0]) == "agents[0] (loud).definition.text: required, a string"


def test_without_the_plugin_the_kind_is_unknown() -> None:
    with pytest.raises(WorkflowValidationError) as err:
        prepare(WF)
    assert "unknown framework 'shout' (known: " in str(err.value)
    assert "python" in str(err.value)

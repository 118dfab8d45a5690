"""The plan's own four tests, as written there, with python agents standing in for the
crewai/langgraph definitions the plan elides (``{...}``)."""

from __future__ import annotations

import pytest
from jsonschema import ValidationError

from omium import HandoffProtocol, MultiAgentExecutor

APPROVE = {"callable": "tests.agents_for_tests:approve"}
ECHO = {"callable": "tests.agents_for_tests:echo"}


@pytest.fixture
async def executor():
    async with MultiAgentExecutor() as ex:
        yield ex


@pytest.fixture
def handoff_protocol() -> HandoffProtocol:
    return HandoffProtocol()


async def test_sequential_two_agent_workflow():
    """Test sequential execution of 2 agents"""

    workflow = {
        "agents": [
            {"id": "kyc_agent", "framework": "python", "definition": ECHO},
            {"id": "fraud_agent", "framework": "python", "definition": ECHO},
        ],
        "execution_order": "sequential",
    }

    executor = MultiAgentExecutor()
    result = await executor.execute("test-exec-1", workflow)

    assert result.status == "completed"
    assert "kyc_agent" in result.results
    assert "fraud_agent" in result.results
    # The second agent received the first one's output through the handoff.
    assert result.results["fraud_agent"]["seen"] == result.results["kyc_agent"]
    await executor.aclose()


async def test_parallel_consensus(executor):
    """Test parallel execution with consensus"""

    workflow = {
        "agents": [
            {"id": "agent_1", "framework": "python", "definition": APPROVE},
            {"id": "agent_2", "framework": "python", "definition": APPROVE},
            {"id": "agent_3", "framework": "python", "definition": APPROVE},
        ],
        "execution_order": "parallel",
    }

    result = await executor.execute("test-exec-2", workflow)

    assert result.status == "completed"
    assert len(result.results) == 3
    assert result.consensus["agreement_level"] > 0.5


async def test_handoff_validation(handoff_protocol):
    """Test handoff with schema validation"""

    data = {"customer_verified": True, "risk_score": 0.3}
    schema = {
        "type": "object",
        "properties": {
            "customer_verified": {"type": "boolean"},
            "risk_score": {"type": "number", "minimum": 0, "maximum": 1},
        },
    }

    result = await handoff_protocol.initiate_handoff(
        execution_id="test",
        from_agent_id="agent_1",
        to_agent_ids=["agent_2", "agent_3"],
        data=data,
        required_schema=schema,
    )

    assert result.status == "success"
    assert result.agents_applied == 2


async def test_handoff_validation_failure(handoff_protocol):
    """Test handoff with invalid data"""

    data = {"customer_verified": True, "risk_score": 1.5}  # Invalid: > 1
    schema = {
        "type": "object",
        "properties": {
            "risk_score": {"type": "number", "minimum": 0, "maximum": 1},
        },
    }

    with pytest.raises(ValidationError):
        await handoff_protocol.initiate_handoff(
            execution_id="test",
            from_agent_id="agent_1",
            to_agent_ids=["agent_2"],
            data=data,
            required_schema=schema,
        )

"""The LLM router an engine process builds for its llm agents (the executor's, a worker's),
and the check that it can serve them, made wherever a workflow is accepted."""

from __future__ import annotations

from typing import TYPE_CHECKING

from omium.billing.ledger import Ledger
from omium.engine.graph import WorkflowGraph
from omium.errors import FieldProblem, LLMConfigError, WorkflowValidationError
from omium.store.base import BillingStore

if TYPE_CHECKING:
    from omium.llm.config import LLMConfig
    from omium.llm.router import LLMRouter

LLM = "llm"  # the framework whose agents call the router


def router_for(plan: WorkflowGraph, store: BillingStore) -> LLMRouter | None:
    """A router from the LLM config, billing ``store``; None if ``plan`` has no llm agent."""
    if LLM not in plan.frameworks:
        return None
    return build_router(store)


def build_router(store: BillingStore) -> LLMRouter:
    """A router from the LLM config, billing ``store`` (for llm agents, and for the gateway
    other agents call)."""
    # Imported here: runs of python agents only never load the llm layer.
    from omium.llm.config import load_config
    from omium.llm.router import LLMRouter

    return LLMRouter(load_config(), ledger=Ledger(store))


def check_llm_backends(plan: WorkflowGraph, config: LLMConfig | None = None, *,
                       source: str | None = None) -> None:
    """Every llm agent of ``plan`` (fallbacks included) has a backend to serve it in
    ``config``, by default the config this process finds as ``router_for`` does
    (``omium.llm.config.load_config``): one at all, and one serving the model its definition
    names, if it names one. Raises ``WorkflowValidationError`` naming each agent
    (``agents[i] (id).field``) and how to configure a backend; a plan without llm agents
    never reads the config.

    Called where a workflow is accepted to run in this process's environment (``omium
    validate`` and ``omium run``, the API's registration and submission), so they agree on
    what is valid. Not part of ``prepare``: a resume, a worker, a stored execution shown, or
    an executor given its own router prepare definitions whatever this config says."""
    if LLM not in plan.frameworks:
        return
    from omium.llm.config import SETUP_HINT, load_config

    agents = [(i, a) for i, a in enumerate(plan.workflow.agents) if a.framework == LLM]
    try:
        cfg = config if config is not None else load_config()
    except LLMConfigError as err:
        raise WorkflowValidationError([FieldProblem(
            f"agents[{i}] ({a.id}).framework", f"no usable LLM backend: the LLM config is "
            f"invalid ({err})") for i, a in agents], source) from None
    problems = []
    for i, spec in agents:
        where = f"agents[{i}] ({spec.id})"
        model = spec.definition.get("model")
        if not cfg.backends:
            problems.append(FieldProblem(f"{where}.framework", "an llm agent needs an LLM "
                                         f"backend and none is configured; {SETUP_HINT}"))
        elif isinstance(model, str) and not any(b.serves(model) for b in cfg.backends):
            served = ", ".join(f"{b.name} ({b.model})" for b in cfg.backends)
            problems.append(FieldProblem(f"{where}.definition.model", (
                f"no configured LLM backend serves model {model!r} (configured: {served}); "
                f"name one of their models or backends, or {SETUP_HINT}")))
    if problems:
        raise WorkflowValidationError(problems, source)

"""``framework: llm``: an agent that asks an LLM through the router.

definition: {model?, system?, prompt, output_schema?, temperature?, max_tokens?, json_mode?}
``prompt`` and ``system`` are templates over the agent's inputs: ``{{ applicant.name }}``
inserts a value (dicts and lists as JSON), ``{{ inputs }}`` the whole input. With an output
schema the agent asks for JSON, parses and validates it; a reply that does not parse or
validate is a failure carrying the reply, retried per the agent's retry policy.
"""

from __future__ import annotations

import json
import re
from typing import Any

from jsonschema import Draft202012Validator, SchemaError

from omium.agents.base import Agent, AgentContext
from omium.errors import AgentError, FieldProblem, OutputValidationError
from omium.ids import random_hex
from omium.schemas import first_error
from omium.workflow.model import AgentSpec

_SLOT = re.compile(r"\{\{\s*([A-Za-z_][\w.]*|inputs)\s*\}\}")
_KEYS = {"model", "system", "prompt", "output_schema", "temperature", "max_tokens", "json_mode"}


def render(template: str, inputs: Any) -> str:
    def value(m: re.Match[str]) -> str:
        path = m.group(1)
        current: Any = inputs
        if path != "inputs":
            for part in path.split("."):
                if isinstance(current, dict) and part in current:
                    current = current[part]
                elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
                    current = current[int(part)]
                else:
                    raise AgentError(f"prompt template: inputs have no {path!r}")
        return current if isinstance(current, str) else json.dumps(current, default=str)

    return _SLOT.sub(value, template)


def parse_json_reply(text: str) -> Any:
    """The JSON value in a reply, tolerating code fences and prose around one object."""
    stripped = re.sub(r"^```(?:json)?\s*|\s*```$", "", text.strip())
    try:
        return json.loads(stripped)
    except json.JSONDecodeError:
        start, end = stripped.find("{"), stripped.rfind("}")
        if start != -1 and end > start:
            try:
                return json.loads(stripped[start:end + 1])
            except json.JSONDecodeError:
                pass
    raise OutputValidationError(f"reply is not JSON: {text[:500]!r}")


class LLMAgent(Agent):
    framework = "llm"

    def __init__(self, spec: AgentSpec, base_dir: str | None = None) -> None:
        super().__init__(spec, base_dir)
        d = spec.definition
        self.schema: dict[str, Any] | None = d.get("output_schema") or spec.output_schema
        self.model: str | None = d.get("model")

    @classmethod
    def check(cls, spec: AgentSpec, base_dir: str | None) -> list[FieldProblem]:
        d, problems = spec.definition, []
        if not isinstance(d.get("prompt"), str) or not d["prompt"].strip():
            problems.append(FieldProblem("definition.prompt", "required, a template string"))
        if (unknown := set(d) - _KEYS):
            problems.append(FieldProblem("definition", f"unknown keys {sorted(unknown)}"))
        if "model" in d and (not isinstance(d["model"], str) or not d["model"]):
            problems.append(FieldProblem("definition.model", "must be a model or backend name"))
        if "system" in d and not isinstance(d["system"], str):
            problems.append(FieldProblem("definition.system", "must be a string"))
        if "max_tokens" in d and (not isinstance(d["max_tokens"], int) or d["max_tokens"] < 1):
            problems.append(FieldProblem("definition.max_tokens", "must be an integer >= 1"))
        temp = d.get("temperature", 0)
        if not isinstance(temp, int | float) or not 0 <= temp <= 2:
            problems.append(FieldProblem("definition.temperature", "must be between 0 and 2"))
        if "output_schema" in d:
            try:
                Draft202012Validator.check_schema(d["output_schema"])
            except SchemaError as err:
                problems.append(FieldProblem("definition.output_schema",
                                             f"not a valid JSON Schema: {err.message}"))
        return problems

    def messages(self, inputs: Any) -> list[dict[str, str]]:
        d = self.spec.definition
        system = render(d["system"], inputs) if d.get("system") else ""
        if self.schema is not None:
            system += ("\n\nReply with only a JSON value (no prose, no code fence) that "
                       f"matches this JSON Schema:\n{json.dumps(self.schema)}")
        out = [{"role": "system", "content": system.strip()}] if system.strip() else []
        return [*out, {"role": "user", "content": render(d["prompt"], inputs)}]

    async def run(self, inputs: Any, ctx: AgentContext) -> Any:
        router = ctx.llm
        if router is None:
            raise AgentError("no LLM router: configure backends (omium-llm.yaml or "
                             "OMIUM_LLM_CONFIG) for llm agents")
        d = self.spec.definition
        result = await router.chat(
            self.messages(inputs), model=self.model, max_tokens=d.get("max_tokens"),
            temperature=d.get("temperature", 0),
            extra={"response_format": {"type": "json_object"}} if d.get("json_mode") else None,
            tenant_id=ctx.tenant_id, execution_id=ctx.execution_id, agent_id=ctx.agent_id,
            # One key per real call: a retried *write* of this call never charges twice,
            # while a re-run after a crash (a new call, new tokens) is billed again.
            idempotency_key=f"{ctx.idempotency_key}:{ctx.attempt}:{random_hex(12)}")
        if self.schema is None:
            return {"text": result.text, "model": result.model, "backend": result.backend}
        output = parse_json_reply(result.text)
        if (err := first_error(self.schema, output)) is not None:
            raise OutputValidationError(f"reply does not match output_schema at "
                                        f"{err.json_path}: {err.message}; reply: "
                                        f"{result.text[:500]!r}")
        return output

"""A graph's state as JSON: what an Omium agent may output (checkpointed, handed off).

LangChain messages become ``{role, content}`` (OpenAI's roles), Pydantic models and
dataclasses their fields, tuples and sets lists, dates ISO text, enums their value. Anything
else is left as it is, and the engine names its path if it is not JSON.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from pydantic import BaseModel

_ROLES: tuple[tuple[type[BaseMessage], str], ...] = (
    (HumanMessage, "user"), (AIMessage, "assistant"), (SystemMessage, "system"),
    (ToolMessage, "tool"), (FunctionMessage, "function"))


def _role(message: BaseMessage) -> str:
    if isinstance(message, ChatMessage):
        return message.role
    # isinstance, not ``type``: a streamed AIMessageChunk is an assistant message too.
    return next((role for cls, role in _ROLES if isinstance(message, cls)), message.type)


def jsonable(value: Any) -> Any:
    if isinstance(value, BaseMessage):
        return {"role": _role(value), "content": jsonable(value.content)}
    if isinstance(value, BaseModel):
        return jsonable(dict(value))  # fields as they are: messages inside stay messages
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {k if isinstance(k, str) else str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    return value

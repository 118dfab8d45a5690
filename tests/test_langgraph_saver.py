"""``OmiumSaver``: LangGraph's official checkpointer conformance suite, on SQLite and
PostgreSQL, and the sync methods (from another thread they work; on the store's own event
loop they refuse instead of deadlocking). The store under it: tests/test_store_graph.py."""

from __future__ import annotations

import asyncio
import operator
import threading
from collections.abc import AsyncIterator
from typing import Annotated, Any, TypedDict

import pytest

pytest.importorskip("langgraph.checkpoint.conformance")

from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.test_utils import (
    generate_checkpoint,
    generate_config,
    generate_metadata,
)
from langgraph.graph import END, START, StateGraph

from omium.contrib.langgraph import OmiumSaver
from omium.errors import StaleLeaseError
from omium.store.base import Store
from tests._store_util import execution


async def _forget_everything(store: Store) -> None:
    """Each capability's suite starts on an empty saver (some reuse fixed thread names)."""
    for cp in await store.list_graph_checkpoints():
        await store.delete_graph_thread(cp.thread_id)


async def test_the_saver_passes_langgraph_s_conformance_suite(store: Store) -> None:
    @checkpointer_test(name="OmiumSaver")
    async def omium_saver() -> AsyncIterator[OmiumSaver]:
        await _forget_everything(store)
        yield OmiumSaver(store)

    report = await validate(omium_saver)
    report.print_report()
    failures = {cap: r.failures for cap, r in report.results.items() if r.failures}
    assert report.passed_all_base(), failures
    assert not failures
    # What the suite ran: every base capability, each with tests that passed.
    ran = {cap for cap, r in report.results.items() if r.detected and r.tests_passed}
    assert ran == {"put", "put_writes", "get_tuple", "list", "delete_thread"}


def _write(saver: OmiumSaver, thread: str) -> list[Any]:
    """The sync interface, end to end, from a thread that is not the event loop's."""
    stored = saver.put(generate_config(thread), generate_checkpoint(channel_values={"a": 1},
                                                                  channel_versions={"a": 1}),
                       generate_metadata(step=0, who="sync"), {"a": 1})
    saver.put_writes(stored, [("a", 2), ("b", "x")], "task-1")
    found = saver.get_tuple(generate_config(thread))
    listed = list(saver.list(generate_config(thread), filter={"who": "sync"}))
    saver.delete_thread(thread)
    return [stored, found, listed, saver.get_tuple(generate_config(thread))]


async def test_sync_methods_run_on_the_store_s_loop_from_other_threads(store: Store) -> None:
    saver = OmiumSaver(store)
    stored, found, listed, after = await asyncio.to_thread(_write, saver, "sync-thread")
    assert found is not None and found.config == stored
    assert found.checkpoint["channel_values"] == {"a": 1}
    assert found.metadata["who"] == "sync"
    assert found.pending_writes == [("task-1", "a", 2), ("task-1", "b", "x")]
    assert [t.config for t in listed] == [stored]
    assert after is None


async def test_sync_methods_on_the_loop_s_own_thread_refuse_instead_of_deadlocking(
        store: Store) -> None:
    saver = OmiumSaver(store)
    config = generate_config("t")
    with pytest.raises(asyncio.InvalidStateError, match="use its async method"):
        saver.get_tuple(config)
    with pytest.raises(asyncio.InvalidStateError):
        list(saver.list(config))
    with pytest.raises(asyncio.InvalidStateError):
        saver.put(config, generate_checkpoint(), generate_metadata(), {})
    with pytest.raises(asyncio.InvalidStateError):
        saver.delete_thread("t")
    assert await saver.aget_tuple(config) is None  # nothing was written meanwhile


def test_sync_methods_refuse_once_the_loop_has_stopped(tmp_path: Any) -> None:
    from omium.store import open_store

    async def make() -> OmiumSaver:
        store = open_store(f"sqlite:///{tmp_path}/s.db")
        await store.connect()
        await store.close()
        return OmiumSaver(store)

    saver = asyncio.run(make())
    with pytest.raises(RuntimeError, match="loop is not running"):  # never a hang
        saver.get_tuple(generate_config("t"))


class _Count(TypedDict):
    steps: Annotated[list[str], operator.add]


def _counting_graph() -> Any:
    builder = StateGraph(_Count)
    builder.add_node("one", lambda s: {"steps": ["one"]})
    builder.add_node("two", lambda s: {"steps": ["two"]})
    builder.add_edge(START, "one")
    builder.add_edge("one", "two")
    builder.add_edge("two", END)
    return builder


async def test_a_sync_graph_invoked_in_a_thread_checkpoints_through_the_saver(
        store: Store) -> None:
    saver = OmiumSaver(store)
    graph = _counting_graph().compile(checkpointer=saver)
    config = {"configurable": {"thread_id": "sync-graph"}}
    caller = []

    def invoke() -> Any:
        caller.append(threading.current_thread() is not threading.main_thread())
        return graph.invoke({"steps": []}, config)

    assert await asyncio.to_thread(invoke) == {"steps": ["one", "two"]}
    assert caller == [True]
    # Every super-step left a checkpoint, newest first: the async view of the same thread.
    steps = [t.metadata["step"] async for t in saver.alist(config)]
    assert steps == [2, 1, 0, -1]
    assert (await graph.aget_state(config)).values == {"steps": ["one", "two"]}


async def test_a_fenced_saver_writes_nothing_once_the_execution_has_moved_on(
        store: Store) -> None:
    await store.create_execution(execution("ex", lease_epoch=3))
    graph = _counting_graph()
    live = graph.compile(checkpointer=OmiumSaver(store, execution_id="ex", epoch=3))
    config = {"configurable": {"thread_id": "ex:agent"}}
    assert await live.ainvoke({"steps": []}, config) == {"steps": ["one", "two"]}
    stale = graph.compile(checkpointer=OmiumSaver(store, execution_id="ex", epoch=2))
    with pytest.raises(StaleLeaseError):
        await stale.ainvoke({"steps": []}, {"configurable": {"thread_id": "ex:other"}})
    assert await store.list_graph_checkpoints(thread_id="ex:other") == []
    rows = await store.list_graph_checkpoints(thread_id="ex:agent")
    assert rows and {r.execution_id for r in rows} == {"ex"}

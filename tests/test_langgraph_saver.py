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


@pytest.mark.parametrize("hold_input", [False, True], ids=["plain", "hold_input"])
async def test_the_saver_passes_langgraph_s_conformance_suite(store: Store,
                                                               hold_input: bool) -> None:
    # With hold_input (how the adapter runs graphs) too: every read sees a held checkpoint.
    @checkpointer_test(name="OmiumSaver")
    async def omium_saver() -> AsyncIterator[OmiumSaver]:
        await _forget_everything(store)
        yield OmiumSaver(store, hold_input=hold_input)

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


class _Calls:
    """Counts the store's graph writes (one call each is one transaction)."""

    def __init__(self, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
        self.checkpoints: list[int] = []  # per checkpoint put: the task writes it carried
        self.alone = 0  # put_graph_writes calls: writes that went on their own
        put, writes = store.put_graph_checkpoint, store.put_graph_writes

        self.earlier: list[list[Any]] = []  # per checkpoint put: the held ones it carried

        async def put_graph_checkpoint(cp: Any, **kw: Any) -> None:
            self.checkpoints.append(len(kw.get("writes", ())))
            self.earlier.append([c.metadata["source"] for c in kw.get("earlier", ())])
            await put(cp, **kw)

        async def put_graph_writes(*args: Any, **kw: Any) -> None:
            self.alone += 1
            await writes(*args, **kw)

        monkeypatch.setattr(store, "put_graph_checkpoint", put_graph_checkpoint)
        monkeypatch.setattr(store, "put_graph_writes", put_graph_writes)


async def test_a_step_s_writes_share_its_checkpoint_s_transaction(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _Calls(store, monkeypatch)
    graph = _counting_graph().compile(checkpointer=OmiumSaver(store))
    config = {"configurable": {"thread_id": "merged"}}
    assert await graph.ainvoke({"steps": []}, config, durability="sync") == {
        "steps": ["one", "two"]}
    # The input checkpoint, then one transaction per task: its writes and the checkpoint
    # after it (the start task's, one's, two's), and no writes stored on their own.
    assert calls.checkpoints == [0, 1, 1, 1] and calls.alone == 0
    stored = await store.list_graph_checkpoints(thread_id="merged")
    assert len(stored) == 4 and all(cp.writes for cp in stored[1:])  # every task's writes


async def test_a_held_input_checkpoint_rides_in_the_first_step_s_transaction(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _Calls(store, monkeypatch)
    graph = _counting_graph().compile(checkpointer=OmiumSaver(store, hold_input=True))
    config = {"configurable": {"thread_id": "held"}}
    assert await graph.ainvoke({"steps": []}, config, durability="sync") == {
        "steps": ["one", "two"]}
    # One transaction fewer than above: the input checkpoint went in the start task's.
    assert calls.checkpoints == [1, 1, 1] and calls.earlier == [["input"], [], []]
    stored = await store.list_graph_checkpoints(thread_id="held")
    assert [cp.metadata["step"] for cp in stored] == [2, 1, 0, -1]
    assert stored[-1].metadata["source"] == "input"


async def test_a_held_input_checkpoint_is_stored_before_a_read_or_on_flush(
        store: Store) -> None:
    saver = OmiumSaver(store, hold_input=True)
    config = generate_config("held-read")
    stored = await saver.aput(config, generate_checkpoint(), generate_metadata(source="input"),
                              {})
    assert await store.list_graph_checkpoints(thread_id="held-read") == []  # held
    found = await saver.aget_tuple(config)  # the read writes it first, and finds it
    assert found is not None and found.config == stored
    assert len(await store.list_graph_checkpoints(thread_id="held-read")) == 1
    # A graph that stops before any step: the adapter's flush stores what it left held.
    config = generate_config("held-flush")
    await saver.aput(config, generate_checkpoint(), generate_metadata(source="input"), {})
    assert await store.list_graph_checkpoints(thread_id="held-flush") == []
    await saver.aflush()
    [cp] = await store.list_graph_checkpoints(thread_id="held-flush")
    assert cp.metadata["source"] == "input"
    await saver.aflush()  # nothing held: nothing written
    assert len(await store.list_graph_checkpoints(thread_id="held-flush")) == 1


async def test_writes_no_checkpoint_follows_are_stored_before_aput_writes_returns(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _Calls(store, monkeypatch)
    saver = OmiumSaver(store)
    stored = await saver.aput(generate_config("alone"), generate_checkpoint(),
                              generate_metadata(), {})
    await saver.aput_writes(stored, [("a", 1), ("b", 2)], "task-1")
    assert calls.alone == 1  # nothing came to carry them: written on their own, and awaited
    [cp] = await store.list_graph_checkpoints(thread_id="alone")
    assert [(w.task_id, w.channel) for w in cp.writes] == [("task-1", "a"), ("task-1", "b")]
    # Two tasks of one step finishing together: both wait, a read sees both.
    await asyncio.gather(saver.aput_writes(stored, [("c", 3)], "task-2"),
                         saver.aput_writes(stored, [("d", 4)], "task-3"))
    found = await saver.aget_tuple(stored)
    assert found is not None and {w[0] for w in found.pending_writes} == {
        "task-1", "task-2", "task-3"}


async def test_writes_waiting_when_their_checkpoint_is_cancelled_are_still_stored(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    saver = OmiumSaver(store)
    first = await saver.aput(generate_config("cancel"), generate_checkpoint(),
                             generate_metadata(), {})
    waiting = asyncio.ensure_future(saver.aput_writes(first, [("a", 1)], "task-1"))
    await asyncio.sleep(0)  # handed over, waiting for a checkpoint to join
    # The next checkpoint's write is still under way when the cancel lands (an idle store
    # may answer at once, before any cancel could).
    gate, put_checkpoint = asyncio.Event(), store.put_graph_checkpoint

    async def under_way(*args: Any, **kw: Any) -> Any:
        await gate.wait()
        return await put_checkpoint(*args, **kw)

    monkeypatch.setattr(store, "put_graph_checkpoint", under_way)
    put = asyncio.ensure_future(saver.aput(generate_config("cancel"), generate_checkpoint(),
                                           generate_metadata(), {}))
    await asyncio.sleep(0)
    put.cancel()
    with pytest.raises(asyncio.CancelledError):
        await put
    await waiting  # written all the same, on their own
    cp = await store.get_graph_checkpoint("cancel", "", first["configurable"]["checkpoint_id"])
    assert cp is not None and [w.channel for w in cp.writes] == ["a"]


async def test_a_thread_known_empty_is_read_once_and_forgotten_on_a_write(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    saver = OmiumSaver(store)
    reads = []
    get = store.get_graph_checkpoint

    async def counted(*args: Any, **kw: Any) -> Any:
        reads.append(args[0])
        return await get(*args, **kw)

    monkeypatch.setattr(store, "get_graph_checkpoint", counted)
    config = generate_config("empty")
    assert await saver.aget_tuple(config) is None and reads == ["empty"]
    saver.known_empty("empty")
    assert await saver.aget_tuple(config) is None and reads == ["empty"]  # no second read
    assert await saver.aget_tuple(config) is None and len(reads) == 2  # once only
    saver.known_empty("empty")
    await saver.aput(config, generate_checkpoint(), generate_metadata(), {})
    assert await saver.aget_tuple(config) is not None and len(reads) == 3  # a write forgets

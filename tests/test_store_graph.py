"""``GraphCheckpointStore`` conformance: LangGraph checkpoints and pending writes, the same
from SQLite and PostgreSQL (the saver over them: tests/test_langgraph_saver.py)."""

from __future__ import annotations

import pytest

from omium.errors import StaleLeaseError
from omium.store import graph_sql
from omium.store.base import Store
from omium.store.records import GraphCheckpoint, GraphWrite, GraphWrites
from tests._store_util import execution


def _cp(thread: str, cp_id: str, ns: str = "", parent: str | None = None,
        **metadata: object) -> GraphCheckpoint:
    # A blob with a NUL byte and bytes that are not UTF-8: stored as bytes, not text.
    return GraphCheckpoint(thread, ns, cp_id, parent, "msgpack", b"\x00\xff" + cp_id.encode(),
                           dict(metadata))


def _ids(cps: list[GraphCheckpoint]) -> list[tuple[str, str, str]]:
    return [(c.thread_id, c.checkpoint_ns, c.checkpoint_id) for c in cps]


async def test_graph_checkpoints_are_found_by_thread_namespace_and_id_newest_first(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(1, 5):
        await store.put_graph_checkpoint(_cp("t1", f"c{i}", parent=f"c{i - 1}" if i > 1 else None,
                                             step=i, source="loop" if i % 2 else "input"))
    await store.put_graph_checkpoint(_cp("t1", "c9", ns="child", step=9))
    await store.put_graph_checkpoint(_cp("t2", "c3", step=3, nested={"a": [1, None]}))

    latest = await store.get_graph_checkpoint("t1", "")
    assert latest is not None and (latest.checkpoint_id, latest.parent_checkpoint_id) == (
        "c4", "c3")
    assert latest.checkpoint == b"\x00\xffc4" and latest.metadata == {"step": 4,
                                                                     "source": "input"}
    assert latest.created_at > 0 and latest.execution_id is None and latest.writes == []
    first = await store.get_graph_checkpoint("t1", "", "c1")
    assert first is not None and first.parent_checkpoint_id is None
    assert await store.get_graph_checkpoint("t1", "", "nope") is None
    assert await store.get_graph_checkpoint("t1", "other") is None
    assert await store.get_graph_checkpoint("t3", "") is None

    ls = store.list_graph_checkpoints
    assert _ids(await store.list_graph_checkpoints(thread_id="t1", checkpoint_ns="")) == [
        ("t1", "", "c4"), ("t1", "", "c3"), ("t1", "", "c2"), ("t1", "", "c1")]
    # Across threads: by id, then thread, newest first; the same id in two threads is two.
    assert _ids(await ls()) == [("t1", "child", "c9"), ("t1", "", "c4"), ("t2", "", "c3"),
                                ("t1", "", "c3"), ("t1", "", "c2"), ("t1", "", "c1")]
    assert _ids(await ls(thread_id="t1"))[:2] == [("t1", "child", "c9"), ("t1", "", "c4")]
    assert _ids(await ls(checkpoint_ns="child")) == [("t1", "child", "c9")]
    assert _ids(await ls(thread_id="t1", checkpoint_id="c2")) == [("t1", "", "c2")]
    assert _ids(await ls(thread_id="t1", before="c3", limit=1)) == [("t1", "", "c2")]
    assert _ids(await ls(limit=2)) == [("t1", "child", "c9"), ("t1", "", "c4")]
    assert await ls(limit=0) == []
    assert _ids(await ls(metadata={"source": "loop"})) == [("t1", "", "c3"), ("t1", "", "c1")]
    assert _ids(await ls(metadata={"nested": {"a": [1, None]}})) == [("t2", "", "c3")]
    assert _ids(await ls(metadata={"step": 3, "source": None})) == [("t2", "", "c3")]
    assert await ls(metadata={"step": "3"}) == []
    # A filter that discards rows pages on until the limit is met, the same rows either way.
    monkeypatch.setattr(graph_sql, "_PAGE", 2)
    assert _ids(await ls(metadata={"source": "loop"}, limit=2)) == [("t1", "", "c3"),
                                                                    ("t1", "", "c1")]
    assert len(await ls(metadata={"parents": None})) == 6

    # The same id again replaces the checkpoint (LangGraph re-puts on update_state).
    await store.put_graph_checkpoint(_cp("t1", "c4", parent="c3", step=40))
    again = await store.get_graph_checkpoint("t1", "", "c4")
    assert again is not None and again.metadata == {"step": 40}


async def test_graph_writes_keep_the_first_regular_write_and_replace_special_ones(
        store: Store) -> None:
    await store.put_graph_checkpoint(_cp("t", "c1"))
    put = store.put_graph_writes
    await store.put_graph_writes("t", "", "c1", [
        GraphWrite("task-b", 0, "x", "msgpack", b"\x00b0", "~b"),
        GraphWrite("task-b", 1, "y", "json", b"b1", "~b")])
    await put("t", "", "c1", [GraphWrite("task-a", 0, "x", "msgpack", b"a0", "~a")])
    # Retried: regular writes stay as first stored; the interrupt write (-3) is replaced.
    await put("t", "", "c1", [GraphWrite("task-b", 0, "x", "msgpack", b"CHANGED", "~b"),
                              GraphWrite("task-a", -3, "__interrupt__", "msgpack", b"i1", "~a")])
    await put("t", "", "c1", [GraphWrite("task-a", -3, "__interrupt__", "msgpack", b"i2", "~a")])
    await put("t", "", "c1", [])
    # Upper case sorts before lower case byte-wise whatever the database's collation says.
    await put("t", "", "c1", [GraphWrite("task-c", 0, "x", "null", b"", "B")])
    cp = await store.get_graph_checkpoint("t", "")
    assert cp is not None
    assert [(w.task_path, w.task_id, w.idx, w.channel, w.type, w.value) for w in cp.writes] == [
        ("B", "task-c", 0, "x", "null", b""),
        ("~a", "task-a", -3, "__interrupt__", "msgpack", b"i2"),
        ("~a", "task-a", 0, "x", "msgpack", b"a0"),
        ("~b", "task-b", 0, "x", "msgpack", b"\x00b0"),
        ("~b", "task-b", 1, "y", "json", b"b1")]
    # Writes stay with their checkpoint: a newer checkpoint starts with none.
    await store.put_graph_checkpoint(_cp("t", "c2", parent="c1"))
    [newest, older] = await store.list_graph_checkpoints(thread_id="t")
    assert (newest.writes, len(older.writes)) == ([], 5)


async def test_a_checkpoint_carries_tasks_writes_in_its_transaction_and_fence(
        store: Store) -> None:
    await store.create_execution(execution("g2"))
    first = _cp("g2:a", "c1")
    first.execution_id = "g2"
    await store.put_graph_checkpoint(first, epoch=0)
    second = _cp("g2:a", "c2", parent="c1")
    second.execution_id = "g2"
    await store.put_graph_checkpoint(second, epoch=0, writes=[
        GraphWrites("g2:a", "", "c1", [GraphWrite("task", 0, "x", "json", b"1"),
                                      GraphWrite("task", -3, "__interrupt__", "json", b"i")]),
        GraphWrites("g2:a", "sub", "s1", [GraphWrite("child", 0, "y", "json", b"2")])])
    newest, older = await store.list_graph_checkpoints(thread_id="g2:a", checkpoint_ns="")
    assert (newest.checkpoint_id, newest.writes) == ("c2", [])
    assert [(w.task_id, w.idx, w.value) for w in older.writes] == [
        ("task", -3, b"i"), ("task", 0, b"1")]
    # A stale epoch: neither the checkpoint nor the writes it carried land.
    third = _cp("g2:a", "c3", parent="c2")
    third.execution_id = "g2"
    with pytest.raises(StaleLeaseError):
        await store.put_graph_checkpoint(third, epoch=5, writes=[
            GraphWrites("g2:a", "", "c2", [GraphWrite("task", 0, "x", "json", b"3")])])
    [latest] = await store.list_graph_checkpoints(thread_id="g2:a", checkpoint_ns="", limit=1)
    assert (latest.checkpoint_id, latest.writes) == ("c2", [])


async def test_graph_writes_are_fenced_by_the_lease_epoch(store: Store) -> None:
    await store.create_execution(execution("g1"))
    mine = _cp("g1:agent", "c1")
    mine.execution_id = "g1"
    await store.put_graph_checkpoint(mine, epoch=0)
    await store.put_graph_writes("g1:agent", "", "c1", [GraphWrite("t", 0, "x", "json", b"1")],
                                 execution_id="g1", epoch=0)
    with pytest.raises(StaleLeaseError):  # another epoch owns the execution: nothing lands
        await store.put_graph_checkpoint(GraphCheckpoint(
            "g1:agent", "", "c2", "c1", "json", b"{}", {}, execution_id="g1"), epoch=7)
    with pytest.raises(StaleLeaseError):
        await store.put_graph_writes("g1:agent", "", "c1",
                                     [GraphWrite("t", 1, "x", "json", b"2")],
                                     execution_id="g1", epoch=7)
    with pytest.raises(ValueError, match="needs the execution"):
        await store.put_graph_checkpoint(_cp("g1:agent", "c3"), epoch=0)
    [cp] = await store.list_graph_checkpoints(thread_id="g1:agent")
    assert (cp.checkpoint_id, cp.execution_id, len(cp.writes)) == ("c1", "g1", 1)


async def test_deleting_a_graph_thread_removes_every_namespace_and_write(store: Store) -> None:
    for thread in ("gone", "kept"):
        for ns in ("", "sub:1"):
            await store.put_graph_checkpoint(_cp(thread, "c1", ns=ns))
            await store.put_graph_writes(thread, ns, "c1",
                                         [GraphWrite("t", 0, "x", "json", b"1")])
    await store.delete_graph_thread("gone")
    await store.delete_graph_thread("never-was")
    assert await store.list_graph_checkpoints(thread_id="gone") == []
    kept = await store.list_graph_checkpoints(thread_id="kept")
    assert [(c.checkpoint_ns, len(c.writes)) for c in kept] == [("sub:1", 1), ("", 1)]
    # Its writes went too: a checkpoint put again under the old key has none.
    await store.put_graph_checkpoint(_cp("gone", "c1"))
    cp = await store.get_graph_checkpoint("gone", "")
    assert cp is not None and cp.writes == []

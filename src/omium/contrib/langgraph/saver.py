"""``OmiumSaver``: a LangGraph checkpoint saver over Omium's store (SQLite or PostgreSQL).

The async methods are the saver: LangGraph calls them under ``ainvoke``/``astream``, which is
how the adapter runs every graph. The sync ones exist for code that calls the saver from
another thread (a sync node reading ``graph.get_state``): they run the coroutine on the
store's event loop and wait. Called on that loop's own thread they would wait for
themselves forever, so they refuse with ``InvalidStateError`` instead, as LangGraph's own
async savers (langgraph-checkpoint-sqlite, -postgres) do.

Storage: one row per checkpoint with its channel values inside the serialised checkpoint
(as langgraph-checkpoint-sqlite keeps them), one row per pending write, metadata as JSON
(``omium.store.graph_sql``). Given an execution and lease epoch, every write is fenced: once
another process has taken the execution over, this one's graph can write nothing.

One commit per super-step: LangGraph hands a finished task's writes over (``aput_writes``,
which it does not wait for) a few event-loop turns before the step's checkpoint (``aput``,
which it waits for under ``durability="sync"``). The writes wait up to ``WRITES_WAIT_TURNS``
turns for that checkpoint (turns while an earlier checkpoint is being written do not count:
LangGraph writes the next one only after it) and go in its transaction, writes first; if
none comes (a step whose other tasks still run, an error, an interrupt, a direct caller)
they are written on their own. Either way ``aput_writes`` returns only once they are
committed, and they are never stored later than the checkpoint that follows them, as
before: the same rows in the same order, with fewer commits (each one a round trip to the
store).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from typing import Any, TypeVar, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    SerializerProtocol,
    get_checkpoint_id,
    get_serializable_checkpoint_metadata,
)

from omium.store.base import GraphCheckpointStore
from omium.store.records import GraphCheckpoint, GraphWrite, GraphWrites

T = TypeVar("T")

# Event-loop turns that a task's writes wait for the step's checkpoint to share its commit
# (LangGraph 1.2 calls aput 1-4 turns after aput_writes for a step of one task). Turns, not
# time: when nothing else is ready they pass in microseconds.
WRITES_WAIT_TURNS = 8
_Pending = tuple[GraphWrites, "asyncio.Future[None]"]


def _config(thread_id: str, checkpoint_ns: str, checkpoint_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": checkpoint_ns,
                             "checkpoint_id": checkpoint_id}}


class OmiumSaver(BaseCheckpointSaver[str]):
    """Checkpoints of LangGraph threads in ``store``. Make it on the event loop the store
    serves (the sync methods run there). ``execution_id`` and ``epoch``: the Omium execution
    whose lease fences every write (both or neither)."""

    def __init__(self, store: GraphCheckpointStore, *, execution_id: str | None = None,
                 epoch: int | None = None, serde: SerializerProtocol | None = None,
                 hold_input: bool = False) -> None:
        super().__init__(serde=serde)
        self.store = store
        self.execution_id, self.epoch = execution_id, epoch
        # See ``aput``: an input checkpoint waits for the next one's transaction; its reads
        # and ``aflush`` write it before that. Off by default: only a caller that reads the
        # thread through this saver alone (the adapter) may hold a write back.
        self.hold_input = hold_input
        self._held: GraphCheckpoint | None = None
        self.loop = asyncio.get_running_loop()
        self._pending: list[_Pending] = []  # writes waiting for a checkpoint to join
        self._waiting = False  # a countdown of turns is under way (_wait_turns)
        self._putting = 0  # checkpoints being written now
        self._flushes: set[asyncio.Task[None]] = set()
        # A thread known to hold no checkpoint yet (see ``known_empty``); cleared by a write.
        self._empty: str | None = None

    def known_empty(self, thread_id: str) -> None:
        """The caller just read ``thread_id`` and found no checkpoint: the next read of its
        latest checkpoint (LangGraph's own, as the graph starts) is answered without the
        store. Nothing else writes the thread meanwhile (its execution's lease fences other
        processes out), and any write through this saver forgets it."""
        self._empty = thread_id

    # -- the async interface
    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        conf = config["configurable"]
        if self._empty is not None:
            empty, self._empty = self._empty, None
            if (str(conf["thread_id"]) == empty and not conf.get("checkpoint_ns")
                    and get_checkpoint_id(config) is None):
                return None
        await self._drain()  # a read sees every write handed over before it
        cp = await self.store.get_graph_checkpoint(str(conf["thread_id"]),
                                                   conf.get("checkpoint_ns", ""),
                                                   get_checkpoint_id(config))
        return None if cp is None else self._tuple(cp)

    async def alist(self, config: RunnableConfig | None, *,
                    filter: dict[str, Any] | None = None,
                    before: RunnableConfig | None = None,
                    limit: int | None = None) -> AsyncIterator[CheckpointTuple]:
        conf = config["configurable"] if config else {}
        await self._drain()
        found = await self.store.list_graph_checkpoints(
            thread_id=str(conf["thread_id"]) if "thread_id" in conf else None,
            checkpoint_ns=conf.get("checkpoint_ns"), checkpoint_id=conf.get("checkpoint_id"),
            before=get_checkpoint_id(before) if before else None, metadata=filter,
            limit=limit)
        for cp in found:
            yield self._tuple(cp)

    async def aput(self, config: RunnableConfig, checkpoint: Checkpoint,
                   metadata: CheckpointMetadata, new_versions: ChannelVersions
                   ) -> RunnableConfig:
        conf = config["configurable"]
        thread_id, ns = str(conf["thread_id"]), conf.get("checkpoint_ns", "")
        type_, blob = self.serde.dumps_typed(checkpoint)
        self._empty = None
        cp = GraphCheckpoint(thread_id, ns, checkpoint["id"], conf.get("checkpoint_id"), type_,
                             blob, dict(get_serializable_checkpoint_metadata(config, metadata)),
                             execution_id=self.execution_id)
        if (self.hold_input and metadata.get("source") == "input" and self._held is None
                and not self._pending and not self._putting):
            # The checkpoint of an invocation's input. LangGraph's next one follows before
            # any node runs (the input's own step maps it into the channels) and takes it
            # into its transaction: a commit fewer per run. Lost to a kill in between, it
            # costs nothing: the adapter then starts the graph from the same input again.
            self._held = cp
            return _config(thread_id, ns, checkpoint["id"])
        joined, self._pending = self._pending, []
        held, self._held = self._held, None
        self._putting += 1
        try:
            await self.store.put_graph_checkpoint(cp, epoch=self.epoch,
                                                  writes=[w for w, _ in joined],
                                                  earlier=[held] if held else [])
        except Exception as err:  # the same transaction: the writes failed with it
            _settle(joined, err)
            self._held = self._held or held
            raise
        except BaseException:
            # Cancelled: the transaction may or may not commit. Write the writes again on
            # their own (a no-op if they landed), so that they are never lost.
            self._pending[:0] = joined
            self._held = self._held or held
            self._start_flush()
            raise
        finally:
            self._putting -= 1
            self._count_down()  # writes handed over meanwhile wait no longer than usual
        _settle(joined, None)
        return _config(thread_id, ns, checkpoint["id"])

    async def aput_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]],
                          task_id: str, task_path: str = "") -> None:
        conf = config["configurable"]
        rows = []
        for idx, (channel, value) in enumerate(writes):
            type_, blob = self.serde.dumps_typed(value)
            rows.append(GraphWrite(task_id, WRITES_IDX_MAP.get(channel, idx), channel, type_,
                                   blob, task_path))
        if not rows:
            return
        self._empty = None
        done: asyncio.Future[None] = self.loop.create_future()
        self._pending.append((GraphWrites(str(conf["thread_id"]), conf.get("checkpoint_ns", ""),
                                          str(conf["checkpoint_id"]), rows), done))
        self._count_down()
        # Shielded: a cancelled caller's writes are still stored (as a store call would be).
        await asyncio.shield(done)

    def _count_down(self) -> None:
        if self._pending and not self._waiting and not self._putting:
            self._waiting = True
            self.loop.call_soon(self._wait_turns, WRITES_WAIT_TURNS)

    def _wait_turns(self, left: int) -> None:
        if not self._pending or self._putting:
            # A checkpoint took them, or one is being written: LangGraph writes the next
            # one only after it (the countdown starts again when it is done).
            self._waiting = False
        elif left > 0:
            self.loop.call_soon(self._wait_turns, left - 1)
        else:
            self._waiting = False
            self._start_flush()

    def _start_flush(self) -> None:
        flush = self.loop.create_task(self._flush())
        self._flushes.add(flush)  # a reference, so the task is not collected mid-way
        flush.add_done_callback(self._flushes.discard)

    async def _flush(self) -> None:
        """The writes waiting now, on their own (one store call each: the store's group
        commit may still put them in one transaction)."""
        pending, self._pending = self._pending, []
        results = await asyncio.gather(*(self.store.put_graph_writes(
            w.thread_id, w.checkpoint_ns, w.checkpoint_id, w.writes,
            execution_id=self.execution_id, epoch=self.epoch) for w, _ in pending),
            return_exceptions=True)
        for (_, done), result in zip(pending, results, strict=True):
            if not done.done():
                if isinstance(result, BaseException):
                    done.set_exception(result)
                else:
                    done.set_result(None)

    async def _drain(self) -> None:
        """Write what is waiting now (before a read, so that it sees it)."""
        if self._held is not None:
            await self.aflush()
        if self._pending:
            await self._flush()
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)

    async def aflush(self) -> None:
        """Write a held input checkpoint now (``hold_input``): when the graph stopped before
        the checkpoint that would have taken it."""
        held, self._held = self._held, None
        if held is not None:
            try:
                await self.store.put_graph_checkpoint(held, epoch=self.epoch)
            except BaseException:
                self._held = self._held or held
                raise

    async def adelete_thread(self, thread_id: str) -> None:
        await self._drain()
        self._empty = None
        await self.store.delete_graph_thread(str(thread_id))

    def _tuple(self, cp: GraphCheckpoint) -> CheckpointTuple:
        parent = (_config(cp.thread_id, cp.checkpoint_ns, cp.parent_checkpoint_id)
                  if cp.parent_checkpoint_id else None)
        return CheckpointTuple(
            _config(cp.thread_id, cp.checkpoint_ns, cp.checkpoint_id),
            self.serde.loads_typed((cp.type, cp.checkpoint)),
            cast(CheckpointMetadata, cp.metadata), parent,
            [(w.task_id, w.channel, self.serde.loads_typed((w.type, w.value)))
             for w in cp.writes])

    # -- the sync interface: the same coroutines, run on the store's loop
    def _wait(self, make: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            raise asyncio.InvalidStateError(
                "a sync method of OmiumSaver was called on the event loop it runs on, where "
                "waiting for it would deadlock: use its async method (aget_tuple, alist, aput, "
                "...) or run the graph with ainvoke/astream")
        if self.loop.is_closed() or not self.loop.is_running():
            raise RuntimeError("OmiumSaver's event loop is not running: its sync methods "
                               "work only while the loop that made it runs")
        coro: Coroutine[Any, Any, Any] = make(*args, **kwargs)
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return cast(CheckpointTuple | None, self._wait(self.aget_tuple, config))

    def list(self, config: RunnableConfig | None, *,
             filter: dict[str, Any] | None = None,
             before: RunnableConfig | None = None,
             limit: int | None = None) -> Iterator[CheckpointTuple]:
        async def collect() -> list[CheckpointTuple]:
            return [t async for t in self.alist(config, filter=filter, before=before,
                                                limit=limit)]

        yield from cast(list[CheckpointTuple], self._wait(collect))

    def put(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
            new_versions: ChannelVersions) -> RunnableConfig:
        return cast(RunnableConfig,
                    self._wait(self.aput, config, checkpoint, metadata, new_versions))

    def put_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]],
                   task_id: str, task_path: str = "") -> None:
        self._wait(self.aput_writes, config, writes, task_id, task_path)

    def delete_thread(self, thread_id: str) -> None:
        self._wait(self.adelete_thread, thread_id)

    def get_next_version(self, current: str | None, channel: None) -> str:
        """Monotonic string versions with a random tail, as LangGraph's SQL savers make
        them (two writers of one version still differ)."""
        if current is None:
            current_v = 0
        elif isinstance(current, int):
            current_v = current
        else:
            current_v = int(current.split(".")[0])
        return f"{current_v + 1:032}.{random.random():016}"


def _settle(joined: list[_Pending], err: Exception | None) -> None:
    """Resolve the waiting writes a checkpoint's transaction carried (or failed with)."""
    for _, done in joined:
        if not done.done():
            if err is None:
                done.set_result(None)
            else:
                done.set_exception(err)

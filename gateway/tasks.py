"""Tracked background tasks and cancellation-proof waiting (DESIGN.md "Cancellation-safe").

aiohttp cancels a request handler when its client disconnects
(``handler_cancellation``), at whatever ``await`` the handler is on. Work that
must not stop half-way (a store transaction, a single-flight lookup other
requests wait for, an access-record flush) therefore runs in a task of its
own, spawned and tracked by a ``Background`` and drained on shutdown, and the
handler waits for it with ``uncancelled``. STYLE.md: never a bare
``create_task`` (an untracked task can be garbage-collected mid-flight and is
never drained) and never ``asyncio.shield`` (its inner task is untracked too).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Coroutine
from typing import Any, TypeVar

from gateway.observe.logging import get_logger

log = get_logger("gateway.tasks")
T = TypeVar("T")


class Background:
    """A set of tasks spawned for one owner (a store, a cache, the access recorder).

    ``spawn(coro, name=...)`` starts ``coro`` as a task and keeps a strong
    reference to it until it finishes; ``drain(timeout)`` waits for the tasks
    still running at shutdown. When a task finishes, a done-callback forgets it
    and logs (event ``background_task_failed``, at error level) any exception
    that is not one of the ``expected`` types given to ``spawn``: those are
    answers for whoever awaits the task, anything else is a bug worth seeing
    even when nobody awaits it. ``len(background)`` is the number still running.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(
        self,
        coro: Coroutine[Any, Any, T],
        *,
        name: str,
        expected: tuple[type[BaseException], ...] = (),
    ) -> asyncio.Task[T]:
        """Start ``coro`` now (needs a running loop) as a task named ``{owner}:{name}``; return it.

        ``expected``: exception types the task may end with that are not
        logged (the awaiting caller handles them).
        """
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.name}:{name}")
        self._tasks.add(task)
        task.add_done_callback(functools.partial(self._finished, expected))
        return task

    def _finished(self, expected: tuple[type[BaseException], ...], task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()  # also marks it retrieved: no "exception never retrieved" noise
        if exc is not None and not isinstance(exc, expected):
            log.error("background_task_failed", task=task.get_name(), error=repr(exc), exc_info=exc)

    async def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every task (those spawned meanwhile included).

        Tasks still running then are cancelled and given up to ``timeout``
        seconds more to unwind. The calling task itself is never waited for.
        Returns ``True`` if every task finished on its own; logs
        ``background_tasks_cancelled`` otherwise.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        me = asyncio.current_task()
        while True:
            running = {t for t in self._tasks if t is not me}
            if not running:
                return True
            left = deadline - loop.time()
            if left <= 0:
                break
            await asyncio.wait(running, timeout=left)
        log.warning(
            "background_tasks_cancelled",
            owner=self.name,
            tasks=sorted(t.get_name() for t in running),
            timeout=timeout,
        )
        for task in running:
            task.cancel()
        await asyncio.wait(running, timeout=timeout)
        return False


async def uncancelled(task: asyncio.Future[T]) -> T:
    """``task``'s result (or exception), without cancelling ``task`` when the waiter is cancelled.

    Unlike ``await task``, a ``CancelledError`` thrown into the waiter (its
    client disconnected, a timeout fired) does not reach ``task``: the waiter
    keeps waiting until ``task`` is done and then re-raises its own
    ``CancelledError``, so when it returns (or raises) the work is finished
    either way and no state is left half-changed. The wait is as bounded as
    ``task`` is (store and Redis calls carry their own timeouts). If ``task``
    itself was cancelled (shutdown drain), its ``CancelledError`` is raised.
    """
    cancelled: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await asyncio.wait((task,))
        except asyncio.CancelledError as exc:
            cancelled = exc
    if cancelled is not None:
        if not task.cancelled():
            task.exception()  # retrieved: this waiter no longer wants it
        raise cancelled
    return task.result()


def being_cancelled() -> bool:
    """Has the running task been asked to cancel (``Task.cancelling()``, Python 3.11)?"""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0

"""A bounded pool of daemon threads for blocking collector work.

concurrent.futures.ThreadPoolExecutor joins its threads at interpreter exit, so one
statvfs stuck on a dead NFS server would keep the process alive forever after SIGTERM.
Daemon threads are abandoned at exit instead. The scheduler guarantees at most one call
in flight per collector, so the pool never piles up threads behind a stuck call.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

_WorkItem = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class DaemonThreadPool(Executor):
    def __init__(self, max_workers: int, name: str = "worker") -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        # May be raised later (see the filesystem collector); threads are started on demand.
        self.max_workers = max_workers
        self._name = name
        # One lock for the queue and the count of waiting workers, so a submit always knows
        # exactly whether a waiting worker will take its call or a thread must be started.
        self._ready = threading.Condition(threading.Lock())
        self._queue: deque[_WorkItem] = deque()
        self._waiting = 0
        self._threads: list[threading.Thread] = []
        self._closed = False

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        with self._ready:
            if self._closed:
                raise RuntimeError("pool is shut down")
            self._queue.append((future, fn, args, kwargs))
            # Calls cancelled while queued would only hold their place: drop them.
            while self._queue and self._queue[0][0].cancelled():
                self._queue.popleft()
            if len(self._queue) > self._waiting and len(self._threads) < self.max_workers:
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
            self._ready.notify()
        return future

    @property
    def pending(self) -> int:
        """Calls queued and not yet started (withdrawn ones not counted)."""
        with self._ready:
            return sum(1 for item in self._queue if not item[0].cancelled())

    @property
    def threads(self) -> int:
        return len(self._threads)

    def _work(self) -> None:
        while True:
            with self._ready:
                self._waiting += 1
                while not self._queue and not self._closed:
                    self._ready.wait()
                self._waiting -= 1
                if not self._queue:  # closed and drained
                    return
                future, fn, args, kwargs = self._queue.popleft()
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del future, fn, args, kwargs

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._ready:
            self._closed = True
            threads = list(self._threads)
            if cancel_futures:
                while self._queue:
                    self._queue.popleft()[0].cancel()
            self._ready.notify_all()
        if wait:
            for thread in threads:
                thread.join()

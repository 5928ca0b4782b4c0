"""Dynamic batching: concurrent requests share one forward pass.

Requests put their images on an asyncio queue; one worker takes what is there,
waits at most ``max_wait_ms`` for more (up to ``max_batch`` images), and runs
the forward pass on a single inference thread (torch releases the GIL, so the
event loop keeps accepting and decoding uploads meanwhile). While one pass
runs, the next batch gathers, so under load batches fill without any waiting.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch


_STOP = object()  # what stop() queues behind the waiting requests
STOPPED = ("the server is stopping and ran no forward pass for this request: send it again "
           "once the server is back.")


@dataclass
class BatchStats:
    """Counters the server reports on ``GET /health``."""

    requests: int = 0
    images: int = 0
    forward_passes: int = 0
    largest_batch: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def as_dict(self) -> dict:
        with self.lock:
            return {"requests": self.requests, "images": self.images,
                    "forward_passes": self.forward_passes, "largest_batch": self.largest_batch}


class DynamicBatcher:
    """Run ``forward(uint8 batch) -> outputs`` on batches gathered from concurrent callers.

    ``forward`` returns an object whose ``proba`` (and ``novelty``, or None) rows
    follow the batch's images; each caller gets back its own rows.
    """

    def __init__(self, forward: Callable, max_batch: int = 32, max_wait_ms: float = 5.0):
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError(f"max_batch must be >= 1 and max_wait_ms >= 0, got {max_batch} "
                             f"and {max_wait_ms}.")
        self.forward = forward
        self.max_batch, self.max_wait = int(max_batch), max_wait_ms / 1000.0
        self.stats = BatchStats()
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None
        self._held = None  # (images, future) taken from the queue but left for the next pass
        self._stopping = False
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="easytl-infer")

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._stopping = False
        self._worker = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Answer every request already queued (their forward passes run), then end the worker.

        Cancelling the worker instead would leave the queued requests, and the one whose pass
        is running, waiting for ever. A request that still finds no pass (submitted while
        stopping) fails with a RuntimeError that says the server stopped.
        """
        self._stopping = True
        if self._worker is not None and not self._worker.done():
            await self._queue.put(_STOP)  # queued after every waiting request: they go first
            try:
                await self._worker
            except Exception:  # noqa: BLE001 - a broken worker: the requests still get an answer
                pass
        self._fail_waiting()
        self._thread.shutdown(wait=True)

    def _fail_waiting(self) -> None:
        left = [] if self._held is None else [self._held]
        self._held = None
        while self._queue is not None and not self._queue.empty():
            left.append(self._queue.get_nowait())
        for item in left:
            if item is not _STOP and not item[1].done():
                item[1].set_exception(RuntimeError(STOPPED))

    async def submit(self, images: torch.Tensor):
        """Outputs for a uint8 batch (n, 3, H, W); split into parts of ``max_batch`` if bigger."""
        if self._queue is None:
            raise RuntimeError("the batcher is not running: call start() first.")
        if self._stopping:
            raise RuntimeError(STOPPED)
        with self.stats.lock:
            self.stats.requests += 1
        loop = asyncio.get_running_loop()
        futures = []
        for start in range(0, len(images), self.max_batch):
            future = loop.create_future()
            await self._queue.put((images[start:start + self.max_batch], future))
            futures.append(future)
        parts = await asyncio.gather(*futures)
        if len(parts) == 1:
            return parts[0]
        novelty = None if parts[0].novelty is None else np.concatenate([p.novelty for p in parts])
        return type(parts[0])(np.concatenate([p.proba for p in parts]), novelty)

    async def _gather(self) -> list:
        """The next batch: the first waiting request, then others until full or time is up."""
        loop = asyncio.get_running_loop()
        if self._held is not None:  # the request that did not fit the previous pass goes first
            batch, self._held = [self._held], None
        else:
            batch = [await self._queue.get()]
        if batch[0] is _STOP:
            return None
        count = len(batch[0][0])
        deadline = loop.time() + self.max_wait
        while count < self.max_batch:
            try:
                if self._queue.empty():
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                else:
                    item = self._queue.get_nowait()
            except asyncio.TimeoutError:
                break
            if item is _STOP or count + len(item[0]) > self.max_batch:
                self._held = item  # too big for this pass: it opens the next one
                break
            batch.append(item)
            count += len(item[0])
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            if batch is None:  # stop(): every request queued before it has been answered
                return
            batch = [(images, future) for images, future in batch if not future.cancelled()]
            if not batch:
                continue
            images = torch.cat([images for images, _ in batch])
            try:
                outputs = await loop.run_in_executor(self._thread, self.forward, images)
            except Exception as exc:  # every waiting request learns of it; the worker goes on
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            with self.stats.lock:
                self.stats.forward_passes += 1
                self.stats.images += len(images)
                self.stats.largest_batch = max(self.stats.largest_batch, len(images))
            start = 0
            for part, future in batch:
                stop = start + len(part)
                if not future.done():
                    novelty = None if outputs.novelty is None else outputs.novelty[start:stop]
                    future.set_result(type(outputs)(outputs.proba[start:stop], novelty))
                start = stop

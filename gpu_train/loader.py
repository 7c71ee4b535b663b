"""Per-rank batches for each optimizer step, packed ahead on a thread and moved to the device.

Step data is arithmetic, not a stream: the global batch of a step is the ``global_blocks`` blocks
after the ``consumed_blocks`` already trained on, and rank ``r`` of ``W`` takes the ``r``-th
contiguous slice of it (``accum`` micro-batches of ``micro_blocks``). Any world size and
accumulation with the same global batch therefore trains on identical data, and the loader's whole
state is ``consumed_blocks``, advanced by the train loop after an optimizer step: prefetching
never moves it, so a checkpoint taken mid-prefetch resumes exactly.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch
from tweetmill.gpu_train.data import BlockPacker, DatasetError


class StepLoader:
    def __init__(
        self,
        packer: BlockPacker,
        *,
        global_blocks: int,
        micro_blocks: int,
        rank: int,
        world: int,
        device: torch.device,
        vocab_size: int,
        consumed_blocks: int = 0,
        prefetch: int = 2,
        workers: int = 2,
    ) -> None:
        per_rank, rem = divmod(global_blocks, world)
        if rem or per_rank % micro_blocks:
            raise ValueError(
                f"a global batch of {global_blocks} blocks does not split into {world} rank(s) x "
                f"micro-batches of {micro_blocks} blocks"
            )
        self.packer = packer
        self.global_blocks = global_blocks
        self.micro_blocks = micro_blocks
        self.accum = per_rank // micro_blocks
        self.rank = rank
        self.device = device
        self.vocab_size = vocab_size
        self.consumed_blocks = consumed_blocks
        self._prefetch = max(prefetch, workers)  # steps in flight: each worker packs a whole step
        self._pin = device.type == "cuda"
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tweetmill-loader")
        self._pending: dict[int, Future[torch.Tensor]] = {}

    def state_dict(self) -> dict[str, int]:
        return {"consumed_blocks": self.consumed_blocks}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.consumed_blocks = int(state["consumed_blocks"])

    def next(self) -> tuple[list[torch.Tensor], float]:
        """This rank's micro-batches (int32 ``[micro_blocks, seq_len + 1]`` on the device) for the
        step after ``consumed_blocks``, and the seconds spent waiting for them."""
        start = self._rank_start(self.consumed_blocks)
        t0 = time.perf_counter()
        future = self._pending.pop(start, None) or self._submit(start)
        host = future.result()
        wait = time.perf_counter() - t0
        for k in range(1, self._prefetch + 1):  # keep the next steps in flight
            ahead = self._rank_start(self.consumed_blocks + k * self.global_blocks)
            if ahead not in self._pending:
                self._pending[ahead] = self._submit(ahead)
        for stale in [s for s in self._pending if s < start]:
            self._pending.pop(stale).cancel()
        blocks = host.to(self.device, non_blocking=True)
        return list(blocks.split(self.micro_blocks)), wait

    def advance(self) -> None:
        """Called by the train loop once a step's optimizer update is done."""
        self.consumed_blocks += self.global_blocks

    def close(self) -> None:
        for f in self._pending.values():
            f.cancel()
        self._pending.clear()
        self._pool.shutdown(wait=True)

    def _rank_start(self, consumed: int) -> int:
        return consumed + self.rank * self.accum * self.micro_blocks

    def _submit(self, start: int) -> Future[torch.Tensor]:
        return self._pool.submit(self._load, start, self.accum * self.micro_blocks)

    def _load(self, start: int, count: int) -> torch.Tensor:
        blocks = self.packer.blocks(start, count)
        lo, hi = int(blocks.min()), int(blocks.max())
        if lo < 0 or hi >= self.vocab_size:
            raise DatasetError(f"token ids [{lo}, {hi}] outside the vocabulary of {self.vocab_size}")
        t = torch.from_numpy(np.ascontiguousarray(blocks))
        return t.pin_memory() if self._pin else t

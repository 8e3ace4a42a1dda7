"""Length-bucketed batch sampling and padding-aware collate functions.

A batch is a dict:

* `x`: LongTensor[B, T] of token ids padded with 0 (text), or FloatTensor[B, T, 88] of 0/1
  piano rolls padded with 0 (music);
* `lengths`: LongTensor[B]; `mask`: BoolTensor[B, T], True on real steps;
* `index`: LongTensor[B], the position of each sequence in its split's dataset.

T is the longest length in the batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Sampler

Batch = dict[str, Tensor]


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of dataset indices with similar lengths, in a seeded, per-epoch order.

    Training (`shuffle=True`), as torchtext's BucketIterator: the indices are shuffled, cut into
    chunks of `bucket_size_multiplier` batches, each chunk sorted by length and cut into batches,
    and the batch order shuffled. The generator is `torch.Generator` seeded with `seed + epoch`,
    so every epoch has its own order and the same (seed, epoch) always gives the same batches.
    Evaluation (`shuffle=False`): all indices sorted by length (ties by index), then batched.

    Batch size is given in sequences (`batch_size`) or in tokens (`max_tokens`, where a batch
    costs B x its longest length); if both are given, both limits hold. A sequence longer than
    `max_tokens` forms a batch of its own. With `max_tokens` and shuffling the number of batches
    can change a little from epoch to epoch: `len()` is exact for the current epoch, and a
    Lightning Trainer reads it once unless `reload_dataloaders_every_n_epochs=1`.

    `drop_last` drops the one short batch (fewer than `batch_size` sequences) when `batch_size`
    is set; it has no effect with `max_tokens` alone.

    Distributed (`num_replicas > 1`): rank `r` takes batches `r, r + R, r + 2R, ...` of the
    common list. In evaluation the union over ranks is every sequence exactly once (ranks may
    differ by one batch); with fewer batches than ranks the largest batches are halved until
    every rank has one (a rank without a batch would skip the epoch-end metric reduction the
    others wait in), as far as there are sequences. In training every rank gets the same
    number of batches: the list is padded by repeating its first batches (or cut, with
    `drop_last`).

    `state_dict()` holds the epoch and seed, so a resumed run sees the same data order (from
    the start of that epoch); `set_start(k)` then makes the next iteration skip the epoch's
    first k batches (a resume mid-epoch). `sampler.set_epoch` does the same as `set_epoch`:
    Lightning calls the former.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int | None = None,
        max_tokens: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
        bucket_size_multiplier: int = 50,
    ) -> None:
        if batch_size is None and max_tokens is None:
            raise ValueError("give batch_size or max_tokens")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_tokens is not None and max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"need 0 <= rank < num_replicas, got rank={rank}, {num_replicas=}")
        if bucket_size_multiplier < 1:
            raise ValueError(f"bucket_size_multiplier must be >= 1, got {bucket_size_multiplier}")
        self.lengths = np.asarray(lengths, dtype=np.int64)  # [N]
        if self.lengths.ndim != 1 or (self.lengths.size and self.lengths.min() < 1):
            raise ValueError("lengths must be a 1-D sequence of positive integers")
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        self.num_replicas = num_replicas
        self.rank = rank
        self.bucket_size_multiplier = bucket_size_multiplier
        self.epoch = 0
        self._start: tuple[int, int | None] = (0, None)
        self._cache: tuple[tuple[int, int], list[list[int]]] | None = None
        # Lightning calls `batch_sampler.sampler.set_epoch(epoch)` each epoch, not ours.
        self.sampler = _EpochIndices(self)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order the next iteration follows."""
        self.epoch = int(epoch)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.seed = int(state.get("seed", self.seed))

    def set_start(self, batch: int, epoch: int | None = None) -> None:
        """Begin the next iteration at batch `batch` (this rank's count) if that iteration is
        of `epoch` (None: whichever); later iterations start at 0 again. `len()` stays the
        full epoch's."""
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 0:
            raise ValueError(f"set_start needs a batch number >= 0, got {batch!r}")
        self._start = (batch, epoch)

    def __iter__(self) -> Iterator[list[int]]:
        (start, epoch), self._start = self._start, (0, None)
        if epoch is not None and epoch != self.epoch:
            start = 0
        yield from self._rank_batches()[start:]

    def __len__(self) -> int:
        return len(self._rank_batches())

    def _rank_batches(self) -> list[list[int]]:
        key = (self.seed, self.epoch)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self._make_batches())
        return self._cache[1]

    def _chunk_size(self) -> int:
        """Sequences per sorting chunk: a multiple of batch_size, so only the last is short."""
        if self.batch_size is not None:
            per_batch = self.batch_size
        else:
            mean = float(self.lengths.mean()) if self.lengths.size else 1.0
            per_batch = max(1, int(self.max_tokens // max(1.0, mean)))
        return per_batch * self.bucket_size_multiplier

    def _split(self, order: np.ndarray) -> list[list[int]]:
        """Cut `order` (indices sorted by length) into consecutive batches."""
        if self.max_tokens is None:
            bs = self.batch_size
            return [order[i : i + bs].tolist() for i in range(0, len(order), bs)]
        batches: list[list[int]] = []
        current: list[int] = []
        longest = 0
        for i in order.tolist():
            length = int(self.lengths[i])
            new_longest = max(longest, length)
            full = self.batch_size is not None and len(current) >= self.batch_size
            if current and (full or (len(current) + 1) * new_longest > self.max_tokens):
                batches.append(current)
                current, new_longest = [], length
            current.append(i)
            longest = new_longest
        if current:
            batches.append(current)
        return batches

    def _drop_short(self, batches: list[list[int]]) -> list[list[int]]:
        """With drop_last and batch_size alone, drop the one batch short of batch_size."""
        if not self.drop_last or self.max_tokens is not None:
            return batches
        return [b for b in batches if len(b) == self.batch_size]

    def _make_batches(self) -> list[list[int]]:
        n = len(self.lengths)
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            perm = torch.randperm(n, generator=generator).numpy()  # [N]
            size = self._chunk_size()
            batches = []
            for start in range(0, n, size):
                chunk = perm[start : start + size]
                chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
                batches.extend(self._split(chunk))
            batches = self._drop_short(batches)
            order = torch.randperm(len(batches), generator=generator).tolist()
            batches = [batches[i] for i in order]
        else:
            sorted_idx = np.lexsort((np.arange(n), self.lengths))  # by length, then index
            batches = self._drop_short(self._split(sorted_idx))
        return self._shard(batches)

    def _shard(self, batches: list[list[int]]) -> list[list[int]]:
        """This rank's share of the common batch list."""
        r, world = self.rank, self.num_replicas
        if world == 1:
            return batches
        if not self.shuffle:
            batches = list(batches)
            while 0 < len(batches) < world and max(len(b) for b in batches) > 1:
                i = max(range(len(batches)), key=lambda j: len(batches[j]))
                half = len(batches[i]) // 2
                batches[i : i + 1] = [batches[i][:half], batches[i][half:]]
        elif batches:
            if self.drop_last:
                batches = batches[: len(batches) // world * world]
            else:
                per_rank = -(-len(batches) // world)
                pad = per_rank * world - len(batches)
                batches = batches + [batches[i % len(batches)] for i in range(pad)]
        return batches[r::world]


class _EpochIndices(Sampler[int]):
    """The indices of a BucketBatchSampler's current epoch, flattened.

    It passes `set_epoch` on to its parent, so that trainers which look for
    `batch_sampler.sampler.set_epoch` (Lightning) advance the bucketed order every epoch.
    """

    def __init__(self, parent: BucketBatchSampler) -> None:
        self._parent = parent

    def set_epoch(self, epoch: int) -> None:
        self._parent.set_epoch(epoch)

    def __iter__(self) -> Iterator[int]:
        return (i for batch in self._parent._rank_batches() for i in batch)

    def __len__(self) -> int:
        return sum(len(batch) for batch in self._parent._rank_batches())


def _lengths_and_mask(seqs: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)  # [B]
    steps = int(lengths.max()) if len(seqs) else 0
    mask = torch.arange(steps)[None, :] < lengths[:, None]  # [B, T]
    return lengths, mask


def collate_text(items: Sequence[tuple[int, Tensor]]) -> Batch:
    """Pad `(index, ids: LongTensor[T_i])` items into a text batch (pad id 0)."""
    index = torch.tensor([i for i, _ in items], dtype=torch.long)  # [B]
    seqs = [s for _, s in items]
    lengths, mask = _lengths_and_mask(seqs)
    x = torch.zeros(mask.shape, dtype=torch.long)  # [B, T]
    for b, seq in enumerate(seqs):
        x[b, : len(seq)] = seq
    return {"x": x, "lengths": lengths, "mask": mask, "index": index}


def collate_music(items: Sequence[tuple[int, Tensor]]) -> Batch:
    """Pad `(index, roll: FloatTensor[T_i, 88])` items into a music batch (zero rows)."""
    index = torch.tensor([i for i, _ in items], dtype=torch.long)  # [B]
    seqs = [s for _, s in items]
    lengths, mask = _lengths_and_mask(seqs)
    features = seqs[0].shape[1] if seqs else 88
    x = torch.zeros(*mask.shape, features, dtype=torch.float32)  # [B, T, 88]
    for b, roll in enumerate(seqs):
        x[b, : len(roll)] = roll
    return {"x": x, "lengths": lengths, "mask": mask, "index": index}

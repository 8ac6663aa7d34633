"""Datasets and loaders with a reproducible, resumable order.

The training order depends only on (seed, epoch, rank, world size): shuffling uses
``DistributedSampler``'s generator seeded with ``seed + epoch`` (also with one process), and
the DataLoader gets its own generator, so building a loader never draws from the global RNG.
That is what lets a run resumed mid-epoch see exactly the batches an uninterrupted run sees.
"""
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, TensorDataset
from torch.utils.data.dataloader import default_collate

from .checkpoint import preserved_rng

_WHERE = "ndops.models.training"


def as_dataset(data, role):
    """(dataset, collate_fn) from a Dataset, a tensor, a tuple/list of tensors (zipped like
    ``TensorDataset``) or a DataLoader (its dataset and collate_fn). ``role`` ("train",
    "validation", ...) names the data in errors."""
    if data is None:
        raise ValueError(f"{_WHERE}: the {role} data is missing (got None)")
    collate_fn = default_collate
    if isinstance(data, DataLoader):
        data, collate_fn = data.dataset, data.collate_fn
    elif torch.is_tensor(data):
        data = TensorDataset(data)
    elif isinstance(data, (tuple, list)):
        if not data or not all(torch.is_tensor(t) for t in data):
            raise ValueError(f"{_WHERE}: the {role} data as a tuple must hold tensors "
                             "(inputs, targets, ...)")
        lengths = {t.shape[0] if t.dim() else -1 for t in data}
        if len(lengths) != 1 or -1 in lengths:
            raise ValueError(f"{_WHERE}: the {role} tensors must share their first (sample) "
                             f"dim, got shapes {[tuple(t.shape) for t in data]}")
        data = TensorDataset(*data)
    if not isinstance(data, Dataset) or not hasattr(data, "__len__"):
        raise ValueError(f"{_WHERE}: the {role} data must be a map-style Dataset (with "
                         f"__len__), a tensor, a tuple of tensors or a DataLoader, got "
                         f"{type(data).__name__}")
    if len(data) == 0:
        raise ValueError(f"{_WHERE}: the {role} data is empty")
    return data, collate_fn


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` whose epoch can start after its first ``skip(count)`` indices
    (for mid-epoch resume). Its order for a given (seed, epoch) is DistributedSampler's:
    process ``rank`` takes every ``num_replicas``-th index of one shared permutation."""

    def __init__(self, dataset, num_replicas, rank, shuffle, seed):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle,
                         seed=seed, drop_last=False)
        self.start = 0

    def set_epoch(self, epoch):
        super().set_epoch(epoch)
        self.start = 0

    def skip(self, count):
        """The current epoch yields its indices from position ``count`` on."""
        self.start = count

    def __iter__(self):
        return iter(list(super().__iter__())[self.start:])

    def __len__(self):
        return self.num_samples - self.start


class ShardSampler(Sampler):
    """Indices ``rank, rank + world_size, ...``: each sample evaluated exactly once over all
    processes (no padding, unlike DistributedSampler, so metrics are exact)."""

    def __init__(self, length, rank=0, world_size=1):
        self.indices = range(rank, length, world_size)

    def __iter__(self):
        return iter(self.indices)

    def __len__(self):
        return len(self.indices)


def _seed_worker(worker_id):
    # torch seeds each worker's torch and random generators; NumPy's needs seeding too.
    np.random.seed(torch.initial_seed() % 2 ** 32)


def train_loader(dataset, collate_fn, config, distributed):
    """(loader, sampler, generator) for training; call :func:`start_epoch` before each
    epoch."""
    sampler = ResumableSampler(dataset, distributed.world_size, distributed.rank,
                               config.shuffle, config.seed)
    generator = torch.Generator()
    loader = DataLoader(dataset, batch_size=config.batch_size, sampler=sampler,
                        collate_fn=collate_fn, num_workers=config.num_workers,
                        drop_last=config.drop_last, generator=generator,
                        worker_init_fn=_seed_worker,
                        pin_memory=distributed.device.type == "cuda")
    return loader, sampler, generator


def start_epoch(sampler, generator, seed, epoch, skip_batches, batch_size):
    """Sets the shuffle order of ``epoch`` and skips its first ``skip_batches`` batches."""
    sampler.set_epoch(epoch)
    sampler.skip(skip_batches * batch_size)
    # Seeds the DataLoader's worker seeds for this epoch (never the global generator).
    generator.manual_seed(seed * 1_000_003 + epoch)


def eval_loader(dataset, collate_fn, batch_size, distributed, num_workers=0, shard=True):
    """A loader over the whole dataset in order (this process's shard when ``shard``)."""
    sampler = ShardSampler(len(dataset), distributed.rank if shard else 0,
                           distributed.world_size if shard else 1)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate_fn,
                      num_workers=num_workers, generator=torch.Generator(),
                      worker_init_fn=_seed_worker)


def first_batch(dataset, collate_fn, size=2):
    """A small batch of the first samples, drawn without disturbing any global RNG."""
    with preserved_rng():
        return collate_fn([dataset[i] for i in range(min(size, len(dataset)))])


def to_device(batch, device):
    """``batch`` with every tensor (in nested tuples, lists and dicts) moved to ``device``."""
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch

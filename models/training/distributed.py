"""Process-group setup for multi-process training launched with ``torchrun``.

``torchrun --nproc-per-node K script.py`` starts K copies of the script with ``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` set. The trainer reads them
through :class:`DistributedContext`: it initializes torch.distributed (``nccl`` for CUDA
devices, ``gloo`` on the CPU) unless the script already did, pins each process to
``cuda:LOCAL_RANK`` when CUDA is used, and offers the few collectives the trainer needs.
Without those variables (a plain ``python script.py``) everything is a no-op for one process.
"""
import atexit
import os

import torch
import torch.distributed as dist

_WHERE = "ndops.models.training"


def _env_int(name, default):
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{_WHERE}: environment variable {name} must be an int, got "
                         f"{value!r}") from None


def resolve_device(device=None):
    """``device`` as a torch.device; None picks CUDA when available, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{_WHERE}: device={str(device)!r} was requested but CUDA is not "
                         "available; use device='cpu' or None")
    return device


def _destroy_group():
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class DistributedContext:
    """Rank, world size and device of this process, and the collectives the trainer uses.

    ``DistributedContext.from_env(device)`` joins (or creates) the default process group when
    ``WORLD_SIZE`` > 1 or a group already exists; a group created here is destroyed at exit.
    """

    def __init__(self, rank=0, world_size=1, local_rank=0, device=torch.device("cpu")):
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank
        self.device = device

    @property
    def enabled(self):
        """True when more than one process trains together."""
        return self.world_size > 1

    @property
    def is_main(self):
        """True on the process that logs and writes checkpoints (rank 0)."""
        return self.rank == 0

    @classmethod
    def from_env(cls, device=None):
        world_size = _env_int("WORLD_SIZE", 1)
        local_rank = _env_int("LOCAL_RANK", 0)
        initialized = dist.is_available() and dist.is_initialized()
        if world_size <= 1 and not initialized:
            return cls(device=resolve_device(device))
        if not dist.is_available():
            raise RuntimeError(f"{_WHERE}: WORLD_SIZE={world_size} asks for multi-process "
                               "training but this torch build has no torch.distributed")
        device = resolve_device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
        if device.type == "cuda":
            torch.cuda.set_device(device)
        if not initialized:
            backend = "nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(backend=backend, init_method="env://",
                                    **({"device_id": device} if device.type == "cuda" else {}))
            atexit.register(_destroy_group)
        return cls(dist.get_rank(), dist.get_world_size(), local_rank, device)

    def _collective_device(self):
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

    def all_reduce_sum(self, tensor):
        """The elementwise sum of ``tensor`` over all processes (a new tensor, on the
        tensor's original device)."""
        if not self.enabled:
            return tensor
        work = tensor.detach().to(self._collective_device(), copy=True)
        dist.all_reduce(work, op=dist.ReduceOp.SUM)
        return work.to(tensor.device)

    def barrier(self):
        if self.enabled:
            dist.barrier()

    def broadcast_object(self, obj):
        """Rank 0's ``obj`` on every process."""
        if not self.enabled:
            return obj
        holder = [obj]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def gather_objects(self, obj):
        """The list of every process's ``obj``, indexed by rank (on every process)."""
        if not self.enabled:
            return [obj]
        gathered = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

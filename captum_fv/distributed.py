"""Several processes with PyTorch's own ``torch.distributed``: rank, world size, sharding, gathers.

Every helper is a no-op in a single process (no process group, or a group of one), so code written
with them runs unchanged under ``python`` and under ``torchrun``::

    torchrun --nproc_per_node=4 -m captum_fv report --units 0-63 --out audit

Inside a process group you initialized yourself, :class:`~captum_fv.NeuronReport` and
:meth:`~captum_fv.DatasetExamples.collect` share their work among the ranks on their own.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, Iterator, List, Optional, Sequence, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")

if dist.is_available():
    # torch.distributed.nn.functional binds ``group=group.WORLD`` as default arguments when it is
    # imported. torch imports it lazily (the first torch.optim optimizer pulls in torch._dynamo,
    # which imports it): imported while a process group exists, it pins that group, so
    # destroy_process_group cannot free it, its gloo threads outlive it, and one finishing a
    # collective late aborts the interpreter at exit (SIGABRT). Imported with captum_fv, before
    # the command line (or, in the Python API, usually the user) makes a group, it binds None.
    try:
        import torch.distributed.nn.functional  # noqa: F401
    except Exception:  # pragma: no cover - builds without parts of torch.distributed
        pass


def is_distributed() -> bool:
    """True inside an initialized process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank in the default group (0 in a single process)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of processes in the default group (1 in a single process)."""
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    """This process's rank on its machine, from torchrun's ``LOCAL_RANK`` (0 when not set)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def launched_world_size() -> int:
    """The number of processes torchrun launched (``WORLD_SIZE``; 1 when not launched by it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def device(prefer_cuda: bool = True) -> torch.device:
    """One GPU per process: ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU."""
    if not (prefer_cuda and torch.cuda.is_available()):
        return torch.device("cpu")
    i, n = local_rank(), torch.cuda.device_count()
    if i >= n:
        raise RuntimeError(
            f"LOCAL_RANK is {i} but this machine has {n} CUDA device(s): launch at "
            f"most {n} processes per node (--nproc_per_node={n}), or use the CPU"
        )
    return torch.device("cuda", i)


def init_from_env(backend: Optional[str] = None, timeout: Optional[timedelta] = None) -> bool:
    """Initialize the default process group from torchrun's environment (``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``) when ``WORLD_SIZE`` > 1 and none exists.

    ``backend``: ``"nccl"`` when CUDA is available, else ``"gloo"``, unless given. With NCCL the
    current CUDA device becomes ``cuda:LOCAL_RANK``. Returns True when it created the group (the
    caller then ends it with :func:`destroy`), False when there was nothing to do.
    """
    if not dist.is_available() or dist.is_initialized() or launched_world_size() <= 1:
        return False
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(device())
    kwargs = {} if timeout is None else {"timeout": timeout}
    dist.init_process_group(backend=backend, init_method="env://", **kwargs)
    return True


def destroy() -> None:
    """End the default process group, if there is one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def process_group_from_env(backend: Optional[str] = None, timeout: Optional[timedelta] = None) -> Iterator[bool]:
    """:func:`init_from_env` for the duration of a ``with`` block; the group is destroyed at the
    end only if this block created it. Yields whether the run is distributed."""
    created = init_from_env(backend, timeout)
    try:
        yield is_distributed()
    finally:
        if created:
            destroy()


def shard(items: Sequence[T]) -> List[T]:
    """This rank's share of ``items``, round-robin: ``items[rank::world_size]`` (all of them in a
    single process). The order is kept, as with ``DistributedSampler(shuffle=False)``, but
    nothing is repeated to even out the shares."""
    return list(items[rank() :: world_size()])


def barrier() -> None:
    """Wait until every rank gets here."""
    if not is_distributed():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (picklable objects)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: Any) -> List[Any]:
    """Every rank's ``obj`` (picklable), in rank order: ``[obj]`` in a single process."""
    if not is_distributed():
        return [obj]
    out: List[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def all_gather_tensor(tensor: torch.Tensor) -> List[torch.Tensor]:
    """Every rank's ``tensor``, in rank order; the first dimension may differ between ranks (the
    other dimensions and the dtype may not). Results are on ``tensor``'s device."""
    if not is_distributed():
        return [tensor]
    nccl = dist.get_backend() == "nccl"
    comm = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
    x = tensor.detach().to(comm).contiguous()
    n = torch.tensor([x.shape[0] if x.dim() else 1], device=comm)
    sizes = [torch.zeros_like(n) for _ in range(world_size())]
    dist.all_gather(sizes, n)
    lengths = [int(s) for s in sizes]
    x = x.reshape(x.shape if x.dim() else (1,))
    padded = torch.zeros((max(lengths),) + tuple(x.shape[1:]), dtype=x.dtype, device=comm)
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in lengths]
    dist.all_gather(parts, padded)
    out = [p[:m].to(tensor.device) for p, m in zip(parts, lengths)]
    return [o.reshape(()) for o in out] if tensor.dim() == 0 else out


def all_gather_or_raise(obj: Any, error: Optional[BaseException] = None) -> List[Any]:
    """Every rank's ``obj`` in rank order, after a step that may have failed on some ranks only:
    re-raises this rank's ``error``, or raises a RuntimeError naming the rank that failed.

    Every rank must call it whether or not its step failed; otherwise the ranks that did not
    fail would wait for the failed one in the next collective until the timeout.
    """
    if not is_distributed():
        if error is not None:
            raise error
        return [obj]
    mine = None if error is None else f"{type(error).__name__}: {str(error).strip()[:400]}"
    reports = all_gather_object((mine, None if error is not None else obj))
    if error is not None:
        raise error
    failed = [(r, m) for r, (m, _) in enumerate(reports) if m is not None]
    if failed:
        r, m = failed[0]
        raise RuntimeError(f"rank {r} of {world_size()} failed: {m}")
    return [o for _, o in reports]


def raise_if_any_failed(error: Optional[BaseException]) -> None:
    """:func:`all_gather_or_raise` without an object: a collective check after a step."""
    all_gather_or_raise(None, error)


@contextmanager
def all_or_none(enabled: bool = True) -> Iterator[None]:
    """Run a block on every rank; if it raises on any rank, it raises on every rank (see
    :func:`all_gather_or_raise`). In a single process (or with ``enabled=False``), exceptions
    pass through untouched and nothing is exchanged."""
    if not (enabled and is_distributed()):
        yield
        return
    error: Optional[BaseException] = None
    try:
        yield
    except Exception as e:  # KeyboardInterrupt: torchrun stops every worker itself
        error = e
    raise_if_any_failed(error)

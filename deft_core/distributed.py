"""Several processes under `accelerate launch`: rank, world size and the collectives deft uses.

`accelerate launch --multi_gpu --num_processes N -m deft_core ...` (torchrun underneath) starts N
copies of the command with RANK, WORLD_SIZE and LOCAL_RANK in their environment. `setup()` joins
them into one process group through accelerate: NCCL when the processes run on CUDA, gloo on CPU.
Process 0 is the main process; it alone writes files, caches and progress bars.

Without such a launch (WORLD_SIZE unset or 1) nothing here imports accelerate or torch.distributed.
The helpers then report rank 0 of 1, and the collectives return their input unchanged.
"""

from __future__ import annotations

import atexit
import logging
import os
from typing import Any

from deft_core.errors import DeftError

logger = logging.getLogger(__name__)

# accelerate's PartialState once setup() has joined the process group; None in a plain run.
_state: Any = None


def launched() -> bool:
    """Report whether a launcher started this process as one of several (WORLD_SIZE > 1)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def wants_cpu(device: str) -> bool:
    """Report whether the processes compute on CPU, which selects the gloo backend."""
    import torch

    forced = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    return device == "cpu" or forced or not torch.cuda.is_available()


def setup(device: str = "auto") -> None:
    """Join the launcher's process group; do nothing in a plain, single-process run.

    `device` is the user's --device value: "cpu" selects gloo, and so does a machine without
    CUDA. Under a launch every process takes its own GPU (LOCAL_RANK), so "auto" and "cuda"
    place the processes of one machine on different GPUs.
    """
    global _state
    if _state is not None or not launched():
        return
    check_device(device)

    from accelerate import PartialState

    state = PartialState(cpu=wants_cpu(device))
    if state.num_processes < 2:
        raise DeftError(
            f"WORLD_SIZE is {os.environ.get('WORLD_SIZE')} but accelerate set up no process group "
            f"(distributed type {state.distributed_type}); start deft with `accelerate launch --multi_gpu "
            "--num_processes N -m deft_core ...`"
        )
    _state = state
    atexit.register(shutdown)
    if not state.is_main_process:
        # The main process reports; the others log only errors, so nothing is printed N times.
        logging.getLogger("deft_core").setLevel(logging.ERROR)
    logger.info(
        "process %d of %d joined the %s process group",
        state.process_index,
        state.num_processes,
        state.backend,
    )


def check_device(device: str) -> None:
    """Reject a --device value that the processes of a launch cannot share.

    A fixed "cuda:N" would put every process of a machine on one GPU, and "cpu" cannot use a
    process group that was set up with NCCL for CUDA tensors.
    """
    if not launched():
        return
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    if device.startswith("cuda:") and local_processes > 1:
        raise DeftError(
            f"device {device} would put all {local_processes} processes of this machine on one GPU; "
            "use auto or cuda under accelerate launch, which gives each process its own GPU"
        )
    if device == "cpu" and backend() == "nccl":
        raise DeftError(
            "device cpu under a launch on CUDA machines is not supported; set device auto or cuda, "
            "or set ACCELERATE_USE_CPU=true in the environment of accelerate launch"
        )


def shutdown() -> None:
    """Leave the process group, so that torch does not warn at exit."""
    global _state
    if _state is None:
        return
    import torch.distributed

    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    _state = None


def world_size() -> int:
    return _state.num_processes if _state is not None else 1


def rank() -> int:
    return _state.process_index if _state is not None else 0


def is_main() -> bool:
    return rank() == 0


def backend() -> str | None:
    """Return the process group's backend ("gloo", "nccl"), or None in a plain run."""
    return _state.backend if _state is not None else None


def shares(count: int) -> list[int]:
    """Return the items of range(count) this process handles: every world_size-th, from its rank."""
    return list(range(rank(), count, world_size()))


def gather_objects(items: list) -> list:
    """Concatenate every process's list in rank order and return it to every process.

    Items are pickled, so they must be small Python objects (numbers, strings, CPU tensors).
    """
    if _state is None:
        return list(items)
    from accelerate.utils import gather_object

    return gather_object(list(items))


def broadcast_object(value: Any) -> Any:
    """Return the main process's `value` on every process (the others' values are ignored)."""
    if _state is None:
        return value
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([value], from_process=0)[0]


def sum_tensors_(tensors: list) -> None:
    """Sum each tensor over all processes, in place, with one all_reduce of a flat buffer."""
    if _state is None or not tensors:
        return
    import torch
    import torch.distributed

    flat = torch.cat([t.detach().reshape(-1) for t in tensors])
    torch.distributed.all_reduce(flat, op=torch.distributed.ReduceOp.SUM)
    offset = 0
    for tensor in tensors:
        size = tensor.numel()
        tensor.copy_(flat[offset : offset + size].view_as(tensor))
        offset += size


def broadcast_tensors_(tensors: list) -> None:
    """Overwrite each tensor with the main process's values, in place."""
    if _state is None:
        return
    import torch.distributed

    for tensor in tensors:
        torch.distributed.broadcast(tensor.data, src=0)


def barrier() -> None:
    """Wait until every process reaches this point."""
    if _state is not None:
        _state.wait_for_everyone()

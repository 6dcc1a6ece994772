"""What each of two real gloo processes runs for tests/test_distributed_training.py and tests/test_faults.py.

Launched as `ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 tests/distributed_worker.py
OUT/spec.json` (without ACCELERATE_USE_CPU accelerate 1.x starts two independent single-process runs on a machine
without GPUs). Not a test module: pytest collects `test_*.py` only; the tests import its helpers to build the
single-process reference. Each rank writes what it holds next to the spec, as `<phase>-rank<r>.pt`.

One launch does everything the spec asks, so the start-up of two processes is paid once:

1. `"quantizer_steps": true`: every registry quantizer behind a 1x1-conv "encoder", wrapped in DDP by
   `accelerator.prepare`, trained for `STEPS` SGD steps on per-rank batches, with `WindowedCodebookUsage(sync=True)`
   as the training script uses it: the state, indices and usage histogram of each rank.
2. `"poisoned_run": {"rank": R, "forward": F, "args": [...]}`: `train_vqvae.main` with the encoder output of rank R
   made NaN at its F-th training forward (1-based): the error each rank stopped with.
3. `"train_run": [...]`: `train_vqvae.main` itself: each rank's final model (before the scaling-factor pass, after
   the last training step), the code indices its usage counter was fed, and how many DDP wrappers were alive when
   it destroyed the process group.
"""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from hf_nsvq.evaluation import WindowedCodebookUsage
from hf_nsvq.quantizers import build_quantizer, list_quantizers

K, D, STEPS, BATCH = 16, 4, 3, 2
# Small but valid settings; EMA's decay is lowered so three steps move its statistics visibly.
QUANTIZER_KWARGS = {"ema": {"decay": 0.8}, "transvq": {"width": 16}, "vqgan_fc": {"codebook_dim": 3}}
ROOT = Path(__file__).resolve().parents[1]


class EncoderAndQuantizer(nn.Module):
    """A learnable 1x1 conv in front of the quantizer: EMA has no parameters of its own, and DDP needs some."""

    def __init__(self, name: str):
        super().__init__()
        self.encoder = nn.Conv2d(D, D, 1)
        self.quantize = build_quantizer(name, K, D, **QUANTIZER_KWARGS.get(name, {}))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        quant, loss, (_, _, indices) = self.quantize(self.encoder(x))
        # A stand-in for the decoder's loss, so the straight-through gradient reaches the encoder. Both terms are
        # means over the batch: DDP's average of per-rank gradients is then the gradient of the union batch.
        return quant.square().mean() + loss, indices


def build(name: str) -> EncoderAndQuantizer:
    torch.manual_seed(0)
    return EncoderAndQuantizer(name).train()


def make_optimizer(module: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(module.parameters(), lr=0.5)  # plain SGD: the update is linear in the gradient


def batch(step: int, rank: int) -> torch.Tensor:
    """The batch rank `rank` trains on at `step`; the single-process reference concatenates rank 0's and 1's."""
    return torch.randn(BATCH, D, 3, 3, generator=torch.Generator().manual_seed(100 * step + rank))


def quantizer_steps(accelerator: Accelerator, out: Path) -> None:
    rank = accelerator.process_index
    results = {"num_processes": accelerator.num_processes}
    for name in list_quantizers():
        module = build(name)
        optimizer = make_optimizer(module)
        module, optimizer = accelerator.prepare(module, optimizer)
        usage = WindowedCodebookUsage(K, window=100, sync=True)
        seen = []
        for step in range(STEPS):
            loss, indices = module(batch(step, rank))
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
            usage.update(indices)
            usage.end_step()
            seen.append(indices.clone())
        unwrapped = accelerator.unwrap_model(module)
        results[name] = {
            "state": {key: value.detach().clone() for key, value in unwrapped.state_dict().items()},
            "indices": seen,
            "usage_counts": usage.window_counts(),
            "utilisation": usage.utilisation,
            "perplexity": usage.perplexity,
        }
        # Free the DDP wrapper now, while torch.distributed still owns the process group (see train_vqvae's teardown).
        del module, optimizer, unwrapped
        accelerator.free_memory()
    torch.save(results, out / f"quantizers-rank{rank}.pt")


def import_train_vqvae():
    if str(ROOT / "training_scripts") not in sys.path:
        sys.path.insert(0, str(ROOT / "training_scripts"))
    import train_vqvae

    # accelerate keeps process-wide singletons; the process group itself stays up between runs.
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    return train_vqvae


def poisoned_run(train_args: list[str], out: Path, poison_rank: int, poison_forward: int) -> None:
    """`train_vqvae.main` with NaN encoder output on one rank; each rank records the error it stopped with."""
    train_vqvae = import_train_vqvae()
    rank = torch.distributed.get_rank()
    original_build_model = train_vqvae.build_model

    def poisoned_build_model(*args, **kwargs):
        model = original_build_model(*args, **kwargs)
        if rank == poison_rank:
            forwards = [0]

            def hook(module, inputs, output):
                if module.training:
                    forwards[0] += 1
                    if forwards[0] == poison_forward:
                        return output * float("nan")
                return None

            model.quant_conv.register_forward_hook(hook)
        return model

    train_vqvae.build_model = poisoned_build_model
    error = None
    try:
        train_vqvae.main(train_vqvae.parse_args(train_args))
    except Exception as caught:  # recorded for the test, which checks its type and message
        error = f"{type(caught).__name__}: {caught}"
        del caught
    finally:
        train_vqvae.build_model = original_build_model
    gc.collect()  # the failed run's DDP wrapper goes now, while the process group lives on for the next phase
    torch.save({"error": error}, out / f"poisoned-rank{rank}.pt")
    # Both ranks stopped at the same step, so they meet here; a rank left waiting in a collective would hang.
    torch.distributed.barrier()


def train(train_args: list[str], out: Path) -> None:
    """`train_vqvae.main`, recording each rank's final model, usage and the DDP wrappers alive at teardown."""
    train_vqvae = import_train_vqvae()
    rank = torch.distributed.get_rank()  # main() destroys the process group when it ends
    record = {"steps": [], "current": [], "state": None, "ddp_alive_at_end_training": None}

    class RecordingUsage(WindowedCodebookUsage):
        def update(self, indices):
            record["current"].append(indices.detach().cpu().clone())
            super().update(indices)

        def end_step(self):
            super().end_step()
            record["steps"].append({"indices": record["current"], "window_counts": self.window_counts()})
            record["current"] = []

    def recording_scaling_factor(accelerator, model, *args, **kwargs):
        record["state"] = {key: value.detach().clone() for key, value in model.state_dict().items()}
        return original_scaling_factor(accelerator, model, *args, **kwargs)

    def checked_end_training(accelerator):
        # the teardown-order regression: no DDP wrapper may outlive the process group (see train_vqvae's main)
        gc.collect()
        record["ddp_alive_at_end_training"] = sum(isinstance(o, DistributedDataParallel) for o in gc.get_objects())
        return original_end_training(accelerator)

    original_end_training = train_vqvae.Accelerator.end_training
    original_scaling_factor = train_vqvae._estimate_scaling_factor
    train_vqvae.Accelerator.end_training = checked_end_training
    train_vqvae.WindowedCodebookUsage = RecordingUsage
    train_vqvae._estimate_scaling_factor = recording_scaling_factor
    train_vqvae.main(train_vqvae.parse_args(train_args))
    torch.save(record, out / f"train-rank{rank}.pt")


def main() -> None:
    spec_file = Path(sys.argv[1])
    spec = json.loads(spec_file.read_text())
    out = spec_file.parent
    # mixed_precision="no": the quantizer steps are compared with an fp32 single-process reference
    accelerator = Accelerator(cpu=True, mixed_precision="no")
    if spec.get("quantizer_steps"):
        quantizer_steps(accelerator, out)
    del accelerator
    if spec.get("poisoned_run"):
        poisoned = spec["poisoned_run"]
        poisoned_run(poisoned["args"], out, poisoned["rank"], poisoned["forward"])
    if spec.get("train_run"):
        train(spec["train_run"], out)  # last: train_vqvae's main ends by destroying the process group


if __name__ == "__main__":
    main()

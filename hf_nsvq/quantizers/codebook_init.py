"""Data-dependent codebook initialisation: start the codes on the first training batch's latents.

diffusers' `VectorQuantizer` draws codes from U(-1/K, 1/K): a tiny ball at the origin, far from an encoder's latents
at any scale other than ~1/K. All codes are then nearly equidistant from every latent, so a hard-assignment
quantizer lets a handful win and strands the rest, and a kernel (NSVQ) weights them all alike and drags them as one
blob. Drawing the K codes from the latents of the first training batch puts every code inside the data from step
one (the initialisation k-means and `vector-quantize-pytorch`'s `kmeans_init` rely on for the same reason).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from .base import _check_choice, broadcast_, is_distributed

CODEBOOK_INITS = ("uniform", "data")


def check_codebook_init(value) -> None:
    _check_choice("codebook_init", value, CODEBOOK_INITS)


def gather_rows(z: torch.Tensor) -> torch.Tensor:
    """Every process's rows of `z` (M_r, D), concatenated in rank order (ranks may hold different M_r)."""
    if not is_distributed():
        return z
    sizes = [torch.zeros((), dtype=torch.long, device=z.device) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor(z.shape[0], device=z.device))
    largest = int(max(sizes))
    padded = torch.zeros(largest, z.shape[1], dtype=z.dtype, device=z.device)
    padded[: z.shape[0]] = z
    gathered = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(gathered, padded)
    return torch.cat([rows[: int(size)] for rows, size in zip(gathered, sizes, strict=True)])


@torch.no_grad()
def sample_codes_from_latents(z: torch.Tensor, num_codes: int) -> torch.Tensor:
    """K rows of the latents `z` (M, D) of every process, as a (K, D) fp32 codebook, identical on every process.

    The rows of all processes are gathered first, so under `accelerate launch` the codebook is what one process that
    saw every rank's batch would draw (rank 0's draw is broadcast in case the ranks' random states differ).
    Distinct rows when M >= K; otherwise every row once and the rest drawn again with a small jitter (1e-3 of the
    latents' per-dimension std) so that no two codes coincide and tie forever.
    """
    z = gather_rows(z.detach().float().contiguous())
    num_rows = z.shape[0]
    if num_rows >= num_codes:
        codes = z[torch.randperm(num_rows, device=z.device)[:num_codes]].clone()
    else:
        extra = z[torch.randint(0, num_rows, (num_codes - num_rows,), device=z.device)]
        scale = z.std(dim=0, keepdim=True).nan_to_num(0.0).clamp_min(1e-6) * 1e-3
        codes = torch.cat([z, extra + torch.randn_like(extra) * scale])
    codes = codes.contiguous()
    broadcast_(codes)
    return codes


class DataInitState:
    """Mixin for quantizers with an explicit codebook: `codebook_init="data"` fills it from the first training batch.

    A persistent `codebook_initialized` buffer (registered only for `"data"`, so models saved with the default
    keep their state dict) records that it happened: a resumed or loaded model never re-initialises.
    """

    def _setup_codebook_init(self, codebook_init: str) -> None:
        check_codebook_init(codebook_init)
        self.codebook_init = codebook_init
        if codebook_init == "data":
            self.register_buffer("codebook_initialized", torch.zeros((), dtype=torch.bool))

    def _set_initial_codebook(self, codes: torch.Tensor) -> None:
        """Write a (K, d) codebook in the space the quantizer searches, with any statistics tied to it."""
        raise NotImplementedError

    def _needs_data_init(self) -> bool:
        return self.training and self.codebook_init == "data" and not bool(self.codebook_initialized)

    @torch.no_grad()
    def _init_codebook_from_data(self, latents: torch.Tensor) -> None:
        """Before the first training step with `codebook_init="data"`: the codes become K rows of `latents` (rows
        in the space the codes live in); afterwards, and in eval mode, nothing."""
        if self._needs_data_init():
            self._set_initial_codebook(sample_codes_from_latents(latents, self.num_vq_embeddings))
            self._mark_codebook_initialized()

    def _mark_codebook_initialized(self) -> None:
        if self.codebook_init == "data":
            self.codebook_initialized.fill_(True)

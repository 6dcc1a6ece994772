"""EMA statistics under torch.distributed (2 real gloo processes) equal one process seeing both batches."""

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hf_nsvq.quantizers import build_quantizer

K, D = 12, 3


def batches():
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(2, D, 3, 3, generator=generator) for _ in range(2)]  # one per rank


def fresh_quantizer(**kwargs):
    torch.manual_seed(0)
    return build_quantizer("ema", K, D, decay=0.8, **kwargs).train()


def _worker(rank: int, world_size: int, init_file: str, result_file: str, kwargs: dict) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        quantizer = fresh_quantizer(**kwargs)
        torch.manual_seed(100 + rank)  # different random streams per rank, as in real training
        for _ in range(3):
            quantizer(batches()[rank])
        state = {k: v.clone() for k, v in quantizer.state_dict().items()}
        gathered = [None] * world_size
        dist.all_gather_object(gathered, state)
        if rank == 0:
            torch.save(gathered, result_file)
    finally:
        dist.destroy_process_group()


def run_two_ranks(tmp_path, **kwargs):
    result_file = str(tmp_path / "states.pt")
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), result_file, kwargs), nprocs=2, join=True)
    return torch.load(result_file)


def test_ema_statistics_are_all_reduced(tmp_path):
    rank0, rank1 = run_two_ranks(tmp_path)
    single = fresh_quantizer()
    union = torch.cat(batches(), dim=0)
    for _ in range(3):
        single(union)
    for key, value in single.state_dict().items():
        torch.testing.assert_close(rank0[key], rank1[key], rtol=0, atol=0)
        torch.testing.assert_close(rank0[key], value, rtol=1e-5, atol=1e-6)


def test_dead_code_restart_is_identical_on_every_rank(tmp_path):
    rank0, rank1 = run_two_ranks(tmp_path, dead_code_threshold=0.6)  # unused counts reach 0.8**3 < 0.6
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    without_restart = fresh_quantizer()
    for _ in range(3):
        without_restart(torch.cat(batches(), dim=0))
    restarted = ~torch.isclose(rank0["embed"], without_restart.embed).all(dim=1)
    assert restarted.any()

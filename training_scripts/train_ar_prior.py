#!/usr/bin/env python
"""Train an autoregressive GPT-2 prior over the code indices of a frozen VQ tokenizer, under Accelerate.

Single process (CPU or one GPU), on the offline sample set, with a tokenizer trained by `train_vqvae.py`:

    accelerate launch training_scripts/train_ar_prior.py --vqvae out/nsvq-embedded --dataset_name embedded \
        --validation_split validation --resolution 64 --train_batch_size 32 --max_train_steps 5000 \
        --output_dir out/ar-embedded

On GPUs, CelebA-HQ (a larger prior):

    accelerate launch --multi_gpu --num_processes 8 --mixed_precision bf16 training_scripts/train_ar_prior.py \
        --vqvae out/nsvq-celebahq --dataset_name korexyz/celeba-hq-256x256 --validation_split validation \
        --resolution 64 --n_layer 12 --n_head 12 --n_embd 768 --train_batch_size 32 --num_train_epochs 100 \
        --output_dir out/ar-celebahq --push_to_hub --hub_model_id you/ar-celebahq-nsvq

The images are tokenized once (an `NSVQModel` with `encode_to_indices`, a stock `VQModel` with
`quantize(encode(x).latents)[2][2]`; center crops, no augmentation) and the token array is cached in
`--token_cache_dir` (default `OUTPUT_DIR/token_cache`) under a hash of the tokenizer's weights and config and of the
data settings: a rerun reuses it, a changed tokenizer or dataset tokenizes again. The prior is a
`transformers.GPT2LMHeadModel` over the K codes plus a BOS token (id K), reading the h x w grid in raster order.
Validation loss (nats per token), perplexity and bits per token are logged every `--validation_steps` on
`--validation_split`, or on a held-out `--validation_fraction` of the training images, and written to `metrics.json`
at the end. The output folder is a `VQTokenARPipeline` (vqvae: the stock `diffusers.VQModel`; transformer: the GPT-2):

    from hf_nsvq.pipelines import VQTokenARPipeline
    images = VQTokenARPipeline.from_pretrained("out/ar-embedded")(batch_size=4, top_k=100).images

Checkpoints are atomic (`--checkpointing_steps`), `--resume_from_checkpoint latest` continues exactly, and
`ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2` runs two gloo processes on a CPU machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import set_seed
from diffusers.optimization import get_scheduler
from tqdm.auto import tqdm
from transformers import GPT2LMHeadModel

from hf_nsvq.data import DEFAULT_DATASET, ImageTransform, check_resolution, load_image_dataset, sample_seed
from hf_nsvq.pipelines import VQTokenARPipeline
from hf_nsvq.pipelines.first_stage import downsample_factor, load_first_stage
from hf_nsvq.pipelines.grids import save_sample_grid
from hf_nsvq.pipelines.prior import build_prior, evaluate_prior, prior_nll
from hf_nsvq.pipelines.publish import push_pipeline_folder, write_pipeline_card
from hf_nsvq.pipelines.token_cache import cached_tokens, tokenizer_fingerprint
from hf_nsvq.training.args import (
    add_logging_and_hub_arguments,
    add_optimisation_arguments,
    add_run_arguments,
    check_shared_args,
)
from hf_nsvq.training.checkpoints import save_checkpoint
from hf_nsvq.training.data_plan import dataset_kwargs, plan_epochs
from hf_nsvq.training.provenance import training_config
from hf_nsvq.training.run_setup import resume_position, start_run

logger = get_logger(__name__)

USAGE = """import torch
from hf_nsvq.pipelines import VQTokenARPipeline  # pip install hf_nsvq

pipeline = VQTokenARPipeline.from_pretrained("{repo}")
images = pipeline(batch_size=4, top_k=100, generator=torch.Generator().manual_seed(0)).images"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    first = parser.add_argument_group("tokenizer")
    first.add_argument("--vqvae", required=True, help="hf_nsvq output folder, VQModel folder or pipeline folder")
    first.add_argument("--token_cache_dir", default=None, help="default: OUTPUT_DIR/token_cache")
    first.add_argument("--tokenize_batch_size", type=int, default=64)

    prior = parser.add_argument_group("prior (GPT-2)")
    prior.add_argument("--n_layer", type=int, default=4)
    prior.add_argument("--n_head", type=int, default=4)
    prior.add_argument("--n_embd", type=int, default=256)
    prior.add_argument("--dropout", type=float, default=0.1, help="residual, embedding and attention dropout")

    data = parser.add_argument_group("data")
    data.add_argument("--dataset_name", default=None, help=f"Hub dataset id or 'embedded' (default {DEFAULT_DATASET})")
    data.add_argument("--dataset_revision", default=None)
    data.add_argument("--dataset_split", default="train")
    data.add_argument("--validation_split", default=None, help="default: hold out --validation_fraction of train")
    data.add_argument("--validation_fraction", type=float, default=0.05)
    data.add_argument("--train_data_dir", default=None, help="a local image folder (datasets' imagefolder)")
    data.add_argument("--image_column", default=None)
    data.add_argument("--cache_dir", default=None, help="datasets cache")
    data.add_argument("--resolution", type=int, default=64, help="center crops of this size are tokenized")
    data.add_argument("--max_train_samples", type=int, default=None)
    data.add_argument("--on_bad_image", choices=["skip", "fail"], default="skip")
    data.add_argument("--dataloader_num_workers", type=int, default=0, help="workers while tokenizing")

    add_optimisation_arguments(parser, 32, 3e-4, (0.9, 0.95), 0.01, "cosine", 100, 10)

    run = add_run_arguments(parser)
    run.add_argument("--validation_steps", type=int, default=500, help="validation loss and samples every N steps")
    run.add_argument("--validation_batch_size", type=int, default=None, help="default: --train_batch_size")
    run.add_argument("--num_validation_images", type=int, default=16)
    run.add_argument("--validation_top_k", type=int, default=None, help="top-k of the sample grids")
    add_logging_and_hub_arguments(run)
    args = parser.parse_args(argv)
    check_shared_args(parser, args)
    if not 0.0 <= args.validation_fraction < 1.0:
        parser.error(f"--validation_fraction got {args.validation_fraction!r}; expected a number in [0, 1)")
    if args.n_embd % args.n_head != 0:
        parser.error(f"--n_embd got {args.n_embd}; expected a multiple of --n_head {args.n_head}")
    args.token_cache_dir = args.token_cache_dir or str(Path(args.output_dir) / "token_cache")
    args.validation_batch_size = args.validation_batch_size or args.train_batch_size
    return args


def main(args: argparse.Namespace) -> None:
    output_dir = Path(args.output_dir)
    accelerator, resume_path = start_run(args, output_dir)

    # ---- everything that can be wrong is checked before the first step ------------------------------------------
    first_stage = load_first_stage(args.vqvae)
    logger.info("tokenizer: %s", first_stage.source)
    check_resolution(args.resolution, downsample_factor(first_stage.vqvae))
    num_codes = first_stage.tokenizer.config.num_vq_embeddings
    load = dataset_kwargs(args)
    train_data = load_image_dataset(split=args.dataset_split, max_samples=args.max_train_samples, **load)
    validation_data = load_image_dataset(split=args.validation_split, **load) if args.validation_split else None

    tokenizer = first_stage.tokenizer.to(accelerator.device)
    tokenizer_hash = tokenizer_fingerprint(tokenizer)
    transform = ImageTransform(args.resolution, center_crop=True)
    cache = dict(
        accelerator=accelerator,
        tokenizer=tokenizer,
        transform=transform,
        cache_dir=args.token_cache_dir,
        batch_size=args.tokenize_batch_size,
        num_workers=args.dataloader_num_workers,
        tokenizer_hash=tokenizer_hash,
    )
    train_tokens, train_cache = cached_tokens(data=train_data, **cache)
    validation_tokens = None
    if validation_data is not None:
        validation_tokens, _ = cached_tokens(data=validation_data, **cache)
    if tokenizer is not first_stage.vqvae:
        tokenizer.to("cpu")  # its job is done; the stock vqvae decodes the sample grids
    vqvae = first_stage.vqvae.to(accelerator.device)
    _, height, width = train_tokens.shape
    train_tokens, validation_tokens = _split_validation(args, train_tokens, validation_tokens)
    train_rows = torch.from_numpy(train_tokens.astype(np.int64)).reshape(len(train_tokens), -1)
    validation_rows = None
    if validation_tokens is not None:
        # each process scores its own rows; the sums are reduced
        shard = validation_tokens[accelerator.process_index :: accelerator.num_processes]
        validation_rows = torch.from_numpy(shard.astype(np.int64)).reshape(len(shard), -1)

    train_dataloader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(train_rows), batch_size=args.train_batch_size, shuffle=True, drop_last=True
    )
    updates_per_epoch, args.max_train_steps, num_epochs = plan_epochs(
        len(train_dataloader), len(train_rows), accelerator.num_processes, args
    )
    set_seed(args.seed)  # initial weights independent of what ran before (a cache hit draws nothing, a miss does)
    model = build_prior(num_codes, height * width, args.n_layer, args.n_head, args.n_embd, args.dropout)

    # ---- optimisation ------------------------------------------------------------------------------------------
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        weight_decay=args.adam_weight_decay,
    )
    lr_scheduler = get_scheduler(
        args.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=args.max_train_steps * accelerator.num_processes,
    )
    model, optimizer, train_dataloader, lr_scheduler = accelerator.prepare(
        model, optimizer, train_dataloader, lr_scheduler
    )
    unwrapped = accelerator.unwrap_model(model)
    _register_checkpoint_hooks(accelerator)

    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        if args.report_to != "none":
            trackers_config = {k: v for k, v in vars(args).items() if isinstance(v, int | float | str | bool)}
            accelerator.init_trackers("train_ar_prior", config=trackers_config)

    global_step, first_epoch, skip_batches = resume_position(
        accelerator, resume_path, updates_per_epoch, args.gradient_accumulation_steps
    )
    micro_step = global_step * args.gradient_accumulation_steps

    reduce = (lambda stats: accelerator.reduce(stats, reduction="sum")) if accelerator.num_processes > 1 else None
    pipeline = VQTokenARPipeline(vqvae=vqvae, transformer=unwrapped, latent_size=[height, width])
    pipeline.set_progress_bar_config(disable=True)
    progress = tqdm(
        range(args.max_train_steps), initial=global_step, desc="steps", disable=not accelerator.is_local_main_process
    )
    logs: dict[str, float] = {}
    metrics: dict[str, float] = {}
    validated_at = None
    for epoch in range(first_epoch, num_epochs):
        train_dataloader.set_epoch(epoch)
        loader = train_dataloader
        if epoch == first_epoch and skip_batches:
            loader = accelerator.skip_first_batches(train_dataloader, skip_batches)
        model.train()
        for (rows,) in loader:
            # Dropout masks are a function of (seed, micro-step, process) alone: a resumed run draws exactly what the
            # original drew, though restarting the dataloader's iterator has consumed a number from torch's RNG.
            torch.manual_seed(sample_seed(args.seed, micro_step, accelerator.process_index))
            micro_step += 1
            with accelerator.accumulate(model):
                with accelerator.autocast():
                    loss = prior_nll(model, rows, num_codes)
                if not torch.isfinite(loss):
                    raise RuntimeError(
                        f"training diverged at step {global_step} (loss {loss.item()}); the last complete checkpoint "
                        f"in {output_dir} is intact: resume from it with a lower --learning_rate"
                    )
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            if not accelerator.sync_gradients:
                continue
            global_step += 1
            progress.update(1)
            logs.update(loss=float(loss.detach()), lr=lr_scheduler.get_last_lr()[0])
            logs["bits_per_token"] = logs["loss"] / math.log(2)
            progress.set_postfix(loss=f"{logs['loss']:.4f}")
            if global_step % args.logging_steps == 0 or global_step == args.max_train_steps:
                accelerator.log(logs, step=global_step)
            if global_step % args.checkpointing_steps == 0:
                save_checkpoint(accelerator, output_dir, global_step, args.checkpoints_total_limit)
            if global_step % args.validation_steps == 0:
                metrics = _validate(args, accelerator, pipeline, validation_rows, num_codes, reduce, global_step)
                validated_at = global_step
            if global_step >= args.max_train_steps:
                break
        if global_step >= args.max_train_steps:
            break
    progress.close()

    # ---- outputs -----------------------------------------------------------------------------------------------
    accelerator.wait_for_everyone()
    if validated_at != global_step:
        metrics = _validate(args, accelerator, pipeline, validation_rows, num_codes, reduce, global_step)
    if accelerator.is_main_process:
        unwrapped.eval()
        pipeline.save_pretrained(output_dir)
        if metrics:
            (output_dir / "metrics.json").write_text(json.dumps({**metrics, "global_step": global_step}, indent=2))
        config = _training_config(args, train_data, first_stage.source, tokenizer_hash, train_cache)
        config.update(
            global_step=global_step,
            num_train_sequences=len(train_rows),
            num_validation_sequences=len(validation_tokens) if validation_tokens is not None else 0,
        )
        (output_dir / "training_config.json").write_text(json.dumps(config, indent=2, default=str))
        repo = args.hub_model_id or str(output_dir)
        write_pipeline_card(
            output_dir,
            title=f"Autoregressive prior on an hf_nsvq tokenizer: {repo}",
            summary=(
                f"A `VQTokenARPipeline`: a GPT-2 over the {num_codes} codes of a frozen VQ tokenizer, generating the "
                f"{height}x{width} token grid in raster order; a stock `diffusers.VQModel` decodes it."
            ),
            usage=USAGE.format(repo=repo),
            training_config=config,
            metrics=metrics,
            tags=("autoregressive", "vq-vae", "gpt2"),
        )
        if args.push_to_hub:
            url = push_pipeline_folder(output_dir, args.hub_model_id, token=args.hub_token, private=args.hub_private)
            accelerator.print(f"pushed to {url}")
        accelerator.print(f"saved the VQTokenARPipeline to {output_dir}")
    # Free the DDP wrapper while torch.distributed still holds the process group, before end_training destroys it:
    # the other way round, a gloo worker thread can deadlock at exit (seen with train_vqvae.py on a busy 2-core machine).
    accelerator.wait_for_everyone()
    del model
    accelerator.free_memory()
    accelerator.end_training()


def _split_validation(args, train_tokens: np.ndarray, validation_tokens: np.ndarray | None):
    """`--validation_split` tokens when given, else a seeded `--validation_fraction` of the training images."""
    if validation_tokens is not None or args.validation_fraction == 0:
        return train_tokens, validation_tokens
    count = len(train_tokens)
    held_out = max(1, round(args.validation_fraction * count))
    if held_out >= count:
        raise ValueError(
            f"{count} image(s) cannot give both training and validation images with --validation_fraction "
            f"{args.validation_fraction}; add images, pass --validation_split, or --validation_fraction 0"
        )
    order = np.random.default_rng(args.seed).permutation(count)
    return train_tokens[np.sort(order[held_out:])], train_tokens[np.sort(order[:held_out])]


def _validate(args, accelerator, pipeline, rows, num_codes: int, reduce, step: int) -> dict[str, float]:
    """Every process scores its rows (sums reduced); the main process samples a grid from a fixed seed."""
    metrics = {}
    if rows is not None:
        metrics = evaluate_prior(pipeline.transformer, rows, num_codes, args.validation_batch_size, reduce)
        accelerator.log({key: value for key, value in metrics.items() if key.startswith("validation")}, step=step)
        accelerator.print(
            f"step {step}: validation loss {metrics['validation_loss']:.4f} nats/token, perplexity "
            f"{metrics['validation_perplexity']:.2f}, {metrics['validation_bits_per_token']:.3f} bits/token"
        )
    if accelerator.is_main_process:
        transformer = pipeline.transformer
        was_training = transformer.training
        transformer.eval()  # dropout off: samples depend on the seed only
        images = pipeline(
            batch_size=args.num_validation_images,
            top_k=args.validation_top_k,
            generator=torch.Generator().manual_seed(args.seed),
            output_type="np",
        ).images
        transformer.train(was_training)
        save_sample_grid(accelerator, images, Path(args.output_dir), step)
    return metrics


def _register_checkpoint_hooks(accelerator: Accelerator) -> None:
    """Checkpoints hold the prior as `save_pretrained` writes it (so a checkpoint is also a loadable model)."""

    def save_hook(models, weights, output_dir):
        if not accelerator.is_main_process:
            return
        for index in reversed(range(len(models))):
            unwrapped = accelerator.unwrap_model(models[index])
            if isinstance(unwrapped, GPT2LMHeadModel):
                unwrapped.save_pretrained(os.path.join(output_dir, "transformer"))
                weights.pop(index)

    def load_hook(models, input_dir):
        while models:
            unwrapped = accelerator.unwrap_model(models.pop())
            if isinstance(unwrapped, GPT2LMHeadModel):
                loaded = GPT2LMHeadModel.from_pretrained(os.path.join(input_dir, "transformer"))
                for key in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
                    if getattr(loaded.config, key) != getattr(unwrapped.config, key):
                        raise ValueError(
                            f"checkpoint {input_dir!r} has {key}={getattr(loaded.config, key)!r} but this run builds "
                            f"{key}={getattr(unwrapped.config, key)!r}; resume with the flags (and tokenizer) of the "
                            "original run or start a new --output_dir"
                        )
                unwrapped.load_state_dict(loaded.state_dict())
                del loaded

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


def _training_config(args, train_data, vqvae_source, tokenizer_hash, token_cache) -> dict:
    return training_config(
        "train_ar_prior.py",
        args,
        train_data,
        vqvae_source=vqvae_source,
        tokenizer_sha256=tokenizer_hash,
        token_cache=str(token_cache),
    )


if __name__ == "__main__":
    main(parse_args())

#!/usr/bin/env python
"""Train a VQ-VAE / VQGAN tokenizer with any hf_nsvq quantizer, under Accelerate.

Single process (CPU or one GPU), on the offline sample set:

    accelerate launch training_scripts/train_vqvae.py --dataset_name embedded --quantizer nsvq \
        --resolution 64 --train_batch_size 16 --max_train_steps 2000 --output_dir out/nsvq-embedded

The authors' CelebA-HQ setting (64x64 crops, K = 1024, D = 64, f = 4, batch 16, Adam 5e-4), on GPUs:

    accelerate launch --multi_gpu --num_processes 8 --mixed_precision bf16 training_scripts/train_vqvae.py \
        --dataset_name korexyz/celeba-hq-256x256 --resolution 64 --random_crop --quantizer nsvq \
        --num_vq_embeddings 1024 --vq_embed_dim 64 --latent_channels 64 --downsample_factor 4 \
        --train_batch_size 16 --learning_rate 5e-4 --num_train_epochs 300 --checkpointing_steps 5000 \
        --output_dir out/nsvq-celebahq --push_to_hub --hub_model_id you/nsvq-celebahq

Any image folder: `--train_data_dir PATH` (through datasets' imagefolder). Resume: `--resume_from_checkpoint latest`.
On a machine without GPUs, `ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2` runs two gloo
processes (without the variable, accelerate 1.x starts two independent single-process runs; `--cpu --num_processes 2`
runs one). The output folder holds the NSVQModel (config.json + safetensors), the baked stock `diffusers.VQModel` in
`vqvae/`, `training_config.json`, validation images and TensorBoard logs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from diffusers.optimization import get_scheduler
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

import hf_nsvq
from hf_nsvq import NSVQModel
from hf_nsvq.data import DEFAULT_DATASET, check_resolution, load_image_dataset
from hf_nsvq.evaluation import WindowedCodebookUsage
from hf_nsvq.quantizers import list_quantizers
from hf_nsvq.training.args import (
    add_logging_and_hub_arguments,
    add_optimisation_arguments,
    add_run_arguments,
    check_shared_args,
)
from hf_nsvq.training.checkpoints import save_checkpoint
from hf_nsvq.training.data_plan import dataset_kwargs, image_dataloader, plan_epochs
from hf_nsvq.training.images import figure_to_image, reconstruction_grid, usage_histogram
from hf_nsvq.training.losses import (
    PatchGANDiscriminator,
    adaptive_generator_weight,
    hinge_discriminator_loss,
    hinge_generator_loss,
    reconstruction_loss,
)
from hf_nsvq.training.model_factory import (
    add_bandwidth_schedule,
    build_model,
    downsample_factor_of,
    parse_quantizer_kwargs,
)
from hf_nsvq.training.provenance import training_config
from hf_nsvq.training.run_setup import resume_position, start_run
from hf_nsvq.training.wrapper import VQTrainingModule

logger = get_logger(__name__)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    model = parser.add_argument_group("model")
    model.add_argument("--quantizer", default="nsvq", choices=list_quantizers())
    model.add_argument("--quantizer_kwargs", default=None, help='JSON object, e.g. \'{"kernel": "gaussian"}\'')
    model.add_argument("--model_config", default=None, help="config.json (or its folder) of a VQModel/NSVQModel")
    model.add_argument(
        "--pretrained_model",
        default=None,
        help="VQModel/NSVQModel folder or Hub id to fine-tune: its architecture and weights, this run's quantizer",
    )
    model.add_argument("--base_channels", type=int, default=64)
    model.add_argument("--block_out_channels", type=int, nargs="+", default=None, help="overrides base/downsample")
    model.add_argument("--downsample_factor", type=int, default=4)
    model.add_argument("--layers_per_block", type=int, default=2)
    model.add_argument("--latent_channels", type=int, default=64)
    model.add_argument("--num_vq_embeddings", type=int, default=1024)
    model.add_argument("--vq_embed_dim", type=int, default=None, help="defaults to --latent_channels")
    model.add_argument("--norm_num_groups", type=int, default=32)
    model.add_argument("--no_mid_block_attention", action="store_true")

    data = parser.add_argument_group("data")
    data.add_argument("--dataset_name", default=None, help=f"Hub dataset id or 'embedded' (default {DEFAULT_DATASET})")
    data.add_argument("--dataset_revision", default=None, help="Hub revision; the resolved commit is recorded")
    data.add_argument("--dataset_split", default="train")
    data.add_argument("--validation_split", default=None, help="split for validation images (default: none)")
    data.add_argument("--train_data_dir", default=None, help="a local image folder (datasets' imagefolder)")
    data.add_argument("--image_column", default=None)
    data.add_argument("--cache_dir", default=None)
    data.add_argument("--resolution", type=int, default=64)
    data.add_argument("--center_crop", dest="center_crop", action="store_true", default=True)
    data.add_argument("--random_crop", dest="center_crop", action="store_false")
    data.add_argument("--random_flip", action="store_true")
    data.add_argument("--max_train_samples", type=int, default=None)
    data.add_argument("--on_bad_image", choices=["skip", "fail"], default="skip")
    data.add_argument("--dataloader_num_workers", type=int, default=0)

    optim = add_optimisation_arguments(parser, 16, 5e-4, (0.5, 0.9), 0.0, "constant_with_warmup", 0, 1)
    optim.add_argument(
        "--freeze_encoder_after_steps",
        type=int,
        default=None,
        help="stop updating encoder + quant_conv after this many steps (stage-wise training)",
    )

    losses = parser.add_argument_group("losses")
    losses.add_argument("--reconstruction_loss", choices=["l1", "l2"], default="l2")
    losses.add_argument("--quantizer_loss_weight", type=float, default=1.0)
    losses.add_argument("--lpips_weight", type=float, default=0.0)
    losses.add_argument("--lpips_weights", default=None, help="local LPIPS weights (needed offline)")
    losses.add_argument("--disc_weight", type=float, default=0.0, help="> 0 enables the PatchGAN discriminator")
    losses.add_argument("--disc_start", type=int, default=0, help="first step of the adversarial terms")
    losses.add_argument("--disc_learning_rate", type=float, default=None, help="defaults to --learning_rate")
    losses.add_argument("--disc_channels", type=int, default=64)
    losses.add_argument("--disc_layers", type=int, default=3)
    losses.add_argument("--no_adaptive_disc_weight", action="store_true")
    losses.add_argument("--bandwidth_period_steps", type=int, default=None, help="nsvq: steps per tau decay period")
    losses.add_argument("--bandwidth_period_epochs", type=float, default=None, help="nsvq: epochs per period")

    run = add_run_arguments(parser)
    run.add_argument("--validation_steps", type=int, default=500)
    run.add_argument("--usage_window", type=int, default=100, help="steps over which utilisation is logged")
    run.add_argument("--scaling_factor_batches", type=int, default=8)
    run.add_argument("--eval_max_samples", type=int, default=None, help="final evaluation on --validation_split")
    run.add_argument("--inception_weights", default=None, help="local FID Inception weights for the final rFID")
    add_logging_and_hub_arguments(run)
    args = parser.parse_args(argv)
    check_shared_args(parser, args, offline_advice="train without it and run `hf-nsvq push` later")
    return args


def main(args: argparse.Namespace) -> None:
    output_dir = Path(args.output_dir)
    accelerator, resume_path = start_run(args, output_dir)

    # ---- everything that can be wrong is checked before the first step ------------------------------------------
    quantizer_kwargs = parse_quantizer_kwargs(args.quantizer_kwargs, args.quantizer)
    load = dataset_kwargs(args)
    train_data = load_image_dataset(split=args.dataset_split, max_samples=args.max_train_samples, **load)
    validation_data = load_image_dataset(split=args.validation_split, **load) if args.validation_split else None
    transform, train_dataset, train_dataloader = image_dataloader(train_data, args)
    updates_per_epoch, args.max_train_steps, num_epochs = plan_epochs(
        len(train_dataloader), len(train_dataset), accelerator.num_processes, args
    )
    quantizer_kwargs = add_bandwidth_schedule(
        args.quantizer,
        quantizer_kwargs,
        forwards_per_update=args.gradient_accumulation_steps,
        updates_per_epoch=updates_per_epoch,
        max_train_steps=args.max_train_steps,
        period_steps=args.bandwidth_period_steps,
        period_epochs=args.bandwidth_period_epochs,
    )
    model = build_model(
        args.model_config,
        args.quantizer,
        quantizer_kwargs,
        args.resolution,
        args.base_channels,
        args.block_out_channels,
        args.downsample_factor,
        args.layers_per_block,
        args.latent_channels,
        args.num_vq_embeddings,
        args.vq_embed_dim,
        args.norm_num_groups,
        not args.no_mid_block_attention,
    )
    if args.pretrained_model:
        model = _start_from_pretrained(args.pretrained_model, model)
    check_resolution(args.resolution, downsample_factor_of(model.config))
    lpips_model = None
    if args.lpips_weight > 0:
        from hf_nsvq.evaluation import load_lpips

        lpips_model = load_lpips(args.lpips_weights)  # raises with what to pass when weights are missing
        lpips_model.requires_grad_(False).eval()
    discriminator = None
    if args.disc_weight > 0:
        discriminator = PatchGANDiscriminator(3, args.disc_channels, args.disc_layers)

    # ---- optimisation ------------------------------------------------------------------------------------------
    module = VQTrainingModule(model)
    encoder_params = [*model.encoder.parameters(), *model.quant_conv.parameters()]
    encoder_ids = {id(p) for p in encoder_params}
    other_params = [p for p in model.parameters() if id(p) not in encoder_ids and p.requires_grad]
    betas = (args.adam_beta1, args.adam_beta2)
    optimizer = torch.optim.AdamW(
        [{"params": encoder_params}, {"params": other_params}],
        lr=args.learning_rate,
        betas=betas,
        weight_decay=args.adam_weight_decay,
    )
    lr_scheduler = get_scheduler(
        args.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=args.max_train_steps * accelerator.num_processes,
    )
    if discriminator is not None:
        disc_optimizer = torch.optim.AdamW(
            discriminator.parameters(), lr=args.disc_learning_rate or args.learning_rate, betas=betas
        )
        module, discriminator, optimizer, disc_optimizer, train_dataloader, lr_scheduler = accelerator.prepare(
            module, discriminator, optimizer, disc_optimizer, train_dataloader, lr_scheduler
        )
    else:
        disc_optimizer = None
        module, optimizer, train_dataloader, lr_scheduler = accelerator.prepare(
            module, optimizer, train_dataloader, lr_scheduler
        )
    unwrapped = accelerator.unwrap_model(module).model
    _register_checkpoint_hooks(accelerator, unwrapped, discriminator)

    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        trackers_config = {k: v for k, v in vars(args).items() if isinstance(v, int | float | str | bool)}
        if args.report_to != "none":
            accelerator.init_trackers("train_vqvae", config=trackers_config)

    global_step, first_epoch, skip_batches = resume_position(
        accelerator, resume_path, updates_per_epoch, args.gradient_accumulation_steps
    )
    if args.freeze_encoder_after_steps is not None and global_step >= args.freeze_encoder_after_steps:
        _freeze_encoder(optimizer, lr_scheduler)

    # each step's histogram is summed over processes when the step closes, so every rank logs global usage
    usage = WindowedCodebookUsage(
        model.config.num_vq_embeddings, args.usage_window, device=accelerator.device, sync=True
    )
    last_layer = unwrapped.decoder.conv_out.weight
    progress = tqdm(
        range(args.max_train_steps), initial=global_step, desc="steps", disable=not accelerator.is_local_main_process
    )
    validation_batch = _validation_batch(validation_data, transform, train_dataset, args, accelerator)
    logs: dict[str, float] = {}
    for epoch in range(first_epoch, num_epochs):
        train_dataloader.set_epoch(epoch)
        loader = train_dataloader
        if epoch == first_epoch and skip_batches:
            loader = accelerator.skip_first_batches(train_dataloader, skip_batches)
        module.train()
        for batch in loader:
            images = batch["pixel_values"]
            with accelerator.accumulate(module, *([discriminator] if discriminator is not None else [])):
                try:
                    with accelerator.autocast():
                        output = module(images)
                except ValueError as error:
                    if "NaN or Inf" in str(error):
                        raise RuntimeError(
                            f"training diverged at step {global_step}: {error}. The last complete checkpoint in "
                            f"{output_dir} is intact; resume from it with a lower --learning_rate."
                        ) from error
                    raise
                terms = _generator_loss(args, output, images, lpips_model, discriminator, last_layer, global_step)
                accelerator.backward(terms["loss"])
                if accelerator.sync_gradients and args.max_grad_norm:
                    accelerator.clip_grad_norm_(module.parameters(), args.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                if discriminator is not None and global_step >= args.disc_start:
                    logits = discriminator(torch.cat([images, output.reconstruction.detach()]))
                    real, fake = logits.chunk(2)
                    terms["disc_loss"] = hinge_discriminator_loss(real, fake)
                    accelerator.backward(terms["disc_loss"])
                    disc_optimizer.step()
                    disc_optimizer.zero_grad(set_to_none=True)

            usage.update(output.indices)
            if not accelerator.sync_gradients:
                continue
            usage.end_step()
            global_step += 1
            progress.update(1)
            if args.freeze_encoder_after_steps is not None and global_step == args.freeze_encoder_after_steps:
                _freeze_encoder(optimizer, lr_scheduler)
            for name, value in terms.items():
                logs[name] = float(value.detach())
            logs.update(
                utilisation=usage.utilisation,
                perplexity=usage.perplexity,
                dead_codes=usage.dead_codes,
                lr=lr_scheduler.get_last_lr()[1],
            )
            if args.quantizer == "nsvq":
                logs["bandwidth"] = unwrapped.quantize.bandwidth
            progress.set_postfix(loss=f"{logs['loss']:.4f}", util=f"{logs['utilisation']:.1%}")
            if global_step % args.logging_steps == 0 or global_step == args.max_train_steps:
                accelerator.log(logs, step=global_step)
            if global_step % args.checkpointing_steps == 0:
                save_checkpoint(accelerator, output_dir, global_step, args.checkpoints_total_limit)
            if global_step % args.validation_steps == 0 and accelerator.is_main_process:
                _log_validation(accelerator, unwrapped, validation_batch, usage, output_dir, global_step)
            if global_step >= args.max_train_steps:
                break
        if global_step >= args.max_train_steps:
            break
    progress.close()

    # ---- outputs -----------------------------------------------------------------------------------------------
    accelerator.wait_for_everyone()
    scaling_factor = _estimate_scaling_factor(accelerator, unwrapped, train_dataloader, args.scaling_factor_batches)
    # The baked model's latents are what a latent-diffusion model sees; for VQGAN-FC they are the low-dim
    # projections, whose scale differs, so they get their own estimate.
    stock = unwrapped.eval().to_diffusers()
    stock_scaling_factor = scaling_factor
    if stock.quantize.vq_embed_dim != unwrapped.quantize.vq_embed_dim:
        stock_scaling_factor = _estimate_scaling_factor(
            accelerator, stock, train_dataloader, args.scaling_factor_batches
        )
    if accelerator.is_main_process:
        unwrapped.register_to_config(scaling_factor=scaling_factor)
        stock.register_to_config(scaling_factor=stock_scaling_factor)
        unwrapped.save_pretrained(output_dir)
        stock.save_pretrained(output_dir / "vqvae")
        _write_training_config(args, train_data, quantizer_kwargs, scaling_factor, global_step, output_dir)
        _log_validation(accelerator, unwrapped, validation_batch, usage, output_dir, global_step)
    accelerator.wait_for_everyone()
    if args.validation_split:
        # every process takes part (metrics are gathered); metrics.json feeds the model card
        from hf_nsvq.evaluation.run import run_evaluation

        run_evaluation(
            model=str(output_dir),
            dataset_name=args.dataset_name,
            train_data_dir=args.train_data_dir,
            dataset_revision=train_data.revision,
            split=args.validation_split,
            image_column=args.image_column,
            resolution=args.resolution,
            batch_size=args.train_batch_size,
            max_samples=args.eval_max_samples,
            cache_dir=args.cache_dir,
            inception_weights=args.inception_weights,
            lpips_weights=args.lpips_weights,
            output=str(output_dir / "metrics.json"),
            accelerator=accelerator,
        )
    if accelerator.is_main_process:
        if args.push_to_hub:
            from hf_nsvq.hub import push_to_hub

            push_to_hub(output_dir, args.hub_model_id, token=args.hub_token, private=args.hub_private)
        else:
            from hf_nsvq.hub import write_model_card

            write_model_card(output_dir, repo_id=args.hub_model_id)
        accelerator.print(f"saved NSVQModel to {output_dir} and the stock VQModel to {output_dir / 'vqvae'}")
    # Teardown order matters under torch.distributed. First every rank finishes its last collective (evaluation's
    # gathers); then the DDP wrappers are freed while torch.distributed still holds the process group, so that
    # end_training destroys the group from Python, which releases the GIL. Freed the other way round (the wrappers
    # at the end of main), a DDP Reducer held the last reference and ran ~ProcessGroupGloo with the GIL held, joining
    # a gloo worker thread that was waiting for the GIL to free the tensors of the last all_gather: a deadlock at
    # exit after every output was written (rank 1, in 1 of 10 two-process runs on a busy 2-core machine).
    accelerator.wait_for_everyone()
    del module, discriminator
    accelerator.free_memory()
    accelerator.end_training()


def _generator_loss(args, output, images, lpips_model, discriminator, last_layer, step) -> dict[str, torch.Tensor]:
    terms = {"reconstruction_loss": reconstruction_loss(output.reconstruction, images, args.reconstruction_loss)}
    nll = terms["reconstruction_loss"]
    if lpips_model is not None:
        terms["lpips"] = lpips_model(output.reconstruction.float(), images.float()).mean()
        nll = nll + args.lpips_weight * terms["lpips"]
    terms["quantizer_loss"] = output.quantizer_loss
    loss = nll + args.quantizer_loss_weight * output.quantizer_loss
    if discriminator is not None and step >= args.disc_start:
        # The generator sees the discriminator without DDP (its parameters are not updated here), so the
        # discriminator's one DDP forward per step is the one in its own update.
        disc = getattr(discriminator, "module", discriminator)
        disc.requires_grad_(False)
        terms["generator_loss"] = hinge_generator_loss(disc(output.reconstruction))
        disc.requires_grad_(True)
        if args.no_adaptive_disc_weight:
            weight = torch.tensor(1.0, device=loss.device)
        else:
            weight = adaptive_generator_weight(nll, terms["generator_loss"], last_layer)
        terms["adaptive_weight"] = weight
        loss = loss + args.disc_weight * weight * terms["generator_loss"]
    terms["loss"] = loss
    return terms


def _start_from_pretrained(path: str, model: NSVQModel) -> NSVQModel:
    """Fine-tuning: the pretrained model with `model`'s quantizer swapped in by `replace_quantizer` (which keeps the
    old codebook where the new quantizer can hold it); the size flags and --model_config give way to its config."""
    from hf_nsvq.evaluation.loading import load_vq_model

    pretrained = load_vq_model(path)
    return hf_nsvq.replace_quantizer(pretrained, model.config.quantizer_type, **(model.config.quantizer_kwargs or {}))


def _freeze_encoder(optimizer, lr_scheduler) -> None:
    """Stage-wise training: the encoder group's learning rate becomes 0 (AdamW then leaves it exactly unchanged).

    Zeroing the group's lr, rather than turning off its gradients, keeps DDP's set of used parameters fixed.
    """
    optimizer.param_groups[0]["lr"] = 0.0
    scheduler = getattr(lr_scheduler, "scheduler", lr_scheduler)
    scheduler.base_lrs[0] = 0.0


def _register_checkpoint_hooks(accelerator: Accelerator, model: NSVQModel, discriminator) -> None:
    """Checkpoints hold the model as `save_pretrained` writes it (so a checkpoint is also a loadable model)."""
    disc = None if discriminator is None else accelerator.unwrap_model(discriminator)

    def save_hook(models, weights, output_dir):
        if not accelerator.is_main_process:
            return
        for index in reversed(range(len(models))):
            unwrapped = accelerator.unwrap_model(models[index])
            if isinstance(unwrapped, VQTrainingModule):
                unwrapped.model.save_pretrained(os.path.join(output_dir, "model"))
            elif unwrapped is disc:
                save_file(disc.state_dict(), os.path.join(output_dir, "discriminator.safetensors"))
            else:
                continue
            weights.pop(index)

    def load_hook(models, input_dir):
        while models:
            unwrapped = accelerator.unwrap_model(models.pop())
            if isinstance(unwrapped, VQTrainingModule):
                loaded, info = NSVQModel.from_pretrained(input_dir, subfolder="model", output_loading_info=True)
                if info["missing_keys"] or info["unexpected_keys"]:
                    # diffusers only warns and leaves a missing tensor (NSVQ's step, EMA statistics) at its initial
                    # value: a resume that is not exact, silently
                    raise ValueError(
                        f"checkpoint {input_dir!r}: model/ does not match its own config.json (missing tensors "
                        f"{info['missing_keys']}, unexpected tensors {info['unexpected_keys']}); resume from another "
                        "checkpoint"
                    )
                _check_same_architecture(unwrapped.model, loaded, input_dir)
                unwrapped.model.load_state_dict(loaded.state_dict())
                del loaded
            elif unwrapped is disc:
                disc.load_state_dict(load_file(os.path.join(input_dir, "discriminator.safetensors")))

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


def _check_same_architecture(model: NSVQModel, loaded: NSVQModel, path: str) -> None:
    for key in ("quantizer_type", "num_vq_embeddings", "vq_embed_dim", "latent_channels", "block_out_channels"):
        if json.dumps(model.config[key]) != json.dumps(loaded.config[key]):  # tuples and lists alike
            raise ValueError(
                f"checkpoint {path!r} has {key}={loaded.config[key]!r} but this run builds {key}="
                f"{model.config[key]!r}; resume with the flags of the original run or start a new --output_dir"
            )
    # Anything else that changes a shape (--layers_per_block, a quantizer's width, ...) fails here with the same advice,
    # not later in load_state_dict.
    ours = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    theirs = {key: tuple(value.shape) for key, value in loaded.state_dict().items()}
    differing = sorted(key for key in ours.keys() | theirs.keys() if ours.get(key) != theirs.get(key))
    if differing:
        shown = ", ".join(f"{key}: {theirs.get(key)} vs {ours.get(key)}" for key in differing[:3])
        more = f" and {len(differing) - 3} more" if len(differing) > 3 else ""
        raise ValueError(
            f"checkpoint {path!r} holds tensors of other shapes than this run builds (checkpoint vs run: {shown}"
            f"{more}); resume with the flags of the original run or start a new --output_dir"
        )


def _validation_batch(validation_data, transform, train_dataset, args, accelerator) -> torch.Tensor:
    """A fixed batch of (up to 8) images for the reconstruction grid: validation images when given."""
    source = validation_data.to_torch(transform, seed=args.seed) if validation_data is not None else train_dataset
    images = [source[i]["pixel_values"] for i in range(min(8, len(source)))]
    return torch.stack(images).to(accelerator.device)


@torch.no_grad()
def _log_validation(accelerator, model: NSVQModel, images, usage, output_dir: Path, step: int) -> None:
    was_training = model.training
    model.eval()
    reconstruction = model(images.to(model.dtype)).sample
    model.train(was_training)
    grid = reconstruction_grid(images, reconstruction)
    histogram = figure_to_image(usage_histogram(usage.window_counts(), title=f"step {step}, last window"))
    folder = output_dir / "validation"
    folder.mkdir(parents=True, exist_ok=True)
    grid.save(folder / f"step-{step:07d}-reconstructions.png")
    histogram.save(folder / f"step-{step:07d}-code-usage.png")
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            import numpy as np

            tracker.writer.add_image("reconstructions", np.asarray(grid), step, dataformats="HWC")
            tracker.writer.add_image("code_usage", np.asarray(histogram), step, dataformats="HWC")


@torch.no_grad()
def _estimate_scaling_factor(accelerator, model: NSVQModel, dataloader, num_batches: int) -> float:
    """1 / std of the encoder latents (what a latent-diffusion model is trained on), over every rank's batches."""
    model.eval()
    total, total_sq, count = 0.0, 0.0, 0
    for index, batch in enumerate(dataloader):
        if index >= num_batches:
            break
        latents = model.encode(batch["pixel_values"].to(model.dtype)).latents.float()
        stats = accelerator.reduce(
            torch.stack(
                [latents.sum(), latents.pow(2).sum(), torch.tensor(latents.numel(), device=latents.device)]
            ).double(),
            reduction="sum",
        )
        total, total_sq, count = total + float(stats[0]), total_sq + float(stats[1]), count + int(stats[2])
    variance = max(total_sq / count - (total / count) ** 2, 1e-12)
    return 1.0 / math.sqrt(variance)


def _write_training_config(args, train_data, quantizer_kwargs, scaling_factor, step, output_dir: Path) -> None:
    config = training_config(
        "train_vqvae.py",
        args,
        train_data,
        quantizer_kwargs_resolved=quantizer_kwargs,
        scaling_factor=scaling_factor,
        global_step=step,
    )
    (output_dir / "training_config.json").write_text(json.dumps(config, indent=2, default=str))


if __name__ == "__main__":
    main(parse_args())

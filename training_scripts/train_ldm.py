#!/usr/bin/env python
"""Train a latent-diffusion model (diffusers `UNet2DModel`, DDPM noise schedule) on the latents of a frozen VQ tokenizer.

Single process (CPU or one GPU), on the offline sample set, with a tokenizer trained by `train_vqvae.py`:

    accelerate launch training_scripts/train_ldm.py --vqvae out/nsvq-embedded --dataset_name embedded \
        --resolution 64 --train_batch_size 32 --max_train_steps 20000 --use_ema --output_dir out/ldm-embedded

On GPUs, CelebA-HQ:

    accelerate launch --multi_gpu --num_processes 8 --mixed_precision bf16 training_scripts/train_ldm.py \
        --vqvae out/nsvq-celebahq --dataset_name korexyz/celeba-hq-256x256 --resolution 64 --random_flip \
        --train_batch_size 32 --learning_rate 1e-4 --num_train_epochs 500 --use_ema --checkpointing_steps 5000 \
        --output_dir out/ldm-celebahq --push_to_hub --hub_model_id you/ldm-celebahq-nsvq

`--vqvae` takes an hf_nsvq training output folder (its baked stock `vqvae/` is used, or the NSVQModel is baked with
`to_diffusers()`), a stock `VQModel` folder, or a pipeline folder with `vqvae/`. The diffusion model learns
`vqvae.encode(x).latents * scaling_factor`, where `scaling_factor` = 1 / std of the latents, estimated before training
from `--scaling_factor_samples` images (summed over all processes) unless `--scaling_factor` is given, and written to
the vqvae's config. The output folder is a standard `diffusers.LDMPipeline` (vqvae, unet, DDIM scheduler) whose
`model_index.json` names only diffusers classes:

    from diffusers import LDMPipeline
    images = LDMPipeline.from_pretrained("out/ldm-embedded")(batch_size=4, num_inference_steps=50).images

Sample grids are written to `validation/` (and TensorBoard) every `--validation_steps`; checkpoints are atomic
(`--checkpointing_steps`) and `--resume_from_checkpoint latest` continues exactly. On a machine without GPUs,
`ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2` runs two gloo processes.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import set_seed
from diffusers import DDIMScheduler, DDPMScheduler, LDMPipeline, UNet2DModel
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from hf_nsvq.data import DEFAULT_DATASET, check_resolution, load_image_dataset, sample_seed
from hf_nsvq.pipelines.first_stage import downsample_factor, load_first_stage
from hf_nsvq.pipelines.grids import save_sample_grid
from hf_nsvq.pipelines.latents import estimate_scaling_factor, scaling_factor_indices
from hf_nsvq.pipelines.publish import push_pipeline_folder, write_pipeline_card
from hf_nsvq.training.args import (
    add_logging_and_hub_arguments,
    add_optimisation_arguments,
    add_run_arguments,
    check_shared_args,
)
from hf_nsvq.training.checkpoints import save_checkpoint
from hf_nsvq.training.data_plan import dataset_kwargs, image_dataloader, plan_epochs
from hf_nsvq.training.provenance import training_config
from hf_nsvq.training.run_setup import resume_position, start_run

logger = get_logger(__name__)

SCALING_FACTOR_FILE = "scaling_factor.json"  # in each checkpoint: a resumed run keeps the factor it trained with
USAGE = """from diffusers import LDMPipeline

pipeline = LDMPipeline.from_pretrained("{repo}")
images = pipeline(batch_size=4, num_inference_steps=50).images"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    first = parser.add_argument_group("first stage")
    first.add_argument("--vqvae", required=True, help="hf_nsvq output folder, VQModel folder or pipeline folder")
    first.add_argument("--scaling_factor", type=float, default=None, help="default: 1 / std of the latents")
    first.add_argument("--scaling_factor_samples", type=int, default=512, help="images the std is estimated from")

    unet = parser.add_argument_group("unet")
    unet.add_argument("--unet_block_out_channels", type=int, nargs="+", default=[128, 256, 256])
    unet.add_argument("--unet_layers_per_block", type=int, default=2)
    unet.add_argument(
        "--unet_attention_levels", type=int, nargs="*", default=None, help="levels with attention (default: all but 0)"
    )
    unet.add_argument("--unet_norm_num_groups", type=int, default=32)

    noise = parser.add_argument_group("noise schedule")
    noise.add_argument("--num_train_timesteps", type=int, default=1000)
    noise.add_argument("--beta_schedule", default="scaled_linear", help="as in LDM: scaled_linear 0.0015 -> 0.0195")
    noise.add_argument("--beta_start", type=float, default=0.0015)
    noise.add_argument("--beta_end", type=float, default=0.0195)
    noise.add_argument("--prediction_type", choices=["epsilon", "v_prediction"], default="epsilon")

    data = parser.add_argument_group("data")
    data.add_argument("--dataset_name", default=None, help=f"Hub dataset id or 'embedded' (default {DEFAULT_DATASET})")
    data.add_argument("--dataset_revision", default=None)
    data.add_argument("--dataset_split", default="train")
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

    optim = add_optimisation_arguments(parser, 32, 1e-4, (0.95, 0.999), 1e-6, "cosine", 500, 100)
    optim.add_argument("--adam_epsilon", type=float, default=1e-8)
    optim.add_argument("--use_ema", action="store_true", help="keep an EMA of the UNet; samples and output use it")
    optim.add_argument("--ema_max_decay", type=float, default=0.9999)
    optim.add_argument("--ema_inv_gamma", type=float, default=1.0)
    optim.add_argument("--ema_power", type=float, default=3 / 4)

    run = add_run_arguments(parser)
    run.add_argument("--validation_steps", type=int, default=500, help="sample a grid every this many steps")
    run.add_argument("--num_validation_images", type=int, default=16)
    run.add_argument("--validation_inference_steps", type=int, default=50, help="DDIM steps of the sample grids")
    add_logging_and_hub_arguments(run)
    args = parser.parse_args(argv)
    check_shared_args(parser, args)
    if args.scaling_factor is not None and not args.scaling_factor > 0:
        parser.error(f"--scaling_factor got {args.scaling_factor!r}; expected a number > 0")
    return args


def main(args: argparse.Namespace) -> None:
    output_dir = Path(args.output_dir)
    accelerator, resume_path = start_run(args, output_dir)

    # ---- everything that can be wrong is checked before the first step ------------------------------------------
    first_stage = load_first_stage(args.vqvae)
    vqvae = first_stage.vqvae.to(accelerator.device)
    logger.info("first stage: %s", first_stage.source)
    factor = downsample_factor(vqvae)
    check_resolution(args.resolution, factor)
    train_data = load_image_dataset(
        split=args.dataset_split, max_samples=args.max_train_samples, **dataset_kwargs(args)
    )
    _, train_dataset, train_dataloader = image_dataloader(train_data, args)
    updates_per_epoch, args.max_train_steps, num_epochs = plan_epochs(
        len(train_dataloader), len(train_dataset), accelerator.num_processes, args
    )
    latent_channels = vqvae.config.vq_embed_dim or vqvae.config.latent_channels
    set_seed(args.seed)  # initial weights independent of what ran before (loading, validating the data)
    unet = UNet2DModel(**_unet_config(args, args.resolution // factor, latent_channels))
    noise_scheduler = DDPMScheduler(
        num_train_timesteps=args.num_train_timesteps,
        beta_schedule=args.beta_schedule,
        beta_start=args.beta_start,
        beta_end=args.beta_end,
        prediction_type=args.prediction_type,
        clip_sample=False,  # latents are not images in [-1, 1]
    )
    scaling_factor = _scaling_factor(args, accelerator, vqvae, train_dataset, resume_path)
    vqvae.register_to_config(scaling_factor=scaling_factor)
    accelerator.print(f"latent scaling factor {scaling_factor:.6g}")

    # ---- optimisation ------------------------------------------------------------------------------------------
    ema = None
    if args.use_ema:
        ema = EMAModel(
            unet.parameters(),
            decay=args.ema_max_decay,
            use_ema_warmup=True,
            inv_gamma=args.ema_inv_gamma,
            power=args.ema_power,
            model_cls=UNet2DModel,
            model_config=unet.config,
        )
    optimizer = torch.optim.AdamW(
        unet.parameters(),
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        weight_decay=args.adam_weight_decay,
        eps=args.adam_epsilon,
    )
    lr_scheduler = get_scheduler(
        args.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=args.max_train_steps * accelerator.num_processes,
    )
    unet, optimizer, train_dataloader, lr_scheduler = accelerator.prepare(
        unet, optimizer, train_dataloader, lr_scheduler
    )
    unwrapped = accelerator.unwrap_model(unet)
    if ema is not None:
        ema.to(accelerator.device)
        accelerator.register_for_checkpointing(ema)  # its state_dict (shadow weights, step) goes into checkpoints
    _register_checkpoint_hooks(accelerator, scaling_factor)

    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        if args.report_to != "none":
            trackers_config = {k: v for k, v in vars(args).items() if isinstance(v, int | float | str | bool)}
            accelerator.init_trackers("train_ldm", config=trackers_config)

    global_step, first_epoch, skip_batches = resume_position(
        accelerator, resume_path, updates_per_epoch, args.gradient_accumulation_steps
    )
    if ema is not None and resume_path is not None:
        ema.to(accelerator.device)  # loaded onto the CPU
    micro_step = global_step * args.gradient_accumulation_steps

    progress = tqdm(
        range(args.max_train_steps), initial=global_step, desc="steps", disable=not accelerator.is_local_main_process
    )
    logs: dict[str, float] = {}
    for epoch in range(first_epoch, num_epochs):
        train_dataloader.set_epoch(epoch)
        loader = train_dataloader
        if epoch == first_epoch and skip_batches:
            loader = accelerator.skip_first_batches(train_dataloader, skip_batches)
        unet.train()
        for batch in loader:
            # Noise and timesteps are a function of (seed, micro-step, process) alone: a resumed run draws exactly what
            # the original drew, though restarting the dataloader's iterator has consumed a number from torch's RNG.
            torch.manual_seed(sample_seed(args.seed, micro_step, accelerator.process_index))
            micro_step += 1
            with torch.no_grad(), accelerator.autocast():
                latents = vqvae.encode(batch["pixel_values"]).latents.float() * scaling_factor
            noise = torch.randn_like(latents)
            timesteps = torch.randint(
                0, noise_scheduler.config.num_train_timesteps, (latents.shape[0],), device=latents.device
            )
            noisy = noise_scheduler.add_noise(latents, noise, timesteps)
            if args.prediction_type == "epsilon":
                target = noise
            else:
                target = noise_scheduler.get_velocity(latents, noise, timesteps)
            with accelerator.accumulate(unet):
                with accelerator.autocast():
                    prediction = unet(noisy, timesteps).sample
                loss = F.mse_loss(prediction.float(), target.float())
                if not torch.isfinite(loss):
                    raise RuntimeError(
                        f"training diverged at step {global_step} (loss {loss.item()}); the last complete checkpoint "
                        f"in {output_dir} is intact: resume from it with a lower --learning_rate"
                    )
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm:
                    accelerator.clip_grad_norm_(unet.parameters(), args.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            if not accelerator.sync_gradients:
                continue
            if ema is not None:
                ema.step(unwrapped.parameters())
            global_step += 1
            progress.update(1)
            logs.update(loss=float(loss.detach()), lr=lr_scheduler.get_last_lr()[0])
            if ema is not None:
                logs["ema_decay"] = ema.cur_decay_value
            progress.set_postfix(loss=f"{logs['loss']:.4f}")
            if global_step % args.logging_steps == 0 or global_step == args.max_train_steps:
                accelerator.log(logs, step=global_step)
            if global_step % args.checkpointing_steps == 0:
                save_checkpoint(accelerator, output_dir, global_step, args.checkpoints_total_limit)
            if global_step % args.validation_steps == 0 and accelerator.is_main_process:
                _sample_grid(args, accelerator, vqvae, unwrapped, ema, noise_scheduler, global_step)
            if global_step >= args.max_train_steps:
                break
        if global_step >= args.max_train_steps:
            break
    progress.close()

    # ---- outputs -----------------------------------------------------------------------------------------------
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        unet_out = UNet2DModel.from_config(unwrapped.config)
        unet_out.load_state_dict(unwrapped.state_dict())
        if ema is not None:
            ema.copy_to(unet_out.parameters())
        pipeline = LDMPipeline(vqvae=vqvae, unet=unet_out, scheduler=DDIMScheduler.from_config(noise_scheduler.config))
        pipeline.save_pretrained(output_dir)
        config = _write_training_config(args, train_data, first_stage.source, scaling_factor, global_step, output_dir)
        if global_step % args.validation_steps != 0:
            _sample_grid(args, accelerator, vqvae, unwrapped, ema, noise_scheduler, global_step)
        repo = args.hub_model_id or str(output_dir)
        write_pipeline_card(
            output_dir,
            title=f"Latent diffusion on an hf_nsvq tokenizer: {repo}",
            summary=(
                "A `diffusers.LDMPipeline`: a `UNet2DModel` trained with a DDPM schedule on the latents of a frozen "
                "VQ tokenizer, sampled with DDIM. Every component is a stock diffusers class."
            ),
            usage=USAGE.format(repo=repo),
            training_config=config,
            tags=("latent-diffusion", "vq-vae"),
        )
        if args.push_to_hub:
            url = push_pipeline_folder(output_dir, args.hub_model_id, token=args.hub_token, private=args.hub_private)
            accelerator.print(f"pushed to {url}")
        accelerator.print(f"saved the LDMPipeline to {output_dir}")
    # Free the DDP wrapper while torch.distributed still holds the process group, before end_training destroys it:
    # the other way round, a gloo worker thread can deadlock at exit (seen with train_vqvae.py on a busy 2-core machine).
    accelerator.wait_for_everyone()
    del unet
    accelerator.free_memory()
    accelerator.end_training()


def _unet_config(args: argparse.Namespace, sample_size: int, channels: int) -> dict:
    levels = len(args.unet_block_out_channels)
    attention = set(range(1, levels) if args.unet_attention_levels is None else args.unet_attention_levels)
    if not attention <= set(range(levels)):
        raise ValueError(
            f"--unet_attention_levels got {sorted(attention)}; expected levels among 0..{levels - 1} "
            f"(one per --unet_block_out_channels entry)"
        )
    if sample_size % 2 ** (levels - 1) != 0:
        raise ValueError(
            f"the latents are {sample_size}x{sample_size} but a UNet with {levels} levels halves them "
            f"{levels - 1} times; expected --resolution / downsample factor divisible by {2 ** (levels - 1)}"
        )
    down = tuple("AttnDownBlock2D" if level in attention else "DownBlock2D" for level in range(levels))
    up = tuple("AttnUpBlock2D" if level in attention else "UpBlock2D" for level in reversed(range(levels)))
    return dict(
        sample_size=sample_size,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=tuple(args.unet_block_out_channels),
        down_block_types=down,
        up_block_types=up,
        layers_per_block=args.unet_layers_per_block,
        norm_num_groups=args.unet_norm_num_groups,
    )


def _scaling_factor(args, accelerator, vqvae, dataset, resume_path: Path | None) -> float:
    """The checkpoint's factor on resume, else `--scaling_factor`, else 1 / std over a seeded subset of images."""
    if resume_path is not None:
        return float(json.loads((resume_path / SCALING_FACTOR_FILE).read_text())["scaling_factor"])
    if args.scaling_factor is not None:
        return args.scaling_factor
    indices = scaling_factor_indices(
        len(dataset), args.scaling_factor_samples, args.seed, accelerator.process_index, accelerator.num_processes
    )
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(dataset, indices), batch_size=args.train_batch_size, num_workers=0
    )
    reduce = (lambda stats: accelerator.reduce(stats, reduction="sum")) if accelerator.num_processes > 1 else None
    with accelerator.autocast():
        return estimate_scaling_factor(vqvae, (batch["pixel_values"] for batch in loader), reduce)


def _register_checkpoint_hooks(accelerator: Accelerator, scaling_factor: float) -> None:
    """Checkpoints hold the UNet as `save_pretrained` writes it, and the latent scaling factor."""

    def save_hook(models, weights, output_dir):
        if not accelerator.is_main_process:
            return
        for index in reversed(range(len(models))):
            unwrapped = accelerator.unwrap_model(models[index])
            if isinstance(unwrapped, UNet2DModel):
                unwrapped.save_pretrained(os.path.join(output_dir, "unet"))
                weights.pop(index)
        Path(output_dir, SCALING_FACTOR_FILE).write_text(json.dumps({"scaling_factor": scaling_factor}))

    def load_hook(models, input_dir):
        while models:
            unwrapped = accelerator.unwrap_model(models.pop())
            if isinstance(unwrapped, UNet2DModel):
                loaded = UNet2DModel.from_pretrained(os.path.join(input_dir, "unet"))
                if _public_config(loaded) != _public_config(unwrapped):
                    raise ValueError(
                        f"checkpoint {input_dir!r} holds a UNet with another config than this run builds; resume "
                        "with the flags of the original run or start a new --output_dir"
                    )
                unwrapped.load_state_dict(loaded.state_dict())
                del loaded

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


def _public_config(model) -> str:
    """The config without bookkeeping keys (`_name_or_path`, ...), as JSON so tuples and lists compare equal."""
    return json.dumps({key: value for key, value in model.config.items() if not key.startswith("_")}, sort_keys=True)


@torch.no_grad()
def _sample_grid(args, accelerator, vqvae, unet: UNet2DModel, ema, noise_scheduler, step: int) -> None:
    """DDIM samples from a fixed seed (EMA weights when kept), saved as a grid PNG and logged to TensorBoard."""
    if ema is not None:
        ema.store(unet.parameters())
        ema.copy_to(unet.parameters())
    was_training = unet.training
    unet.eval()
    pipeline = LDMPipeline(vqvae=vqvae, unet=unet, scheduler=DDIMScheduler.from_config(noise_scheduler.config))
    pipeline.set_progress_bar_config(disable=True)
    generator = torch.Generator(device="cpu").manual_seed(args.seed)
    # in the weights' own precision (fp32), as the saved pipeline runs: LDMPipeline cannot turn bf16 into numpy
    images = pipeline(
        batch_size=args.num_validation_images,
        num_inference_steps=args.validation_inference_steps,
        generator=generator,
        output_type="np",
    ).images
    unet.train(was_training)
    if ema is not None:
        ema.restore(unet.parameters())
    save_sample_grid(accelerator, images, Path(args.output_dir), step)


def _write_training_config(args, train_data, vqvae_source: str, scaling_factor: float, step, output_dir) -> dict:
    config = training_config(
        "train_ldm.py", args, train_data, vqvae_source=vqvae_source, scaling_factor=scaling_factor, global_step=step
    )
    (output_dir / "training_config.json").write_text(json.dumps(config, indent=2, default=str))
    return config


if __name__ == "__main__":
    main(parse_args())

"""`slife train SHARDS`: train an encoder on pair shards with a choice of objective (CroCo by default);
works under `torchrun -m slife train ...`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from slife.cli.app import app, console, progress_bar


def _zoom(text: str | None) -> tuple[float, float] | None:
    """'LO,HI' -> (LO, HI); None stays None."""
    if text is None:
        return None
    from slife.errors import SlifeError

    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        raise SlifeError(f"--aug-zoom: expected LO,HI (e.g. 0.7,1.4), got {text!r}") from None
    return lo, hi


def _json_object(text: str, option: str) -> dict:
    """A JSON object given on the command line -> dict; one-line SlifeError otherwise."""
    import json

    from slife.errors import SlifeError

    try:
        obj = json.loads(text)
    except ValueError as e:
        raise SlifeError(f"{option}: not a JSON object ({e})") from None
    if not isinstance(obj, dict):
        raise SlifeError(f"{option}: not a JSON object")
    return obj


@app.command("train")
def train(
    shards: str = typer.Argument(..., help="Pair shards: a shard folder, several comma-separated, a brace pattern "
                                           "(shards/life{1..3}) or .tar files."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder: last.pt, snapshots, metrics.csv, "
                                       "previews/ \\[runs/NAME, NAME = the (first) shard folder's name, as letters, digits and '-']."),
    objective: str = typer.Option("croco", "--objective", help=(
        "What is learned. croco: cross-view completion (mask the target view, reconstruct it from the source). "
        "dinov2: DINOv2-style self-distillation on the life's frames (ViT student, EMA teacher, 2 global + "
        "local crops, DINO loss with Sinkhorn-Knopp, iBOT, KoLeo); each pair gives its two stored views as two "
        "frames, so a frame weighs as many times as it appears in pairs (an 'augmented' pair's frame twice). "
        "egomotion: a ViT and a small head predict the relative camera motion (rotation, translation "
        "direction) of each posed pair (pairs without both poses, or 'augmented', do not count in the loss). "
        "croco+egomotion: CroCo plus that head on CroCo's encoder tokens as an auxiliary loss.")),
    preset: str = typer.Option("tiny", "--preset", help="Model + recipe preset: tiny (CPU), small (ViT-S/16), base "
                                                        "(ViT-B/16), large (ViT-L/16); base-base (CroCo only)."),
    model_kwargs: Optional[str] = typer.Option(None, "--model-kwargs", "--croco-kwargs", help=(
        "JSON object overriding the preset's model arguments: CroCoNet's for croco objectives (e.g. "
        "'{\"enc_depth\": 4}'), the ViT's for dinov2/egomotion (img_size, patch_size, embed_dim, depth, "
        "num_heads, mlp_ratio).")),
    objective_conf: Optional[str] = typer.Option(None, "--objective-conf", help=(
        "JSON object of the objective's own settings (an unknown key is an error that lists them all with "
        "their defaults). croco: norm_pix_loss. dinov2: local_crops, local_size, global_scale, local_scale, "
        "prototypes, head_hidden, head_bottleneck, centering (sinkhorn|centering), student_temp, teacher_temp, "
        "warmup_teacher_temp, teacher_temp_warmup (share of the steps), momentum_teacher (to 1 by a cosine), "
        "center_momentum, dino_weight, ibot_weight, koleo_weight, mask_ratio, mask_probability. egomotion: "
        "head_dim, head_depth, head_heads, rotation_weight, translation_weight; croco+egomotion: those, "
        "egomotion_weight and norm_pix_loss.")),
    steps: Optional[int] = typer.Option(None, "--steps", help=(
        "Optimisation steps of the run \\[preset]. When OUT's last checkpoint was trained on a smaller version of "
        "the same shard set (mine-pairs appended a generation, or folders/tars were added to SHARDS), the run is "
        "continued in a new segment: --steps more steps from the checkpoint's step, weights and optimiser state "
        "kept, a new stream over the grown set (see --new-weight), the lr re-warmed linearly over --warmup-steps "
        "to --continue-lr x the run's peak lr, then a cosine to --min-lr at the segment's end.")),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", help="Pairs per step per process \\[preset]."),
    img_size: Optional[int] = typer.Option(None, "--img-size", help="Training crop side in px \\[the model's]."),
    blr: Optional[float] = typer.Option(None, "--blr", help="Base lr; lr = blr x effective batch / 256 \\[preset]."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Absolute lr (overrides --blr)."),
    min_lr: Optional[float] = typer.Option(None, "--min-lr", help="lr at the end of the cosine decay [0]."),
    warmup_steps: Optional[int] = typer.Option(None, "--warmup-steps", help="Linear warmup steps \\[preset]."),
    new_weight: Optional[float] = typer.Option(None, "--new-weight", help=(
        "In a continued segment (the set grew): each new pair is drawn this many times as often as an old one; "
        "1 = all pairs alike [2].")),
    continue_lr: Optional[float] = typer.Option(None, "--continue-lr", help=(
        "In a continued segment (the set grew): its peak lr, as a share of the run's peak lr, in (0, 1]; the "
        "segment re-warms to it over --warmup-steps, then decays by a cosine to --min-lr [0.5].")),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay", help="AdamW weight decay [0.05]."),
    clip_grad: Optional[float] = typer.Option(None, "--clip-grad", help="Clip the gradient norm to this; 0 = off "
                                                                        "\\[preset]."),
    precision: Optional[str] = typer.Option(None, "--precision", help="auto (bf16 where the CPU/GPU computes it natively, else fp32) | bf16 | fp32 | fp16 (cuda) \\[auto]."),
    compile: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile the model (inductor; the first "
                                                                                     "steps compile for a minute or more). Meant for "
                                                                                     "GPUs: on a CPU eager fp32 is faster, since compiled "
                                                                                     "models skip slife's fused CPU attention (tiny: "
                                                                                     "1.26x slower) \\[off]."),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda \\[auto: cuda if present]."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch threads per process \\[torch's default]."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of masking, sampling and augmentation [0]."),
    num_workers: Optional[int] = typer.Option(None, "--num-workers", "-j", help="Loader processes per training "
                                                                                "process \\[preset]."),
    shuffle_buffer: Optional[int] = typer.Option(None, "--shuffle-buffer", help="Shuffle buffer per loader worker \\[preset]."),
    samples_per_epoch: Optional[int] = typer.Option(None, "--samples-per-epoch", help="Pairs per epoch per process "
                                                                                      "\\[pairs in shards / processes]."),
    resize_short: Optional[int] = typer.Option(None, "--resize-short", help="Short side before the random crop "
                                                                            "\\[img_size x 256/224]."),
    color_jitter: Optional[float] = typer.Option(None, "--color-jitter", help="Brightness/contrast/saturation "
                                                                              "jitter per view [0.4]."),
    hue: Optional[float] = typer.Option(None, "--hue", help="Hue jitter per view, in turns [0]."),
    aug_zoom: Optional[str] = typer.Option(None, "--aug-zoom", help="Zoom range LO,HI of each view of an "
                                                                  "'augmented' pair (log-uniform) [0.7,1.4]."),
    aug_flip: Optional[float] = typer.Option(None, "--aug-flip", help="Probability that a view of an 'augmented' "
                                                                    "pair is flipped left-right [0.5]."),
    norm_pix_loss: Optional[bool] = typer.Option(None, "--norm-pix-loss/--no-norm-pix-loss",
                                                 help="croco objectives: loss on per-patch normalised pixels \\[on]; "
                                                      "the same as --objective-conf '{\"norm_pix_loss\": ...}'."),
    save_every: Optional[int] = typer.Option(None, "--save-every", help="Write last.pt every N steps \\[preset]."),
    keep_every: Optional[int] = typer.Option(None, "--keep-every", help="Keep a snapshot every N steps [0: none]."),
    log_every: Optional[int] = typer.Option(None, "--log-every", help="metrics.csv row every N steps [10]."),
    preview_every: Optional[int] = typer.Option(None, "--preview-every", help="Preview PNG every N steps "
                                                                              "\\[preset; 0: none]."),
    resume: str = typer.Option("auto", "--resume", help="auto (continue OUT/last.pt if present) | never (start "
                                                        "over) | a checkpoint path (a training state is "
                                                        "continued; weights only, e.g. a released CroCo "
                                                        "checkpoint, are the starting point). A training state "
                                                        "continues only under the objective, preset, model and "
                                                        "--objective-conf it was trained with (else a one-line "
                                                        "error)."),
    log_keys: bool = typer.Option(False, "--log-keys", help="Debug: write the pair keys each rank trains on "
                                                            "to OUT/keys-rank{r}.txt."),
):
    """Train an encoder on pair shards (CroCo cross-view completion by default; --objective dinov2, egomotion,
    croco+egomotion), streamed; resumable; DDP under torchrun."""
    import dataclasses
    import os

    from slife.errors import SlifeError
    from slife.train import preset_config, run

    given = {k: v for k, v in dict(
        steps=steps, batch_size=batch_size, img_size=img_size, blr=blr, lr=lr, min_lr=min_lr,
        warmup_steps=warmup_steps, new_weight=new_weight, continue_lr=continue_lr, weight_decay=weight_decay, precision=precision, compile=compile, device=device,
        threads=threads, seed=seed, num_workers=num_workers, shuffle_buffer=shuffle_buffer,
        samples_per_epoch=samples_per_epoch, resize_short=resize_short, color_jitter=color_jitter, hue=hue,
        aug_zoom=_zoom(aug_zoom), aug_flip=aug_flip, save_every=save_every, keep_every=keep_every,
        log_every=log_every, preview_every=preview_every).items() if v is not None}
    for name, text in (("model_kwargs", model_kwargs), ("objective_conf", objective_conf)):
        if text:
            given[name] = _json_object(text, "--" + name.replace("_", "-"))
    if norm_pix_loss is not None:
        given["objective_conf"] = {**given.get("objective_conf", {}), "norm_pix_loss": norm_pix_loss}
    if clip_grad is not None:
        given["clip_grad"] = clip_grad or None
    cfg = dataclasses.replace(preset_config(objective, preset), resume=resume, log_keys=log_keys, **given)
    if out is None:  # runs/<first shard folder>, named as mine-pairs names its default output
        from slife.lives.life import life_name
        from slife.train.stream import split_spec

        first = split_spec(shards)
        out = Path("runs") / (life_name(first[0]) if first else "run")
    main = int(os.environ.get("RANK", "0")) == 0
    if main:
        import time

        t0 = time.perf_counter()
        with progress_bar("train", total=cfg.steps, unit="steps") as advance:
            last = run(cfg, shards, out, progress=advance)
        _summary(last.parent, time.perf_counter() - t0)
        console.print(f"checkpoint: {last}")
    else:
        run(cfg, shards, out)


def _summary(run_dir, seconds: float) -> None:
    """End-of-run lines: steps, last logged loss and speed, bad samples skipped, where the files are."""
    import csv
    import json

    try:
        info = json.loads((run_dir / "train.json").read_text())
    except (OSError, ValueError):
        return
    rows = []
    if (run_dir / "metrics.csv").exists():
        with open(run_dir / "metrics.csv") as f:
            rows = list(csv.DictReader(f))
    line = f"trained to step {info.get('final_step', '?')} of {info.get('end_step', info['config'].get('steps', '?'))} in {seconds:.0f} s"
    if rows:
        r = rows[-1]
        line += (f"; last logged loss {float(r['loss']):.4f} at step {r['step']}, "
                 f"{float(r['pairs_per_s']):.1f} pairs/s, data wait {100 * float(r['data_wait_share']):.1f}%")
    console.print(line)
    bad = info.get("bad_samples") or {}
    if bad:
        console.print("[yellow]skipped bad samples:[/yellow] " + ", ".join(f"{k} {v}" for k, v in bad.items()))
    console.print(f"metrics: {run_dir / 'metrics.csv'}  previews: {run_dir / 'previews'}")

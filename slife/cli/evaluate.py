"""Commands: `slife cas`, `slife top1`, `slife probe`, `slife match` — thin wrappers over `slife.eval` (cas,
pair_top1, depth_probe, correspondence).

Each builds the stage's config from options, calls its `run(cfg, checkpoints, out_dir)`, and prints the
results (with their controls) as rich tables; the files (JSON, CSV, PNG) are written by the stage.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List, Optional

import typer

from slife.cli.app import app, console, progress_bar
from slife.errors import SlifeError, plural


def _f(v, nd: int = 3) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def _pm(entry: dict, key: str) -> str:
    """entry[key] ± entry[key + "_se"] (the standard error where there is one)."""
    se = entry.get(f"{key}_se")
    return _f(entry.get(key)) + (f" ± {se:.3f}" if se is not None and entry.get(key) is not None else "")


def _show(table) -> None:
    """Print a results table whose numbers are never cut: a right-aligned (number) column is as wide as its widest
    cell and its header, on one line; a label column as wide as its longest entry up to 40 characters, then
    folded. When that is wider than the console (a narrow terminal, a log file: 80 columns), the table is
    printed wider rather than cutting `0.123` to `0.1…` or a header to `untraine…`."""
    need = 1  # the left border
    for col in table.columns:
        width = max([len(str(c)) for c in col.cells] + [len(str(col.header)), 1])
        col.overflow = "fold"
        if col.justify == "right":
            col.no_wrap, col.min_width = True, width
        else:
            col.no_wrap, col.min_width = False, min(width, 40)
        need += col.min_width + 3  # padding and the right border
    if need > console.width:
        table.width = need  # rich lays the table out at this width instead of the console's
    console.print(table)


def _threads(n: int) -> None:
    if n > 0:
        import torch

        torch.set_num_threads(n)


def _seeds(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise SlifeError(f"--untrained-seeds: expected comma-separated integers, got {text!r}") from None


def _cas_tables(rep: dict) -> None:
    from rich.table import Table

    names, order = rep["names"], rep["order"]
    idx = [names.index(n) for n in order]
    metric = rep["metric"]
    what = (f"{rep.get('num_pairs')} pairs" if metric == "cas" else
            f"{rep.get('num_images')} distinct images of the {rep.get('num_views')} views of {rep.get('num_pairs')} pairs")
    t = Table(title=f"{metric.upper()} ({what}; models in clustering order, controls last)")
    t.add_column("", no_wrap=True)
    for n in order:
        t.add_column(n, justify="right")
    for i in idx:
        t.add_row(names[i], *[_f(rep["matrix"][i][j]) for j in idx])
    _show(t)
    ctrl = rep.get("controls", {})
    line = [f"chance {_f(rep.get('chance'))}"] if rep.get("chance") is not None else []
    if ctrl.get("untrained_vs_untrained") is not None:
        line.append(f"untrained vs untrained {_f(ctrl['untrained_vs_untrained'])}")
    if ctrl.get("model_vs_model_mean") is not None:
        line.append(f"mean model vs model {_f(ctrl['model_vs_model_mean'])}")
    if line:
        console.print("controls: " + ", ".join(line))
    if ctrl.get("model_vs_model_mean_per_block"):
        console.print("mean model vs model per decoder block: "
                      + " ".join(_f(v, 3) for v in ctrl["model_vs_model_mean_per_block"])
                      + (" | untrained: " + " ".join(_f(v, 3) for v in ctrl.get("untrained_vs_untrained_per_block", []))))
    if metric != "cas":
        return
    gt = rep.get("ground_truth")
    c = Table(title="each model against the controls (per block: decoder blocks 0..L-1)")
    for col in ("model", "vs same-pos", "vs same-pos per block"):
        c.add_column(col, justify="right" if col != "model" else "left", no_wrap=col == "model")
    if gt:
        for col in ("acc", "acc displaced", "acc displaced beyond position", "acc per block", "CAS disp. vs same-pos"):
            c.add_column(col, justify="right")
    sp = ctrl.get("same_position", {})
    spi = names.index("same-position") if "same-position" in names else None
    for n in order:
        if n == "same-position":
            row = [n, "1.000", ""]
        else:
            s = sp.get(n, {})
            row = [n, _f(s.get("avg")), " ".join(_f(v, 2) for v in s.get("per_block", []))]
        if gt:
            a = gt["accuracy"].get(n, {})
            i = names.index(n)
            row += [_f(a.get("all")), _f(a.get("displaced")), _pm(a, "beyond_position_displaced"),
                    " ".join(_f(v, 2) for v in a.get("per_block_all", [])),
                    _f(gt["matrix_displaced"][i][spi]) if spi is not None else "-"]
        c.add_row(*row)
    _show(c)
    pt = Table(title="pairs of models: agreement beside the shortcut (beyond position: 0 = what a fixed "
                     "positional prior gives, 1 = identical sets that vary between pairs; beyond position and "
                     "saliency: 0 = what sets that ignore the images or the target patch give, 1 = identical sets "
                     "that vary with both; ± jackknife standard error over pairs)")
    for col in ("a", "b", "CAS", "CAS displaced", "a vs same-pos", "b vs same-pos", "beyond position",
                "beyond position, displaced", "beyond position and saliency"):
        pt.add_column(col, justify="left" if col in ("a", "b") else "right", no_wrap=col in ("a", "b"))
    for row in rep.get("pair_table", []):
        pt.add_row(row["a"], row["b"], _f(row["cas"]), _f(row.get("cas_displaced")), _f(row["a_vs_same_position"]),
                   _f(row["b_vs_same_position"]), _pm(row, "cas_calibrated"), _pm(row, "cas_calibrated_displaced"),
                   _pm(row, "cas_beyond_saliency"))
    if rep.get("pair_table"):
        _show(pt)
    else:
        console.print("pairs of models: none (one model and no untrained control)")
    for key, title, files, zero in (
            ("calibrated", "CAS beyond position", "cas_calibrated.csv/.png",
             "the same-position predictor scores 0 against every model (and itself) by construction"),
            ("beyond_saliency", "CAS beyond position and saliency", "cas_beyond_saliency.csv/.png",
             "0 by construction for the same-position predictor and for sets that ignore the target patch "
             "(saliency), which move CAS beyond position")):
        cal = rep.get(key) or {}
        line = []
        if cal.get("model_vs_model_mean") is not None:
            line.append(f"mean model vs model {_f(cal['model_vs_model_mean'])}")
        if cal.get("untrained_vs_untrained") is not None:
            line.append(f"untrained vs untrained {_f(cal['untrained_vs_untrained'])}"
                        + (f" (sd {_f(cal['untrained_vs_untrained_sd'])} over {cal['untrained_pairs']} pairs)"
                           if cal.get("untrained_vs_untrained_sd") is not None else ""))
        if cal:
            console.print(f"{title} ({files}): " + ", ".join(line + [zero]))
        if cal.get("model_vs_model_mean_per_block"):
            console.print(f"{title}, mean model vs model per decoder block: "
                          + " ".join(_f(v, 3) for v in cal["model_vs_model_mean_per_block"])
                          + (" | untrained: "
                             + " ".join(_f(v, 3) for v in cal.get("untrained_vs_untrained_per_block", []))))
    if gt:
        console.print(f"ground truth: {gt['pairs_with_truth']} pairs, {gt['patches_with_truth']} patches with a known "
                      f"match, displaced share {_f(gt['displaced_share'])}; accuracy chance "
                      f"{_f(gt.get('accuracy_chance'))}; position prior (per patch, the pick most often right on "
                      f"the other pairs; it ignores the images) {_f((gt.get('position_prior') or {}).get('all'))}, "
                      f"displaced {_f((gt.get('position_prior') or {}).get('displaced'))}; told which patches moved "
                      f"(motion without matching) "
                      f"{_f((gt.get('position_prior') or {}).get('displaced_told_which_moved'))}; accuracy beyond "
                      f"position is exactly 0 for any fixed pick that ignores the images (cas.json: "
                      f"ground_truth.accuracy.*.beyond_position[_displaced][_se], ground_truth.position_prior)")
    else:
        console.print("ground truth: none in these pairs (no poses + depth + K), so no displaced-patch scores")


_CAS_HELP = (
    "Correspondence Alignment Score between models, with chance, same-position, untrained and displaced "
    "controls.\n\n"
    "Also CAS beyond position (`calibrated` in cas.json; cas_calibrated.csv, cas_calibrated.png): the same top-k "
    "overlap chance-corrected against a pair-permutation null, so any fixed positional prior (the same-position "
    "predictor) scores exactly 0 and two models score above 0 only where they agree on content-dependent "
    "patches; 1 = identical sets that vary between pairs (every model's diagonal), 0 = no more than across "
    "unrelated pairs (the same-position predictor's diagonal).\n\n"
    "And CAS beyond position and saliency (`beyond_saliency` in cas.json; cas_beyond_saliency.csv/.png): two "
    "models that favour the same source patches of a pair whatever the target patch (shared saliency) score above "
    "0 beyond position, opposite ones below 0. This score also compares each model's set with the other's for the "
    "other target patches of the same pair, and keeps the pair-by-target-patch interaction of the overlap: exactly "
    "0 for sets that ignore the images or the target patch, 1 for identical sets that vary with both the pair and "
    "the target patch; what is left is agreement on "
    "which source patch goes with which target patch.\n\n"
    "Where the pairs carry ground truth, each model's top-1 accuracy (its best source patch within one patch of "
    "the true match; displaced = true match more than one patch from the same position) also comes "
    "chance-corrected the same way: top-1 beyond position, 1 = the true match on every pair, exactly 0 for any "
    "fixed pick that ignores the images, below 0 worse than the model's own picks for other images; ± its "
    "jackknife standard error over pairs. Beside it, the position prior: per target patch, the pick most often "
    "right on the other pairs, which ignores the images; and the same prior told which patches moved, which "
    "shows what detecting motion without matching anything reaches on displaced patches (several times chance "
    "on the demo's held-out pairs)."
)

_MASKED_HELP = ("Read the decoder's cross-attention with the target view masked as in training (CroCo checkpoints; "
                "at the model's mask ratio, through fixed masks that leave each patch visible once, a few twice; "
                "each target patch's logits are averaged over the masks that hide it, and --softmax takes the "
                "softmax of that mean): CroCo's loss only trains masked patches' queries. About 3x the time of the "
                "default, which reads it with nothing masked.")


@app.command("cas", help=_CAS_HELP)
def cas_cmd(
    checkpoints: List[Path] = typer.Argument(..., help="Checkpoints to compare (each model is run once)."),
    pairs: Path = typer.Option(..., "--pairs", help="Folder of test pair shards (from `slife mine-pairs` on a held-out life)."),
    out: Path = typer.Option(Path("runs/cas"), "--out", "-o", help="Output folder for <metric>.json/.csv/.png."),
    k: int = typer.Option(10, "--k", help="Top-k source patches per target patch (mknn: neighbours per image)."),
    num_pairs: int = typer.Option(100, "--num-pairs", help="Number of test pairs, spread evenly over "
                           "the set in write order (deterministic: every (total-1)/(N-1)-th pair, first and last "
                           "included; all when it has fewer), so they cover the held-out life from start to end."),
    metric: str = typer.Option("cas", "--metric", help="cas (attention top-k), mknn (mutual kNN of mean-pooled "
                               "encoder features) or cka (linear CKA)."),
    softmax: bool = typer.Option(False, "--softmax", help="Average post-softmax attention instead of logits."),
    reciprocal: bool = typer.Option(False, "--reciprocal", help="Keep a source patch only if the target patch is also "
                                    "among its own top-k targets (mutual neighbours)."),
    masked: bool = typer.Option(False, "--masked", help=_MASKED_HELP),
    untrained_seeds: str = typer.Option("0,1", "--untrained-seeds", help="Seeds of the untrained control models, "
                                        "comma-separated: one per seed and architecture among the checkpoints "
                                        "(untrained-s<seed> for CroCo, untrained-vit-s<seed> for a ViT); '' none "
                                        "(a warning: the scores then have no untrained floor)."),
    batch_size: int = typer.Option(16, "--batch-size", help="Pairs per forward pass."),
    threads: int = typer.Option(0, "--threads", help="torch intra-op threads (0 = torch's default; 1 is often "
                                "fastest on a busy machine: the tensors here are small)."),
):
    """Correspondence Alignment Score between models (see _CAS_HELP)."""
    from slife.eval.cas import CasConfig, run

    _threads(threads)

    try:
        cfg = CasConfig(pairs=pairs, k=k, num_pairs=num_pairs, metric=metric, softmax=softmax, reciprocal=reciprocal,
                        masked=masked, untrained_seeds=_seeds(untrained_seeds), batch_size=batch_size)
    except ValueError as e:
        raise SlifeError(f"cas: {e}") from None
    with progress_bar(f"{metric}: running models", unit="pairs") as adv:
        path = run(cfg, checkpoints, out, progress=adv)
    _cas_tables(json.loads(Path(path).read_text()))
    extra = ", _calibrated.csv/.png and _beyond_saliency.csv/.png" if metric == "cas" else ""
    console.print(f"wrote {path} (+ .csv, .png{extra})")


@app.command("top1")
def top1_cmd(
    checkpoints: List[Path] = typer.Argument(..., help="Checkpoints to score (any objective; one image size and patch grid)."),
    pairs: Path = typer.Option(..., "--pairs", help="Folder of test pair shards with poses, depth and K (from "
                               "`slife mine-pairs` on a held-out life)."),
    out: Path = typer.Option(Path("runs/top1"), "--out", "-o", help="Output folder for top1.json."),
    method: str = typer.Option("features", "--method", help="features: nearest neighbour of the encoder's final "
                               "patch tokens (any checkpoint); attention: decoder cross-attention averaged over heads "
                               "and blocks (CroCo checkpoints only; the top-1 `slife cas` reports); auto: attention "
                               "where the model has a decoder, else features."),
    masked: bool = typer.Option(False, "--masked", help=_MASKED_HELP),
    num_pairs: int = typer.Option(100, "--num-pairs", help="Number of test pairs, spread evenly over "
                           "the set in write order (deterministic: every (total-1)/(N-1)-th pair, first and last "
                           "included; all when it has fewer), so they cover the held-out life from start to end."),
    untrained_seeds: str = typer.Option("0", "--untrained-seeds", help="Seeds of the untrained controls (one per "
                                        "architecture among the checkpoints), comma-separated ('' none)."),
    batch_size: int = typer.Option(16, "--batch-size", help="Pairs per forward pass."),
    threads: int = typer.Option(0, "--threads", help="torch intra-op threads (0 = torch's default)."),
):
    """Top-1 patch correspondence on held-out pairs with ground truth, for encoders of any objective: share of
    target patches whose best source patch is within one patch of the true match, over all and over displaced
    patches (true match more than one patch from the same grid position), beside chance, the same-position
    predictor, untrained encoders and the position prior (per target patch, the pick most often right on the
    other pairs: it ignores the images; also told which patches moved: what detecting motion without matching
    reaches). Also top-1 beyond position: the accuracy chance-corrected against the encoder's own picks on the
    other pairs (1 = the true match on every pair, exactly 0 for any fixed pick that ignores the images, below 0
    worse), ± its jackknife standard error over pairs. `--method attention` gives the top-1 that `slife cas` and
    the demo report for CroCo checkpoints."""
    from rich.table import Table

    from slife.eval.pair_top1 import Top1Config, run

    _threads(threads)
    cfg = Top1Config(pairs=pairs, num_pairs=num_pairs, method=method, masked=masked, batch_size=batch_size,
                     untrained_seeds=_seeds(untrained_seeds))
    with progress_bar("top-1: running models", unit="pairs") as adv:
        path = run(cfg, checkpoints, out, progress=adv)
    rep = json.loads(Path(path).read_text())
    t = Table(title=f"top-1 within one patch: {rep['num_pairs']} pairs, {rep['patches_with_truth']} patches with "
                    f"truth, {_f(rep['displaced_share'])} displaced")
    for col in ("encoder", "method", "all", "displaced", "all, beyond position", "displaced, beyond position"):
        t.add_column(col, justify="left" if col in ("encoder", "method") else "right")
    for name, m in rep["models"].items():
        t.add_row(name, m["method"], _f(m["all"]), _f(m["displaced"]), _pm(m, "beyond_position"),
                  _pm(m, "beyond_position_displaced"))
    t.add_row("same-position (control)", "-", _f(rep["same_position"]["all"]), _f(rep["same_position"]["displaced"]),
              "0 (by construction)", "0 (by construction)")
    pc = rep.get("position_prior") or {}
    t.add_row("position prior (control)", "-", _f(pc.get("all")), _f(pc.get("displaced")), "-", "-")
    t.add_row("position prior told which patches moved", "-", "-", _f(pc.get("displaced_told_which_moved")), "-",
              "-")
    t.add_row("chance (control)", "-", _f(rep["chance"]), _f(rep["chance"]))
    _show(t)
    console.print("beyond position: (observed - null) / (1 - null), the null being the encoder's own picks on the "
                  "other pairs; ± jackknife standard error over pairs. Same-position scores 0 on displaced patches "
                  "by their definition.")
    console.print(f"wrote {path}")


@app.command("match")
def match_cmd(
    dataset: str = typer.Argument(..., help="Dataset reader: hpatches (also any folder of image pairs with homographies)."),
    checkpoints: List[Path] = typer.Argument(..., help="Checkpoints to evaluate."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="hpatches-sequences-release folder (v_*/1.ppm.., "
                                             "H_1_N), or an Oxford-style folder (img1.png.., H1toNp); default "
                                             "$SLIFE_HPATCHES_ROOT."),
    out: Path = typer.Option(Path("runs/match"), "--out", "-o", help="Output folder for match.json/.csv/.png."),
    sequences: str = typer.Option("v_", "--sequences", help="Sequence-name prefixes in an HPatches root, comma-separated "
                                  "('v_' viewpoint, 'i_' illumination, '' all)."),
    temperature: float = typer.Option(1.0, "--temperature", help="Soft-argmax temperature on the averaged logits."),
    softmax: bool = typer.Option(False, "--softmax", help="Soft-argmax over post-softmax maps averaged over heads and blocks."),
    max_pairs: int = typer.Option(0, "--max-pairs", help="Evaluate only the first n pairs (0 = all)."),
    max_side: int = typer.Option(0, "--max-side", help="Downscale images with a longer side above this (0 = full resolution)."),
    method: str = typer.Option("auto", "--method", help="attention: decoder cross-attention (CroCo checkpoints "
                               "only); features: nearest neighbours of the encoder's patch tokens (cosine x 20, any "
                               "checkpoint); auto: attention where the model has a decoder, else features."),
    masked: bool = typer.Option(False, "--masked", help=_MASKED_HELP),
    untrained_seeds: str = typer.Option("0", "--untrained-seeds", help="Seeds of the untrained controls (one per "
                                        "architecture among the checkpoints, scored like them), comma-separated "
                                        "('' none: a warning)."),
    threads: int = typer.Option(0, "--threads", help="torch intra-op threads (0 = torch's default; 1 is often "
                                "fastest on a busy machine: the tensors here are small)."),
):
    """Zero-shot dense correspondence from decoder cross-attention (or encoder features for encoders without a
    decoder): AEPE and PCK-1/3/5 with the identity baseline, and top-1 patch accuracy on displaced patches beside
    chance, the same-position predictor and untrained encoders of each checkpoint's architecture."""
    from rich.table import Table

    from slife.eval.correspondence import MatchConfig, run

    _threads(threads)

    root = data_root or (Path(os.environ["SLIFE_HPATCHES_ROOT"]) if os.environ.get("SLIFE_HPATCHES_ROOT") else None)
    try:
        cfg = MatchConfig(data_root=root, dataset=dataset, sequences=tuple(s for s in sequences.split(",") if s),
                          temperature=temperature, softmax=softmax, max_pairs=max_pairs, max_side=max_side,
                          method=method, masked=masked, untrained_seeds=_seeds(untrained_seeds))
    except ValueError as e:
        raise SlifeError(f"match: {e}") from None
    with progress_bar("match: pairs", unit="pairs") as adv:
        path = run(cfg, checkpoints, out, progress=adv)
    rep = json.loads(Path(path).read_text())
    for name, res in rep["models"].items():
        counts = rep["counts"]
        t = Table(title=f"{name} ({rep['methods'][name]}): {plural(counts['pairs'], 'pair')} "
                        f"({plural(counts['sequences'], 'sequence')}); id = zero flow; oracle = exact matches on the patch grid")
        c = Table(title=f"{name}: displaced patches (true match > 1 patch from the same position)")
        for col in ("index", "AEPE", "PCK-1", "PCK-3", "PCK-5", "id AEPE", "id PCK-5", "oracle AEPE"):
            t.add_column(col, justify="right")
        for col in ("index", "share", "AEPE", "id AEPE", "acc", "same-pos acc", "chance acc"):
            c.add_column(col, justify="right")
        rows = list(res["per_index"].items()) + [("all", res["overall"])]
        for idx, b in rows:
            m, i, md, idd = b["model"], b["identity"], b["model_displaced"], b["identity_displaced"]
            t.add_row(idx, _f(m["aepe"], 2), _f(m["pck1"]), _f(m["pck3"]), _f(m["pck5"]), _f(i["aepe"], 2), _f(i["pck5"]),
                      _f(b["grid_oracle"]["aepe"], 2))
            c.add_row(idx, _f(b["displaced_pixel_share"]), _f(md["aepe"], 2), _f(idd["aepe"], 2),
                      _f(b["patch_accuracy_displaced"]), _f(b["same_position_accuracy_displaced"]),
                      _f(b.get("chance_accuracy_displaced")))
        _show(t)
        _show(c)
    s = Table(title=f"all encoders, {rep['counts']['pairs']} pairs: top-1 within one patch on displaced patches "
                    "beside its controls")
    for col in ("encoder", "method", "AEPE", "PCK-5", "acc", "acc displaced"):
        s.add_column(col, justify="left" if col in ("encoder", "method") else "right", no_wrap=True)
    for name, res in rep["models"].items():
        o = res["overall"]
        s.add_row(name + (" (control)" if name in rep.get("untrained", []) else ""), rep["methods"][name],
                  _f(o["model"]["aepe"], 2), _f(o["model"]["pck5"]), _f(o["patch_accuracy"]),
                  _f(o["patch_accuracy_displaced"]))
    if rep["models"]:
        o = next(iter(rep["models"].values()))["overall"]
        s.add_row("zero flow / same position (control)", "-", _f(o["identity"]["aepe"], 2), _f(o["identity"]["pck5"]),
                  _f(o["same_position_accuracy"]), _f(o["same_position_accuracy_displaced"]))
        s.add_row("chance (control)", "-", "-", "-", _f(o.get("chance_accuracy")), _f(o.get("chance_accuracy_displaced")))
    _show(s)
    console.print(f"wrote {path} (+ .csv, .png)")


_PROBE_HELP = (
    "Depth probe: attentive readout on the frozen encoder; delta1/2/3, AbsRel, RMSE, log10 (scale-aware).\n\n"
    "The life dataset takes two layouts. A folder with train/ and test/, each holding one or more life folders "
    "with depth (e.g. `slife synth --kind views` of different scenes): a place-disjoint benchmark, the test views "
    "show places no training view shows (what `slife demo` builds). Or one life folder: its first 80% of frames "
    "(in life order, every --frame-step-th) train the readout and the last 20% of frames test it; the two are "
    "apart in time only and show the same places, so the score also rewards remembering the places (a warning "
    "says so). Views whose depth map cannot be read are left out, counted and warned about."
)


@app.command("probe", help=_PROBE_HELP)
def probe_cmd(
    dataset: str = typer.Argument(..., help="Depth dataset: nyu, scannet or life."),
    checkpoint: Path = typer.Argument(..., help="Checkpoint whose frozen encoder is probed."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Dataset folder (default $SLIFE_NYU_ROOT, "
                                             "$SLIFE_SCANNET_ROOT or $SLIFE_LIFE_ROOT); for life, a folder with "
                                             "train/ and test/ lives or one life folder (see above)."),
    out: Path = typer.Option(Path("runs/probe"), "--out", "-o", help="Output folder for metrics JSON, PNG and probe weights."),
    layer: List[int] = typer.Option([-1], "--layer", help="Encoder block whose tokens are read (0-based; -1 = last, "
                                    "after the norm). Repeat it to read several blocks, each standardised per token "
                                    "and concatenated in block order, e.g. --layer -4 --layer -3 --layer -2 --layer -1 "
                                    "(the last four, as DINOv2's linear probe)."),
    epochs: int = typer.Option(30, "--epochs", help="Training epochs of the readout."),
    batch_size: int = typer.Option(16, "--batch-size", help="Images per step."),
    lr: List[float] = typer.Option([1e-3], "--lr", help="AdamW peak learning rate (cosine schedule to 0). Repeat "
                                   "it to let each encoder and control choose: one readout per rate is fit on the "
                                   "training views but the last training place's (views not grouped in two places "
                                   "or more, such as NYU's: but the last 20%) and the rate with the lowest AbsRel "
                                   "there (aligned, unless --no-align) is used, e.g. --lr 1e-4 --lr 3e-4 --lr 1e-3 "
                                   "--lr 3e-3 (costs one fit per rate more; the test views play no part)."),
    weight_decay: float = typer.Option(0.05, "--weight-decay", help="AdamW weight decay."),
    depth_kind: str = typer.Option("depths", "--depth", help="nyu: 'depths' (filled) or 'rawDepths' (raw)."),
    max_train: int = typer.Option(0, "--max-train", help="Use only the first n training images (0 = all)."),
    max_test: int = typer.Option(0, "--max-test", help="Use only the first n test images (0 = all)."),
    frame_step: int = typer.Option(10, "--frame-step", help="scannet / life: use every n-th frame (neighbouring "
                                   "frames are near duplicates)."),
    align: bool = typer.Option(True, "--align/--no-align", help="Also report least-squares scale-and-shift aligned metrics."),
    seed: int = typer.Option(0, "--seed", help="Seed of the readout's initialisation and batch order (readout k "
                             "of --readouts: SEED + k)."),
    readouts: int = typer.Option(1, "--readouts", help="Readouts fit per encoder and control, with seeds SEED, "
                                 "SEED+1, ...; every metric is their mean, reported with its standard error. One "
                                 "readout's score moves with its seed about as much as small encoders differ "
                                 "(bench/eval.md): use 3 or more to compare encoders. Costs N times the training."),
    control_untrained: bool = typer.Option(False, "--control-untrained", help="Also fit the same readout on an "
                                           "untrained encoder of the same architecture (seeded) and report it beside."),
    control_oracle: bool = typer.Option(False, "--control-oracle", help="Also fit the same readout on depth-oracle "
                                        "tokens (each patch's true log-depth through a fixed random projection): "
                                        "the positive control that shows the readout can learn depth at all."),
    control_position: bool = typer.Option(False, "--control-position", help="Also fit the same readout on constant "
                                          "tokens: it then learns only the typical depth at each image position "
                                          "(near floor at the bottom, far wall higher up). An encoder must beat "
                                          "this prior to show that its tokens carry depth the readout can use."),
    threads: int = typer.Option(0, "--threads", help="torch intra-op threads (0 = torch's default; 1 is often "
                                "fastest on a busy machine: the tensors here are small)."),
):
    """Depth probe on a frozen encoder (see _PROBE_HELP)."""
    from rich.table import Table

    from slife.eval.depth_probe import ENV_ROOTS, ProbeConfig, run

    _threads(threads)

    root = data_root
    if root is None and os.environ.get(ENV_ROOTS.get(dataset, "")):
        root = Path(os.environ[ENV_ROOTS[dataset]])
    cfg = ProbeConfig(dataset=dataset, data_root=root, layers=tuple(layer), epochs=epochs, batch_size=batch_size,
                      lr=tuple(lr), weight_decay=weight_decay, depth_kind=depth_kind, max_train=max_train,
                      max_test=max_test, frame_step=frame_step, align=align, seed=seed, readouts=readouts,
                      control_untrained=control_untrained, control_oracle=control_oracle,
                      control_position=control_position)
    with progress_bar("probe", unit="steps") as adv:
        path = run(cfg, [checkpoint], out, progress=adv)
    rep = json.loads(Path(path).read_text())
    t = Table(title=f"depth probe on {dataset}: {rep['num_train']} train / {rep['num_test']} test images, "
                    f"layer {rep['layer']}, {rep['target']}")
    cols = ("delta1", "delta2", "delta3", "abs_rel", "rmse", "log10")
    t.add_column("")
    for c in cols:
        t.add_column(c, justify="right")
    ctrl = rep.get("control_untrained") or {}
    orc = rep.get("control_oracle") or {}
    pos = rep.get("control_position") or {}
    n = (rep.get("config") or {}).get("readouts", 1)
    rows = [(rep, "", "scale-aware"), (rep, "_aligned", "scale+shift aligned"),
            ({"metrics": rep.get("baseline_mean_depth")}, "", "mean train depth (control)"),
            (ctrl, "", "untrained encoder (control)"), (ctrl, "_aligned", "untrained, aligned (control)"),
            (orc, "", "depth oracle (control)"), (orc, "_aligned", "depth oracle, aligned (control)"),
            (pos, "", "position prior (control)"), (pos, "_aligned", "position prior, aligned (control)")]
    for src, kind, label in rows:
        if src.get(f"metrics{kind}"):  # each metric with its standard error over the readouts, where there is one
            e = {**src[f"metrics{kind}"], **{f"{c}_se": v for c, v in (src.get(f"metrics{kind}_se") or {}).items()}}
            t.add_row(label, *[_pm(e, c) for c in cols])
    if n > 1:
        t.caption = (f"each readout's number: the mean of {n} readouts (seeds {rep['config']['seed']}-"
                     f"{rep['config']['seed'] + n - 1}) ± its standard error")
    _show(t)
    if rep.get("lr_choice"):
        console.print(f"learning rate chosen on {rep['lr_choice']['validation']}, lowest validation AbsRel "
                      f"({rep['lr_choice']['metric']}):")
        for src, label in ((rep, "encoder"), (ctrl, "untrained"), (orc, "depth oracle"), (pos, "position prior")):
            if src.get("lr_choice"):
                sc = ", ".join(f"{k} {v:.3f}" for k, v in src["lr_choice"]["scores"].items())
                console.print(f"  {label}: {src['lr']:g} ({sc})")
    sk = rep.get("skipped_views") or {}
    if sk.get("train") or sk.get("test"):
        console.print(f"left out {sk['train']} train and {sk['test']} test views with unreadable depth maps "
                      f"(listed in probe.json skipped_views)")
    console.print(f"wrote {path} (+ examples PNG, probe weights)")

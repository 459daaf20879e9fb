"""Figures of the evaluation: CAS heatmap with its controls marked, depth-probe examples.

Reads the plain-data reports of `cas.py` / arrays of `depth_probe.py`; writes PNG files atomically with the
Agg backend (no display needed). Entry points: `plot_cas`, `plot_depth_examples`. Computes no score itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from slife.io import atomic_file


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_file(path, keep_suffix=True, durable=False) as tmp:  # matplotlib picks the format by suffix
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_cas(rep: dict, path: Path) -> Path:
    """Heatmap of the score matrix in `rep["order"]` (models by hierarchical clustering, then the controls
    behind a white line), values written in the cells, colour bar marked at chance, at the untrained level
    and at the mean same-position score; a second panel shows each model against the controls
    (same-position, and with ground truth its accuracy overall and on displaced patches)."""
    plt = _pyplot()
    names = rep["names"]
    order = [names.index(n) for n in rep["order"]]
    mat = np.array([[np.nan if v is None else v for v in row] for row in rep["matrix"]], dtype=float)
    mat = mat[np.ix_(order, order)]
    labels = [names[i] for i in order]
    kinds = [rep["kinds"][i] for i in order]
    n_models = sum(k == "model" for k in kinds)
    metric = rep.get("metric", "cas")
    ctrl = rep.get("controls", {})
    sp = ctrl.get("same_position") or {}
    gt = rep.get("ground_truth")
    two = bool(sp) or bool(gt)
    fig, axes = plt.subplots(1, 2 if two else 1, figsize=(5 + 0.45 * len(labels) + (4.5 if two else 0),
                                                           3.5 + 0.4 * len(labels)),
                             gridspec_kw={"width_ratios": [1.3, 1]} if two else None, squeeze=False)
    ax = axes[0, 0]
    # CAS beyond position is negative where two models agree less than chance: the scale reaches down to it
    finite = mat[np.isfinite(mat)]
    vmin = (min(0.0, float(finite.min())) if metric in ("cas_calibrated", "cas_beyond_saliency") and finite.size
            else 0.0)
    im = ax.imshow(mat, cmap="viridis", vmin=vmin, vmax=1.0)
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    for i in range(len(labels)):
        for j in range(len(labels)):
            if np.isfinite(mat[i, j]):
                ax.text(j, i, f"{mat[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if mat[i, j] < 0.6 else "black")
    if 0 < n_models < len(labels):
        ax.axhline(n_models - 0.5, color="white", lw=2)
        ax.axvline(n_models - 0.5, color="white", lw=2)
    title = {"cas": f"CAS (k={rep.get('k')}, {'softmax' if rep.get('softmax') else 'logits'})",
             "mknn": f"mutual kNN (k={rep.get('k')})", "cka": "linear CKA",
             "cas_calibrated": f"CAS beyond position (k={rep.get('k')}; 0 = a fixed positional prior,\n"
                               "1 = identical content-dependent sets; same-position diagonal 0)",
             "cas_beyond_saliency": f"CAS beyond position and saliency (k={rep.get('k')}; 0 = sets that ignore "
                                    "the images\nor the target patch, 1 = identical sets varying with both; same-position "
                                    "diagonal 0)"}.get(metric, metric)
    read = ", attention read with the target masked" if rep.get("masked") else ""
    ax.set_title(title + f"\nmodels clustered | controls after the white line{read}", fontsize=9)
    cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    marks = []
    if rep.get("chance") is not None:
        marks.append(("chance", rep["chance"], "red"))
    if ctrl.get("untrained_vs_untrained") is not None:
        marks.append(("untrained", ctrl["untrained_vs_untrained"], "orange"))
    sp_vals = [v["avg"] for k, v in sp.items() if v.get("avg") is not None and k in labels[:n_models]]
    if sp_vals:
        marks.append(("same-pos", float(np.mean(sp_vals)), "magenta"))
    last_y = -1.0
    for lab, v, col in sorted(marks, key=lambda m: m[1]):
        cb.ax.axhline(v, color=col, lw=2)
        y = max(v, last_y + 0.045)  # keep labels of close levels apart
        cb.ax.text(4.2, y, f"{lab} {v:.2f}", color=col, fontsize=7, va="center", transform=cb.ax.get_yaxis_transform())
        last_y = y
    if two:
        ax2 = axes[0, 1]
        models = labels[:n_models] + [l for l, k in zip(labels, kinds) if k == "untrained"]
        series = []
        if sp:
            series.append(("vs same-position", [sp.get(m, {}).get("avg") for m in models], "magenta"))
        if gt:
            acc = gt.get("accuracy", {})
            series.append(("accuracy (all)", [acc.get(m, {}).get("all") for m in models], "tab:blue"))
            series.append(("accuracy (displaced)", [acc.get(m, {}).get("displaced") for m in models], "tab:green"))
        width = 0.8 / max(len(series), 1)
        x = np.arange(len(models))
        for si, (lab, vals, col) in enumerate(series):
            v = np.array([np.nan if a is None else a for a in vals], dtype=float)
            ax2.bar(x + (si - (len(series) - 1) / 2) * width, v, width, label=lab, color=col)
        if rep.get("chance") is not None:
            ax2.axhline(rep["chance"], color="red", ls="--", lw=1, label="chance (k/N)")
        if gt and gt.get("accuracy_chance") is not None:
            ax2.axhline(gt["accuracy_chance"], color="gray", ls=":", lw=1, label="accuracy chance")
        sp_acc = (gt or {}).get("accuracy", {}).get("same-position", {}).get("all")
        if sp_acc is not None:
            ax2.axhline(sp_acc, color="tab:blue", ls="--", lw=1, label="same-position accuracy (all)")
        ax2.set_xticks(x, models, rotation=60, ha="right", fontsize=8)
        ax2.set_ylim(0, 1)
        share = f", displaced share {gt['displaced_share']:.2f}" if gt and gt.get("displaced_share") is not None else ""
        ax2.set_title(f"each model against the controls{share}", fontsize=9)
        ax2.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    _save(fig, path)
    return Path(path)


def plot_depth_examples(images: list[np.ndarray], preds: list[np.ndarray], trues: list[np.ndarray], path: Path,
                        max_depth: float = 10.0, title: str = "") -> Path:
    """Rows of (image, predicted depth, true depth) with one shared colour scale in metres; 0 = invalid (black)."""
    plt = _pyplot()
    n = len(images)
    fig, axes = plt.subplots(max(n, 1), 3, figsize=(7.5, 2.5 * max(n, 1)), squeeze=False)
    vmax = max_depth
    valid_true = [t[t > 0] for t in trues if (t > 0).any()]
    if valid_true:
        vmax = float(min(max_depth, max(np.percentile(v, 99) for v in valid_true)))
    for i in range(n):
        axes[i, 0].imshow(images[i])
        axes[i, 1].imshow(preds[i], cmap="magma_r", vmin=0, vmax=vmax)
        t = np.ma.masked_where(trues[i] <= 0, trues[i])
        axes[i, 2].imshow(t, cmap="magma_r", vmin=0, vmax=vmax)
        for a in axes[i]:
            a.axis("off")
    axes[0, 0].set_title("image", fontsize=9)
    axes[0, 1].set_title("predicted depth (m)", fontsize=9)
    axes[0, 2].set_title("true depth (m)", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path)
    return Path(path)


def plot_match(rep: dict, path: Path) -> Path:
    """AEPE and PCK-5 per pair index for each model, with the identity (zero-flow) baseline dashed grey, and the
    patch-level top-1 accuracy on displaced patches against the same-position predictor's."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ci, (name, res) in enumerate(rep["models"].items()):
        col = f"C{ci}"
        idx = list(res["per_index"])
        x = [int(i) for i in idx]
        get = lambda key, m: [res["per_index"][i][key][m] for i in idx]  # noqa: E731
        none = lambda v: [np.nan if a is None else a for a in v]  # noqa: E731
        axes[0].plot(x, none(get("model", "aepe")), "o-", color=col, label=name)
        axes[1].plot(x, none(get("model", "pck5")), "o-", color=col, label=name)
        if ci == 0:  # the zero flow is the same for every model (same pairs): drawn once, in its own colour
            for ax, m in ((axes[0], "aepe"), (axes[1], "pck5")):
                ax.plot(x, none(get("identity", m)), "x--", color="gray", label="zero flow (identity)")
        acc = none([res["per_index"][i]["patch_accuracy_displaced"] for i in idx])
        sp = none([res["per_index"][i]["same_position_accuracy_displaced"] for i in idx])
        axes[2].plot(x, acc, "o-", color=col, label=f"{name} (displaced)")
        if ci == 0:
            axes[2].plot(x, sp, "x--", color="gray", label="same-position (displaced)")
    axes[0].set_title("AEPE (px, lower is better)", fontsize=9)
    axes[1].set_title("PCK-5", fontsize=9)
    axes[2].set_title("top-1 within one patch, displaced patches", fontsize=9)
    idx_all = sorted({int(i) for res in rep["models"].values() for i in res["per_index"]})
    for a in axes:
        a.set_xlabel("pair index")
        a.set_xticks(idx_all)
        a.legend(fontsize=7)
    axes[1].set_ylim(0, 1)
    axes[2].set_ylim(0, 1)
    fig.tight_layout()
    _save(fig, path)
    return Path(path)

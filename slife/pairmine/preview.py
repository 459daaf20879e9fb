"""Preview: a contact sheet PNG of random written pairs per strategy, so a person can see what was mined.

Reads a finished shard folder (`pairs.jsonl`, `manifest.json`, the tars). Writes `preview.png`: one row
per pair, source | target, captioned with strategy, time gap dt and Jaccard J; N pairs per strategy, drawn
from the newest generation's pairs (what the last run added).
Entry point: `contact_sheet(folder, n, seed) -> Path`. Mining and writing are other modules' jobs.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np

from slife.io import atomic_write_bytes
from slife.pairmine import shardset as ss


def contact_sheet(folder: Path, n: int, seed: int = 0, thumb: int = 128) -> Path:
    """Write folder/preview.png with up to `n` random pairs per strategy; returns its path."""
    from PIL import Image, ImageDraw

    folder = Path(folder)
    man = ss.read_manifest(folder)
    first = (man.get("generations") or [{"first_pair": 0}])[-1]["first_pair"]  # the newest generation's pairs
    rows = [r for r in ss.read_pair_table(folder) if r["pair"] >= first]
    rng = np.random.default_rng(seed)
    chosen: list[tuple[str, dict]] = []
    for s in man["config"]["strategies"]:
        cand = [r for r in rows if s in r["strategy"].split("+")]
        for i in rng.permutation(len(cand))[:n]:
            chosen.append((s, cand[int(i)]))
    life = man["life"]["name"]
    by_shard: dict[int, list] = {}
    for s, r in chosen:
        by_shard.setdefault(ss.shard_of_pair(man, r["pair"]), []).append(r["pair"])
    images: dict[int, tuple] = {}
    for sh, ks in by_shard.items():
        p = folder / ss.shard_name(sh)
        if not p.exists():
            continue
        want = {ss.sample_key(life, k): k for k in ks}
        with tarfile.open(p) as tf:
            for mem in tf:
                key, ext = mem.name.split(".", 1)
                if key in want and ext in ("src.jpg", "tgt.jpg"):
                    img = Image.open(io.BytesIO(tf.extractfile(mem).read())).convert("RGB")
                    img.thumbnail((thumb * 2, thumb))
                    d = images.setdefault(want[key], {})
                    d[ext] = img
    cells = [(s, r, images[r["pair"]]) for s, r in chosen if r["pair"] in images and len(images[r["pair"]]) == 2]
    W = max([im["src.jpg"].width + im["tgt.jpg"].width for _, _, im in cells] + [300]) + 12
    H = (thumb + 18) * max(1, len(cells))
    sheet = Image.new("RGB", (W, H), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (s, r, im) in enumerate(cells):
        y = k * (thumb + 18)
        sheet.paste(im["src.jpg"], (0, y + 16))
        sheet.paste(im["tgt.jpg"], (im["src.jpg"].width + 12, y + 16))
        J = "-" if r["jaccard"] is None else f"{r['jaccard']:.2f}"
        draw.text((2, y + 2), f"[{s}] {r['strategy']}  dt={abs(r['t_b'] - r['t_a']):.1f}s  J={J}  "
                  f"{r['name_a']} | {r['name_b']}", fill="black")
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    path = folder / ss.PREVIEW
    atomic_write_bytes(path, buf.getvalue())
    return path

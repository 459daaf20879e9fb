"""What the trainer tests share: tiny pair shards written with webdataset.TarWriter (real JPEGs, pairs cut
from one procedural texture so the views share content, with the camera poses that make the two windows: a
camera looking at the texture plane 1 m away, focal 1.2 x size, moved by the window's shift), tiny CroCo and
ViT configurations. Tests import it by name (`from trainkit import ...`): every test folder's conftest is a
module called `conftest`, so importing from one picks whichever was loaded first."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

# a model much smaller than 'tiny': 32 px, 8 px patches (16 patches), 32-64 wide
MICRO = dict(img_size=32, patch_size=8, mask_ratio=0.75, enc_embed_dim=64, enc_depth=2, enc_num_heads=2,
             dec_embed_dim=32, dec_depth=2, dec_num_heads=2, mlp_ratio=2, norm_im2_in_dec=True, pos_embed="cosine")
# the ViT of the dinov2 / egomotion objectives at the same scale, and small heads for them
MICRO_VIT = dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2, mlp_ratio=2)
MICRO_DINO = dict(local_crops=2, prototypes=128, head_hidden=64, head_bottleneck=32)
MICRO_POSE = dict(head_dim=32, head_depth=1, head_heads=2)


def window_pose(x: float, y: float, size: int) -> list:
    """Camera-to-world pose (4x4 list) of a camera that sees the size x size window at texture pixel (x, y) of a
    plane 1 m in front of it (z forward), focal 1.2 * size px: one texture pixel is 1 / focal metres."""
    f = 1.2 * size
    return [[1.0, 0, 0, (x + size / 2) / f], [0, 1.0, 0, (y + size / 2) / f], [0, 0, 1.0, 0], [0, 0, 0, 1.0]]


def texture(rng: np.random.Generator, size: int = 160) -> np.ndarray:
    """A smooth random colour texture (size, size, 3) uint8 with structure at several scales."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.zeros((size, size, 3))
    for _ in range(12):
        f = rng.uniform(1, 8, size=2)
        ph = rng.uniform(0, 2 * np.pi)
        col = rng.uniform(-1, 1, size=3)
        img += np.sin(2 * np.pi * (f[0] * xx + f[1] * yy) + ph)[..., None] * col
    img = (img - img.min()) / (np.ptp(img) + 1e-9)
    return (img * 255).astype(np.uint8)


def jpeg(arr: np.ndarray, quality: int = 90) -> bytes:
    b = io.BytesIO()
    Image.fromarray(arr).save(b, format="JPEG", quality=quality)
    return b.getvalue()


def png16(arr: np.ndarray) -> bytes:
    b = io.BytesIO()
    Image.fromarray(arr.astype(np.uint16)).save(b, format="PNG")
    return b.getvalue()


def rolled_window(tex: np.ndarray, x: int, y: int, size: int, degrees: float) -> np.ndarray:
    """The size x size window at (x, y) of `tex` seen by a camera rolled by `degrees` about its optical axis:
    the texture turned counter-clockwise (as displayed) about the window's centre."""
    im = Image.fromarray(tex).rotate(degrees, resample=Image.BILINEAR, center=(x + size / 2, y + size / 2))
    return np.asarray(im)[y:y + size, x:x + size]


def interrupt_after(n: int):
    """A progress callback that raises KeyboardInterrupt at its n-th call (a run stopped after n steps)."""
    calls = []

    def progress(k=1, **kw):
        calls.append(k)
        if len(calls) == n:
            raise KeyboardInterrupt

    return progress


def write_shards(folder: Path, n_shards: int = 2, per_shard: int = 16, size: int = 72, seed: int = 0,
                 life: str = "toy", depth: bool = False, manifest: bool = True, poses: bool = True,
                 roll: float = 0.0) -> Path:
    """Write a shard folder: pairs-%06d.tar (+ .stats.json) and manifest.json; returns the folder.
    With `roll`, each non-augmented pair's target camera is also rolled by an angle drawn in [-roll, roll]
    degrees (T_b's rotation Rz), on larger textures so that the rolled window stays inside."""
    import webdataset as wds

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    entries, idx = [], 0
    for s in range(n_shards):
        name = f"pairs-{s:06d}.tar"
        with wds.TarWriter(str(folder / name)) as w:
            for _ in range(per_shard):
                tex = texture(rng, 160 if not roll else 3 * size)
                strategy = ["temporal", "spatial", "augmented"][idx % 3]
                lo, hi = (0, tex.shape[0] - size) if not roll else (size // 2, 2 * size - size // 2)
                ya, xa = rng.integers(lo, hi, size=2)
                theta = 0.0
                if strategy == "augmented":
                    yb, xb = ya, xa
                else:
                    yb, xb = np.clip([ya + rng.integers(-8, 9), xa + rng.integers(-8, 9)], lo, hi)
                    theta = float(rng.uniform(-roll, roll)) if roll else 0.0
                K = [[size * 1.2, 0, size / 2], [0, size * 1.2, size / 2], [0, 0, 1]]
                Tb = np.array(window_pose(xb, yb, size))
                c, sn = np.cos(np.radians(theta)), np.sin(np.radians(theta))
                Tb[:3, :3] = [[c, -sn, 0], [sn, c, 0], [0, 0, 1]]  # Rz(theta): the camera rolled
                meta = {"life": life, "strategy": strategy, "video_a": "v0", "video_b": "v0", "frame_a": idx,
                        "frame_b": idx + 1, "t_a": idx * 0.5, "t_b": idx * 0.5 + 0.5, "jaccard": None,
                        "T_a": window_pose(xa, ya, size) if poses else None,
                        "T_b": Tb.tolist() if poses else None, "K": K, "K_b": K, "cam_a": None, "cam_b": None}
                tgt = rolled_window(tex, xb, yb, size, theta) if theta else tex[yb:yb + size, xb:xb + size]
                sample = {"__key__": f"{life}_{idx:09d}", "src.jpg": jpeg(tex[ya:ya + size, xa:xa + size]),
                          "tgt.jpg": jpeg(tgt), "json": json.dumps(meta).encode()}
                if depth:
                    d = (1000 + 10 * np.arange(size)[None, :] + np.zeros((size, 1))).astype(np.uint16)
                    sample["src.depth.png"] = png16(d)
                    sample["tgt.depth.png"] = png16(d)
                w.write(sample)
                idx += 1
        (folder / f"pairs-{s:06d}.stats.json").write_text(json.dumps({"samples": per_shard}))
        entries.append({"name": name, "samples": per_shard})
    if manifest:
        (folder / "manifest.json").write_text(json.dumps({"slife_version": "test", "shards": entries}))
    return folder


def shards_with_bad_jpegs(folder: Path, good: int = 24, bad: int = 8) -> Path:
    """One tar of good + bad pairs; every 4th of the first 4 x bad samples has a truncated src.jpg."""
    import webdataset as wds

    folder.mkdir()
    rng = np.random.default_rng(3)
    with wds.TarWriter(str(folder / "pairs-000000.tar")) as w:
        for i in range(good + bad):
            im = jpeg(texture(rng)[:72, :72])
            src = b"\xff\xd8 truncated" if i % 4 == 1 and i // 4 < bad else im
            w.write({"__key__": f"toy_{i:09d}", "src.jpg": src, "tgt.jpg": im, "json": b"{}"})
    (folder / "pairs-000000.stats.json").write_text(json.dumps({"samples": good + bad}))
    (folder / "manifest.json").write_text(json.dumps({"shards": [{"name": "pairs-000000.tar",
                                                                  "samples": good + bad}]}))
    return folder

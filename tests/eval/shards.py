"""Write a tiny pair-shard folder (DESIGN.md "Pair shards") with poses, K and depth: planes seen from two cameras."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from slife.lives.geometry import make_pose


def _png16(a: np.ndarray) -> bytes:
    b = io.BytesIO()
    Image.fromarray(a.astype(np.uint16)).save(b, format="PNG")
    return b.getvalue()


def _jpg(a: np.ndarray) -> bytes:
    b = io.BytesIO()
    Image.fromarray(a).save(b, format="JPEG", quality=95)
    return b.getvalue()


def write_pair_shards(folder: Path, num_pairs: int = 6, size: int = 64, seed: int = 0) -> Path:
    """Pairs of a textured fronto-parallel plane at 2 m; the source camera moves sideways by 0..1.5 m."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    f = float(size)
    K = np.array([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1.0]])
    tar_path = folder / "pairs-000000.tar"
    with tarfile.open(tar_path, "w") as tar:
        for i in range(num_pairs):
            tx = 1.5 * i / max(num_pairs - 1, 1)
            shift = int(round(f * tx / 2.0))
            tex = (rng.random((size // 4, (size + shift) // 4 + 1, 3)) * 255).astype(np.uint8)
            tex = np.kron(tex, np.ones((4, 4, 1), np.uint8))  # (size, >= size + shift, 3)
            tgt = tex[:, shift:shift + size]
            src = tex[:, :size]
            depth = np.full((size, size), 2000, np.uint16)
            meta = {"life": "plane", "strategy": "spatial", "video_a": "v", "video_b": "v", "frame_a": i,
                    "frame_b": i + 100, "t_a": float(i), "t_b": float(i) + 1, "jaccard": 0.5,
                    "T_a": make_pose(np.eye(3), [tx, 0, 0]).tolist(), "T_b": np.eye(4).tolist(),
                    "K": K.tolist(), "K_b": K.tolist(), "cam_a": None, "cam_b": None}
            key = f"plane_{i:09d}"
            for name, data in (("src.jpg", _jpg(np.ascontiguousarray(src))), ("tgt.jpg", _jpg(np.ascontiguousarray(tgt))),
                               ("json", json.dumps(meta).encode()), ("src.depth.png", _png16(depth)),
                               ("tgt.depth.png", _png16(depth))):
                ti = tarfile.TarInfo(f"{key}.{name}")
                ti.size = len(data)
                tar.addfile(ti, io.BytesIO(data))
    (folder / "pairs-000000.stats.json").write_text(json.dumps({"samples": num_pairs}))
    (folder / "manifest.json").write_text(json.dumps({"shards": [{"name": tar_path.name, "samples": num_pairs}]}))
    return folder

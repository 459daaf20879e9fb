"""Structure from motion for lives without poses (`slife sfm`): pycolmap SIFT, sequential matching, mapping.

Reads any life with pixels (typically a plain folder of videos, `slife.lives.video`), samples it at `fps`,
writes the sampled frames as JPEGs `images/<video>/<t seconds>.jpg` (the timestamp in the name is how the
COLMAP reader recovers `t`, and each folder becomes one video again), then runs pycolmap: SIFT features
(one SIMPLE_RADIAL camera per video), sequential matching (each frame with its `overlap` successors, plus
loop detection off), incremental mapping. Writes the largest reconstruction as `sparse/0` (cameras,
images, points3D .bin; camera-to-world poses come out in an arbitrary similarity frame) next to `images/`,
so `slife mine-pairs OUT` reads it with `slife.lives.colmap` and can mine spatial pairs. Entry point:
`run(cfg, life_path, out_dir) -> Path` (the model folder). Pair mining on the result is `pipeline.py`'s job.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from slife.errors import SlifeError
from slife.io import atomic_write_json
from slife.lives.colmap import colmap_log

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SfmConfig:
    """Settings of `slife sfm`."""

    fps: float = 2.0  # frames sampled per second of video (0: every frame)
    max_side: int = 640  # longest image side written and used for SIFT
    overlap: int = 10  # sequential matching: successors matched per frame
    camera_model: str = "SIMPLE_RADIAL"  # COLMAP camera model, one camera per video
    num_threads: int = 2  # pycolmap threads
    overwrite: bool = False  # redo a finished reconstruction
    reader: str | None = None  # life format to read the input with (None: auto-detect)
    reader_options: tuple[tuple[str, str], ...] = ()  # reader options as (key, text)

    def __post_init__(self):
        if self.fps < 0 or self.max_side < 16 or self.overlap < 1 or self.num_threads < 1:
            raise ValueError("need fps >= 0, max_side >= 16, overlap >= 1, num_threads >= 1")


def write_frames(life, out_images: Path, max_side: int, progress: Callable[..., None] | None = None) -> list[str]:
    """Decode every frame of `life` once and write `out_images/<video>/<t>.jpg`; returns the image names."""
    from PIL import Image

    names = []
    for i, rgb in life.iter_frames(range(len(life))):
        src = life.source_name(i) or "video"
        name = f"{src}/{life.t[i]:.6f}.jpg"
        p = out_images / name
        p.parent.mkdir(parents=True, exist_ok=True)
        im = Image.fromarray(rgb)
        s = max_side / max(im.size)
        if s < 1:
            im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.BILINEAR)
        im.save(p, quality=95)
        names.append(name)
        if progress:
            progress(1)
    return sorted(names)


def run(cfg: SfmConfig, life_path: Path | str, out_dir: Path | str,
        progress: Callable[..., None] | None = None) -> Path:
    """Reconstruct the sampled frames of the life at `life_path` into `out_dir/sparse/0`; returns that folder."""
    out_dir = Path(out_dir)
    model_dir = out_dir / "sparse" / "0"
    if model_dir.exists() and not cfg.overwrite:
        from slife.pairmine.pipeline import describe_diff, settings_diff

        try:
            made = json.loads((out_dir / "sfm.json").read_text())
        except (OSError, ValueError):
            made = None  # a model from before sfm.json existed: reused as it is
        now = {"config": json.loads(json.dumps(asdict(cfg))), "life": str(Path(life_path).resolve())}
        made = made and {k: made.get(k) for k in now}  # sfm.json also holds the reconstruction's counts
        differ = made and settings_diff(made, now, ignore=("overwrite", "num_threads"))
        if differ:
            raise SlifeError(f"{model_dir}: was reconstructed with other settings ({describe_diff(made, now, differ)}); "
                             "pass --overwrite to redo it or choose another --out")
        log.warning("%s exists; reusing it (pass --overwrite to redo)", model_dir)
        return model_dir
    with colmap_log(log):  # COLMAP's log lines (its warnings included) only with -v
        return _reconstruct(cfg, life_path, out_dir, model_dir, progress)


def _reconstruct(cfg: SfmConfig, life_path, out_dir: Path, model_dir: Path, progress) -> Path:
    import pycolmap

    from slife.lives import read_life

    life = read_life(Path(life_path), cfg.reader, **dict(cfg.reader_options))
    if not life.has_pixels:
        raise SlifeError(f"{life_path}: this life has no images or video to reconstruct from")
    life = life.sample(cfg.fps) if cfg.fps else life
    for sub in ("images", "sparse", "database.db", "sparse.tmp"):
        p = out_dir / sub
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    images = out_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    names = write_frames(life, images, cfg.max_side, progress)
    if len(names) < 3:
        raise SlifeError(f"{life_path}: only {len(names)} frames decoded; SfM needs at least 3")
    db = out_dir / "database.db"
    pycolmap.set_random_seed(0)  # RANSAC and mapping draws: same model on every run
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = cfg.camera_model
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = cfg.num_threads
    extraction.max_image_size = cfg.max_side
    extraction.use_gpu = False
    pycolmap.extract_features(db, images, image_names=names, camera_mode=pycolmap.CameraMode.PER_FOLDER,
                              reader_options=reader, extraction_options=extraction, device=pycolmap.Device.cpu)
    pairing = pycolmap.SequentialPairingOptions()
    pairing.overlap = cfg.overlap
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = cfg.num_threads
    matching.use_gpu = False
    pycolmap.match_sequential(db, matching_options=matching, pairing_options=pairing, device=pycolmap.Device.cpu)
    opts = pycolmap.IncrementalPipelineOptions()
    opts.num_threads = cfg.num_threads
    opts.random_seed = 0
    tmp = out_dir / "sparse.tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    recs = pycolmap.incremental_mapping(db, images, tmp, options=opts)
    if not recs:
        raise SlifeError(f"{life_path}: SfM registered no images (too little texture or motion?)")
    best = max(recs.values(), key=lambda r: r.num_reg_images())
    staged = out_dir / "sparse.best"
    if staged.exists():
        shutil.rmtree(staged)
    staged.mkdir()
    best.write(staged)
    (out_dir / "sparse").mkdir(exist_ok=True)
    os.replace(staged, model_dir)
    shutil.rmtree(tmp, ignore_errors=True)
    info = {"config": asdict(cfg), "life": str(Path(life_path).resolve()), "frames": len(names),
            "registered": int(best.num_reg_images()), "points": int(best.num_points3D()),
            "models": len(recs)}
    atomic_write_json(out_dir / "sfm.json", info, indent=1)
    log.info("sfm: %d of %d frames registered, %d points", info["registered"], len(names), info["points"])
    if info["registered"] < 0.5 * len(names):
        log.warning("%s: SfM registered only %d of %d frames (%d models); spatial pairs will only use those",
                    life_path, info["registered"], len(names), info["models"])
    return model_dir

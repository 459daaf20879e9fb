"""Structure from motion for lives without poses (`slife sfm`): resumable chunks, loop closure, one model.

Reads any life with pixels (typically a folder of videos, `slife.lives.video`), samples it at `fps` and
reconstructs the sampled frames with pycolmap. The frames, in video order by time, are cut into chunks of
`chunk` frames. Each stage below works chunk by chunk: a finished chunk is marked by a JSON file in `work/`
(written atomically after its results are stored, with its wall and CPU seconds and its span in time), a
rerun skips marked chunks, so a run killed at any moment (SIGKILL included) resumes and loses at most the
chunks in progress; a chunk is redone from its start with the same seeds, so the result does not depend on
where it stopped.
1. frames: `images/<video>/<t>.jpg`, longest side `max_side`; t is the time in seconds, zero-padded so
   that names sort by time (the COLMAP reader reads t back from the name; each folder is one video again);
2. database: `database.db`, one camera (`camera_model`) per video;
3. features: SIFT, at most `max_features` per image;
4. vocabulary and words: a bag of visual words learned from a sample of the video's own descriptors
   (`retrieval.py`; nothing downloaded), then each image's word counts;
5. pairs: each frame with its next `overlap` frames of the same recording (a video, cut where time jumps:
   `recording_segments`), plus its `loop_candidates` best
   retrieval partners that are not within `loop_min_gap` seconds of it in the same video (revisits
   minutes or days later); `work/pairs-*.txt`;
6. matching: SIFT matching and geometric verification of those pairs (RANSAC seeded);
7. mapping: with `mapper` incremental or global, each chunk (with the last `chunk_overlap` frames of the
   previous one) is reconstructed on its own by pycolmap's incremental or global (GLOMAP) mapper, so
   the cost grows linearly with the number of chunks; its models go to `work/map-*/`. The chunks only read
   the database (COLMAP also rewrites its schema version at each open), so `map_workers` of them are mapped
   at once, each in a spawned worker process with max(1, num_threads // map_workers) threads (its CPU seconds and
   peak memory go into the chunk's marker; one worker maps in this process); a chunk's model does not
   depend on how many ran. With hierarchical,
   COLMAP's hierarchical mapper reconstructs all frames in one step (it cuts the view graph into
   overlapping clusters and merges them itself; this step is not resumable);
8. merge: the models are tied into one by their shared frames and the verified matches between them (loop
   closures among them) and refined (`sfm_merge.py`), then written as `sparse/0` (cameras, images,
   points3D .bin; camera-to-world poses in an arbitrary similarity frame) next to `images/`.
`sfm.json` holds the settings (a rerun with others is an error unless `overwrite`), the counts, each
stage's wall and CPU seconds, and, when the input life has poses of its own (a synthetic life), how the
reconstruction compares with them (`pose_error`: share registered, ATE after a similarity alignment).
`slife mine-pairs OUT` reads the result with `slife.lives.colmap`. Entry point: `run(cfg, life_path,
out_dir) -> Path` (the model folder). Pair mining on the result is `pipeline.py`'s job.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import resource
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from slife.errors import SlifeError
from slife.io import atomic_file, atomic_write_bytes, atomic_write_json
from slife.lives.colmap import colmap_log, import_pycolmap

log = logging.getLogger(__name__)

MAPPERS = ("incremental", "global", "hierarchical")
VOCAB_SAMPLE = 100_000  # descriptors the vocabulary is learned from
VOCAB_IMAGES = 500  # images they are drawn from (spread evenly over the life)
DB_OPEN_WAIT = 60.0  # s a mapping worker keeps trying to open the database while another process writes to it
MIN_INLIERS = 15  # a matched pair counts as verified with at least this many inlier matches (COLMAP's default)


@dataclass(frozen=True)
class SfmConfig:
    """Settings of `slife sfm`."""

    fps: float = 2.0  # frames sampled per second of video (0: every frame)
    max_side: int = 640  # longest image side written and used for SIFT
    max_features: int = 2048  # SIFT features kept per image (matching cost grows with their square)
    overlap: int = 10  # sequential matching: each frame with its next `overlap` frames of the same video
    loop_candidates: int = 5  # loop closure: retrieval partners matched per frame (0: no loop closure)
    loop_min_gap: float = 30.0  # loop closure: partners in the same video nearer in time than this (s) are not
    vocab_words: int = 1024  # visual words learned from the video (a square: a two-level tree)
    mapper: str = "incremental"  # incremental | global (per chunk, then merged) | hierarchical (COLMAP's, at once)
    chunk: int = 400  # frames per chunk: the unit of resume, of progress and of per-chunk mapping
    chunk_overlap: int = 40  # frames a chunk's mapping shares with the previous chunk (ties them when merging)
    camera_model: str = "SIMPLE_RADIAL"  # COLMAP camera model, one camera per video
    num_threads: int = 2  # pycolmap threads
    map_workers: int = 0  # chunks mapped at once, each in its own process (0: one per thread, at most the chunks left)
    seed: int = 0  # seeds RANSAC, the vocabulary and the mappers
    overwrite: bool = False  # redo a finished or partly done reconstruction from scratch
    reader: str | None = None  # life format to read the input with (None: auto-detect)
    reader_options: tuple[tuple[str, str], ...] = ()  # reader options as (key, text)

    def __post_init__(self):
        if self.fps < 0 or self.max_side < 16 or self.overlap < 1 or self.num_threads < 1:
            raise ValueError("need fps >= 0, max_side >= 16, overlap >= 1, num_threads >= 1")
        if self.max_features < 16 or self.loop_candidates < 0 or self.loop_min_gap < 0:
            raise ValueError("need max_features >= 16, loop_candidates >= 0, loop_min_gap >= 0")
        b = int(round(np.sqrt(self.vocab_words)))
        if b * b != self.vocab_words or b < 2:
            raise ValueError(f"vocab_words must be a square >= 4 (256, 1024, 4096), got {self.vocab_words}")
        if self.mapper not in MAPPERS:
            raise ValueError(f"mapper must be one of {', '.join(MAPPERS)}, got {self.mapper!r}")
        if self.chunk < 8 or not 0 <= self.chunk_overlap < self.chunk:
            raise ValueError("need chunk >= 8 and 0 <= chunk_overlap < chunk")
        if self.map_workers < 0:
            raise ValueError(f"map_workers must be >= 0 (0: one per thread), got {self.map_workers}")


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process, pycolmap's included
    return r.ru_utime + r.ru_stime


def _folder(life, i: int) -> str:
    """A frame's image folder: its recording's name, whitespace replaced (COLMAP's pair files split on it)."""
    return re.sub(r"\s+", "_", life.source_name(int(i)) or "video")


def frame_names(life, order: np.ndarray) -> list[str]:
    """`<video>/<t>.jpg` for the frames `order` of `life`: t in seconds with 6 decimals, zero-padded to one
    width over the life so that names sort by time."""
    t = life.t[order]
    width = len(str(int(max(float(t.max()), 0.0)))) + 7 if len(t) else 8
    return [f"{_folder(life, i)}/{life.t[i]:0{width}.6f}.jpg" for i in order]


def write_frames(life, ids: np.ndarray, names: list[str], out_images: Path, max_side: int,
                 progress: Callable[..., None] | None = None) -> list[str]:
    """Decode frames `ids` of `life` and write each as `out_images/<names[k]>` (through a temporary name),
    longest side at most `max_side`; returns the names of the frames that decoded (the others are skipped)."""
    from PIL import Image

    name_of = dict(zip((int(i) for i in ids), names))
    done = []
    for i, rgb in life.iter_frames(ids):
        p = out_images / name_of[i]
        p.parent.mkdir(parents=True, exist_ok=True)
        im = Image.fromarray(rgb)
        s = max_side / max(im.size)
        if s < 1:
            im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.BILINEAR)
        with atomic_file(p, durable=False) as tmp:  # many small files, made again if lost
            im.save(tmp, format="JPEG", quality=95)
        done.append(name_of[i])
        if progress:
            progress(1)
    if progress and len(done) < len(ids):
        progress(len(ids) - len(done))
    return sorted(done)


def recording_segments(group: np.ndarray, t: np.ndarray, gap: float = 10.0) -> np.ndarray:
    """Segment id of each frame (frames in video order): a new segment starts at a new video and where the
    time between two frames exceeds `gap` x the video's median interval (a night between days, a pause)."""
    new = np.ones(len(t), bool)
    if len(t) > 1:
        dt = np.diff(t)
        same = group[1:] == group[:-1]
        med = {g: float(np.median(dt[same & (group[1:] == g)])) for g in np.unique(group[1:][same])}
        limit = np.array([gap * med.get(g, np.inf) for g in group[1:]])
        new[1:] = ~same | (dt > limit)
    return np.cumsum(new) - 1


def pose_error(gt, rec) -> dict:
    """Compare a reconstructed life `rec` (COLMAP reader) with the same frames' own poses in `gt` (a posed
    life, sampled as for SfM): frames are matched by video and time (to the microsecond, as the image
    names carry it). Returns frames, registered (share of gt's posed frames with a pose in rec), ATE (RMS
    and median distance of camera centres after the least-squares similarity alignment, in gt's units),
    extent (RMS distance of gt's centres from their mean) and ate_rel = ate_rmse / extent."""
    from slife.lives.geometry import fit_similarity

    key = lambda life, i: (_folder(life, i), round(float(life.t[i]), 6))  # noqa: E731
    where = {key(rec, i): i for i in range(len(rec)) if rec.pose_valid is not None and rec.pose_valid[i]}
    posed = np.flatnonzero(gt.pose_valid) if gt.pose_valid is not None else np.zeros(0, np.int64)
    both = [(int(g), where[key(gt, g)]) for g in posed if key(gt, g) in where]
    out = {"frames": int(len(posed)), "registered": len(both) / max(len(posed), 1)}
    if len(both) < 3:
        return {**out, "ate_rmse": None, "ate_median": None, "extent": None, "ate_rel": None}
    Y = gt.T_world_cam[[g for g, _ in both], :3, 3]
    X = rec.T_world_cam[[r for _, r in both], :3, 3]
    s, R, t = fit_similarity(X, Y)
    err = np.linalg.norm(s * X @ R.T + t - Y, axis=1)
    extent = float(np.sqrt(((Y - Y.mean(0)) ** 2).sum(1).mean()))
    rmse = float(np.sqrt((err ** 2).mean()))
    return {**out, "ate_rmse": rmse, "ate_median": float(np.median(err)), "extent": extent,
            "ate_rel": rmse / extent if extent > 0 else None}


def run(cfg: SfmConfig, life_path: Path | str, out_dir: Path | str,
        progress: Callable[..., None] | None = None) -> Path:
    """Reconstruct the sampled frames of the life at `life_path` into `out_dir/sparse/0`; returns that folder.

    `progress(n, total=, description=, reset=, info=)` is told each stage's size in frames (reset=True at a
    stage's start) and advanced as frames are done."""
    from slife.pairmine.pipeline import describe_diff, settings_diff

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise SlifeError(f"{out_dir}: is a file, not a folder; choose another --out")
    model_dir = out_dir / "sparse" / "0"
    now = {"config": json.loads(json.dumps(asdict(cfg))), "life": str(Path(life_path).resolve())}
    made = None
    if (out_dir / "sfm.json").exists() and not cfg.overwrite:
        try:
            made = json.loads((out_dir / "sfm.json").read_text())
        except (OSError, ValueError) as e:
            raise SlifeError(f"{out_dir / 'sfm.json'}: unreadable ({e}); pass --overwrite to redo it") from None
        differ = settings_diff({k: made.get(k) for k in now}, now, ignore=("overwrite", "num_threads", "map_workers"))
        if differ:
            raise SlifeError(f"{out_dir}: was reconstructed with other settings ({describe_diff(made, now, differ)}); "
                             "pass --overwrite to redo it or choose another --out")
        if made.get("complete") and model_dir.exists():
            sampled = len(_sampled(cfg, Path(life_path))[1])
            before = int(made.get("frames", 0)) + int(made.get("frames_undecodable", 0))
            if "frames" in made and sampled != before:
                raise SlifeError(f"{life_path}: has {sampled} sampled frames now, {out_dir} was reconstructed from "
                                 f"{before} (the life changed since: a recording added or removed?); pass --overwrite "
                                 "to reconstruct it again or choose another --out")
            log.warning("%s exists; reusing it (pass --overwrite to redo)", model_dir)
            return model_dir
        log.info("%s: resuming an unfinished reconstruction", out_dir)
    elif model_dir.exists() and not cfg.overwrite:
        log.warning("%s exists (made before sfm.json existed); reusing it (pass --overwrite to redo)", model_dir)
        return model_dir
    if made is None or cfg.overwrite:
        for sub in ("images", "sparse", "work", "database.db", "database.db-wal", "database.db-shm", "sfm.json"):
            p = out_dir / sub
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out_dir / "sfm.json", {**now, "complete": False}, indent=1)
    with colmap_log(log):  # COLMAP's log lines (its warnings included) only with -v
        return _Reconstruction(cfg, Path(life_path), out_dir, progress).run(now)


def _sampled(cfg: SfmConfig, life_path: Path):
    """(the life at `life_path` sampled at cfg.fps, its frames in reconstruction order: by recording, then time)."""
    from slife.lives import read_life

    life = read_life(life_path, cfg.reader, **dict(cfg.reader_options))
    if not life.has_pixels:
        raise SlifeError(f"{life_path}: this life has no images or video to reconstruct from")
    life = life.sample(cfg.fps) if cfg.fps else life
    return life, np.lexsort((life.t, life.source))


class _Reconstruction:
    """One `slife sfm` run: the stages of the module docstring, each unit skipped when its marker exists."""

    def __init__(self, cfg: SfmConfig, life_path: Path, out_dir: Path, progress):
        self.cfg, self.life_path, self.out = cfg, life_path, out_dir
        self.work, self.images, self.db = out_dir / "work", out_dir / "images", out_dir / "database.db"
        self.work.mkdir(parents=True, exist_ok=True)
        self.progress = progress or (lambda *a, **k: None)
        self.stage_no = 0

    # ------------------------------------------------------------------ bookkeeping

    def _stage(self, name: str, total: int) -> None:
        self.stage_no += 1
        self.progress(0, total=total, description=f"sfm {self.stage_no}/8 {name}", reset=True)

    def _unit(self, name: str, fn: Callable[[], dict | None], frames: int = 0, own_progress: bool = False) -> dict:
        """Run `fn` unless `work/<name>.json` exists; store what it returns with its wall and CPU seconds and
        the load average. The progress advances by `frames` (during `fn` when it reports them itself)."""
        marker = self.work / f"{name}.json"
        if marker.exists():
            self.progress(frames)
            return json.loads(marker.read_text())
        w, c, start = time.perf_counter(), _cpu(), time.time()
        info = fn() or {}
        info.update(wall_s=round(time.perf_counter() - w, 3), cpu_s=round(_cpu() - c, 3),
                    load=round(os.getloadavg()[0], 2), span=[round(start, 3), round(time.time(), 3)])
        atomic_write_json(marker, info, indent=None)
        if not own_progress:
            self.progress(frames)
        return info

    def _chunks(self, n: int) -> list[tuple[int, int]]:
        C = self.cfg.chunk
        return [(s, min(n, s + C)) for s in range(0, n, C)]

    # ------------------------------------------------------------------ stages

    def run(self, identity: dict) -> Path:
        pycolmap = import_pycolmap()

        cfg = self.cfg
        life, order = _sampled(cfg, self.life_path)
        names = frame_names(life, order)
        # the chunks are positions in this frame list: a run resumed on a life that changed must not mix them
        digest = hashlib.sha256("\n".join(names).encode()).hexdigest()
        seen = self.work / "frames.json"
        if seen.exists() and json.loads(seen.read_text()).get("digest") != digest:
            raise SlifeError(f"{self.life_path}: its sampled frames changed since this unfinished reconstruction in "
                             f"{self.out} began (a recording added or removed?); pass --overwrite to start it again")
        atomic_write_json(seen, {"frames": len(names), "digest": digest}, indent=None)
        chunks = self._chunks(len(order))
        stages = {}

        # 1. frames
        self._stage("frames", len(order))
        written: list[str] = []
        for k, (s, e) in enumerate(chunks):
            info = self._unit(f"frames-{k:05d}", lambda s=s, e=e: {"written": write_frames(
                life, order[s:e], names[s:e], self.images, cfg.max_side, self.progress)}, e - s, own_progress=True)
            written += info["written"]
        stages["frames"] = self._sum("frames-")
        lost = len(order) - len(written)
        if lost:
            log.warning("%s: %d of %d sampled frames could not be decoded; left out of the reconstruction",
                        self.life_path, lost, len(order))
        if len(written) < 3:
            raise SlifeError(f"{self.life_path}: only {len(written)} frames decoded; SfM needs at least 3")
        keep = set(written)
        pos = [k for k, nm in enumerate(names) if nm in keep]
        names = [names[k] for k in pos]
        group = life.source[order[pos]]
        t = life.t[order[pos]]
        chunks = self._chunks(len(names))
        n = len(names)

        # 2. database: one camera per video folder, every image, before any feature
        self._stage("database", n)
        if not (self.work / "database.json").exists():
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.db}{suffix}").unlink(missing_ok=True)
        self._unit("database", lambda: self._import(names), n)
        ids = self._image_ids(names)

        # 3. features
        self._stage("features", n)
        for k, (s, e) in enumerate(chunks):
            self._unit(f"features-{k:05d}", lambda s=s, e=e: self._extract(names[s:e]), e - s)
        stages["features"] = self._sum("features-")

        # 4. vocabulary and words
        self._stage("words", n)
        if cfg.loop_candidates:
            self._unit("vocabulary", lambda: self._vocabulary(ids))
            for k, (s, e) in enumerate(chunks):
                self._unit(f"words-{k:05d}", lambda k=k, s=s, e=e: self._words(k, ids[s:e]), e - s, own_progress=True)
        else:
            self.progress(n)
        stages["words"] = self._sum("vocabulary", "words-")

        # 5. pairs
        self._stage("pairs", n)
        pairs = self._unit("pairs", lambda: self._pairs(names, group, t, chunks), n)
        stages["pairs"] = self._sum("pairs")

        # 6. matching
        self._stage("matching", n)
        for k, (s, e) in enumerate(chunks):
            self._unit(f"matches-{k:05d}", lambda k=k: self._match(k, names, ids), e - s)
        stages["matching"] = self._sum("matches-")

        # 7. mapping
        self._stage(f"mapping ({cfg.mapper})", n)
        if cfg.mapper == "hierarchical":
            self._unit("map-all", lambda: self._map("map-all", names), n)
        else:
            self._map_chunks([(f"map-{k:05d}", names[max(0, s - cfg.chunk_overlap) if k else s:e], e - s)
                              for k, (s, e) in enumerate(chunks)])
        stages["mapping"] = self._sum("map-")

        # 8. merge
        self._stage("merge", n)
        merged = self._unit("merge", lambda: self._merge(n), n)
        stages["merge"] = self._sum("merge")
        model_dir = self.out / "sparse" / "0"

        info = {**identity, "complete": True, "frames": n, "frames_undecodable": lost,
                "registered": merged["registered"], "points": merged["points"], "models": merged["models"],
                "models_merged": merged["models_merged"], "pairs": {k: pairs[k] for k in ("sequential", "loop", "total")},
                "verified_pairs": self._verified(ids), "stages": stages,
                "pycolmap": getattr(pycolmap, "__version__", "unknown")}
        if life.has_poses:
            from slife.lives import read_life as read

            info["ground_truth"] = pose_error(life, read(self.out))
            g = info["ground_truth"]
            log.info("sfm vs the life's own poses: %.1f%% of %d frames registered, ATE %s (%s of the extent)",
                     100 * g["registered"], g["frames"], _fmt(g["ate_rmse"]), _fmt(g["ate_rel"]))
        atomic_write_json(self.out / "sfm.json", info, indent=1)
        log.info("sfm: %d of %d frames registered, %d points (%d models merged of %d)", info["registered"], n,
                 info["points"], info["models_merged"], info["models"])
        if info["registered"] < 0.5 * n:
            log.warning("%s: SfM registered only %d of %d frames; spatial pairs will only use those",
                        self.life_path, info["registered"], n)
        return model_dir

    def _sum(self, *prefixes: str) -> dict:
        """Wall and CPU seconds over the markers starting with `prefixes` (this run's and earlier ones): CPU
        summed, wall the time covered by their spans (units that ran at once, chunks mapped in parallel,
        count once), plus the wall of markers written before spans were stored."""
        tot = {"wall_s": 0.0, "cpu_s": 0.0, "units": 0}
        spans = []
        for p in sorted(self.work.glob("*.json")):
            if p.name.startswith(prefixes):
                d = json.loads(p.read_text())
                if d.get("span"):
                    spans.append(d["span"])
                else:
                    tot["wall_s"] += d.get("wall_s", 0.0)
                tot["cpu_s"] += d.get("cpu_s", 0.0)
                tot["units"] += 1
        end = -np.inf
        for a, b in sorted(spans):  # the length of the union of the spans
            tot["wall_s"] += max(0.0, b - max(a, end))
            end = max(end, b)
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in tot.items()}

    def _import(self, names: list[str]) -> dict:
        pycolmap = import_pycolmap()

        pycolmap.Database.open(self.db).close()
        reader = pycolmap.ImageReaderOptions()
        reader.camera_model = self.cfg.camera_model
        pycolmap.import_images(self.db, self.images, camera_mode=pycolmap.CameraMode.PER_FOLDER,
                               image_names=names, options=reader)
        db = pycolmap.Database.open(self.db)
        try:
            got = db.num_images()
        finally:
            db.close()
        if got != len(names):
            raise SlifeError(f"{self.db}: {got} of {len(names)} images imported")
        return {"images": got}

    def _image_ids(self, names: list[str]) -> np.ndarray:
        pycolmap = import_pycolmap()

        db = pycolmap.Database.open(self.db)
        try:
            by_name = {im.name: im.image_id for im in db.read_all_images()}
        finally:
            db.close()
        return np.array([by_name[nm] for nm in names], np.int64)

    def _extract(self, names: list[str]) -> dict:
        pycolmap = import_pycolmap()

        cfg = self.cfg
        ex = pycolmap.FeatureExtractionOptions()
        ex.num_threads = cfg.num_threads
        ex.max_image_size = cfg.max_side
        ex.use_gpu = False
        ex.sift.max_num_features = cfg.max_features
        pycolmap.extract_features(self.db, self.images, image_names=names, camera_mode=pycolmap.CameraMode.PER_FOLDER,
                                  extraction_options=ex, device=pycolmap.Device.cpu)
        return {"images": len(names)}

    def _descriptors(self, db, image_id: int) -> np.ndarray:
        return np.asarray(db.read_descriptors(int(image_id)).data)

    def _vocabulary(self, ids: np.ndarray) -> dict:
        pycolmap = import_pycolmap()

        from slife.pairmine.retrieval import train_vocabulary

        rng = np.random.default_rng(self.cfg.seed)
        take = ids[np.unique(np.linspace(0, len(ids) - 1, min(len(ids), VOCAB_IMAGES)).round().astype(int))]
        per = max(1, VOCAB_SAMPLE // len(take))
        db = pycolmap.Database.open(self.db)
        try:
            parts = []
            for i in take:
                d = self._descriptors(db, i)
                parts.append(d[rng.choice(len(d), per, replace=False)] if len(d) > per else d)
        finally:
            db.close()
        sample = np.concatenate(parts) if parts else np.zeros((0, 128), np.uint8)
        if len(sample) < self.cfg.vocab_words:
            raise SlifeError(f"{self.life_path}: only {len(sample)} SIFT features in the sampled frames; too few "
                             f"for a {self.cfg.vocab_words}-word vocabulary (lower --vocab-words)")
        voc = train_vocabulary(sample, self.cfg.vocab_words, seed=self.cfg.seed)
        with atomic_file(self.work / "vocabulary.npz", keep_suffix=True) as tmp:
            np.savez(tmp, **voc.to_arrays())
        return {"descriptors": int(len(sample))}

    def _words(self, k: int, ids: np.ndarray) -> dict:
        pycolmap = import_pycolmap()

        from slife.pairmine.retrieval import Vocabulary

        voc = Vocabulary.from_arrays(np.load(self.work / "vocabulary.npz"))
        db = pycolmap.Database.open(self.db)
        try:
            hist = np.zeros((len(ids), voc.words), np.uint16)
            for r, i in enumerate(ids):
                d = self._descriptors(db, i)
                if len(d):
                    hist[r] = np.minimum(voc.histogram(d), np.iinfo(np.uint16).max)
                self.progress(1)
        finally:
            db.close()
        with atomic_file(self.work / f"words-{k:05d}.npz", keep_suffix=True) as tmp:
            np.savez_compressed(tmp, hist=hist)
        return {"images": int(len(ids))}

    def _pairs(self, names: list[str], group: np.ndarray, t: np.ndarray, chunks) -> dict:
        from slife.pairmine.retrieval import bow_vectors, loop_candidates

        cfg = self.cfg
        n = len(names)
        segment = recording_segments(group, t)
        a, b = [], []
        for d in range(1, cfg.overlap + 1):  # sequential: the next `overlap` frames of the same recording
            i = np.arange(n - d)
            same = segment[i] == segment[i + d]
            a.append(i[same])
            b.append(i[same] + d)
        seq = np.unique(np.concatenate(a) * n + np.concatenate(b)) if n > 1 else np.zeros(0, np.int64)
        loop = np.zeros(0, np.int64)
        if cfg.loop_candidates:
            hist = np.concatenate([np.load(self.work / f"words-{k:05d}.npz")["hist"] for k in range(len(chunks))])
            la, lb = loop_candidates(bow_vectors(hist), group, t, cfg.loop_candidates, cfg.loop_min_gap,
                                     nms_gap=max(1.0, cfg.loop_min_gap / 6))
            loop = np.setdiff1d(la * n + lb, seq)
        key = np.union1d(seq, loop)
        ka, kb = key // n, key % n
        with atomic_file(self.work / "pairs.npz", keep_suffix=True) as tmp:
            np.savez(tmp, a=ka, b=kb, loop=np.isin(key, loop))
        bounds = np.array([e for _, e in chunks])
        owner = np.searchsorted(bounds, kb, side="right")  # a pair is matched with the chunk of its later frame
        for k in range(len(chunks)):
            sel = owner == k
            text = "".join(f"{names[i]} {names[j]}\n" for i, j in zip(ka[sel], kb[sel]))
            atomic_write_bytes(self.work / f"pairs-{k:05d}.txt", text.encode())
        return {"sequential": int(len(seq)), "loop": int(len(loop)), "total": int(len(key))}

    def _match(self, k: int, names: list[str], ids: np.ndarray) -> dict:
        pycolmap = import_pycolmap()

        cfg = self.cfg
        path = self.work / f"pairs-{k:05d}.txt"
        lines = path.read_text().splitlines()
        if lines:
            # a chunk killed half way is matched again from its start, so RANSAC sees the same pairs in
            # the same order as in an uninterrupted run
            by_name = dict(zip(names, (int(i) for i in ids)))
            db = pycolmap.Database.open(self.db)
            try:
                for ln in lines:
                    x, y = (by_name[s] for s in ln.split())
                    if db.exists_matches(x, y):
                        db.delete_matches(x, y)
                    if db.exists_two_view_geometry(x, y):
                        db.delete_two_view_geometry(x, y)
            finally:
                db.close()
            m = pycolmap.FeatureMatchingOptions()
            m.num_threads = cfg.num_threads
            m.use_gpu = False
            p = pycolmap.ImportedPairingOptions()
            p.match_list_path = path
            v = pycolmap.TwoViewGeometryOptions()
            v.ransac.random_seed = cfg.seed
            pycolmap.set_random_seed(cfg.seed + k)
            pycolmap.match_image_pairs(self.db, matching_options=m, pairing_options=p, verification_options=v,
                                       device=pycolmap.Device.cpu)
        return {"pairs": len(lines)}

    def _map(self, name: str, names: list[str]) -> dict:
        cfg = self.cfg
        return map_chunk(self.db, self.images, self.work / name, names, cfg.mapper, cfg.num_threads, cfg.seed)

    def _map_chunks(self, chunks: list[tuple[str, list[str], int]]) -> None:
        """Map the chunks (marker name, image names, frames it owns) that have no marker yet: one after the
        other in this process, or `map_workers` at once, each in a worker process of its own (a chunk only
        reads the database, so they do not depend on each other) with num_threads // workers threads."""
        cfg = self.cfg
        todo = [c for c in chunks if not (self.work / f"{c[0]}.json").exists()]
        self.progress(sum(f for nm, _, f in chunks if (self.work / f"{nm}.json").exists()))
        workers = min(cfg.map_workers or cfg.num_threads, len(todo))
        if workers > cfg.num_threads:
            log.warning("--map-workers %d is more than --threads %d: %d chunks map at once, one thread each (%d "
                        "threads in all)", cfg.map_workers, cfg.num_threads, workers, workers)
        state = {"done": len(chunks) - len(todo), "running": 0}

        def show():
            run = f", {state['running']} running" if workers > 1 else ""
            self.progress(0, info=f"{state['done']}/{len(chunks)} chunks{run}")

        threads = max(1, cfg.num_threads // max(1, workers))
        if todo:  # a resumed run says how many chunks are left
            log.info("mapping %d of %d chunks, %s", len(todo), len(chunks), "one after the other in this process"
                     if workers <= 1 else f"{workers} at once in worker processes of {threads} thread(s) each")
        if workers <= 1:
            for name, sel, frames in todo:  # each marker says how it was mapped, as the workers' do
                show()
                self._unit(name, lambda name=name, sel=sel: {**self._map(name, sel), "workers": 1,
                                                             "threads": cfg.num_threads}, frames)
                state["done"] += 1
            show()
            return
        verbose = log.isEnabledFor(logging.DEBUG)
        jobs = [(name, (str(self.db), str(self.images), str(self.work / name), sel, cfg.mapper, threads, cfg.seed,
                        verbose), frames) for name, sel, frames in todo]
        for name, info, frames in _run_workers(jobs, workers, lambda n: (state.update(running=n), show())):
            atomic_write_json(self.work / f"{name}.json", {**info, "workers": workers, "threads": threads},
                              indent=None)
            state["done"] += 1
            self.progress(frames)
            show()

    def _merge(self, n: int) -> dict:
        pycolmap = import_pycolmap()

        from slife.pairmine.sfm_merge import merge_models

        dirs = sorted(d for d in self.work.glob("map-*") if d.is_dir())
        models = [pycolmap.Reconstruction(str(m)) for d in dirs for m in sorted(d.iterdir(), key=lambda p: int(p.name))]
        if not any(r.num_reg_images() for r in models):
            raise SlifeError(f"{self.life_path}: SfM registered no images (too little texture or motion?)")
        try:
            rec, report = merge_models(models, self.db, num_threads=self.cfg.num_threads, seed=self.cfg.seed)
        except ValueError as e:
            raise SlifeError(f"{self.life_path}: SfM made no usable model ({e}; too little texture or motion?)") from None
        staged = self.out / "sparse.staged"
        if staged.exists():
            shutil.rmtree(staged)
        staged.mkdir()
        rec.write(staged)
        (self.out / "sparse").mkdir(exist_ok=True)
        model_dir = self.out / "sparse" / "0"
        if model_dir.exists():
            shutil.rmtree(model_dir)
        os.replace(staged, model_dir)
        return {"registered": int(rec.num_reg_images()), "points": int(rec.num_points3D()), **report}

    def _verified(self, ids: np.ndarray) -> dict:
        """Pairs that passed geometric verification (at least MIN_INLIERS inlier matches), sequential and loop."""
        pycolmap = import_pycolmap()

        db = pycolmap.Database.open(self.db)
        try:
            pair_ids, inliers = db.read_two_view_geometry_num_inliers()
        finally:
            db.close()
        ok = {int(p) for p, k in zip(pair_ids, inliers) if k >= MIN_INLIERS}
        pairs = np.load(self.work / "pairs.npz")
        good = np.array([pycolmap.image_pair_to_pair_id(int(ids[a]), int(ids[b])) in ok
                         for a, b in zip(pairs["a"], pairs["b"])], bool)
        return {"sequential": int((good & ~pairs["loop"]).sum()), "loop": int((good & pairs["loop"]).sum())}


def map_chunk(db: Path, images: Path, out: Path, names: list[str], mapper: str, num_threads: int,
              seed: int) -> dict:
    """Reconstruct the images `names` of the database `db` (read only) with pycolmap's `mapper` into
    `out/0`, `out/1`, ... (largest model first), through `.NAME.tmp` renamed when complete; returns the
    image count and each model's registered images."""
    pycolmap = import_pycolmap()

    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    for p in (out, tmp):
        if p.exists():
            shutil.rmtree(p)
    tmp.mkdir()
    pycolmap.set_random_seed(seed)
    if mapper == "incremental":
        opts = pycolmap.IncrementalPipelineOptions()
        opts.num_threads, opts.random_seed, opts.image_names = num_threads, seed, names
        opts.structure_less_registration_fallback = False  # images are registered on 3D points only
        recs = pycolmap.incremental_mapping(db, images, tmp, options=opts)
    elif mapper == "global":
        opts = pycolmap.GlobalPipelineOptions()
        opts.num_threads, opts.random_seed, opts.image_names = num_threads, seed, names
        recs = pycolmap.global_mapping(db, images, tmp, options=opts)
    else:
        opts = pycolmap.HierarchicalPipelineOptions()
        opts.num_threads, opts.num_workers = num_threads, 1
        opts.incremental_options.random_seed = seed
        opts.incremental_options.structure_less_registration_fallback = False
        recs = pycolmap.hierarchical_mapping(db, images, tmp, options=opts)
    for p in list(tmp.iterdir()):  # keep our own numbering: 0, 1, ... by size
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    recs = sorted(recs.values(), key=lambda r: -r.num_reg_images())
    for m, rec in enumerate(recs):
        (tmp / str(m)).mkdir()
        rec.write(tmp / str(m))
    os.replace(tmp, out)
    return {"images": len(names), "models": [int(r.num_reg_images()) for r in recs]}


def _die_with_parent() -> None:
    """Linux: have the kernel kill this process when its parent dies (SIGKILL included), so that a killed
    run leaves no worker mapping behind it; elsewhere nothing."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _map_worker(conn, parent: int, args: tuple) -> None:
    """A worker process: map one chunk (`map_chunk` arguments, then verbose), send back ("ok", info) with this
    process's CPU seconds and peak memory, or ("error", one line)."""
    _die_with_parent()
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)
    try:
        pycolmap = import_pycolmap()

        *margs, verbose = args
        pycolmap.logging.minloglevel = 0 if verbose else 2  # as `colmap_log` in the parent
        retries, deadline = 0, time.monotonic() + DB_OPEN_WAIT
        while True:
            try:
                info = map_chunk(*margs)
                break
            except RuntimeError as e:
                # COLMAP writes the schema version each time it opens the database and sets no busy timeout, so
                # a worker opening it while another does fails at once ("database is locked"); mapping has not
                # started then, so it is tried again (with the same seed: the same model)
                if "database" not in str(e) or time.monotonic() > deadline:
                    raise
                retries += 1
                time.sleep(0.05 + 0.2 * np.random.default_rng().random())
        r = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process, from its start
        conn.send(("ok", {**info, "cpu_s": round(r.ru_utime + r.ru_stime, 3),
                          "peak_rss_mib": round(r.ru_maxrss / 1024, 1), "db_open_retries": retries}))
    except Exception as e:  # noqa: BLE001 (sent to the parent, which raises it as one line)
        conn.send(("error", str(e) if isinstance(e, SlifeError) else f"{type(e).__name__}: {e}"))
    finally:
        conn.close()


def _run_workers(jobs: list[tuple[str, tuple, int]], workers: int, running: Callable[[int], None]):
    """Run `_map_worker` on each job (name, arguments, frames), `workers` processes at once (spawned: no
    pycolmap or SQLite state crosses a fork); yield (name, info with wall_s, cpu_s, load, span, frames) as
    each finishes. A worker's error or death raises SlifeError naming the chunk; the others are stopped.
    `running(n)` is told how many run after each change."""
    import multiprocessing as mp
    from multiprocessing.connection import wait

    ctx = mp.get_context("spawn")
    queue, live = list(jobs), {}  # connection -> (process, name, frames, start perf, start epoch)
    try:
        while queue or live:
            while queue and len(live) < workers:
                name, args, frames = queue.pop(0)
                here, there = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_map_worker, args=(there, os.getpid(), args), name=f"slife-{name}",
                                   daemon=True)
                proc.start()
                there.close()
                live[here] = (proc, name, args[2], frames, time.perf_counter(), time.time())
                running(len(live))
            for conn in wait(list(live)):
                proc, name, out, frames, w, start = live.pop(conn)
                try:
                    status, info = conn.recv()
                except EOFError:
                    status, info = "died", None
                conn.close()
                proc.join()
                if status != "ok":
                    why = info if status == "error" else f"its process died (exit code {proc.exitcode})"
                    raise SlifeError(f"{out}: mapping this chunk failed: {why}")
                info.update(wall_s=round(time.perf_counter() - w, 3), load=round(os.getloadavg()[0], 2),
                            span=[round(start, 3), round(time.time(), 3)])
                running(len(live))
                yield name, info, frames
    finally:
        for proc, *_ in live.values():
            proc.kill()
            proc.join()


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3g}"

"""Procedural posed lives (poses + world points, no rendering) for pair-mining tests and benchmarks.

Makes a `Life` in memory: a house of `rooms` (a grid of 5 x 5 x 2.6 m rooms with doorways) whose walls,
floor and ceiling carry random world points, and a person walking room to room at ~1 m/s, looking
where they go with head turns, over `videos` recordings ("days"), `frames` poses at `fps`. Poses are
camera-to-world, OpenCV axes, metres; one PINHOLE camera. Optionally writes tiny PNG frames so the shard
writer has pixels (`image_dir`). Entry point: `make_life(...)`. Real synthetic renderings are
`slife.synth`'s job.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from slife.lives.geometry import Camera, make_pose
from slife.lives.life import ImageFiles, Life

ROOM = np.array([5.0, 5.0, 2.6])  # room size x, y (floor plan) and height, metres


def house_points(rooms: tuple[int, int], density: float, rng: np.random.Generator) -> np.ndarray:
    """Random points on the walls, floors and ceilings of a grid of rooms -> (M, 3), z up... in world y-down? No: z is up."""
    nx, ny = rooms
    pts = []
    area_wall = ROOM[0] * ROOM[2]
    for i in range(nx + 1):  # walls of constant x (with a 1 m doorway in internal walls)
        for j in range(ny):
            k = rng.poisson(density * area_wall)
            y = j * ROOM[1] + rng.random(k) * ROOM[1]
            z = rng.random(k) * ROOM[2]
            if 0 < i < nx:
                keep = ~((np.abs(y - (j + 0.5) * ROOM[1]) < 0.5) & (z < 2.0))
                y, z = y[keep], z[keep]
            pts.append(np.stack([np.full(len(y), i * ROOM[0]), y, z], 1))
    for j in range(ny + 1):  # walls of constant y
        for i in range(nx):
            k = rng.poisson(density * area_wall)
            x = i * ROOM[0] + rng.random(k) * ROOM[0]
            z = rng.random(k) * ROOM[2]
            if 0 < j < ny:
                keep = ~((np.abs(x - (i + 0.5) * ROOM[0]) < 0.5) & (z < 2.0))
                x, z = x[keep], z[keep]
            pts.append(np.stack([x, np.full(len(x), j * ROOM[1]), z], 1))
    k = rng.poisson(density * nx * ny * ROOM[0] * ROOM[1])
    for h in (0.0, ROOM[2]):  # floor and ceiling
        pts.append(np.stack([rng.random(k) * nx * ROOM[0], rng.random(k) * ny * ROOM[1], np.full(k, h)], 1))
    return np.concatenate(pts)


def walk(n: int, rooms: tuple[int, int], fps: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A walk through the rooms -> positions (n, 3) and yaw angles (n,) (radians, 0 = +x)."""
    nx, ny = rooms
    speed = 1.0 / fps  # metres per frame
    pos = np.zeros((n, 3))
    yaw = np.zeros(n)
    cur = np.array([(rng.integers(nx) + 0.5) * ROOM[0], (rng.integers(ny) + 0.5) * ROOM[1]])
    path: list[np.ndarray] = []
    i = 0
    while i < n:
        if not path:  # next target: a point in this room or, through a doorway, a neighbour room
            ci, cj = int(cur[0] // ROOM[0]), int(cur[1] // ROOM[1])
            di, dj = [(1, 0), (-1, 0), (0, 1), (0, -1)][rng.integers(4)]
            ti, tj = min(max(ci + di, 0), nx - 1), min(max(cj + dj, 0), ny - 1)
            centre = np.array([(ci + 0.5) * ROOM[0], (cj + 0.5) * ROOM[1]])
            tcentre = np.array([(ti + 0.5) * ROOM[0], (tj + 0.5) * ROOM[1]])
            spot = tcentre + (rng.random(2) - 0.5) * (ROOM[:2] - 1.5)
            path = [centre, (centre + tcentre) / 2, tcentre, spot]
        tgt = path[0]
        d = tgt - cur
        dist = np.linalg.norm(d)
        if dist < speed:
            path.pop(0)
            if dist > 1e-6:
                yaw[i] = np.arctan2(d[1], d[0])
            cur = tgt.copy()
            if not path:  # look around a little at the target
                stay = min(n - i, int(rng.integers(2, 8)))
                base = yaw[i - 1] if i else 0.0
                yaw[i:i + stay] = base + np.cumsum(rng.normal(0, 0.5, stay))
                pos[i:i + stay, :2] = cur
                i += stay
            continue
        cur = cur + d / dist * speed
        pos[i, :2] = cur
        yaw[i] = np.arctan2(d[1], d[0]) + rng.normal(0, 0.15)
        i += 1
    pos[:, 2] = 1.6 + rng.normal(0, 0.02, n)
    return pos, yaw


def poses_from_walk(pos: np.ndarray, yaw: np.ndarray, pitch: np.ndarray) -> np.ndarray:
    """Positions (n, 3), yaw (n,), pitch (n,) -> T_world_cam (n, 4, 4), OpenCV axes (z forward, y down)."""
    f = np.stack([np.cos(yaw) * np.cos(pitch), np.sin(yaw) * np.cos(pitch), np.sin(pitch)], 1)  # forward
    up = np.array([0.0, 0.0, 1.0])
    x = np.cross(f, up)
    x /= np.linalg.norm(x, axis=1, keepdims=True)  # right
    y = np.cross(f, x)  # down
    R = np.stack([x, y, f], 2)  # (n, 3, 3) columns = camera axes in world
    return make_pose(R, pos)


def make_life(frames: int = 1000, rooms: tuple[int, int] = (3, 3), videos: int = 3, fps: float = 2.0,
              density: float = 40.0, seed: int = 0, image_dir: Path | None = None, image_size=(32, 24),
              name: str = "proc") -> Life:
    """A procedural posed life with `frames` frames over `videos` recordings; see the module docstring."""
    rng = np.random.default_rng(seed)
    pts = house_points(rooms, density, rng)
    per = np.diff(np.linspace(0, frames, videos + 1).astype(int))
    T, t, src, fidx = [], [], [], []
    for v, m in enumerate(per):
        pos, yaw = walk(int(m), rooms, fps, rng)
        pitch = rng.normal(-0.15, 0.1, int(m))
        T.append(poses_from_walk(pos, yaw, pitch))
        t.append(v * 86400.0 + np.arange(m) / fps)  # one recording a day
        src.append(np.full(m, v, np.int32))
        fidx.append(np.arange(m, dtype=np.int64))
    W, H = image_size
    cam = Camera("PINHOLE", W, H, (0.6 * W, 0.6 * W, W / 2, H / 2))
    sources = []
    if image_dir is not None:
        from PIL import Image

        from slife.io import atomic_file

        for v, m in enumerate(per):
            d = Path(image_dir) / f"day{v}"
            d.mkdir(parents=True, exist_ok=True)
            files = []
            for k in range(m):
                p = d / f"{k:06d}.png"
                if not p.exists():
                    img = np.zeros((H, W, 3), np.uint8)
                    img[..., 0] = (k * 7) % 256
                    img[..., 1] = (v * 80) % 256
                    img[:, : (k % W) + 1, 2] = 255
                    with atomic_file(p, keep_suffix=True, durable=False) as tmp:  # a kill leaves no half file
                        Image.fromarray(img).save(tmp)
                files.append(p)
            sources.append(ImageFiles(f"day{v}", d, files))
    n = int(per.sum())
    return Life(
        name=name, root=Path(image_dir) if image_dir else Path(name), format="procedural", sources=sources,
        source=np.concatenate(src) if sources else np.full(n, -1, np.int32) if False else np.concatenate(src),
        frame_index=np.concatenate(fidx), t=np.concatenate(t), T_world_cam=np.concatenate(T),
        cameras=[cam], camera_id=np.zeros(n, np.int32), points=pts,
    )

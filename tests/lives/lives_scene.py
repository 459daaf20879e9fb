"""A tiny synthetic scene for reader tests: poses, intrinsics, points, and the ground-truth pixels.

Independent of slife.lives.geometry on purpose: the ground truth is computed here with plain numpy so that
each reader's pose + camera can be checked against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

W, H = 64, 48  # image size
FX, FY, CX, CY = 52.0, 50.5, 32.3, 23.9  # COLMAP pixel convention (centre of pixel (0,0) at (0.5, 0.5))


def rot(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Rotation (3, 3) from yaw (about y), pitch (about x), roll (about z), radians."""
    cy_, sy = np.cos(yaw), np.sin(yaw)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cr, sr = np.cos(roll), np.sin(roll)
    Ry = np.array([[cy_, 0, sy], [0, 1, 0], [-sy, 0, cy_]])
    Rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    Rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return Ry @ Rx @ Rz


def rotmat_to_wxyz(R: np.ndarray) -> np.ndarray:
    """(3, 3) -> (w, x, y, z), w >= 0 (Shepperd's method, independent of slife)."""
    t = np.trace(R)
    if t > 0:
        s = 2 * np.sqrt(1 + t)
        q = [s / 4, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s]
    else:
        i = int(np.argmax(np.diag(R)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2 * np.sqrt(1 + R[i, i] - R[j, j] - R[k, k])
        q = [0.0] * 4
        q[0] = (R[k, j] - R[j, k]) / s
        q[1 + i] = s / 4
        q[1 + j] = (R[j, i] + R[i, j]) / s
        q[1 + k] = (R[k, i] + R[i, k]) / s
    q = np.array(q)
    return q if q[0] >= 0 else -q


@dataclass
class Scene:
    t: np.ndarray  # (N,) seconds
    T_world_cam: np.ndarray  # (N, 4, 4) camera-to-world, OpenCV axes
    K: np.ndarray  # (3, 3) COLMAP convention
    points: np.ndarray  # (M, 3)
    colors: np.ndarray  # (M, 3) uint8

    @property
    def n(self) -> int:
        return len(self.t)

    def pixels(self, i: int, X: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Ground-truth pinhole pixels (M, 2) of points in frame i, and depth z (M,)."""
        X = self.points if X is None else X
        T = self.T_world_cam[i]
        Xc = (X - T[:3, 3]) @ T[:3, :3]  # R^T (X - C)
        uv = Xc[:, :2] / Xc[:, 2:3] * [self.K[0, 0], self.K[1, 1]] + [self.K[0, 2], self.K[1, 2]]
        return uv, Xc[:, 2]

    def visible(self, i: int) -> np.ndarray:
        uv, z = self.pixels(i)
        return (z > 0.1) & (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)

    def image(self, i: int) -> np.ndarray:
        """(H, W, 3) uint8: a gradient with the frame number encoded, so frames differ."""
        yy, xx = np.mgrid[0:H, 0:W]
        img = np.stack([(xx * 4 + i * 20) % 256, (yy * 5) % 256, np.full_like(xx, (i * 37) % 256)], -1)
        return img.astype(np.uint8)

    def depth_mm(self, i: int) -> np.ndarray:
        """(H, W) uint16 depth in mm of a fronto-parallel-ish plane (2 m + 1 mm per frame)."""
        return np.full((H, W), 2000 + i, np.uint16)


def make_scene(n: int = 12, m: int = 300, seed: int = 0, t0: float = 100.0, dt: float = 0.1) -> Scene:
    rng = np.random.default_rng(seed)
    T = np.zeros((n, 4, 4))
    for i in range(n):
        T[i, :3, :3] = rot(0.3 * np.sin(i / 3), 0.1 * np.cos(i / 2), 0.05 * np.sin(i))
        T[i, :3, 3] = [0.15 * i, 0.02 * np.sin(i), 0.05 * i]
        T[i, 3, 3] = 1
    K = np.array([[FX, 0, CX], [0, FY, CY], [0, 0, 1.0]])
    pts = np.column_stack([rng.uniform(-2, 4, m), rng.uniform(-1.5, 1.5, m), rng.uniform(3, 7, m)])
    colors = rng.integers(0, 256, (m, 3)).astype(np.uint8)
    return Scene(t=t0 + dt * np.arange(n), T_world_cam=T, K=K, points=pts, colors=colors)


def write_png(path: Path, img: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)


def write_video(path: Path, frames: list[np.ndarray], pts: list[int] | None = None, time_base=(1, 1000),
                codec: str = "libx264", rate: int = 10) -> None:
    """Encode RGB frames with PyAV; pts in `time_base` units (default: 1/rate seconds apart)."""
    import fractions

    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        st = c.add_stream(codec, rate=rate)
        st.width, st.height = frames[0].shape[1], frames[0].shape[0]
        st.pix_fmt = "yuv420p"
        tb = fractions.Fraction(*time_base)
        st.codec_context.time_base = tb
        st.time_base = tb  # the muxer may change it (mp4: 1/16000) at the first packet
        if codec == "libx264":
            st.options = {"crf": "18", "bf": "2", "g": "4"}
        for k, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = pts[k] if pts is not None else int(round(k * time_base[1] / (rate * time_base[0])))
            f.time_base = tb
            for pkt in st.encode(f):
                c.mux(pkt)
        for pkt in st.encode():
            c.mux(pkt)


def assert_projects_like(life, scene: Scene, tol: float = 1e-3, rows=None) -> int:
    """Every posed frame of `life` (row r <-> scene frame rows[r]) projects the scene points within `tol` px."""
    from slife.lives.geometry import project_points

    rows = range(len(life)) if rows is None else rows
    checked = 0
    for r, i in enumerate(rows):
        if not life.pose_valid[r]:
            continue
        uv, z, _ = project_points(life.T_world_cam[r], life.camera(r), scene.points)
        uv_gt, z_gt = scene.pixels(i)
        front = z_gt > 0.1
        err = np.abs(uv[front] - uv_gt[front]).max()
        assert err < tol, f"frame {r}: {err:.2e} px"
        np.testing.assert_allclose(z, z_gt, atol=1e-9)
        checked += 1
    return checked

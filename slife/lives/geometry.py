"""Camera geometry shared by every stage: quaternions, pose inversion and checks, camera models, projection.

Reads and returns numpy float64 arrays. Conventions used everywhere in slife:
- poses are ``T_world_cam``: 4x4 camera-to-world, OpenCV camera axes (x right, y down, z forward), metres;
- quaternions are ``(w, x, y, z)`` (COLMAP order) unless a function says ``xyzw``;
- pixel coordinates have the origin at the top-left corner of the top-left pixel, so the centre of
  pixel (0, 0) is (0.5, 0.5) (COLMAP's convention; ``cx = W / 2`` for a centred principal point).
Entry points: `qvec_to_rotmat`, `rotmat_to_qvec`, `invert_pose`, `pose_problem`, `fit_similarity`,
`Camera.project`, `Camera.unproject_pinhole`, `Camera.unproject`. Each helper exists once here; readers, visibility, synth and eval import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# camera models: name -> number of parameters (after which order, see Camera)
CAMERA_MODELS = {
    "PINHOLE": 4,  # fx, fy, cx, cy
    "SIMPLE_PINHOLE": 3,  # f, cx, cy
    "SIMPLE_RADIAL": 4,  # f, cx, cy, k1
    "RADIAL": 5,  # f, cx, cy, k1, k2
    "OPENCV": 8,  # fx, fy, cx, cy, k1, k2, p1, p2
    "FULL_OPENCV": 12,  # fx, fy, cx, cy, k1, k2, p1, p2, k3, k4, k5, k6
    "OPENCV_FISHEYE": 8,  # fx, fy, cx, cy, k1, k2, k3, k4 (Kannala-Brandt)
    "FISHEYE624": 15,  # f, cx, cy, k0..k5, p0, p1, s0..s3 (Project Aria FisheyeRadTanThinPrism; one focal)
}


def qvec_to_rotmat(q: np.ndarray) -> np.ndarray:
    """Unit quaternion(s) (w, x, y, z) (..., 4) -> rotation matrices (..., 3, 3). Normalises first."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    R = np.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        axis=-1,
    )
    return R.reshape(q.shape[:-1] + (3, 3))


def rotmat_to_qvec(R: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) -> unit quaternions (w, x, y, z) (..., 4) with w >= 0."""
    from scipy.spatial.transform import Rotation

    R = np.asarray(R, dtype=np.float64)
    xyzw = Rotation.from_matrix(R.reshape(-1, 3, 3)).as_quat()  # (n, 4) x, y, z, w
    q = np.concatenate([xyzw[:, 3:], xyzw[:, :3]], axis=1)
    q *= np.where(q[:, :1] < 0, -1.0, 1.0)
    return q.reshape(R.shape[:-2] + (4,))


def make_pose(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Rotation(s) (..., 3, 3) and translation(s) (..., 3) -> homogeneous transforms (..., 4, 4)."""
    R = np.asarray(R, dtype=np.float64)
    T = np.zeros(R.shape[:-2] + (4, 4))
    T[..., :3, :3] = R
    T[..., :3, 3] = t
    T[..., 3, 3] = 1.0
    return T


def invert_pose(T: np.ndarray) -> np.ndarray:
    """Invert rigid transforms (..., 4, 4) exactly (R^T, -R^T t); e.g. world-to-camera -> camera-to-world."""
    T = np.asarray(T, dtype=np.float64)
    R = T[..., :3, :3]
    Rt = np.swapaxes(R, -1, -2)
    return make_pose(Rt, -np.einsum("...ij,...j->...i", Rt, T[..., :3, 3]))


def pose_problem(T: np.ndarray, tol: float = 1e-3) -> np.ndarray:
    """Why each pose (..., 4, 4) is unusable: '' if valid, else 'missing'/'not finite'/'not a rotation'/'bad last row'.

    Returns an object array of strings with the batch shape. Readers use it to count and drop poses.
    """
    T = np.asarray(T, dtype=np.float64)
    batch = T.shape[:-2]
    out = np.full(batch, "", dtype=object)
    finite = np.isfinite(T).all(axis=(-1, -2))
    out[~finite] = "not finite"
    Tf = np.where(finite[..., None, None], T, np.eye(4))
    R = Tf[..., :3, :3]
    ortho = np.abs(np.swapaxes(R, -1, -2) @ R - np.eye(3)).max(axis=(-1, -2)) < tol
    det_ok = np.abs(np.linalg.det(R) - 1.0) < tol
    out[finite & ~(ortho & det_ok)] = "not a rotation"
    last = np.abs(Tf[..., 3, :] - np.array([0, 0, 0, 1.0])).max(axis=-1) < tol
    out[finite & ortho & det_ok & ~last] = "bad last row"
    return out


def fit_similarity(X: np.ndarray, Y: np.ndarray, w: np.ndarray | None = None) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity (s, R, t) with s R x + t ~ y over the rows of X, Y (n, 3) (Umeyama 1991),
    each row weighted by `w` (n,) when given. A proper rotation (det +1); s > 0 unless X is one point."""
    X, Y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
    w = np.ones(len(X)) if w is None else np.asarray(w, np.float64)
    w = w / w.sum()
    mx, my = w @ X, w @ Y
    Xc, Yc = X - mx, Y - my
    U, S, Vt = np.linalg.svd((Yc * w[:, None]).T @ Xc)  # weighted cross-covariance (3, 3)
    D = np.eye(3)
    D[2, 2] = np.sign(np.linalg.det(U @ Vt)) or 1.0
    R = U @ D @ Vt
    var = float(w @ (Xc ** 2).sum(1))
    s = float(np.trace(np.diag(S) @ D) / var) if var > 0 else 1.0
    return s, R, my - s * R @ mx


def transform_points(T: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Apply a 4x4 transform to points (N, 3) -> (N, 3)."""
    X = np.asarray(X, dtype=np.float64)
    return X @ T[:3, :3].T + T[:3, 3]


@dataclass(frozen=True)
class Camera:
    """A camera model with image size; `params` in the order given in CAMERA_MODELS (COLMAP's order)."""

    model: str  # one of CAMERA_MODELS
    width: int  # image width in pixels
    height: int  # image height in pixels
    params: tuple[float, ...] = field(default=())  # model parameters, COLMAP order

    def __post_init__(self):
        if self.model not in CAMERA_MODELS:
            raise ValueError(f"unknown camera model {self.model!r}; known: {sorted(CAMERA_MODELS)}")
        if len(self.params) != CAMERA_MODELS[self.model]:
            raise ValueError(f"{self.model} takes {CAMERA_MODELS[self.model]} parameters, got {len(self.params)}")

    @classmethod
    def from_K(cls, K: np.ndarray, width: int, height: int) -> "Camera":
        K = np.asarray(K, dtype=np.float64)
        return cls("PINHOLE", int(width), int(height), (K[0, 0], K[1, 1], K[0, 2], K[1, 2]))

    @property
    def focal_center(self) -> tuple[float, float, float, float]:
        """(fx, fy, cx, cy) of the model's linear part."""
        p = self.params
        if self.model in ("PINHOLE", "OPENCV", "FULL_OPENCV", "OPENCV_FISHEYE"):
            return p[0], p[1], p[2], p[3]
        return p[0], p[0], p[1], p[2]  # single-focal models

    @property
    def K(self) -> np.ndarray:
        """3x3 intrinsic matrix of the linear part (the distortion, if any, is in `params`)."""
        fx, fy, cx, cy = self.focal_center
        return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])

    @property
    def is_pinhole(self) -> bool:
        return self.model in ("PINHOLE", "SIMPLE_PINHOLE")

    def scaled(self, sx: float, sy: float | None = None) -> "Camera":
        """The same camera for an image resized by (sx, sy): new size round(W*sx), round(H*sy)."""
        sy = sx if sy is None else sy
        p = list(self.params)
        if self.model in ("PINHOLE", "OPENCV", "FULL_OPENCV", "OPENCV_FISHEYE"):
            p[0] *= sx; p[1] *= sy; p[2] *= sx; p[3] *= sy  # noqa: E702
        else:
            if abs(sx - sy) > 1e-9:
                raise ValueError(f"{self.model} has one focal length; cannot scale anisotropically")
            p[0] *= sx; p[1] *= sx; p[2] *= sy  # noqa: E702
        return Camera(self.model, int(round(self.width * sx)), int(round(self.height * sy)), tuple(p))

    def rotated_cw90(self) -> "Camera":
        """The camera of the image turned 90 degrees clockwise (H x W; pixel (u, v) -> (H - v, u)).

        Its frame is this camera's turned about z: X_new = Rz X with Rz = [[0, -1, 0], [1, 0, 0], [0, 0, 1]], so
        `T_world_cam @ make_pose(Rz.T, 0)` is the new pose (projectaria_tools' "upright" CW90). Exact for PINHOLE,
        SIMPLE_PINHOLE and FISHEYE624: the radial part does not change under the turn, the tangential (p0, p1) and
        thin-prism ((s0, s2), (s1, s3)) coefficients are vectors in the image plane and turn with it.
        """
        p = list(self.params)
        W, H = self.width, self.height
        if self.model == "PINHOLE":
            fx, fy, cx, cy = p
            return Camera("PINHOLE", H, W, (fy, fx, H - cy, cx))
        if self.model == "SIMPLE_PINHOLE":
            f, cx, cy = p
            return Camera("SIMPLE_PINHOLE", H, W, (f, H - cy, cx))
        if self.model == "FISHEYE624":
            f, cx, cy = p[:3]
            p0, p1 = p[9:11]
            s0, s1, s2, s3 = p[11:15]
            return Camera("FISHEYE624", H, W, tuple([f, H - cy, cx] + p[3:9] + [-p1, p0, -s2, -s3, s0, s1]))
        raise ValueError(f"rotated_cw90 is not implemented for {self.model}")

    def project(self, X_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project camera-frame points (N, 3) -> pixels (N, 2) and `in_front` (N,) bool (z > 0).

        Pixels of points behind the camera are undefined (NaN-free but meaningless); check `in_front`.
        Whether a pixel is inside the image is left to the caller (`inside`).
        """
        X = np.asarray(X_cam, dtype=np.float64)
        z = X[:, 2]
        in_front = z > 1e-9
        zs = np.where(in_front, z, 1.0)
        u, v = self.distort(X[:, 0] / zs, X[:, 1] / zs)
        fx, fy, cx, cy = self.focal_center
        uv = np.stack([fx * u + cx, fy * v + cy], axis=1)
        return uv, in_front

    def distort(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalised pinhole coordinates (x/z, y/z) (N,) -> distorted normalised coordinates (u, v) (N,).

        Pixels are then (fx * u + cx, fy * v + cy). FISHEYE624 follows Project Aria's FisheyeRadTanThinPrism
        (projectaria_tools `FisheyeRadTanThinPrism.h`): radial on theta = atan(r), then tangential and thin prism.
        """
        m, p = self.model, self.params
        if m in ("PINHOLE", "SIMPLE_PINHOLE"):
            u, v = x, y
        elif m in ("SIMPLE_RADIAL", "RADIAL", "OPENCV", "FULL_OPENCV"):
            k1 = p[3] if m in ("SIMPLE_RADIAL", "RADIAL") else p[4]
            k2 = p[4] if m == "RADIAL" else (p[5] if m in ("OPENCV", "FULL_OPENCV") else 0.0)
            p1, p2 = (p[6], p[7]) if m in ("OPENCV", "FULL_OPENCV") else (0.0, 0.0)
            r2 = x * x + y * y
            if m == "FULL_OPENCV":
                k3, k4, k5, k6 = p[8:12]
                radial = (1 + k1 * r2 + k2 * r2**2 + k3 * r2**3) / (1 + k4 * r2 + k5 * r2**2 + k6 * r2**3)
            else:
                radial = 1 + k1 * r2 + k2 * r2**2
            u = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
            v = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
        elif m == "OPENCV_FISHEYE":
            k = p[4:8]
            r = np.sqrt(x * x + y * y)
            th = np.arctan(r)
            thd = th * (1 + k[0] * th**2 + k[1] * th**4 + k[2] * th**6 + k[3] * th**8)
            s = np.where(r > 1e-12, thd / np.maximum(r, 1e-12), 1.0)
            u, v = x * s, y * s
        elif m == "FISHEYE624":
            # Project Aria: Kannala-Brandt radial (k0..k5) on the angle from the axis, then
            # tangential (p0, p1) and thin-prism (s0..s3) terms, one focal length.
            k, (p0, p1), s = p[3:9], p[9:11], p[11:15]
            r = np.sqrt(x * x + y * y)
            th = np.arctan(r)  # angle from the optical axis (points in front)
            th2 = th * th
            poly = 1 + th2 * (k[0] + th2 * (k[1] + th2 * (k[2] + th2 * (k[3] + th2 * (k[4] + th2 * k[5])))))
            thd = th * poly
            sc = np.where(r > 1e-12, thd / np.maximum(r, 1e-12), 1.0)
            ur, vr = x * sc, y * sc
            r2 = ur * ur + vr * vr
            u = ur + (2 * ur * ur + r2) * p0 + 2 * ur * vr * p1 + s[0] * r2 + s[1] * r2 * r2
            v = vr + (2 * vr * vr + r2) * p1 + 2 * ur * vr * p0 + s[2] * r2 + s[3] * r2 * r2
        else:  # pragma: no cover - guarded by __post_init__
            raise ValueError(m)
        return u, v

    def unproject(self, uv: np.ndarray, depth: np.ndarray | None = None, iters: int = 20) -> np.ndarray:
        """Pixels (N, 2) -> camera-frame rays (N, 3) with z = 1, or points at z-depth `depth` (N,). Any model.

        Inverts `distort` with Newton's method (numerical 2x2 Jacobian); exact for pinhole models. Pixels
        outside the model's valid field of view (e.g. beyond 90 degrees for fisheyes) give meaningless rays.
        """
        uv = np.asarray(uv, dtype=np.float64)
        fx, fy, cx, cy = self.focal_center
        ud, vd = (uv[:, 0] - cx) / fx, (uv[:, 1] - cy) / fy  # (N,) distorted normalised
        x, y = ud.copy(), vd.copy()
        if not self.is_pinhole:
            if self.model in ("OPENCV_FISHEYE", "FISHEYE624"):  # start from the equidistant guess r = tan(theta_d)
                rd = np.hypot(ud, vd)
                sc = np.where(rd > 1e-12, np.tan(np.minimum(rd, 1.4)) / np.maximum(rd, 1e-12), 1.0)
                x, y = ud * sc, vd * sc
            h = 1e-7
            for _ in range(iters):
                u0, v0 = self.distort(x, y)
                ux, vx = self.distort(x + h, y)
                uy, vy = self.distort(x, y + h)
                a, b, c, d = (ux - u0) / h, (uy - u0) / h, (vx - v0) / h, (vy - v0) / h  # Jacobian [[a b] [c d]]
                ru, rv = ud - u0, vd - v0
                det = a * d - b * c
                det = np.where(np.abs(det) > 1e-12, det, 1e-12)
                dx, dy = (d * ru - b * rv) / det, (a * rv - c * ru) / det
                x, y = x + dx, y + dy
                if max(np.abs(dx).max(initial=0), np.abs(dy).max(initial=0)) < 1e-13:
                    break
        rays = np.stack([x, y, np.ones_like(x)], axis=1)  # (N, 3)
        return rays if depth is None else rays * np.asarray(depth, dtype=np.float64)[:, None]

    def inside(self, uv: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """(N, 2) pixels -> (N,) bool: inside [margin, W - margin) x [margin, H - margin)."""
        return (
            (uv[:, 0] >= margin) & (uv[:, 0] < self.width - margin)
            & (uv[:, 1] >= margin) & (uv[:, 1] < self.height - margin)
        )

    def unproject_pinhole(self, uv: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """Pixels (N, 2) with z-depth (N,) -> camera-frame points (N, 3). Pinhole models only."""
        if not self.is_pinhole:
            raise ValueError(f"unproject_pinhole needs a pinhole camera, got {self.model}")
        fx, fy, cx, cy = self.focal_center
        d = np.asarray(depth, dtype=np.float64)
        return np.stack([(uv[:, 0] - cx) / fx * d, (uv[:, 1] - cy) / fy * d, d], axis=1)


def project_points(T_world_cam: np.ndarray, camera: Camera, X_world: np.ndarray):
    """World points (N, 3) into a posed camera -> pixels (N, 2), depth z (N,), visible-in-image mask (N,)."""
    Xc = transform_points(invert_pose(T_world_cam), X_world)
    uv, front = camera.project(Xc)
    return uv, Xc[:, 2], front & camera.inside(uv)

"""Headless rendering of a `Scene` from a posed pinhole camera with Open3D's tensor ray casting.

Reads a `scenes.Scene`, a `geometry.Camera` (PINHOLE) and poses `T_world_cam` (4x4 camera-to-world,
OpenCV axes, metres). The ray of pixel (u, v) passes through its centre (u + 0.5, v + 0.5) (slife's
pixel convention), with direction R @ K^-1 [u + 0.5, v + 0.5, 1], so the ray parameter at a hit is the
z-depth. Returns RGB uint8 (H, W, 3) and z-depth float32 (H, W) (inf where nothing is hit).
Shading is view-independent, so a surface point has the same colour in every view: a mip-mapped,
bilinear texture lookup (UV from world coordinates) times lighting baked once per scene at the mesh
vertices (hemispheric ambient with ambient occlusion, Lambert point lights with falloff and soft
shadows) and interpolated with the hit's barycentric weights. `surface_colors` gives that colour for
any surface point (what `points.ply` stores). Entry point: `Renderer`. Writing files
(video, depth PNG) is left to `slife.synth.__init__` (`run`).
"""

from __future__ import annotations

import numpy as np

from slife.lives.geometry import Camera
from slife.synth.scenes import Scene


class Renderer:
    """Ray casts one scene into one camera; `render(T_world_cam) -> (rgb, depth)`."""

    def __init__(self, scene: Scene, camera: Camera, shadows: bool = True):
        import open3d as o3d

        if not camera.is_pinhole:
            raise ValueError(f"the synthetic renderer needs a pinhole camera, got {camera.model}")
        self.o3d = o3d
        self.scene = scene
        self.camera = camera
        self.shadows = shadows
        self.rc = o3d.t.geometry.RaycastingScene()
        self.rc.add_triangles(o3d.core.Tensor(np.ascontiguousarray(scene.vertices, np.float32)),
                              o3d.core.Tensor(np.ascontiguousarray(scene.triangles, np.uint32)))
        fx, fy, cx, cy = camera.focal_center
        W, H = camera.width, camera.height
        v, u = np.mgrid[0:H, 0:W].astype(np.float64)  # (H, W) pixel indices
        self.dirs_cam = np.stack([(u + 0.5 - cx) / fx, (v + 0.5 - cy) / fy, np.ones_like(u)], -1).reshape(-1, 3).astype(
            np.float32)  # (HW, 3) through pixel centres, camera z = 1
        self.fx = fx
        self._inv_dir_norm = (1.0 / np.linalg.norm(self.dirs_cam, axis=1)).astype(np.float32)  # (HW,)
        self.texel_density = np.linalg.norm(scene.tri_uv[:, :, :3], axis=2).mean(1).astype(np.float32)  # (F,) texels/m
        self.timing = {"cast": 0.0, "shade": 0.0}
        self._bake_lighting()

    # ---------------------------------------------------------------- ray casting
    def cast(self, T_world_cam: np.ndarray) -> dict:
        """Cast every pixel's ray -> {"depth" (H, W) float32 z (inf = miss), "tri" (HW,) int64 (-1 = miss),
        "points" (HW, 3) float64 world hits, "dirs" (HW, 3) float32 world ray directions (z-unit in the camera),
        "bary" (HW, 3) float32 barycentric weights of the hit in its triangle}."""
        T = np.asarray(T_world_cam, np.float64)
        rays = np.empty((len(self.dirs_cam), 6), np.float32)  # (HW, 6) origin, direction
        rays[:, :3] = T[:3, 3]
        R = T[:3, :3].astype(np.float32)
        x, y = self.dirs_cam[:, 0], self.dirs_cam[:, 1]  # camera z is 1
        for j in range(3):  # R @ (x, y, 1): explicit, as matmul with 3-wide rows is slow
            rays[:, 3 + j] = R[j, 0] * x + R[j, 1] * y + R[j, 2]
        ans = self.rc.cast_rays(self.o3d.core.Tensor.from_numpy(rays))
        t = ans["t_hit"].numpy()  # (HW,) float32 z-depth (the direction has camera z = 1)
        hit = np.isfinite(t)
        tri = ans["primitive_ids"].numpy().astype(np.int64)
        tri[~hit] = -1
        pts = rays[:, :3].astype(np.float64) + rays[:, 3:] * np.where(hit, t, 0.0)[:, None].astype(np.float64)
        H, W = self.camera.height, self.camera.width
        uv = ans["primitive_uvs"].numpy()  # (HW, 2) Embree barycentrics: p = (1-u-v) p0 + u p1 + v p2
        bary = np.stack([1.0 - uv[:, 0] - uv[:, 1], uv[:, 0], uv[:, 1]], 1).astype(np.float32)  # (HW, 3)
        return {"depth": t.reshape(H, W), "tri": tri, "points": pts, "dirs": rays[:, 3:], "bary": bary}

    # ---------------------------------------------------------------- shading
    def _pack_textures(self):
        """All mip levels of all materials in one flat (sum_l M * S_l^2, 3) float32 array + offsets."""
        sc = self.scene
        self._flat = np.concatenate([t.reshape(-1, 3) for t in sc.textures]).astype(np.float32)
        sizes = np.array([t.shape[1] for t in sc.textures], np.int64)  # (L,) S_l
        counts = np.array([t.shape[0] * t.shape[1] * t.shape[2] for t in sc.textures], np.int64)
        self._level_size32 = sizes.astype(np.int32)
        self._level_scale = (1.0 / (sizes[0] // sizes)).astype(np.float32)  # level-0 texels -> level texels
        self._level_offset = np.concatenate([[0], np.cumsum(counts)[:-1]])

    def sample_albedo(self, points: np.ndarray, tri: np.ndarray, footprint: np.ndarray) -> np.ndarray:
        """Bilinear, mip-mapped texture colour (N, 3) float32 of surface points on triangles `tri`.

        `footprint` (N,) is the surface length one pixel covers (metres); it picks the mip level."""
        sc = self.scene
        if not hasattr(self, "_flat"):
            self._pack_textures()
        p = np.asarray(points, np.float32)
        A = np.take(sc.tri_uv, tri, axis=0)  # (N, 2, 4) float32 (np.take: much faster than fancy indexing)
        u = A[:, 0, 0] * p[:, 0] + A[:, 0, 1] * p[:, 1] + A[:, 0, 2] * p[:, 2] + A[:, 0, 3]  # (N,) texels, level 0
        v = A[:, 1, 0] * p[:, 0] + A[:, 1, 1] * p[:, 1] + A[:, 1, 2] * p[:, 2] + A[:, 1, 3]
        texels = np.asarray(footprint, np.float32) * np.take(self.texel_density, tri)
        level = np.minimum(np.frexp(np.maximum(texels, np.float32(1.0)))[1] - 1, len(sc.textures) - 1)  # floor(log2)
        shift = level.astype(np.int32)
        S = np.take(self._level_size32, shift)  # (N,) texture side at each point's level (a power of two)
        mask = S - 1
        scale = np.take(self._level_scale, shift)
        qu = u * scale - np.float32(0.5)  # texel-centre coordinates at that level
        qv = v * scale - np.float32(0.5)
        fu, fv = np.floor(qu), np.floor(qv)
        wu, wv = (qu - fu)[:, None], (qv - fv)[:, None]  # (N, 1) bilinear weights
        x0 = fu.astype(np.int32) & mask  # wrap (S is a power of two)
        y0 = fv.astype(np.int32) & mask
        x1, y1 = (x0 + 1) & mask, (y0 + 1) & mask
        base = np.take(self._level_offset, shift) + np.take(sc.tri_material, tri).astype(np.int64) * (S * S)
        r0, r1 = base + y0 * S, base + y1 * S
        f = self._flat
        g = lambda i: np.take(f, i, axis=0)  # noqa: E731  (n, 3) texels
        top = g(r0 + x0) * (1 - wu) + g(r0 + x1) * wu
        bot = g(r1 + x0) * (1 - wu) + g(r1 + x1) * wu
        return top * (1 - wv) + bot * wv

    def _bake_lighting(self) -> None:
        """Light every vertex once: `vertex_ambient` (V,) and `vertex_light` (V, L) irradiance per light.

        Ambient: hemispheric (up-facing a bit brighter) times ambient occlusion (8 rays, 0.6 m). Each light:
        Lambert * falloff, times its visibility from 4 points on a 0.15 m sphere (soft shadows). With
        `shadows=False` no occlusion rays are cast. Deterministic (a fixed sampling pattern)."""
        sc = self.scene
        V, F = sc.vertices.astype(np.float32), sc.triangles
        P = V[F]  # (F, 3, 3)
        area = 0.5 * np.linalg.norm(np.cross(P[:, 1] - P[:, 0], P[:, 2] - P[:, 0]), axis=1)
        vn = np.zeros_like(V)
        for k in range(3):
            np.add.at(vn, F[:, k], sc.tri_normal * area[:, None])
        vn /= np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-12)  # (V, 3) area-weighted normals
        o = V + vn * np.float32(2e-3)
        rng = np.random.default_rng(12345)
        ao = np.ones(len(V), np.float32)
        if self.shadows:
            # cosine-weighted hemisphere directions about each normal, 0.6 m long
            t1 = np.cross(vn, np.where(np.abs(vn[:, 2:3]) < 0.9, [[0, 0, 1.0]], [[1.0, 0, 0]])).astype(np.float32)
            t1 /= np.linalg.norm(t1, axis=1, keepdims=True)
            t2 = np.cross(vn, t1)
            occl = np.zeros(len(V), np.float32)
            K = 8
            for k in range(K):
                r, phi = np.sqrt((k + 0.5) / K), 2.39996 * k + rng.uniform(0, 2 * np.pi)
                d = (t1 * (r * np.cos(phi)) + t2 * (r * np.sin(phi)) + vn * np.sqrt(1 - r * r)) * np.float32(0.6)
                occl += self._occluded(o, d)
            ao = 1.0 - 0.6 * occl / K
        self.vertex_ambient = (np.float32(sc.ambient) * (0.8 + 0.2 * vn[:, 2]) * ao).astype(np.float32)  # (V,)
        light = np.zeros((len(V), len(sc.lights)), np.float32)  # (V, L)
        jitter = rng.normal(size=(4, 3)).astype(np.float32)
        jitter *= 0.15 / np.linalg.norm(jitter, axis=1, keepdims=True)
        for j, L in enumerate(sc.lights.astype(np.float32)):
            to_l = L - V
            d2 = (to_l * to_l).sum(1)
            cos = (vn * to_l).sum(1) / np.sqrt(np.maximum(d2, 1e-12))
            light[:, j] = np.float32(sc.light_power[j]) * np.clip(cos, 0, None) * (9.0 / (d2 + 9.0))
            if self.shadows:
                lit = np.flatnonzero(light[:, j] > 1e-4)
                vis = np.zeros(len(lit), np.float32)
                for jt in jitter:
                    vis += 1.0 - self._occluded(o[lit], (L + jt) - o[lit])
                light[lit, j] *= 0.2 + 0.8 * vis / len(jitter)  # a shadow keeps a fifth of the light
        self.vertex_light = light

    def _occluded(self, origins: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        """(N,) float32 1.0 where a segment origin -> origin + dir hits geometry before its end."""
        rays = np.ascontiguousarray(np.concatenate([origins, dirs], 1), np.float32)
        occ = self.rc.test_occlusions(self.o3d.core.Tensor.from_numpy(rays), tnear=0.0, tfar=0.999).numpy()
        return occ.astype(np.float32)

    def irradiance(self, tri: np.ndarray, bary: np.ndarray, light_scale: np.ndarray | None = None) -> np.ndarray:
        """Baked lighting (N,) float32 at points given by triangle ids and barycentric weights (N, 3)."""
        sc = self.scene
        power = np.ones(len(sc.lights), np.float32) if light_scale is None else np.asarray(light_scale, np.float32)
        vert = self.vertex_ambient + self.vertex_light @ power  # (V,)
        corners = np.take(sc.triangles, tri, axis=0)  # (N, 3) vertex ids
        return (np.take(vert, corners) * bary).sum(1)

    def surface_colors(self, points: np.ndarray, tri: np.ndarray, bary: np.ndarray,
                       footprint: float | np.ndarray = 0.01, light_scale: np.ndarray | None = None) -> np.ndarray:
        """Shaded colour (N, 3) float32 in [0, 1] of surface points on triangles `tri` with barycentric
        weights `bary` (N, 3): the colour every view sees (only the texture's mip level depends on `footprint`)."""
        fp = np.broadcast_to(np.asarray(footprint, np.float32), (len(tri),))
        alb = self.sample_albedo(points, tri, fp)
        return np.clip(alb * (self.irradiance(tri, bary, light_scale) * np.float32(1.1))[:, None], 0.0, 1.0)

    def shade(self, hits: dict, light_scale: np.ndarray | None = None) -> np.ndarray:
        """RGB uint8 (H, W, 3) for the hits of `cast` (black where nothing is hit)."""
        tri = hits["tri"]
        ok = np.flatnonzero(tri >= 0)
        if len(ok) == len(tri):
            ok = slice(None)  # every ray hit (closed rooms): no gathers needed
        rgb = np.zeros((len(tri), 3), np.float32)  # (HW, 3)
        if len(tri[ok]):
            t = tri[ok]
            z = hits["depth"].reshape(-1)[ok]
            d = hits["dirs"][ok]
            n = np.take(self.scene.tri_normal, t, axis=0)
            cos = np.abs((n * d).sum(1)) * self._inv_dir_norm[ok]
            footprint = z * np.float32(1.0 / self.fx) / np.maximum(cos, np.float32(0.25))  # surface metres per pixel
            rgb[ok] = self.surface_colors(hits["points"][ok], t, hits["bary"][ok], footprint, light_scale)
        H, W = self.camera.height, self.camera.width
        return (rgb.reshape(H, W, 3) * 255.0 + 0.5).astype(np.uint8)

    def render(self, T_world_cam: np.ndarray, light_scale: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(rgb uint8 (H, W, 3), z-depth float32 (H, W), inf where nothing is hit)."""
        import time

        t0 = time.perf_counter()
        hits = self.cast(T_world_cam)
        t1 = time.perf_counter()
        rgb = self.shade(hits, light_scale)
        t2 = time.perf_counter()
        self.timing["cast"] += t1 - t0
        self.timing["shade"] += t2 - t1
        return rgb, hits["depth"]


def sample_surface(scene: Scene, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`n` points uniformly by area on the scene's triangles -> points (n, 3) float64, triangle ids (n,),
    barycentric weights (n, 3)."""
    V = scene.vertices.astype(np.float64)
    P = V[scene.triangles]  # (F, 3, 3)
    area = 0.5 * np.linalg.norm(np.cross(P[:, 1] - P[:, 0], P[:, 2] - P[:, 0]), axis=1)
    tri = rng.choice(len(area), size=n, p=area / area.sum())
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    w = np.stack([1 - s, s * (1 - r2), s * r2], 1)  # (n, 3) barycentric
    pts = np.einsum("nk,nkj->nj", w, P[tri])
    return pts, tri.astype(np.int64), w.astype(np.float32)


def depth_to_png_mm(depth: np.ndarray) -> np.ndarray:
    """z-depth metres (H, W) -> uint16 millimetres (H, W), 0 where invalid or beyond 65.535 m."""
    mm = np.where(np.isfinite(depth), np.round(depth.astype(np.float64) * 1000.0), 0)
    mm[(mm < 0) | (mm > 65535)] = 0
    return mm.astype(np.uint16)

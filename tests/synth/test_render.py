"""The written poses, K and depth agree with the ray caster: projection lands where the ray hit."""

import json

import numpy as np
import pytest
from PIL import Image

from slife.lives.geometry import Camera, project_points
from slife.synth.render import Renderer, depth_to_png_mm, sample_surface
from slife.synth.scenes import build_scene


def _load(life):
    P = np.load(life / "poses.npz")
    cfg = json.loads((life / "life.json").read_text())["config"]
    W, H = (int(x) for x in P["image_size"])
    cam = Camera.from_K(P["K"], W, H)
    scene = build_scene(cfg["scene"], cfg["seed"], cfg["texture_size"])
    return P, cam, scene


def _depth(life, i):
    return np.asarray(Image.open(life / "depth" / f"{i:06d}.png"), dtype=np.float64) / 1000.0


def test_hit_projects_to_its_pixel_centre(tiny_life):
    P, cam, scene = _load(tiny_life)
    r = Renderer(scene, cam, shadows=False)
    for i in (0, 7, 20):
        hits = r.cast(P["T_world_cam"][i])
        ok = hits["tri"] >= 0
        uv, z, vis = project_points(P["T_world_cam"][i], cam, hits["points"][ok])
        v, u = np.divmod(np.flatnonzero(ok), cam.width)
        assert vis.all()
        # the pixel whose ray found the point is the pixel the point projects to, centre at +0.5
        assert np.abs(uv - np.stack([u + 0.5, v + 0.5], 1)).max() < 1e-3
        # the written depth PNG is that point's camera z, to the millimetre
        d = _depth(tiny_life, i)
        assert np.abs(d[v, u] - z).max() <= 0.0005 + 1e-6


def test_depth_png_matches_independent_ray_cast(tiny_life):
    """Cast our own rays from the written pose and K through pixel centres; compare with depth/."""
    import open3d as o3d

    P, cam, scene = _load(tiny_life)
    rc = o3d.t.geometry.RaycastingScene()
    rc.add_triangles(o3d.core.Tensor(scene.vertices), o3d.core.Tensor(scene.triangles.astype(np.uint32)))
    Kinv = np.linalg.inv(P["K"])
    v, u = np.mgrid[0:cam.height, 0:cam.width]
    pix = np.stack([u.ravel() + 0.5, v.ravel() + 0.5, np.ones(u.size)], 1)
    for i in (3, 16, 31):
        T = P["T_world_cam"][i]
        d = (pix @ Kinv.T) @ T[:3, :3].T  # z-unit rays in the camera
        rays = np.concatenate([np.broadcast_to(T[:3, 3], d.shape), d], 1).astype(np.float32)
        t = rc.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy().reshape(cam.height, cam.width)
        png = _depth(tiny_life, i)
        assert (png > 0).mean() > 0.99  # closed rooms: every ray hits something
        assert np.abs(png - t)[png > 0].max() <= 0.0005 + 1e-5


def test_scene_points_land_on_visible_surfaces(tiny_life):
    """points.ply projected with the written pose and K: where the point is visible, a ray through its
    (sub-pixel) projection hits the point itself, and the depth map at that pixel is near its z."""
    import open3d as o3d

    P, cam, scene = _load(tiny_life)
    pcd = o3d.io.read_point_cloud(str(tiny_life / "points.ply"))
    X = np.asarray(pcd.points)
    assert len(X) == 4000 and len(pcd.colors) == 4000 and len(pcd.normals) == 4000
    rc = o3d.t.geometry.RaycastingScene()
    rc.add_triangles(o3d.core.Tensor(scene.vertices), o3d.core.Tensor(scene.triangles.astype(np.uint32)))
    for i in (5, 25):
        T = P["T_world_cam"][i]
        uv, z, vis = project_points(T, cam, X)
        Xv, uvv, zv = X[vis], uv[vis], z[vis]
        d = np.concatenate([uvv, np.ones((len(uvv), 1))], 1) @ np.linalg.inv(P["K"]).T @ T[:3, :3].T
        rays = np.concatenate([np.broadcast_to(T[:3, 3], d.shape), d], 1).astype(np.float32)
        t = rc.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy()
        seen = np.abs(t - zv) < 2e-3  # the first surface along the ray is the point: visible
        assert seen.sum() > 100
        hit = T[:3, 3] + d[seen] * t[seen, None]
        assert np.linalg.norm(hit - Xv[seen], axis=1).max() < 2e-3
        png = _depth(tiny_life, i)[uvv[seen, 1].astype(int), uvv[seen, 0].astype(int)]
        rel = np.abs(png - zv[seen]) / zv[seen]
        assert np.median(rel) < 0.01 and (rel < 0.05).mean() > 0.9


def test_shading_is_view_independent():
    """A surface point has the same colour whichever camera sees it (so completion is geometric)."""
    scene = build_scene("office", 0, 64)
    cam = Camera("PINHOLE", 32, 24, (16.0, 16.0, 16.0, 12.0))
    r = Renderer(scene, cam)
    pts, tri, bary = sample_surface(scene, 500, np.random.default_rng(0))
    assert np.allclose(np.einsum("nk,nkj->nj", bary, scene.vertices[scene.triangles[tri]]), pts, atol=1e-5)
    a = r.surface_colors(pts, tri, bary, footprint=0.01)
    assert np.array_equal(a, r.surface_colors(pts, tri, bary, footprint=0.01))
    assert a.std(0).min() > 0.05  # not flat
    # the renderer's colour of a pixel is the colour of its surface point, whichever camera looks at it
    hits = r.cast(np.array([[0, 0, 1, 2.0], [-1, 0, 0, 2.0], [0, -1, 0, 1.5], [0, 0, 0, 1]]))
    rgb = r.shade(hits).reshape(-1, 3).astype(float)
    fp = hits["depth"].reshape(-1) / 16.0
    ok = hits["tri"] >= 0
    again = r.surface_colors(hits["points"][ok], hits["tri"][ok], hits["bary"][ok], fp[ok] / np.maximum(
        np.abs((scene.tri_normal[hits["tri"][ok]] * hits["dirs"][ok]).sum(1)) / np.linalg.norm(hits["dirs"][ok], axis=1),
        0.25))
    assert np.abs(rgb[ok] - again * 255).max() <= 1.0


def test_lighting_shows_geometry():
    """Baked lighting varies over surfaces (falloff, shadows, occlusion), so geometry is visible."""
    scene = build_scene("living_room", 0, 16)
    r = Renderer(scene, Camera("PINHOLE", 32, 24, (16.0, 16.0, 16.0, 12.0)))
    flat = Renderer(scene, Camera("PINHOLE", 32, 24, (16.0, 16.0, 16.0, 12.0)), shadows=False)
    I = r.vertex_ambient + r.vertex_light.sum(1)
    I0 = flat.vertex_ambient + flat.vertex_light.sum(1)
    assert I.std() > 0.1 and I.min() < 0.5 * np.median(I)
    assert (I <= I0 + 1e-6).all() and (I < I0 - 0.05).mean() > 0.1  # shadows and occlusion darken


def test_depth_png_encoding():
    d = np.array([[0.0004, 1.2344, np.inf], [70.0, 3.0, -1.0]], np.float32)
    assert depth_to_png_mm(d).tolist() == [[0, 1234, 0], [0, 3000, 0]]


def test_textures_vary_inside_each_frame(tiny_life):
    import av

    with av.open(str(tiny_life / "video.mp4")) as c:
        f = next(c.decode(video=0)).to_ndarray(format="rgb24").astype(np.float64)
    # 8x8 blocks: most have real texture, not a flat colour
    blocks = f[:48, :64].reshape(6, 8, 8, 8, 3).std(axis=(1, 3)).mean(-1)
    assert (blocks > 4).mean() > 0.7


def test_renderer_rejects_fisheye():
    scene = build_scene("bedroom", 0, 16)
    with pytest.raises(ValueError):
        Renderer(scene, Camera("OPENCV_FISHEYE", 32, 32, (10, 10, 16, 16, 0, 0, 0, 0)))


def test_point_colours_match_the_video(tiny_life):
    """points.ply colours are what the video shows where those points are visible (H.264 and mip blur aside)."""
    import av
    import open3d as o3d

    P, cam, _ = _load(tiny_life)
    pcd = o3d.io.read_point_cloud(str(tiny_life / "points.ply"))
    X, C = np.asarray(pcd.points), np.asarray(pcd.colors) * 255
    with av.open(str(tiny_life / "video.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24").astype(float) for f in c.decode(video=0)]
    a, b = [], []
    for i in (2, 12, 22):
        uv, z, vis = project_points(P["T_world_cam"][i], cam, X)
        px = uv[vis].astype(int)
        seen = np.abs(_depth(tiny_life, i)[px[:, 1], px[:, 0]] - z[vis]) < 0.01 * z[vis]
        a.append(frames[i][px[seen, 1], px[seen, 0]])
        b.append(C[vis][seen])
    a, b = np.concatenate(a), np.concatenate(b)
    assert len(a) > 300
    assert np.median(np.abs(a - b)) < 25 and np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.6

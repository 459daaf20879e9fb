"""Scenes: every registered scene builds, is closed and textured, has walkable space and places."""

import numpy as np
import pytest

from slife.synth.scenes import HELDOUT_SCENES, LIFE_SCENES, SCENES, build_scene


@pytest.mark.parametrize("name", list(SCENES))
def test_scene_builds(name):
    s = build_scene(name, 0, 16)
    F = len(s.triangles)
    assert F > 500 and s.tri_uv.shape == (F, 2, 4) and s.tri_material.max() < len(s.material_kinds)
    assert np.allclose(np.linalg.norm(s.tri_normal, axis=1), 1.0, atol=1e-4)
    assert len(set(s.material_kinds)) >= 5  # many kinds of texture, not flat colours
    assert s.info["free_area_m2"] > 4.0 and len(s.places) >= 5
    assert s.is_free(s.places[:, :2]).all()
    x0, y0, x1, y1, H = s.room
    assert (s.vertices[:, 2] >= -1e-4).all() and (s.vertices[:, 2] <= H + 1e-4).all()


def test_scenes_differ_by_name_and_seed():
    a, b, c = build_scene("office", 0, 16), build_scene("office", 1, 16), build_scene("office", 0, 16)
    assert not np.array_equal(a.vertices[:100], b.vertices[:100]) or len(a.vertices) != len(b.vertices)
    assert np.array_equal(a.vertices, c.vertices) and np.array_equal(a.textures[0], c.textures[0])
    assert set(HELDOUT_SCENES).isdisjoint(LIFE_SCENES) and set(LIFE_SCENES) | set(HELDOUT_SCENES) == set(SCENES)


def test_room_normals_face_inwards():
    s = build_scene("bedroom", 0, 16)
    P = s.vertices[s.triangles].mean(1)  # (F, 3) centroids
    floor = np.abs(P[:, 2]) < 1e-4
    assert (s.tri_normal[floor, 2] > 0.99).all()  # the floor faces up, into the room
    ceil = np.abs(P[:, 2] - s.room[4]) < 1e-4
    assert (s.tri_normal[ceil, 2] < -0.99).all()


def test_unknown_scene():
    with pytest.raises(ValueError):
        build_scene("moon", 0, 16)


def test_photos_texture_walls_and_prints_and_leave_default_scenes_alone():
    plain, again = build_scene("kitchen", 0, 16), build_scene("kitchen", 0, 16, photos=False)
    photo = build_scene("kitchen", 0, 16, photos=True)
    assert plain.material_kinds == again.material_kinds and not {"photo", "photo_surface"} & set(plain.material_kinds)
    assert {"photo", "photo_surface"} & set(photo.material_kinds)
    assert np.array_equal(plain.vertices, photo.vertices)  # same rooms and furniture, other surfaces


def test_texture_scale_stretches_tiles_and_keeps_the_layout():
    """texture_scale multiplies how far a tiled texture spans (texels per metre divide by it); a texture fitted
    once to a face (a poster) keeps its size; geometry, lights and places stay; 1 is the scene as it was before
    the option."""
    a, b = build_scene("kitchen", 0, 64), build_scene("kitchen", 0, 64, texture_scale=4.0)
    assert np.array_equal(a.vertices, b.vertices) and np.array_equal(a.places, b.places)
    density = lambda s: np.linalg.norm(s.tri_uv[:, :, :3], axis=2).mean(1)  # noqa: E731 (F,) texels per metre
    ratio = density(a) / density(b)
    tiled = np.abs(ratio - 4.0) < 1e-3 * 4.0
    assert np.all(tiled | (np.abs(ratio - 1.0) < 1e-3)) and tiled.mean() > 0.9, np.unique(ratio.round(3))
    assert np.array_equal(build_scene("kitchen", 0, 64, texture_scale=1.0).tri_uv, a.tri_uv)

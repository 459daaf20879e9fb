"""Indoor scenes for synthetic lives: rooms, furniture-like boxes and objects as one textured triangle mesh.

Reads nothing. `build_scene(name, seed, texture_size, photos, texture_scale) -> Scene` builds one of `SCENES` (a registry:
name -> recipe) from a seed: a room (floor, walls, ceiling, inward normals), furniture made of boxes
along the walls and in the middle, small objects (boxes, spheres, cylinders) on top, posters on walls,
ceiling lights, a 2D free-space grid for walking and "places" worth looking at. World frame: metres,
z up, floor at z = 0. Each triangle carries a material (a baked texture from `textures.py`) and an
affine UV map from world coordinates (texels = A @ p + b) so texture is anchored to the surface; a texture
tile spans 1.5-3 m of a wall or floor (less on furniture and objects) times `texture_scale`, and repeats beyond.
`LIFE_SCENES` are the ones lives use by default; `HELDOUT_SCENES` are kept apart (depth-probe test
scenes). Ray casting and shading are left to `render.py`, walking to `trajectory.py`.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

from slife.synth.textures import PHOTO_KINDS, TEXTURE_KINDS, make_texture, mip_levels

MIP_LEVELS = 4  # texture pyramid depth used by the renderer
GRID_RES = 0.1  # metres per free-space cell
BODY_RADIUS = 0.4  # a walker keeps this far from furniture and walls (metres)
LIGHT_CELL = 0.3  # big faces are split into quads about this wide (metres): lighting is baked at vertices


@dataclass
class Scene:
    """A triangle mesh with per-triangle materials, UV maps and normals, plus lights and walkable space."""

    name: str
    vertices: np.ndarray  # (V, 3) float32 world metres
    triangles: np.ndarray  # (F, 3) int32 vertex ids
    tri_normal: np.ndarray  # (F, 3) float32 unit normals facing free space
    tri_material: np.ndarray  # (F,) int32 into textures
    tri_uv: np.ndarray  # (F, 2, 4) float32: texel (u, v) = tri_uv[:, :, :3] @ p + tri_uv[:, :, 3]
    textures: list  # per mip level l: (M, S/2^l, S/2^l, 3) float32 in [0, 1]
    material_kinds: list  # (M,) texture kind names
    lights: np.ndarray  # (L, 3) world positions of point lights
    light_power: np.ndarray  # (L,) relative intensities
    ambient: float  # ambient light level
    room: tuple  # (x0, y0, x1, y1, height) metres
    free: np.ndarray  # (Gy, Gx) bool walkable cells (GRID_RES metres, origin at room x0, y0)
    places: np.ndarray  # (P, 3) standing spots (x, y, 0) worth visiting, [0] is the entrance
    targets: np.ndarray  # (P, 3) what one looks at from each place
    info: dict = field(default_factory=dict)  # counts for life.json

    @property
    def texture_size(self) -> int:
        return int(self.textures[0].shape[1])

    def cell_of(self, xy: np.ndarray) -> np.ndarray:
        """World (..., 2) -> integer grid cells (..., 2) as (row = y, col = x)."""
        x0, y0 = self.room[0], self.room[1]
        return np.stack([(xy[..., 1] - y0) / GRID_RES, (xy[..., 0] - x0) / GRID_RES], -1).astype(np.int64)

    def cell_centre(self, rc: np.ndarray) -> np.ndarray:
        """Grid cells (..., 2) (row, col) -> world xy (..., 2) of their centres."""
        rc = np.asarray(rc, dtype=np.float64)
        return np.stack([self.room[0] + (rc[..., 1] + 0.5) * GRID_RES, self.room[1] + (rc[..., 0] + 0.5) * GRID_RES], -1)

    def is_free(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) world xy -> (...,) bool walkable."""
        rc = self.cell_of(np.asarray(xy, dtype=np.float64))
        ok = (rc[..., 0] >= 0) & (rc[..., 0] < self.free.shape[0]) & (rc[..., 1] >= 0) & (rc[..., 1] < self.free.shape[1])
        out = np.zeros(rc.shape[:-1], bool)
        out[ok] = self.free[rc[ok][:, 0], rc[ok][:, 1]]
        return out


class _Builder:
    """Accumulates textured triangles; boxes and meshes are added with a material each."""

    def __init__(self, rng: np.random.Generator, texture_size: int, texture_scale: float = 1.0):
        self.rng = rng
        self.S = texture_size
        self.scale = texture_scale  # multiplies every material's tile period
        self.V: list[np.ndarray] = []
        self.F: list[np.ndarray] = []
        self.N: list[np.ndarray] = []
        self.M: list[np.ndarray] = []
        self.UV: list[np.ndarray] = []
        self.nv = 0
        self.kinds: list[str] = []
        self.periods: list[float] = []
        self.obstacles: list[tuple] = []  # (cx, cy, hx, hy, yaw) footprints that block walking
        self.boxes: list[dict] = []  # furniture pieces (for places)

    def material(self, kind: str, period: tuple = (1.0, 3.0)) -> int:
        """A new material of `kind`; `period` is the range of metres one texture tile spans."""
        self.kinds.append(kind)
        self.periods.append(float(self.rng.uniform(period[0] * self.scale, period[1] * self.scale)))
        return len(self.kinds) - 1

    def _add(self, verts, tris, normals, mat, uv):
        self.V.append(np.asarray(verts, np.float64))
        self.F.append(np.asarray(tris, np.int64) + self.nv)
        self.N.append(np.asarray(normals, np.float64))
        self.M.append(np.full(len(tris), mat, np.int32))
        self.UV.append(np.asarray(uv, np.float64))
        self.nv += len(verts)

    def _uv_map(self, origin, u_axis, v_axis, mat, fit: tuple | None = None) -> np.ndarray:
        """(2, 4) affine map world point -> texels: tiled at the material's period, or fitted once to a face."""
        if fit is not None:  # stretch the whole texture over a face of size fit = (w, h) metres
            su, sv = self.S / max(fit[0], 1e-3), self.S / max(fit[1], 1e-3)
            off = np.zeros(2)
        else:
            su = sv = self.S / self.periods[mat]
            off = self.rng.uniform(0, self.S, 2)  # each face starts elsewhere in the tile
        A = np.stack([np.asarray(u_axis) * su, np.asarray(v_axis) * sv])  # (2, 3)
        b = off - A @ np.asarray(origin, np.float64)
        return np.concatenate([A, b[:, None]], axis=1)

    def box(self, centre, size, yaw=0.0, mats=None, inward=False, obstacle=True, fit_faces=(), kind=None):
        """An oriented box (yaw about z); `mats` one material or 6 (+x, -x, +y, -y, +z, -z); returns its dict."""
        c, s = np.cos(yaw), np.sin(yaw)
        ax = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])  # local x, y, z axes in world
        h = np.asarray(size, np.float64) / 2
        centre = np.asarray(centre, np.float64)
        mats = [mats] * 6 if np.isscalar(mats) else list(mats)
        down = np.array([0.0, 0.0, -1.0])
        on_floor = not inward and centre[2] - h[2] < 1e-3
        for f, (k, sign) in enumerate([(0, 1), (0, -1), (1, 1), (1, -1), (2, 1), (2, -1)]):
            if on_floor and f == 5:
                continue  # a bottom face lying on the floor is never seen: leave it out
            n = ax[k] * sign
            a, b_ = [j for j in range(3) if j != k]
            fc = centre + n * h[k]
            # a grid of quads about LIGHT_CELL wide, so lighting baked at vertices varies across big faces
            nu, nv = (max(1, int(np.ceil(2 * h[ax_] / LIGHT_CELL))) for ax_ in (a, b_))
            gi, gj = np.meshgrid(np.linspace(-1, 1, nu + 1), np.linspace(-1, 1, nv + 1), indexing="ij")
            corners = fc + (gi.reshape(-1, 1) * h[a]) * ax[a] + (gj.reshape(-1, 1) * h[b_]) * ax[b_]  # (V, 3)
            ii, jj = np.meshgrid(np.arange(nu), np.arange(nv), indexing="ij")
            v00 = (ii * (nv + 1) + jj).reshape(-1)
            v10, v01 = v00 + nv + 1, v00 + 1
            quads = np.concatenate([np.stack([v00, v10, v10 + 1], 1), np.stack([v00, v10 + 1, v01], 1)])  # (2 nu nv, 3)
            normal = -n if inward else n
            if k == 2:  # floor/ceiling/top: u, v along the box's local axes
                u_ax, v_ax, fit = ax[0], ax[1], (2 * h[0], 2 * h[1])
            else:  # vertical face: u horizontal (seen from outside: left to right), v downwards
                u_ax, v_ax, fit = np.cross(normal, down), down, (2 * h[a], 2 * h[2])
            origin = fc - u_ax * (fit[0] / 2) - v_ax * (fit[1] / 2)
            uv = self._uv_map(origin, u_ax, v_ax, mats[f], fit if f in fit_faces else None)
            self._add(corners, quads, np.repeat(normal[None], len(quads), 0), mats[f], np.repeat(uv[None], len(quads), 0))
        d = {"centre": centre, "size": 2 * h, "yaw": yaw, "kind": kind}
        if obstacle:
            self.obstacles.append((centre[0], centre[1], h[0], h[1], yaw))
        if kind is not None:
            self.boxes.append(d)
        return d

    def mesh(self, verts, tris, mat, obstacle=None):
        """A closed mesh (e.g. sphere, cylinder) with outward normals and triplanar UV per triangle."""
        verts = np.asarray(verts, np.float64)
        tris = np.asarray(tris, np.int64)
        p = verts[tris]  # (T, 3, 3)
        n = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        centroid = verts.mean(0)
        flip = np.einsum("ij,ij->i", n, p.mean(1) - centroid) < 0
        n[flip] *= -1
        uvs = []
        base = self._uv_map(np.zeros(3), [1, 0, 0], [0, 1, 0], mat)
        su = np.linalg.norm(base[0, :3])
        for ni in n:
            k = int(np.argmax(np.abs(ni)))
            if k == 2:
                u_ax, v_ax = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
            else:
                u_ax = np.cross(np.eye(3)[k] * np.sign(ni[k]), [0, 0, -1.0])
                v_ax = np.array([0, 0, -1.0])
            A = np.stack([u_ax * su, v_ax * su])
            uvs.append(np.concatenate([A, base[:, 3:]], axis=1))
        self._add(verts, tris, n, mat, uvs)
        if obstacle is not None:
            self.obstacles.append(obstacle)

    def sphere(self, centre, r, mat):
        import open3d as o3d

        m = o3d.geometry.TriangleMesh.create_sphere(radius=float(r), resolution=8)
        self.mesh(np.asarray(m.vertices) + centre, np.asarray(m.triangles), mat)

    def cylinder(self, centre, r, height, mat, obstacle=False):
        import open3d as o3d

        m = o3d.geometry.TriangleMesh.create_cylinder(radius=float(r), height=float(height), resolution=12, split=1)
        ob = (centre[0], centre[1], r, r, 0.0) if obstacle else None
        self.mesh(np.asarray(m.vertices) + np.asarray(centre), np.asarray(m.triangles), mat, obstacle=ob)


# ---------------------------------------------------------------- furniture

def _pick(rng, mats: dict, role: str) -> int:
    options = mats[role]
    return int(options[rng.integers(len(options))])


def _table(b: _Builder, mats, x, y, yaw, w, d, h, kind="table"):
    rng = b.rng
    top = _pick(rng, mats, "wood")
    leg = _pick(rng, mats, "dark")
    t = b.box((x, y, h - 0.02), (d, w, 0.04), yaw, top, kind=kind)
    c, s = np.cos(yaw), np.sin(yaw)
    for i in (-1, 1):
        for j in (-1, 1):
            lx, ly = i * (d / 2 - 0.05), j * (w / 2 - 0.05)
            b.box((x + c * lx - s * ly, y + s * lx + c * ly, (h - 0.04) / 2), (0.05, 0.05, h - 0.04), yaw, leg,
                  obstacle=False)
    _objects_on(b, mats, t, n=int(rng.integers(2, 6)))
    return t


def _cabinet(b: _Builder, mats, x, y, yaw, w, d, h, kind="cabinet"):
    rng = b.rng
    body = _pick(rng, mats, "wood")
    front = _pick(rng, mats, "any")
    mm = [front, body, body, body, _pick(rng, mats, "wood"), body]
    t = b.box((x, y, h / 2), (d, w, h), yaw, mm, kind=kind)
    if h < 1.3:
        _objects_on(b, mats, t, n=int(rng.integers(1, 5)))
    return t


def _shelf(b: _Builder, mats, x, y, yaw, w, d, h):
    """A bookshelf: back panel, sides, shelves with rows of book-like boxes (text textures)."""
    rng = b.rng
    wood = _pick(rng, mats, "wood")
    c, s = np.cos(yaw), np.sin(yaw)
    fwd = np.array([c, s])  # local +x is the front (faces the room)
    side = np.array([-s, c])
    ctr = np.array([x, y])
    b.box((*(ctr - fwd * (d / 2 - 0.01)), h / 2), (0.02, w, h), yaw, wood, obstacle=False)
    for j in (-1, 1):
        b.box((*(ctr + side * j * (w / 2 - 0.01)), h / 2), (d, 0.02, h), yaw, wood, obstacle=False)
    n_sh = int(rng.integers(3, 6))
    for k in range(n_sh + 1):
        z = 0.05 + k * (h - 0.1) / n_sh
        b.box((x, y, z), (d, w - 0.04, 0.02), yaw, wood, obstacle=False)
        if k == n_sh:
            break
        pos = -w / 2 + 0.04
        gap = (h - 0.1) / n_sh
        while pos < w / 2 - 0.1:
            bw = rng.uniform(0.03, 0.08)
            bh = rng.uniform(0.5, 0.9) * gap
            if rng.random() < 0.15:
                pos += bw + rng.uniform(0.05, 0.15)
                continue
            p = ctr + side * (pos + bw / 2) + fwd * rng.uniform(-0.03, 0.02)
            b.box((*p, z + 0.01 + bh / 2), (d * rng.uniform(0.6, 0.85), bw, bh), yaw, _pick(rng, mats, "print"),
                  obstacle=False, fit_faces=(0,))
            pos += bw + 0.002
    b.obstacles.append((x, y, d / 2, w / 2, yaw))
    b.boxes.append({"centre": np.array([x, y, h / 2]), "size": np.array([d, w, h]), "yaw": yaw, "kind": "shelf"})


def _sofa(b: _Builder, mats, x, y, yaw, w, d, h):
    rng = b.rng
    fab = _pick(rng, mats, "fabric")
    c, s = np.cos(yaw), np.sin(yaw)
    fwd, side, ctr = np.array([c, s]), np.array([-s, c]), np.array([x, y])
    b.box((x, y, 0.22), (d, w, 0.44), yaw, fab, kind="sofa")
    b.box((*(ctr - fwd * (d / 2 - 0.1)), 0.6), (0.2, w, 0.5), yaw, fab, obstacle=False)
    for j in (-1, 1):
        b.box((*(ctr + side * j * (w / 2 - 0.1)), 0.55), (d, 0.2, 0.25), yaw, fab, obstacle=False)
    for j in range(int(rng.integers(1, 4))):  # cushions
        p = ctr - fwd * (d / 2 - 0.25) + side * rng.uniform(-w / 3, w / 3)
        b.box((*p, 0.6), (0.12, 0.4, 0.35), yaw + rng.uniform(-0.3, 0.3), _pick(rng, mats, "any"), obstacle=False)


def _bed(b: _Builder, mats, x, y, yaw, w, d, h):
    rng = b.rng
    c, s = np.cos(yaw), np.sin(yaw)
    fwd, ctr = np.array([c, s]), np.array([x, y])
    b.box((x, y, 0.2), (d, w, 0.4), yaw, _pick(rng, mats, "wood"), kind="bed")
    b.box((x + 0.0, y, 0.5), (d - 0.05, w - 0.05, 0.2), yaw, _pick(rng, mats, "fabric"), obstacle=False)
    b.box((*(ctr - fwd * (d / 2 - 0.02)), 0.6), (0.05, w, 1.2), yaw, _pick(rng, mats, "wood"), obstacle=False)
    b.box((*(ctr - fwd * (d / 2 - 0.3)), 0.66), (0.3, w * 0.8, 0.12), yaw, _pick(rng, mats, "any"), obstacle=False)


def _desk(b: _Builder, mats, x, y, yaw, w, d, h):
    rng = b.rng
    t = _table(b, mats, x, y, yaw, w, d, h, kind="desk")
    c, s = np.cos(yaw), np.sin(yaw)
    fwd, ctr = np.array([c, s]), np.array([x, y])
    p = ctr - fwd * (d / 2 - 0.15)
    b.box((*p, h + 0.3), (0.03, 0.55, 0.33), yaw, [_pick(rng, mats, "print")] + [_pick(rng, mats, "dark")] * 5,
          obstacle=False, fit_faces=(0,))  # monitor
    b.box((*p, h + 0.07), (0.04, 0.04, 0.14), yaw, _pick(rng, mats, "dark"), obstacle=False)
    return t


def _plant(b: _Builder, mats, x, y, yaw, w, d, h):
    rng = b.rng
    b.cylinder((x, y, 0.2), 0.18, 0.4, _pick(rng, mats, "any"), obstacle=True)
    for _ in range(3):
        b.sphere(np.array([x, y, 0.55]) + rng.uniform(-0.12, 0.12, 3), rng.uniform(0.15, 0.25),
                 _pick(rng, mats, "leaf"))
    b.boxes.append({"centre": np.array([x, y, 0.5]), "size": np.array([0.4, 0.4, 1.0]), "yaw": 0.0, "kind": "plant"})


def _pedestal(b: _Builder, mats, x, y, yaw, w, d, h):
    rng = b.rng
    t = b.box((x, y, h / 2), (d, w, h), yaw, _pick(rng, mats, "any"), kind="pedestal")
    top = h
    if rng.random() < 0.5:
        b.sphere(np.array([x, y, top + 0.2]), 0.2, _pick(rng, mats, "any"))
    else:
        b.cylinder((x, y, top + 0.25), 0.12, 0.5, _pick(rng, mats, "any"))
    return t


def _objects_on(b: _Builder, mats, top: dict, n: int):
    """Small boxes, spheres and cylinders placed on a horizontal box top."""
    rng = b.rng
    c, s = np.cos(top["yaw"]), np.sin(top["yaw"])
    hx, hy = top["size"][0] / 2, top["size"][1] / 2
    z0 = top["centre"][2] + top["size"][2] / 2
    for _ in range(n):
        lx, ly = rng.uniform(-0.8, 0.8) * hx, rng.uniform(-0.8, 0.8) * hy
        p = np.array([top["centre"][0] + c * lx - s * ly, top["centre"][1] + s * lx + c * ly])
        r = rng.uniform(0.04, min(0.14, 0.5 * min(hx, hy)))
        kind = rng.integers(3)
        if kind == 0:
            hz = rng.uniform(0.05, 0.3)
            b.box((*p, z0 + hz / 2), (2 * r, 2 * r * rng.uniform(0.6, 1.6), hz), rng.uniform(0, np.pi),
                  [_pick(rng, mats, "print")] * 4 + [_pick(rng, mats, "any")] * 2, obstacle=False, fit_faces=(0, 1, 2, 3))
        elif kind == 1:
            b.sphere(np.array([*p, z0 + r]), r, _pick(rng, mats, "any"))
        else:
            hz = rng.uniform(0.08, 0.35)
            b.cylinder((*p, z0 + hz / 2), r * 0.7, hz, _pick(rng, mats, "any"))


FURNITURE = {  # name -> (builder, width range, depth range, height range)
    "table": (_table, (1.0, 1.8), (0.7, 1.0), (0.72, 0.78)),
    "counter": (_cabinet, (1.2, 2.4), (0.55, 0.65), (0.88, 0.94)),
    "cabinet": (_cabinet, (0.6, 1.2), (0.4, 0.6), (0.8, 1.2)),
    "wardrobe": (_cabinet, (0.8, 1.6), (0.5, 0.65), (1.8, 2.1)),
    "fridge": (_cabinet, (0.6, 0.8), (0.6, 0.7), (1.7, 1.9)),
    "shelf": (_shelf, (0.8, 1.6), (0.3, 0.4), (1.4, 2.0)),
    "sofa": (_sofa, (1.6, 2.4), (0.8, 1.0), (0.8, 0.9)),
    "bed": (_bed, (1.4, 1.8), (1.9, 2.1), (0.5, 0.6)),
    "desk": (_desk, (1.0, 1.6), (0.6, 0.8), (0.72, 0.76)),
    "plant": (_plant, (0.4, 0.4), (0.4, 0.4), (1.0, 1.0)),
    "pedestal": (_pedestal, (0.4, 0.6), (0.4, 0.6), (0.8, 1.1)),
    "coffee_table": (_table, (0.8, 1.2), (0.5, 0.7), (0.4, 0.45)),
}


@dataclass(frozen=True)
class Recipe:
    """How to furnish one kind of room."""

    size: tuple  # ((x min, x max), (y min, y max), (height min, height max)) metres
    wall: tuple  # furniture names placed against walls (in order, as space allows)
    centre: tuple  # furniture names placed in the middle
    wall_kinds: tuple  # texture kinds for walls
    floor_kinds: tuple  # texture kinds for the floor
    posters: tuple = (1, 4)  # how many posters/boards on the walls
    lights: int = 2  # ceiling lights
    partition: bool = False  # a dividing wall with a doorway (two rooms)


SCENES: dict[str, Recipe] = {
    "kitchen": Recipe(((5.0, 6.5), (4.0, 5.5), (2.5, 2.8)), ("counter", "counter", "fridge", "shelf", "cabinet"),
                      ("table",), ("tiles", "noise", "brick"), ("tiles", "checker")),
    "living_room": Recipe(((5.0, 7.0), (4.0, 5.5), (2.5, 3.0)), ("sofa", "shelf", "cabinet", "plant", "shelf"),
                          ("coffee_table",), ("noise", "brick", "plaid"), ("wood", "plaid")),
    "office": Recipe(((5.0, 7.5), (4.0, 6.0), (2.6, 3.0)), ("desk", "desk", "shelf", "cabinet", "plant", "shelf"),
                     ("desk",), ("noise", "spots"), ("spots", "tiles", "checker"), posters=(2, 5), lights=3),
    "bedroom": Recipe(((4.5, 5.5), (4.0, 5.0), (2.4, 2.7)), ("bed", "wardrobe", "desk", "cabinet"),
                      (), ("noise", "plaid", "spots"), ("wood", "plaid")),
    "workshop": Recipe(((6.0, 8.0), (5.0, 7.0), (3.0, 3.6)), ("counter", "shelf", "shelf", "cabinet", "counter"),
                       ("table", "pedestal"), ("brick", "checker"), ("spots", "checker"), lights=3),
    "apartment": Recipe(((7.0, 9.0), (4.5, 6.0), (2.5, 2.8)), ("sofa", "shelf", "counter", "fridge", "plant", "desk"),
                        ("table",), ("noise", "brick", "spots"), ("wood", "tiles"), posters=(2, 5), lights=3,
                        partition=True),
    # held out: no life uses it by default (depth-probe test scene)
    "gallery": Recipe(((6.0, 8.0), (5.0, 7.0), (3.0, 3.5)), ("plant", "cabinet", "shelf"),
                      ("pedestal", "pedestal", "pedestal"), ("noise", "tiles"), ("checker", "wood", "spots"),
                      posters=(4, 8), lights=3),
}
LIFE_SCENES = ("kitchen", "living_room", "office", "bedroom", "workshop", "apartment")
HELDOUT_SCENES = ("gallery",)


def _footprint_ok(footprints, cx, cy, hx, hy, yaw, room, margin=0.05) -> bool:
    """Does a rotated rectangle fit inside the room without touching earlier ones (AABB test)?"""
    c, s = abs(np.cos(yaw)), abs(np.sin(yaw))
    ex, ey = c * hx + s * hy, s * hx + c * hy
    x0, y0, x1, y1 = room
    if cx - ex < x0 or cx + ex > x1 or cy - ey < y0 or cy + ey > y1:
        return False
    for fx, fy, fex, fey in footprints:
        if abs(cx - fx) < ex + fex + margin and abs(cy - fy) < ey + fey + margin:
            return False
    return True


def _free_grid(b: _Builder, room: tuple) -> np.ndarray:
    """(Gy, Gx) bool: cells whose centre is BODY_RADIUS clear of walls and obstacle footprints."""
    x0, y0, x1, y1 = room
    gx, gy = int(np.ceil((x1 - x0) / GRID_RES)), int(np.ceil((y1 - y0) / GRID_RES))
    xs = x0 + (np.arange(gx) + 0.5) * GRID_RES
    ys = y0 + (np.arange(gy) + 0.5) * GRID_RES
    X, Y = np.meshgrid(xs, ys)  # (Gy, Gx)
    free = (X > x0 + BODY_RADIUS) & (X < x1 - BODY_RADIUS) & (Y > y0 + BODY_RADIUS) & (Y < y1 - BODY_RADIUS)
    for cx, cy, hx, hy, yaw in b.obstacles:
        c, s = np.cos(yaw), np.sin(yaw)
        lx = (X - cx) * c + (Y - cy) * s
        ly = -(X - cx) * s + (Y - cy) * c
        free &= ~((np.abs(lx) < hx + BODY_RADIUS) & (np.abs(ly) < hy + BODY_RADIUS))
    return free


def _largest_component(free: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    lab, n = ndimage.label(free)
    if n == 0:
        return free
    sizes = ndimage.sum(free, lab, index=np.arange(1, n + 1))
    return lab == (1 + int(np.argmax(sizes)))


def scene_seed(name: str, seed: int) -> int:
    """A stable per-(scene, seed) integer (crc32 of the name mixed with the seed)."""
    return (zlib.crc32(name.encode()) * 1_000_003 + int(seed)) % (2**63)


def build_scene(name: str, seed: int = 0, texture_size: int = 256, photos: bool = False,
                texture_scale: float = 1.0) -> Scene:
    """Build scene `name` (a key of SCENES) deterministically from `seed`; `photos` also draws walls, floors,
    prints and posters from photographic textures (`textures.PHOTO_KINDS`); texture tiles span `texture_scale`
    times their usual size (same layout and draws: 1 gives the same scene as before the option existed)."""
    if name not in SCENES:
        raise ValueError(f"unknown scene {name!r}; known: {', '.join(SCENES)}")
    rec = SCENES[name]
    rng = np.random.default_rng(scene_seed(name, seed))
    b = _Builder(rng, texture_size, texture_scale)
    Lx, Ly, H = (float(rng.uniform(*r)) for r in rec.size)
    room = (0.0, 0.0, Lx, Ly)

    # materials: a few per role, drawn from the recipe's kinds
    # with photos, walls are photographed surfaces or murals, most floors photographed surfaces
    walls = ("photo_surface", "photo") if photos else rec.wall_kinds
    floors = rec.floor_kinds + ("photo_surface",) * 2 * len(rec.floor_kinds) if photos else rec.floor_kinds
    prints = ["text", "poster"] + (["photo"] * 4 if photos else [])
    mats = {
        "wall": [b.material(str(rng.choice(walls)), (1.5, 3.0)) for _ in range(3)],
        "floor": [b.material(str(rng.choice(floors)), (1.5, 3.0))],
        "ceiling": [b.material("noise", (2.0, 4.0))],
        "wood": [b.material("wood", (0.8, 1.6)) for _ in range(3)],
        "dark": [b.material(str(rng.choice(["noise", "spots"])), (0.3, 0.8)) for _ in range(2)],
        "fabric": [b.material(str(rng.choice(["plaid", "spots", "checker"])), (0.5, 1.2)) for _ in range(3)],
        "print": [b.material(str(rng.choice(prints)), (0.3, 0.6)) for _ in range(6)],
        "leaf": [b.material("spots", (0.2, 0.5))],
    }
    anys = list(TEXTURE_KINDS) + (list(PHOTO_KINDS) * 2 if photos else [])
    mats["any"] = [b.material(str(rng.choice(anys)), (0.3, 1.0)) for _ in range(6)]

    # room shell: walls differ from each other
    wm = [_pick(rng, mats, "wall") for _ in range(4)]
    b.box((Lx / 2, Ly / 2, H / 2), (Lx, Ly, H), 0.0, [wm[0], wm[1], wm[2], wm[3], mats["ceiling"][0], mats["floor"][0]],
          inward=True, obstacle=False)
    if rng.random() < 0.6:  # a rug
        b.box((Lx / 2 + rng.uniform(-0.5, 0.5), Ly / 2 + rng.uniform(-0.5, 0.5), 0.005),
              (rng.uniform(1.5, 2.5), rng.uniform(1.2, 2.0), 0.01), rng.uniform(-0.2, 0.2),
              _pick(rng, mats, "fabric"), obstacle=False)

    footprints: list[tuple] = []
    door_x = None
    if rec.partition:  # a wall across x at about the middle with a doorway
        px = Lx * rng.uniform(0.45, 0.55)
        dw, dy = 1.3, rng.uniform(1.0, Ly - 2.3)
        part = _pick(rng, mats, "wall")
        for y_a, y_b in ((0.0, dy), (dy + dw, Ly)):
            b.box((px, (y_a + y_b) / 2, H / 2), (0.12, y_b - y_a, H), 0.0, part, obstacle=True)
            footprints.append((px, (y_a + y_b) / 2, 0.06, (y_b - y_a) / 2))
        b.box((px, dy + dw / 2, H - 0.2), (0.12, dw, 0.4), 0.0, part, obstacle=False)  # lintel
        footprints.append((px, dy + dw / 2, 0.6, dw / 2 + 0.3))  # keep the doorway clear
        door_x = px

    skipped = 0  # pieces that found no room (counted in info)
    # furniture against the walls: back to the wall, front (+x local) facing the room
    for fname in rec.wall:
        build, wr, dr, hr = FURNITURE[fname]
        w, d, h = rng.uniform(*wr), rng.uniform(*dr), rng.uniform(*hr)
        for _ in range(30):
            wall = int(rng.integers(4))
            yaw = [0.0, np.pi, np.pi / 2, -np.pi / 2][wall]  # front faces +x, -x, +y, -y
            if wall == 0:
                cx, cy = d / 2 + 0.02, rng.uniform(w / 2, Ly - w / 2)
            elif wall == 1:
                cx, cy = Lx - d / 2 - 0.02, rng.uniform(w / 2, Ly - w / 2)
            elif wall == 2:
                cx, cy = rng.uniform(w / 2, Lx - w / 2), d / 2 + 0.02
            else:
                cx, cy = rng.uniform(w / 2, Lx - w / 2), Ly - d / 2 - 0.02
            if _footprint_ok(footprints, cx, cy, d / 2, w / 2, yaw, room):
                footprints.append((cx, cy, *(abs(np.cos(yaw)) * np.array([d / 2, w / 2])
                                             + abs(np.sin(yaw)) * np.array([w / 2, d / 2]))))
                build(b, mats, cx, cy, yaw, w, d, h)
                break
        else:
            skipped += 1
    # furniture in the middle, with room to walk around it
    for fname in rec.centre:
        build, wr, dr, hr = FURNITURE[fname]
        w, d, h = rng.uniform(*wr), rng.uniform(*dr), rng.uniform(*hr)
        for _ in range(30):
            cx, cy = rng.uniform(1.4, Lx - 1.4), rng.uniform(1.4, Ly - 1.4)
            yaw = float(rng.choice([0.0, np.pi / 2])) + rng.uniform(-0.15, 0.15)
            if _footprint_ok(footprints, cx, cy, d / 2 + 0.7, w / 2 + 0.7, yaw, room):
                footprints.append((cx, cy, d / 2 + 0.3, w / 2 + 0.3))
                build(b, mats, cx, cy, yaw, w, d, h)
                break
        else:
            skipped += 1

    # posters and boards on the walls (thin boxes, the picture fitted to the front face)
    for _ in range(int(rng.integers(*rec.posters))):
        wall = int(rng.integers(4))
        pw, ph = rng.uniform(0.4, 1.4), rng.uniform(0.3, 1.0)
        zc = rng.uniform(1.3, min(H - 0.3 - ph / 2, 2.0))
        yaw = [0.0, np.pi, np.pi / 2, -np.pi / 2][wall]
        along = Ly if wall < 2 else Lx
        t = rng.uniform(pw / 2 + 0.1, along - pw / 2 - 0.1)
        cx, cy = {0: (0.011, t), 1: (Lx - 0.011, t), 2: (t, 0.011), 3: (t, Ly - 0.011)}[wall]
        b.box((cx, cy, zc), (0.02, pw, ph), yaw, [_pick(rng, mats, "print")] + [_pick(rng, mats, "dark")] * 5,
              obstacle=False, fit_faces=(0,), kind="poster")

    # lights near the ceiling, spread over the room
    n_l = rec.lights
    lights = np.stack([np.array([Lx * (i + 0.5) / n_l + rng.uniform(-0.3, 0.3),
                                 Ly * rng.uniform(0.3, 0.7), H - 0.25]) for i in range(n_l)])
    power = rng.uniform(0.7, 1.0, n_l)

    free = _largest_component(_free_grid(b, room))
    places, targets = _places(b, free, room, rng)
    V = np.concatenate(b.V).astype(np.float32)
    F = np.concatenate(b.F).astype(np.int32)
    textures = _bake(b.kinds, texture_size, rng)
    return Scene(
        name=name, vertices=V, triangles=F, tri_normal=np.concatenate(b.N).astype(np.float32),
        tri_material=np.concatenate(b.M), tri_uv=np.concatenate(b.UV).astype(np.float32), textures=textures,
        material_kinds=list(b.kinds), lights=lights, light_power=power, ambient=0.35, room=(0.0, 0.0, Lx, Ly, H),
        free=free, places=places, targets=targets,
        info={"triangles": int(len(F)), "materials": len(b.kinds), "furniture": len(b.boxes),
              "furniture_skipped": skipped, "places": int(len(places)),
              "free_area_m2": float(free.sum() * GRID_RES**2), "partition_x": door_x},
    )


def _bake(kinds: list, size: int, rng: np.random.Generator) -> list:
    """Render every material's texture and its pyramid -> list over levels of (M, S_l, S_l, 3) float32."""
    pyramids = [mip_levels(make_texture(k, size, rng), MIP_LEVELS) for k in kinds]
    n = min(len(p) for p in pyramids)
    return [np.stack([p[l] for p in pyramids]) for l in range(n)]


def _places(b: _Builder, free: np.ndarray, room, rng) -> tuple[np.ndarray, np.ndarray]:
    """Standing spots in front of furniture/posters (free cells) and what to look at from each.

    Place 0 is the entrance (a free cell near a wall, looking into the room)."""
    from scipy import ndimage

    x0, y0, _, _ = room
    rc = np.argwhere(free)  # (n, 2) row, col
    if len(rc) == 0:
        raise ValueError("scene has no walkable space")
    cells_xy = np.stack([x0 + (rc[:, 1] + 0.5) * GRID_RES, y0 + (rc[:, 0] + 0.5) * GRID_RES], 1)
    # entrance: near the y = 0 wall, the free cell with the most room around it, looking into the room
    clear = ndimage.distance_transform_edt(free)[rc[:, 0], rc[:, 1]]  # (n,) cells to the nearest obstacle
    near_wall = cells_xy[:, 1] < cells_xy[:, 1].min() + 1.0
    k = int(np.argmax(np.where(near_wall, clear, -1)))
    entry = cells_xy[k]
    places, targets = [np.array([*entry, 0.0])], [np.array([entry[0], entry[1] + 2.5, 1.2])]
    for box in b.boxes:
        c, s = np.cos(box["yaw"]), np.sin(box["yaw"])
        front = np.array([c, s])  # every piece faces its local +x (away from its wall)
        top_z = box["centre"][2] + box["size"][2] / 2
        target = np.array([box["centre"][0], box["centre"][1], min(top_z, 1.6) if box["kind"] != "poster"
                           else box["centre"][2]])
        want = box["centre"][:2] + front * (box["size"][0] / 2 + rng.uniform(0.8, 1.3))
        k = int(np.argmin(np.linalg.norm(cells_xy - want, axis=1)))
        if np.linalg.norm(cells_xy[k] - want) < 1.0:
            places.append(np.array([*cells_xy[k], 0.0]))
            targets.append(target)
    return np.stack(places), np.stack(targets)

"""Procedural surface textures for synthetic scenes: tileable RGB images baked once per scene.

Reads nothing but scikit-image's bundled sample photographs (for `PHOTO_KINDS`); writes nothing. `make_texture(kind, size, rng) -> (size, size, 3) float32` in [0, 1]
(most kinds tile seamlessly: periodic value noise and integer pattern counts per tile), `mip_levels`
turns one into a pyramid, and `TEXTURE_KINDS` lists the kinds (noise, checker, brick, wood, tiles,
text-like marks, plaid, spots, poster), each drawn with random colours so that no two surfaces
look alike. `PHOTO_KINDS` adds photographs: scikit-image's bundled sample photos as pictures, and its
gray surface photos (brick, grass, gravel) tinted and mirrored into tileable wall and floor textures. How a texture is mapped onto a face (UV from world coordinates) is left to `scenes.py`;
sampling at render time is in `render.py`.
"""

from __future__ import annotations

import colorsys

import numpy as np


def random_color(rng: np.random.Generator, sat=(0.2, 0.8), val=(0.3, 0.95), hue=None) -> np.ndarray:
    """One RGB colour (3,) float32 in [0, 1] from random hue/saturation/value ranges."""
    h = rng.uniform(0, 1) if hue is None else (hue + rng.uniform(-0.04, 0.04)) % 1.0
    rgb = colorsys.hsv_to_rgb(h, rng.uniform(*sat), rng.uniform(*val))
    return np.array(rgb, dtype=np.float32)


def periodic_noise(size: int, cells: int, rng: np.random.Generator) -> np.ndarray:
    """Tileable value noise (size, size) float32 in [0, 1]: a random cells x cells lattice, smoothstep-interpolated."""
    lat = rng.random((cells, cells), dtype=np.float32)  # (c, c)
    x = np.arange(size, dtype=np.float32) * (cells / size)  # (S,) lattice coordinates
    i0 = np.floor(x).astype(np.int64) % cells
    i1 = (i0 + 1) % cells
    f = x - np.floor(x)
    f = f * f * (3 - 2 * f)  # smoothstep
    top = lat[i0][:, i0] * (1 - f)[None, :] + lat[i0][:, i1] * f[None, :]  # (S, S) rows i0
    bot = lat[i1][:, i0] * (1 - f)[None, :] + lat[i1][:, i1] * f[None, :]  # (S, S) rows i1
    return top * (1 - f)[:, None] + bot * f[:, None]


def fbm(size: int, rng: np.random.Generator, base: int = 4, octaves: int = 5, gain: float = 0.5) -> np.ndarray:
    """Tileable multi-octave noise (size, size) float32 normalised to [0, 1]."""
    out = np.zeros((size, size), np.float32)
    amp, cells = 1.0, base
    for _ in range(octaves):
        if cells > size:
            break
        out += amp * periodic_noise(size, cells, rng)
        amp *= gain
        cells *= 2
    out -= out.min()
    return out / max(float(out.max()), 1e-6)


def _mix(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Blend colours a, b (3,) by weights w (S, S) -> (S, S, 3)."""
    return a[None, None, :] * (1 - w[..., None]) + b[None, None, :] * w[..., None]


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in tile units [0, 1): (S, S) arrays y (rows) and x (columns)."""
    c = (np.arange(size, dtype=np.float32) + 0.5) / size
    return np.meshgrid(c, c, indexing="ij")


def _noise_tex(size, rng):
    n = fbm(size, rng, base=int(rng.integers(2, 7)), octaves=6, gain=float(rng.uniform(0.45, 0.65)))
    c1, c2 = random_color(rng), random_color(rng)
    img = _mix(c1, c2, n)
    veins = np.abs(fbm(size, rng, base=4, octaves=5) - 0.5) < 0.03  # marble-like lines
    return np.where(veins[..., None], img * 0.6, img)


def _checker_tex(size, rng):
    n = int(rng.integers(3, 10))
    y, x = _grid(size)
    chk = ((np.floor(x * n) + np.floor(y * n)) % 2).astype(np.float32)
    c1, c2 = random_color(rng), random_color(rng)
    img = _mix(c1, c2, chk)
    return img * (0.7 + 0.3 * fbm(size, rng, base=16, octaves=4))[..., None]


def _cell_jitter(rng, n_rows, n_cols, amount):
    return rng.uniform(1 - amount, 1 + amount, size=(n_rows, n_cols, 3)).astype(np.float32)


def _brick_tex(size, rng):
    rows, cols = int(rng.integers(6, 14)), int(rng.integers(3, 7))
    y, x = _grid(size)
    r = np.floor(y * rows).astype(np.int64)
    xs = x * cols + 0.5 * (r % 2)
    c = np.floor(xs).astype(np.int64) % cols
    fy, fx = y * rows - r, xs - np.floor(xs)
    mortar_w = rng.uniform(0.06, 0.14)
    mortar = (fy < mortar_w) | (fx < mortar_w * cols / rows)
    base = random_color(rng, sat=(0.3, 0.8), val=(0.35, 0.8))
    jit = _cell_jitter(rng, rows, cols, 0.25)[r % rows, c]  # (S, S, 3) per-brick tint
    img = base[None, None] * jit * (0.8 + 0.2 * fbm(size, rng, base=16, octaves=3))[..., None]
    mortar_c = random_color(rng, sat=(0.0, 0.2), val=(0.6, 0.95))
    return np.where(mortar[..., None], mortar_c[None, None], img)


def _wood_tex(size, rng):
    planks = int(rng.integers(3, 8))
    y, x = _grid(size)
    p = np.floor(x * planks).astype(np.int64)
    shift = rng.uniform(0, 1, planks).astype(np.float32)[p]
    warp = fbm(size, rng, base=4, octaves=4)
    rings = np.sin(2 * np.pi * (rng.integers(6, 20) * (y + shift) + 3.0 * warp + 0.3 * x * planks))
    w = 0.5 + 0.5 * rings
    hue = rng.uniform(0.03, 0.12) if rng.random() < 0.7 else None
    dark = random_color(rng, sat=(0.5, 0.9), val=(0.2, 0.45), hue=hue)
    light = random_color(rng, sat=(0.3, 0.7), val=(0.55, 0.9), hue=hue)
    img = _mix(dark, light, w ** 1.5)
    img *= rng.uniform(0.85, 1.15, (planks, 3)).astype(np.float32)[p]
    seam = (x * planks - p) < 0.015
    return np.where(seam[..., None], img * 0.45, img)


def _tiles_tex(size, rng):
    n = int(rng.integers(4, 12))
    y, x = _grid(size)
    r, c = np.floor(y * n).astype(np.int64), np.floor(x * n).astype(np.int64)
    fy, fx = y * n - r, x * n - c
    palette = np.stack([random_color(rng) for _ in range(int(rng.integers(2, 5)))])  # (P, 3)
    pick = rng.integers(0, len(palette), (n, n))
    img = palette[pick[r, c]] * (0.85 + 0.15 * fbm(size, rng, base=8, octaves=4))[..., None]
    diag = (np.abs(fx - fy) < 0.06) & (rng.random((n, n)) < 0.3)[r, c]  # a motif on some tiles
    img = np.where(diag[..., None], img * 0.5, img)
    g = rng.uniform(0.04, 0.1)
    grout = (fx < g) | (fy < g)
    return np.where(grout[..., None], random_color(rng, sat=(0, 0.15), val=(0.3, 0.9))[None, None], img)


def _glyphs(rng, n: int = 40) -> np.ndarray:
    """n random 7x5 bitmaps (n, 7, 5) bool, a made-up alphabet for text-like marks."""
    g = rng.random((n, 7, 5)) < 0.45
    g[:, :, 0] |= rng.random((n, 7)) < 0.3
    return g


def _text_layer(size, rng, rows: int, ink_share: float = 1.0) -> np.ndarray:
    """(S, S) bool: lines of glyphs with word gaps and ragged line ends."""
    y, x = _grid(size)
    glyphs = _glyphs(rng)
    cols = int(rows * rng.uniform(1.6, 2.6))
    r = np.floor(y * rows).astype(np.int64)
    c = np.floor(x * cols).astype(np.int64)
    fy, fx = y * rows - r, x * cols - c
    chars = rng.integers(0, len(glyphs), (rows, cols))
    blank = rng.random((rows, cols)) < 0.18  # word gaps
    line_end = rng.integers(cols // 2, cols + 1, rows)
    blank |= np.arange(cols)[None, :] >= line_end[:, None]
    blank |= (rng.random(rows) > ink_share)[:, None]
    gy = np.clip(((fy - 0.15) / 0.7 * 7).astype(np.int64), 0, 6)
    gx = np.clip(((fx - 0.1) / 0.8 * 5).astype(np.int64), 0, 4)
    inside = (fy > 0.15) & (fy < 0.85) & (fx > 0.1) & (fx < 0.9)
    return inside & ~blank[r, c] & glyphs[chars[r, c], gy, gx]


def _text_tex(size, rng):
    paper = random_color(rng, sat=(0.0, 0.25), val=(0.75, 1.0))
    ink = random_color(rng, sat=(0.2, 0.9), val=(0.05, 0.4))
    img = np.broadcast_to(paper, (size, size, 3)) * (0.9 + 0.1 * fbm(size, rng, base=8, octaves=3))[..., None]
    marks = _text_layer(size, rng, rows=int(rng.integers(10, 28)), ink_share=0.85)
    img = np.where(marks[..., None], ink[None, None], img)
    y, x = _grid(size)
    head = (y < rng.uniform(0.05, 0.15)) & (x < rng.uniform(0.3, 0.9))  # a coloured header bar
    return np.where(head[..., None], random_color(rng)[None, None], img)


def _plaid_tex(size, rng):
    y, x = _grid(size)
    img = np.broadcast_to(random_color(rng), (size, size, 3)).copy()
    for _ in range(int(rng.integers(3, 7))):
        n, w = int(rng.integers(1, 6)), rng.uniform(0.02, 0.12)
        col, a = random_color(rng), rng.uniform(0.3, 0.7)
        along_x = rng.random() < 0.5
        u = x if along_x else y
        band = ((u * n + rng.uniform(0, 1)) % 1.0) < w * n
        img = np.where(band[..., None], img * (1 - a) + col * a, img)
    weave = 0.9 + 0.1 * np.sin(2 * np.pi * 64 * (x + y))
    return img * weave[..., None]


def _spots_tex(size, rng):
    img = np.broadcast_to(random_color(rng), (size, size, 3)).copy()
    for _ in range(int(rng.integers(2, 5))):
        n = fbm(size, rng, base=int(rng.integers(8, 32)), octaves=2)
        thr = rng.uniform(0.65, 0.8)
        img = np.where((n > thr)[..., None], random_color(rng)[None, None], img)
    return img * (0.85 + 0.15 * fbm(size, rng, base=6, octaves=4))[..., None]


def _poster_tex(size, rng):
    """A picture: gradient background, random discs, rectangles and a text block (not tileable)."""
    y, x = _grid(size)
    a, b = random_color(rng), random_color(rng)
    img = _mix(a, b, (y * rng.uniform(0.3, 1) + x * rng.uniform(0, 0.7)) / 1.7)
    for _ in range(int(rng.integers(4, 12))):
        col = random_color(rng)
        cy, cx, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.04, 0.25)
        if rng.random() < 0.5:
            m = (y - cy) ** 2 + (x - cx) ** 2 < r * r
        else:
            m = (np.abs(y - cy) < r) & (np.abs(x - cx) < r * rng.uniform(0.3, 2))
        img = np.where(m[..., None], col[None, None], img)
    txt = _text_layer(size, rng, rows=int(rng.integers(14, 30)), ink_share=0.9)
    box = (y > 0.7) & (y < 0.95) & (x > 0.05) & (x < 0.95)
    img = np.where((txt & box)[..., None], random_color(rng, val=(0.0, 0.3))[None, None], img)
    frame = (np.minimum(np.minimum(x, 1 - x), np.minimum(y, 1 - y))) < 0.02
    return np.where(frame[..., None], random_color(rng, val=(0.1, 0.5))[None, None], img)


# kind -> generator(size, rng) -> (S, S, 3) float32; "tileable" kinds repeat seamlessly
TEXTURE_KINDS = {
    "noise": _noise_tex,  # marble/plaster: two-colour fbm with veins
    "checker": _checker_tex,  # checkerboard with noise shading
    "brick": _brick_tex,  # offset bricks, per-brick tint, mortar
    "wood": _wood_tex,  # planks with warped grain rings
    "tiles": _tiles_tex,  # grid tiles from a palette, grout, motifs
    "text": _text_tex,  # paper with lines of made-up glyphs
    "plaid": _plaid_tex,  # fabric stripes
    "spots": _spots_tex,  # terrazzo-like thresholded noise blobs
    "poster": _poster_tex,  # a picture mapped once per face (not tileable)
}


# Photographs scikit-image ships in its wheel (skimage/data; nothing is downloaded): pictures for prints and
# posters, and gray surface photographs (brick, grass, gravel) tinted for walls and floors.
PHOTO_PICTURES = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
                  "hubble_deep_field.jpg", "retina.jpg", "ihc.png", "coins.png", "camera.png", "moon.png",
                  "page.png", "text.png", "cell.png", "clock_motion.png")
PHOTO_SURFACES = ("brick.png", "grass.png", "gravel.png")


def _photo(name: str) -> np.ndarray:
    """A scikit-image sample photograph (H, W, 3) float32 in [0, 1] (gray ones repeated over channels)."""
    return _photo_cached(name).copy()


def _photo_cached(name: str, _cache: dict = {}) -> np.ndarray:  # noqa: B006 (a per-process cache)
    if name not in _cache:
        import importlib.resources

        from PIL import Image

        try:
            path = importlib.resources.files("skimage.data") / name
            with importlib.resources.as_file(path) as f, Image.open(f) as im:
                a = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
        except (ModuleNotFoundError, FileNotFoundError, OSError) as e:
            from slife.errors import SlifeError

            raise SlifeError(f"photographic textures need scikit-image's sample images ({name}: {e}); "
                             "pip install scikit-image") from None
        _cache[name] = a
    return _cache[name]


def _crop_resize(img: np.ndarray, size: int, rng: np.random.Generator, share=(0.5, 1.0)) -> np.ndarray:
    """A random square crop of `share` of the shorter side, resized to (size, size, 3)."""
    from PIL import Image

    h, w = img.shape[:2]
    c = int(min(h, w) * rng.uniform(*share))
    y, x = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
    crop = (img[y:y + c, x:x + c] * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(crop).resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0


def _photo_tex(size, rng):
    """A photograph (not tileable, like a poster); gray ones get a random duotone."""
    name = PHOTO_PICTURES[int(rng.integers(len(PHOTO_PICTURES)))]
    img = _crop_resize(_photo(name), size, rng)
    if np.allclose(img[..., 0], img[..., 1]) and np.allclose(img[..., 1], img[..., 2]):
        img = _mix(random_color(rng, val=(0.0, 0.35)), random_color(rng, val=(0.7, 1.0)), img[..., 0])
    if rng.random() < 0.5:
        img = img[:, ::-1]
    return img


def _photo_surface_tex(size, rng):
    """A gray surface photograph (brick, grass, gravel) tinted between two colours, mirrored to tile seamlessly."""
    name = PHOTO_SURFACES[int(rng.integers(len(PHOTO_SURFACES)))]
    g = _crop_resize(_photo(name), size // 2, rng, share=(0.3, 0.7))[..., 0]  # (S/2, S/2)
    g = np.concatenate([g, g[:, ::-1]], axis=1)
    g = np.concatenate([g, g[::-1]], axis=0)  # (S, S): mirrored 2x2, so the tile's edges match
    g = (g - g.min()) / max(float(g.max() - g.min()), 1e-6)
    return _mix(random_color(rng), random_color(rng), g)


# photographic kinds (opt-in: `build_scene(..., photos=True)`), kept apart from TEXTURE_KINDS so that scenes
# built without photographs draw exactly what they drew before
PHOTO_KINDS = {
    "photo": _photo_tex,  # a photograph mapped once per face (prints, posters)
    "photo_surface": _photo_surface_tex,  # a tinted surface photograph, tileable (walls, floors)
}


def make_texture(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A texture of `kind` (S, S, 3) float32 in [0, 1] with fine grain added so no patch is flat."""
    gen = TEXTURE_KINDS.get(kind) or PHOTO_KINDS.get(kind)
    if gen is None:
        raise ValueError(f"unknown texture kind {kind!r}; known: {sorted(TEXTURE_KINDS) + sorted(PHOTO_KINDS)}")
    img = np.asarray(gen(size, rng), dtype=np.float32)
    grain = periodic_noise(size, max(4, size // 4), rng) - 0.5  # (S, S) fine grain
    img = img * (1.0 + 0.2 * grain[..., None])
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def mip_levels(img: np.ndarray, levels: int) -> list[np.ndarray]:
    """A pyramid [img, img/2, img/4, ...] of `levels` arrays (S/2^l, S/2^l, 3) by 2x2 averaging."""
    out = [img]
    for _ in range(levels - 1):
        a = out[-1]
        if a.shape[0] < 2:
            break
        out.append(0.25 * (a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]))
    return out

"""Screen-recording-like frames: a 2D desktop with windows of scrolling text, a control with no 3D motion.

Reads nothing. `screen_frames(n, width, height, fps, rng)` yields n RGB uint8 (H, W, 3) frames of a
desktop (a poster texture) with 2-3 windows (title bar + a long document of text-like marks from
`textures.py`) that scroll in bursts with pauses, change focus and sometimes move, plus a mouse
cursor. There is no camera, so `run` writes no poses, points or depth for it. Encoding is left to
`encode.py`.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from slife.synth.textures import make_texture, random_color


def _pow2_at_least(n: int) -> int:
    return 1 << max(5, int(np.ceil(np.log2(max(n, 1)))))


def _events(n: int, fps: float, rng: np.random.Generator, rate_px: float) -> np.ndarray:
    """Scroll offsets (n,) in pixels: bursts of scrolling (either way, mostly down) between pauses."""
    off = np.zeros(n)
    k, pos = 0, 0.0
    while k < n:
        pause = int(rng.uniform(0.5, 3.0) * fps)
        off[k:k + pause] = pos
        k += pause
        burst = int(rng.uniform(0.3, 1.5) * fps)
        v = rate_px * rng.uniform(0.5, 1.5) * (1 if rng.random() < 0.8 else -1) / fps
        steps = pos + v * np.arange(1, burst + 1)
        off[k:k + burst] = steps[: max(0, min(burst, n - k))]
        pos = float(steps[-1]) if burst else pos
        k += burst
    return off


def screen_frames(n: int, width: int, height: int, fps: float, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Yield n frames (H, W, 3) uint8 of a desktop with scrolling windows."""
    S = _pow2_at_least(max(width, height))
    desk = make_texture("poster", S, rng)[:height, :width]  # (H, W, 3)
    wins = []
    for _ in range(int(rng.integers(2, 4))):
        ww, wh = int(width * rng.uniform(0.4, 0.75)), int(height * rng.uniform(0.45, 0.8))
        doc_w = _pow2_at_least(ww)
        doc = np.concatenate([make_texture("text", doc_w, rng) for _ in range(4)], 0)[:, :ww]  # (4*doc_w, ww, 3)
        x, y = int(rng.integers(0, width - ww + 1)), int(rng.integers(0, height - wh + 1))
        move = rng.uniform(-1, 1, 2) * (rng.random() < 0.5) * 0.05 * width  # px/s drift while dragged
        wins.append({"w": ww, "h": wh, "doc": doc, "x": x, "y": y, "move": move, "bar": random_color(rng),
                     "scroll": _events(n, fps, rng, rate_px=height * 1.5)})
    focus_change = np.cumsum(rng.uniform(2.0, 8.0, 64) * fps).astype(int)
    cursor = np.cumsum(rng.normal(0, 0.02 * width, (n, 2)), 0) + np.array([width / 2, height / 2])
    order = list(range(len(wins)))
    for k in range(n):
        if k in focus_change:
            order.append(order.pop(int(rng.integers(len(order)))))
        img = desk.copy()
        for i in order:
            w = wins[i]
            x = int(np.clip(w["x"] + w["move"][0] * k / fps, 0, width - w["w"]))
            y = int(np.clip(w["y"] + w["move"][1] * k / fps, 0, height - w["h"]))
            bar = max(2, w["h"] // 12)
            doc = w["doc"]
            top = int(w["scroll"][k]) % (len(doc) - w["h"])
            img[y:y + bar, x:x + w["w"]] = w["bar"]
            img[y + bar:y + w["h"], x:x + w["w"]] = doc[top:top + w["h"] - bar]
        cx, cy = np.clip(cursor[k], 0, [width - 1, height - 1]).astype(int)
        img[cy:cy + max(2, height // 30), cx:cx + max(1, width // 60)] = (1.0, 1.0, 1.0)
        yield (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)

"""Camera motion for synthetic lives: a head-worn camera walking through a `Scene` over several days.

Reads a `scenes.Scene` (free-space grid, places, targets). `life_trajectory` plans each day as walks
between places (A* on the free-space grid, shortcut and rounded, ~1.4 m/s with acceleration and
deceleration), pauses looking at what is there, sometimes turning back halfway, and starting every day
at the same entrance so later days revisit the same places; the head adds slow look-around yaw/pitch,
step bob, sway and roll. It simulates at 50 Hz and samples frame times k / fps. `static_trajectory`
(a fixed surveillance-like camera) and `random_views` (independent views, e.g. for a depth-probe set)
are the other kinds. All return poses as `T_world_cam` (N, 4, 4) camera-to-world, OpenCV axes,
metres (world z up). Rendering is left to `render.py`.
"""

from __future__ import annotations

import heapq

import numpy as np

from slife.lives.geometry import make_pose
from slife.synth.scenes import GRID_RES, Scene

SIM_DT = 0.02  # seconds per simulation step (50 Hz)
WALK_SPEED = 1.4  # m/s typical walking speed
ACCEL = 1.2  # m/s^2 when starting and stopping


def look_rotation(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray | None = None) -> np.ndarray:
    """Camera-to-world rotations (N, 3, 3), OpenCV axes, for a gaze of `yaw` (about world z, 0 = +x) and
    `pitch` (up positive), then `roll` about the optical axis (radians, arrays (N,))."""
    yaw, pitch = np.asarray(yaw, np.float64), np.asarray(pitch, np.float64)
    roll = np.zeros_like(yaw) if roll is None else np.asarray(roll, np.float64)
    fwd = np.stack([np.cos(pitch) * np.cos(yaw), np.cos(pitch) * np.sin(yaw), np.sin(pitch)], -1)  # (N, 3)
    right = np.stack([np.sin(yaw), -np.cos(yaw), np.zeros_like(yaw)], -1)  # fwd x up, normalised
    down = np.cross(fwd, right)
    cr, sr = np.cos(roll)[:, None], np.sin(roll)[:, None]
    r2, d2 = cr * right + sr * down, -sr * right + cr * down  # roll about fwd
    return np.stack([r2, d2, fwd], -1)  # columns: x right, y down, z forward


# ---------------------------------------------------------------- paths on the free-space grid

def _nearest_free(scene: Scene, xy: np.ndarray) -> tuple[int, int]:
    rc = np.argwhere(scene.free)
    k = int(np.argmin(np.linalg.norm(scene.cell_centre(rc) - xy, axis=1)))
    return int(rc[k, 0]), int(rc[k, 1])


def astar(free: np.ndarray, start: tuple[int, int], goal: tuple[int, int]) -> list[tuple[int, int]] | None:
    """Shortest 8-connected path of free cells from start to goal (inclusive), or None."""
    Gy, Gx = free.shape
    moves = [(-1, 0, 1.0), (1, 0, 1.0), (0, -1, 1.0), (0, 1, 1.0),
             (-1, -1, 1.4142), (-1, 1, 1.4142), (1, -1, 1.4142), (1, 1, 1.4142)]
    h = lambda c: float(np.hypot(c[0] - goal[0], c[1] - goal[1]))  # noqa: E731
    openq = [(h(start), 0.0, start)]
    came: dict = {start: None}
    cost = {start: 0.0}
    while openq:
        _, g, cur = heapq.heappop(openq)
        if cur == goal:
            path = [cur]
            while came[path[-1]] is not None:
                path.append(came[path[-1]])
            return path[::-1]
        if g > cost[cur]:
            continue
        for dr, dc, w in moves:
            nr, nc = cur[0] + dr, cur[1] + dc
            if not (0 <= nr < Gy and 0 <= nc < Gx) or not free[nr, nc]:
                continue
            if dr and dc and not (free[cur[0] + dr, cur[1]] and free[cur[0], cur[1] + dc]):
                continue  # no corner cutting
            ng = g + w
            if ng < cost.get((nr, nc), np.inf):
                cost[(nr, nc)] = ng
                came[(nr, nc)] = cur
                heapq.heappush(openq, (ng + h((nr, nc)), ng, (nr, nc)))
    return None


def _line_free(scene: Scene, a: np.ndarray, b: np.ndarray) -> bool:
    n = max(2, int(np.linalg.norm(b - a) / (GRID_RES * 0.5)) + 1)
    s = np.linspace(0, 1, n)[:, None]
    return bool(scene.is_free(a + (b - a) * s).all())


def plan_path(scene: Scene, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A walkable polyline (K, 2) from xy `a` to xy `b`: A*, then line-of-sight shortcuts, then rounded corners."""
    ca, cb = _nearest_free(scene, a), _nearest_free(scene, b)
    cells = astar(scene.free, ca, cb)
    if cells is None:  # pragma: no cover - places are in one connected component
        return np.stack([a, b])
    pts = np.concatenate([[a], scene.cell_centre(np.array(cells)), [b]])
    out = [pts[0]]
    i = 0
    while i < len(pts) - 1:
        j = len(pts) - 1
        while j > i + 1 and not _line_free(scene, pts[i], pts[j]):
            j -= 1
        out.append(pts[j])
        i = j
    P = np.stack(out)
    for _ in range(2):  # Chaikin corner cutting keeps the ends; kept only while it stays walkable
        if len(P) < 3:
            break
        q = 0.75 * P[:-1] + 0.25 * P[1:]
        r = 0.25 * P[:-1] + 0.75 * P[1:]
        R = np.concatenate([P[:1], np.stack([q, r], 1).reshape(-1, 2)[1:-1], P[-1:]])
        if not all(_line_free(scene, R[i], R[i + 1]) for i in range(1, len(R) - 2)):
            break
        P = R
    return P


def _walk(P: np.ndarray, vmax: float) -> np.ndarray:
    """Positions (n, 2) every SIM_DT along polyline P with a trapezoidal speed profile (start and end at rest)."""
    seg = np.linalg.norm(np.diff(P, axis=0), axis=1)
    s_cum = np.concatenate([[0.0], np.cumsum(seg)])
    L = s_cum[-1]
    if L < 1e-6:
        return P[:1].copy()
    t_acc = vmax / ACCEL
    if L < vmax * t_acc:  # never reaches full speed
        t_acc = np.sqrt(L / ACCEL)
        vmax = ACCEL * t_acc
        T = 2 * t_acc
    else:
        T = 2 * t_acc + (L - vmax * t_acc) / vmax
    tau = np.arange(0.0, T + SIM_DT, SIM_DT)
    s = np.where(tau < t_acc, 0.5 * ACCEL * tau**2,
                 np.where(tau < T - t_acc, 0.5 * ACCEL * t_acc**2 + vmax * (tau - t_acc),
                          L - 0.5 * ACCEL * np.clip(T - tau, 0, None) ** 2))
    s = np.clip(s, 0, L)
    return np.stack([np.interp(s, s_cum, P[:, 0]), np.interp(s, s_cum, P[:, 1])], 1)


def _smooth_noise(t: np.ndarray, rng: np.random.Generator, freqs=(0.04, 0.35), n: int = 4) -> np.ndarray:
    """A smooth random signal of unit-ish amplitude at times t (sum of sinusoids with random phases)."""
    f = rng.uniform(*freqs, n)
    ph = rng.uniform(0, 2 * np.pi, n)
    a = rng.uniform(0.5, 1.0, n)
    return (a[None] * np.sin(2 * np.pi * f[None] * t[:, None] + ph[None])).sum(1) / a.sum() * 1.6


def _wrap(a):
    return (a + np.pi) % (2 * np.pi) - np.pi


def _simulate_day(scene: Scene, duration: float, habits: np.ndarray, person: dict, rng: np.random.Generator) -> dict:
    """One day at 50 Hz: dict of arrays xy (n, 2), speed (n,), target (n, 3), paused (n,) bool."""
    n_need = int(np.ceil(duration / SIM_DT)) + 2
    P, Tg = scene.places, scene.targets
    xy_parts, tgt_parts, pause_parts = [], [], []
    cur = 0
    n = 0
    # start at the entrance, looking at the room, for a moment
    first = int(rng.integers(5, 40))
    xy_parts.append(np.repeat(P[:1, :2], first, 0)); tgt_parts.append(np.repeat(Tg[:1], first, 0))  # noqa: E702
    pause_parts.append(np.ones(first, bool))
    n += first
    while n < n_need:
        w = habits.copy()
        w[cur] = 0.0
        if w.sum() <= 0:
            w = np.ones_like(w); w[cur] = 0.0  # noqa: E702
        nxt = int(rng.choice(len(w), p=w / w.sum()))
        path = plan_path(scene, P[cur, :2], P[nxt, :2])
        vmax = person["speed"] * rng.uniform(0.85, 1.1)
        if rng.random() < person["turn_back"] and len(path) >= 2:
            # forgot something: walk part of the way, stop, turn round and come back
            seg = np.linalg.norm(np.diff(path, axis=0), axis=1)
            s_cum = np.concatenate([[0.0], np.cumsum(seg)])
            s_stop = rng.uniform(0.3, 0.7) * s_cum[-1]
            k = int(np.searchsorted(s_cum, s_stop))
            part = np.concatenate([path[:k], [np.array([np.interp(s_stop, s_cum, path[:, 0]),
                                                        np.interp(s_stop, s_cum, path[:, 1])])]])
            legs = [(part, Tg[nxt]), (part[::-1], Tg[cur])]
            nxt = cur
        else:
            legs = [(path, Tg[nxt])]
        for leg, tg in legs:
            pos = _walk(leg, vmax)
            xy_parts.append(pos); tgt_parts.append(np.repeat(tg[None], len(pos), 0))  # noqa: E702
            pause_parts.append(np.zeros(len(pos), bool))
            n += len(pos)
            hes = int(rng.integers(10, 30))  # a short stop at the end of every leg
            xy_parts.append(np.repeat(leg[-1:], hes, 0)); tgt_parts.append(np.repeat(tg[None], hes, 0))  # noqa: E702
            pause_parts.append(np.ones(hes, bool))
            n += hes
        stay = int(rng.uniform(*person["pause"]) / SIM_DT)  # look at what is there
        xy_parts.append(np.repeat(P[nxt:nxt + 1, :2], stay, 0)); tgt_parts.append(np.repeat(Tg[nxt:nxt + 1], stay, 0))  # noqa: E702
        pause_parts.append(np.ones(stay, bool))
        n += stay
        cur = nxt
    xy = np.concatenate(xy_parts)[:n_need]
    vel = np.gradient(xy, SIM_DT, axis=0)
    return {"xy": xy, "vel": vel, "speed": np.linalg.norm(vel, axis=1), "target": np.concatenate(tgt_parts)[:n_need],
            "paused": np.concatenate(pause_parts)[:n_need]}


def _head(sim: dict, person: dict, rng: np.random.Generator) -> dict:
    """Body heading, head yaw/pitch/roll and eye position (arrays at 50 Hz) from a simulated walk."""
    n = len(sim["xy"])
    t = np.arange(n) * SIM_DT
    eye = person["eye_height"]
    xy, vel, speed, tgt = sim["xy"], sim["vel"], sim["speed"], sim["target"]
    to_t = tgt[:, :2] - xy
    want_yaw_tgt = np.arctan2(to_t[:, 1], to_t[:, 0])
    want_pitch_tgt = np.clip(np.arctan2(tgt[:, 2] - eye, np.maximum(np.linalg.norm(to_t, axis=1), 0.3)), -1.0, 0.3)
    moving = speed > 0.15
    yaw = np.empty(n)
    pitch = np.empty(n)
    y = float(want_yaw_tgt[0])
    p = -0.2
    for k in range(n):  # first-order lag with a turn-rate limit
        wy = np.arctan2(vel[k, 1], vel[k, 0]) if moving[k] else want_yaw_tgt[k]
        wp = -0.22 if moving[k] else want_pitch_tgt[k]
        y += np.clip(_wrap(wy - y) * (SIM_DT / 0.3), -2.5 * SIM_DT, 2.5 * SIM_DT)
        p += (wp - p) * (SIM_DT / 0.5)
        yaw[k], pitch[k] = y, p
    look = np.where(moving, 0.25, 0.45)  # looking around: wider when standing still
    yaw = yaw + look * _smooth_noise(t, rng) * 0.6
    pitch = pitch + 0.12 * _smooth_noise(t, rng)
    gait = np.clip(speed / WALK_SPEED, 0, 1)
    phase = np.cumsum(2 * np.pi * person["step_hz"] * np.sqrt(gait) * SIM_DT)
    yaw = yaw + 0.03 * gait * np.sin(phase / 2)
    pitch = pitch + 0.012 * gait * np.sin(phase + 1.0)
    roll = 0.02 * gait * np.sin(phase / 2 + 0.5) + 0.01 * _smooth_noise(t, rng)
    fwd = np.stack([np.cos(yaw), np.sin(yaw)], 1)
    side = np.stack([-np.sin(yaw), np.cos(yaw)], 1)
    pos_xy = xy + 0.08 * fwd + (0.02 * gait * np.sin(phase / 2))[:, None] * side
    z = eye + 0.025 * gait * np.sin(phase) + 0.01 * _smooth_noise(t, rng)
    return {"pos": np.concatenate([pos_xy, z[:, None]], 1), "yaw": yaw, "pitch": pitch, "roll": roll}


def life_trajectory(scene: Scene, days: int, day_duration: float, fps: float, rng: np.random.Generator,
                    day_seconds: float = 86400.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A head-worn walk over `days` days of `day_duration` seconds each.

    Returns t (N,) float64 seconds (day d's frames at d * day_seconds + k / fps), T_world_cam (N, 4, 4),
    day (N,) int32. Same rng state, same trajectory."""
    person = {
        "eye_height": float(rng.uniform(1.55, 1.72)),
        "speed": float(rng.uniform(1.3, 1.5)),
        "step_hz": float(rng.uniform(1.7, 2.0)),
        "turn_back": 0.15,
        "pause": (0.8, 4.0),
    }
    habits = rng.dirichlet(np.full(len(scene.places), 0.7))  # favourite places get revisited most
    n_day = int(round(day_duration * fps))
    ts, Ts, ds = [], [], []
    for d in range(days):
        sim = _simulate_day(scene, day_duration, habits, person, rng)
        head = _head(sim, person, rng)
        k = np.arange(n_day)
        tk = k / fps  # frame times within the day
        ts_sim = np.arange(len(sim["xy"])) * SIM_DT
        interp = lambda a: np.interp(tk, ts_sim, a)  # noqa: E731
        pos = np.stack([interp(head["pos"][:, j]) for j in range(3)], 1)
        R = look_rotation(interp(head["yaw"]), interp(head["pitch"]), interp(head["roll"]))
        ts.append(d * day_seconds + tk)
        Ts.append(make_pose(R, pos))
        ds.append(np.full(n_day, d, np.int32))
    return np.concatenate(ts), np.concatenate(Ts), np.concatenate(ds)


def static_trajectory(scene: Scene, n: int, fps: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A fixed camera high in a room corner looking at the room's middle: t (n,), T_world_cam (n, 4, 4) all equal."""
    x0, y0, x1, y1, H = scene.room
    corner = int(rng.integers(4))
    cx = x0 + 0.25 if corner in (0, 3) else x1 - 0.25
    cy = y0 + 0.25 if corner in (0, 1) else y1 - 0.25
    pos = np.array([cx, cy, H - 0.2])
    look = np.array([(x0 + x1) / 2, (y0 + y1) / 2, 0.8]) - pos
    yaw = np.arctan2(look[1], look[0])
    pitch = np.arctan2(look[2], np.linalg.norm(look[:2]))
    R = look_rotation(np.array([yaw]), np.array([pitch]))[0]
    T = make_pose(R, pos)
    return np.arange(n) / fps, np.repeat(T[None], n, 0)


def random_views(scene: Scene, n: int, fps: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`n` independent views from random walkable spots, heights and directions: t (n,), T_world_cam (n, 4, 4)."""
    rc = np.argwhere(scene.free)
    cells = rc[rng.integers(0, len(rc), n)]
    xy = scene.cell_centre(cells) + rng.uniform(-GRID_RES / 2, GRID_RES / 2, (n, 2))
    z = rng.uniform(1.1, 1.8, n)
    R = look_rotation(rng.uniform(-np.pi, np.pi, n), rng.uniform(-0.7, 0.2, n), rng.uniform(-0.05, 0.05, n))
    return np.arange(n) / fps, make_pose(R, np.concatenate([xy, z[:, None]], 1))

"""Merge the SfM models of a life's chunks into one model (`slife sfm`, stage 8).

Reads pycolmap `Reconstruction`s made from one COLMAP database (the same image ids, keypoints and verified
matches: `database.db` of `sfm.py`), each in its own similarity frame; models with fewer than 3 images or
fewer than `MIN_POINTS_PER_IMAGE` points per image are degenerate and left out (counted). Steps:
1. Correspondences between two models: the 3D points of one keypoint of an image registered in both (a
   chunk's overlap with the previous one), and the 3D points at the two ends of an inlier match of a
   verified image pair whose images lie in different models (neighbours across a chunk border, loop
   closures between the visits of a place).
2. A similarity between two models with at least `min_inliers` correspondences that agree with it:
   LO-RANSAC (pycolmap) with a threshold of `max_error` x the target model's median scene depth, refitted
   on its inliers (`slife.lives.geometry.fit_similarity`).
3. Each model's similarity into the frame of the largest: composed along a spanning tree of the strongest
   links, then refined by least squares over all links at once (scipy; residuals in units of scene depth,
   so no model gains by shrinking), which spreads the drift of a chain of chunks over the loop that a
   revisit closes. Models with no chain of links to the largest are left out and counted.
4. One reconstruction: each image's pose from the model that saw the most points in it (its owner,
   `assemble`); then, twice: with the poses fixed, points triangulated from the database's matches by
   COLMAP's incremental triangulator (tracks run across models and revisits); a bundle adjustment of
   everything (robust loss, conjugate gradients on the Schur complement); points with large errors removed
   (`refine_merged`). The chunks' own points are not kept: starting from them (moved by their
   similarities) cost more and gave a larger ATE (bench/lives.md).
Entry point: `merge_models(models, database) -> (Reconstruction, report)`. Reconstructing the chunks is
`sfm.py`'s job.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from slife.lives.colmap import cam_from_world, import_pycolmap
from slife.lives.geometry import fit_similarity

log = logging.getLogger(__name__)

MAX_LINK_POINTS = 200  # correspondences per link used by the least-squares refinement
MIN_POINTS_PER_IMAGE = 5  # a model with fewer 3D points per registered image is left out as degenerate


class _Observed:
    """Per (model, image): the keypoint indices that have a 3D point in that model and those points (cached)."""

    def __init__(self, models):
        self.models = models
        self.cache: dict = {}

    def __call__(self, m: int, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        key = (m, image_id)
        if key not in self.cache:
            rec = self.models[m]
            idx, xyz = [], []
            for k, p in enumerate(rec.image(image_id).points2D):
                if p.has_point3D():
                    idx.append(k)
                    xyz.append(rec.points3D[p.point3D_id].xyz)
            self.cache[key] = (np.asarray(idx, np.int64), np.asarray(xyz, np.float64).reshape(-1, 3))
        return self.cache[key]


def depth_scale(rec, images: int = 50, per_image: int = 100) -> float:
    """Median depth of the points seen by (up to `images` of) the registered images of `rec` (its scene scale)."""
    ids = sorted(i for i, im in rec.images.items() if im.has_pose)
    depths = []
    for i in ids[:: max(1, len(ids) // images)]:
        im = rec.image(i)
        P = cam_from_world(im)[:3]
        pts = [rec.points3D[p.point3D_id].xyz for p in im.points2D if p.has_point3D()][:per_image]
        if pts:
            z = (np.asarray(pts) @ P[:, :3].T + P[:, 3])[:, 2]
            depths.append(z[z > 0])
    d = np.concatenate(depths) if depths else np.zeros(0)
    return float(np.median(d)) if len(d) else 1.0


def correspondences(models, db) -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]:
    """{(i, j), i < j: (X_i (n, 3), X_j (n, 3))}: 3D points of model i and model j that are one physical point
    (step 1 of the module docstring)."""
    pycolmap = import_pycolmap()

    where: dict[int, list[int]] = {}
    for m, rec in enumerate(models):
        for i, im in rec.images.items():
            if im.has_pose:
                where.setdefault(int(i), []).append(m)
    obs = _Observed(models)
    out: dict[tuple[int, int], list] = {}

    def add(i, j, X, Y):
        if len(X):
            if i > j:
                i, j, X, Y = j, i, Y, X
            out.setdefault((i, j), []).append((X, Y))

    for img, ms in where.items():  # an image registered in several models: its keypoints' points
        for u in range(len(ms)):
            for v in range(u + 1, len(ms)):
                ia, Xa = obs(ms[u], img)
                ib, Xb = obs(ms[v], img)
                _, pa, pb = np.intersect1d(ia, ib, assume_unique=True, return_indices=True)
                add(ms[u], ms[v], Xa[pa], Xb[pb])
    pair_ids, geoms = db.read_two_view_geometries()
    for pid, g in zip(pair_ids, geoms):
        a, b = pycolmap.pair_id_to_image_pair(pid)
        ma, mb = where.get(int(a), ()), where.get(int(b), ())
        if not ma or not mb or set(ma) == set(mb) and len(ma) == 1:
            continue
        matches = np.asarray(g.inlier_matches, np.int64).reshape(-1, 2)
        if not len(matches):
            continue
        for i in ma:
            for j in mb:
                if i == j:
                    continue
                ia, Xa = obs(i, int(a))
                ib, Xb = obs(j, int(b))
                if len(ia) and len(ib):
                    ka = np.searchsorted(ia, matches[:, 0]).clip(0, len(ia) - 1)
                    kb = np.searchsorted(ib, matches[:, 1]).clip(0, len(ib) - 1)
                    ok = (ia[ka] == matches[:, 0]) & (ib[kb] == matches[:, 1])
                    add(i, j, Xa[ka[ok]], Xb[kb[ok]])
    return {k: (np.concatenate([x for x, _ in v]), np.concatenate([y for _, y in v])) for k, v in out.items()}


def _apply(S, X):
    s, R, t = S
    return s * X @ R.T + t


def _compose(A, B):
    """A o B for similarities (s, R, t): x -> A(B(x))."""
    return A[0] * B[0], A[1] @ B[1], A[0] * A[1] @ B[2] + A[2]


def _inverse(S):
    s, R, t = S
    return 1.0 / s, R.T, -(R.T @ t) / s


def estimate_link(X: np.ndarray, Y: np.ndarray, threshold: float, seed: int):
    """Similarity S with S(Y) ~ X from correspondences (robust) -> (S, inlier mask) or (None, None)."""
    pycolmap = import_pycolmap()

    if len(X) < 3:
        return None, None
    opts = pycolmap.RANSACOptions()
    opts.max_error = threshold
    opts.random_seed = seed
    opts.min_inlier_ratio = 0.05
    found = pycolmap.estimate_sim3d_robust(Y, X, opts)
    if not found:
        return None, None
    M = np.asarray(found["tgt_from_src"].matrix(), np.float64)  # (3, 4) = [s R | t]
    s = float(np.cbrt(max(np.linalg.det(M[:, :3]), 1e-300)))
    S = (s, M[:, :3] / s, M[:, 3])
    inl = np.linalg.norm(_apply(S, Y) - X, axis=1) < threshold
    if inl.sum() >= 3:
        S = fit_similarity(Y[inl], X[inl])
        inl = np.linalg.norm(_apply(S, Y) - X, axis=1) < threshold
    return S, inl


def _refine(links, world, scales, anchor, max_error):
    """Least squares over the similarities of all models in `world` (anchor fixed) on the links' inliers."""
    from scipy.optimize import least_squares
    from scipy.sparse import lil_matrix
    from scipy.spatial.transform import Rotation

    free = [m for m in sorted(world) if m != anchor]
    col = {m: 7 * k for k, m in enumerate(free)}

    def unpack(x):
        out = {anchor: world[anchor]}
        R = Rotation.from_rotvec(x.reshape(-1, 7)[:, :3]).as_matrix() if free else []
        for k, m in enumerate(free):
            p = x[7 * k:7 * k + 7]
            out[m] = (float(np.exp(p[6])), R[k], p[3:6])
        return out

    x0 = np.concatenate([np.r_[Rotation.from_matrix(world[m][1]).as_rotvec(), world[m][2], np.log(world[m][0])]
                         for m in free]) if free else np.zeros(0)
    n_res = sum(3 * len(X) for (_, _, X, _) in links)

    def fun(x):
        S = unpack(x)
        res = []
        for i, j, X, Y in links:
            unit = 0.5 * (S[i][0] * scales[i] + S[j][0] * scales[j])
            res.append(((_apply(S[i], X) - _apply(S[j], Y)) / unit).ravel())
        return np.concatenate(res)

    sparsity = lil_matrix((n_res, len(x0)), dtype=np.int8)
    r = 0
    for i, j, X, _ in links:
        for m in (i, j):
            if m in col:
                sparsity[r:r + 3 * len(X), col[m]:col[m] + 7] = 1
        r += 3 * len(X)
    res = least_squares(fun, x0, jac_sparsity=sparsity, loss="soft_l1", f_scale=max_error, method="trf",
                        max_nfev=200)
    return unpack(res.x)


def merge_models(models, database: Path | str, *, num_threads: int = 2, seed: int = 0, min_inliers: int = 20,
                 max_error: float = 0.05, ba_iterations: int = 50, rounds: int = 2):
    """Merge `models` (pycolmap Reconstructions of one database) into one (the module docstring's steps).

    Returns (Reconstruction, report): report has models (given), models_merged (in the result), links
    (similarities kept), link_inliers (their inlier counts), left_out_images (registered only in
    models left out), chunk_points (the models' points kept) and `refine_merged`'s stats."""
    pycolmap = import_pycolmap()

    given = len(models)
    # a model with few points per image is degenerate (images registered on almost no structure): left out
    models = [m for m in models if m.num_reg_images() >= 3 and m.num_points3D() >= MIN_POINTS_PER_IMAGE * m.num_reg_images()]
    if len(models) == 0:
        raise ValueError("no model with at least 3 registered images")
    anchor = max(range(len(models)), key=lambda m: models[m].num_reg_images())
    report = {"models": given, "models_degenerate": given - len(models), "models_merged": 1, "links": 0,
              "link_inliers": [], "left_out_images": 0}
    if len(models) == 1:
        return models[0], report
    scales = [depth_scale(r) for r in models]
    db = pycolmap.Database.open(str(database))
    try:
        corr = correspondences(models, db)
        links, edges = [], []
        for (i, j), (X, Y) in sorted(corr.items()):
            if len(X) < min_inliers:
                continue
            S, inl = estimate_link(X, Y, max_error * scales[i], seed)
            if S is None or inl.sum() < min_inliers:
                continue
            keep = np.flatnonzero(inl)
            keep = keep[np.linspace(0, len(keep) - 1, min(len(keep), MAX_LINK_POINTS)).round().astype(int)]
            links.append((i, j, X[keep], Y[keep]))
            edges.append((int(inl.sum()), i, j, S))
        # spanning tree of the strongest links from the anchor (Prim), composing similarities into its frame
        world = {anchor: (1.0, np.eye(3), np.zeros(3))}
        while True:
            best = None
            for w, i, j, S in edges:
                if (i in world) != (j in world) and (best is None or w > best[0]):
                    best = (w, i, j, S)
            if best is None:
                break
            _, i, j, S = best
            if i in world:
                world[j] = _compose(world[i], S)  # S maps j's frame into i's
            else:
                world[i] = _compose(world[j], _inverse(S))
        links = [lk for lk in links if lk[0] in world and lk[1] in world]
        if len(links) >= len(world):  # more links than a tree has: loops to close
            world = _refine(links, world, scales, anchor, max_error)
        report.update(models_merged=len(world), links=len(links), link_inliers=[w for w, *_ in edges])
        # one reconstruction: each image from the model that saw the most points in it
        owner: dict[int, int] = {}
        for m in world:
            for i, im in models[m].images.items():
                if im.has_pose and (i not in owner or im.num_points3D > models[owner[i]].image(i).num_points3D):
                    owner[int(i)] = m
        left = {int(i) for m in range(len(models)) if m not in world
                for i, im in models[m].images.items() if im.has_pose} - set(owner)
        report["left_out_images"] = len(left)
        if left:
            log.warning("%d registered images are in models that no match ties to the largest; left out", len(left))
        merged = assemble(models, world, owner, db, anchor)
    finally:
        db.close()
    rec, stats = refine_merged(merged, database, num_threads, ba_iterations, rounds)
    report.update(stats)
    return rec, report


def assemble(models, world, owner: dict[int, int], db, anchor: int):
    """One Reconstruction in the anchor's frame, without points: each image in `owner` with its pose from its
    owner model (moved by that model's similarity) and its keypoints from the database."""
    pycolmap = import_pycolmap()

    merged = pycolmap.Reconstruction()
    cams = {}
    for m in sorted(world, key=lambda m: m != anchor):
        for cid, cam in models[m].cameras.items():
            cams.setdefault(int(cid), cam)
    for cid in sorted(cams):
        merged.add_camera_with_trivial_rig(cams[cid])
    for i in sorted(owner):
        m = owner[i]
        im = models[m].image(i)
        s, R, t = world[m]  # model m -> world: x_w = s R x_m + t
        P = cam_from_world(im)[:3]  # x_c = Rc x_m + tc; in world: x_c = Rc R^T (x_w - t) / s + tc (scaled by s: same camera)
        Rc = P[:, :3] @ R.T
        tc = -Rc @ t + s * P[:, 3]
        kp = np.asarray(db.read_keypoints(i), np.float64)[:, :2]
        image = pycolmap.Image(name=im.name, keypoints=kp, camera_id=im.camera_id, image_id=i)
        merged.add_image_with_trivial_frame(image, pycolmap.Rigid3d(np.c_[Rc, tc]))
    return merged


def refine_merged(rec, database, num_threads: int = 2, ba_iterations: int = 50, rounds: int = 2):
    """Points for the posed images of `rec` and a bundle adjustment of everything, `rounds` times.

    Each round: with the poses fixed, COLMAP's incremental triangulator (on the database's verified
    matches) triangulates each image's matches (new points, and observations added to the points that
    already exist: tracks run across chunk borders and revisits), merges points that matches show to be
    one and completes tracks; then a bundle adjustment of all poses, points and intrinsics (robust loss,
    at most `ba_iterations`); points with a reprojection error over 4 px or a triangulation angle under
    1.5 deg removed. The second round triangulates what the first missed through the drift it removed.
    Returns (rec, stats: points_created, points_merged, observations_completed, ba_iterations per round)."""
    pycolmap = import_pycolmap()

    db = pycolmap.Database.open(str(database))
    try:
        opts = pycolmap.DatabaseCacheOptions()
        opts.min_num_matches = 15
        opts.image_names = {im.name for im in rec.images.values()}  # the graph must not name images rec lacks
        cache = pycolmap.DatabaseCache.create(db, opts)
    finally:
        db.close()
    graph = cache.correspondence_graph
    obs = pycolmap.ObservationManager(rec, graph)
    tri = pycolmap.IncrementalTriangulator(graph, rec, obs)
    topts = pycolmap.IncrementalTriangulatorOptions()
    ba = pycolmap.BundleAdjustmentOptions()
    ba.print_summary = False
    ba.ceres.loss_function_type = pycolmap.LossFunctionType.SOFT_L1
    ba.ceres.solver_options.max_num_iterations = ba_iterations
    ba.ceres.solver_options.num_threads = num_threads
    # conjugate gradients on the Schur complement: at 1000 frames a third of the CPU of the sparse factorisation
    # that COLMAP picks below 1000 images, for the same final cost (bench/lives.md); above 1000 it picks this too
    ba.ceres.auto_select_solver_type = False
    solver = ba.ceres.solver_options
    solver.linear_solver_type = type(solver.linear_solver_type).ITERATIVE_SCHUR
    solver.preconditioner_type = type(solver.preconditioner_type).SCHUR_JACOBI
    stats = {"points_merged": 0, "observations_completed": 0, "points_created": 0, "ba_iterations": []}
    for _ in range(rounds):
        stats["points_merged"] += tri.merge_all_tracks(topts)
        stats["observations_completed"] += tri.complete_all_tracks(topts)
        before = rec.num_points3D()
        for i in sorted(rec.reg_image_ids()):
            tri.triangulate_image(topts, i)
        stats["points_created"] += rec.num_points3D() - before
        stats["points_merged"] += tri.merge_all_tracks(topts)
        stats["observations_completed"] += tri.complete_all_tracks(topts)
        config = pycolmap.BundleAdjustmentConfig()
        for i in rec.reg_image_ids():
            config.add_image(i)
        config.fix_gauge(pycolmap.BundleAdjustmentGauge.THREE_POINTS)
        # (pycolmap.bundle_adjustment would turn COLMAP's info log back on)
        summary = pycolmap.create_default_bundle_adjuster(ba, config, rec).solve()
        stats["ba_iterations"].append(_iterations(summary))
        obs.filter_all_points3D(4.0, 1.5)
    return rec, stats


def _iterations(summary) -> int | None:
    """Iterations a bundle adjustment ran, read from its summary (None when the summary does not say)."""
    found = re.search(r"Iterations\s*:?\s*(\d+)", summary.brief_report() if hasattr(summary, "brief_report") else "")
    return int(found.group(1)) if found else None

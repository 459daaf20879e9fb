"""Reader of image pairs related by known homographies: HPatches sequences, Oxford affine sequences, any such folder.

Reads the `hpatches-sequences-release` layout: a root of sequence folders `v_*` (viewpoint) and `i_*`
(illumination), each with `1.ppm` .. `6.ppm` and `H_1_2` .. `H_1_6` (3x3 ASCII, maps pixels of image 1
to image N, OpenCV pixel convention: pixel centres at integers). Also the Oxford layout (`img1.png` ..
`img6.png` (or .ppm/.jpg), `H1to2p` .. `H1to6p`), and a root that is itself one sequence folder.
Returns `HomographyPair`s (reference image 1, image N, H, sequence name, N); images are read lazily.
Entry points: `detect`, `read_pairs`. Flow and metrics are `eval/correspondence.py`'s.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slife.errors import SlifeError

log = logging.getLogger(__name__)

IMAGE_EXTS = (".ppm", ".png", ".jpg", ".jpeg", ".pgm", ".bmp", ".tif", ".tiff")
EXPECTED = "v_*/1.ppm .. 6.ppm with H_1_2 .. H_1_6 (HPatches) or img1.png .. img6.png with H1to2p .. H1to6p (Oxford)"


@dataclass(frozen=True)
class HomographyPair:
    """Reference image 1 and image `index` of a sequence, with H mapping image-1 pixels to image-`index` pixels."""

    sequence: str  # folder name, e.g. v_graffiti
    index: int  # 2..6 in HPatches
    ref_path: Path  # image 1
    img_path: Path  # image `index`
    H: np.ndarray  # (3, 3) float64, image 1 -> image `index`, OpenCV pixel convention


def _find_image(folder: Path, index: int) -> Path | None:
    for stem in (str(index), f"img{index}"):
        for ext in IMAGE_EXTS:
            p = folder / f"{stem}{ext}"
            if p.is_file():
                return p
    return None


def _h_file(folder: Path, index: int) -> Path | None:
    for name in (f"H_1_{index}", f"H1to{index}p", f"H1to{index}", f"H_1_{index}.txt"):
        p = folder / name
        if p.is_file():
            return p
    return None


def read_homography(path: Path) -> np.ndarray:
    """A 3x3 ASCII homography file -> (3, 3) float64; SlifeError if it is not 9 finite numbers or singular."""
    try:
        H = np.loadtxt(path, dtype=np.float64)
    except ValueError as e:
        raise SlifeError(f"{path}: not a 3x3 homography ({str(e).splitlines()[0]})") from None
    if H.size != 9 or not np.isfinite(H).all():
        raise SlifeError(f"{path}: not a 3x3 homography ({H.size} numbers)")
    H = H.reshape(3, 3)
    if abs(np.linalg.det(H)) < 1e-12:
        raise SlifeError(f"{path}: singular homography")
    return H


def is_sequence(folder: Path) -> bool:
    """A folder holding image 1 and at least one H file."""
    return folder.is_dir() and _find_image(folder, 1) is not None and any(_h_file(folder, i) for i in range(2, 10))


def detect(root: Path) -> bool:
    root = Path(root)
    return is_sequence(root) or (root.is_dir() and any(is_sequence(p) for p in root.iterdir()))


def read_pairs(root: Path, prefixes: tuple[str, ...] = ("v_",), max_index: int = 20) -> tuple[list[HomographyPair], dict]:
    """All (image 1, image N) pairs of the sequences under `root` -> (pairs, counts).

    `prefixes` chooses sequence folders by name when the root holds HPatches folders (default viewpoint
    `v_`; give ("v_", "i_") for both; () for every folder); a root that is one sequence is used as it is.
    Images without an H file (or H without image) are skipped and counted.
    """
    root = Path(root)
    if not root.exists():
        raise SlifeError(f"{root}: no such folder")
    if not root.is_dir():
        raise SlifeError(f"{root}: not a folder (expected {EXPECTED})")
    if is_sequence(root):
        seqs = [root]
    else:
        seqs = sorted(p for p in root.iterdir() if is_sequence(p))
        if prefixes and any(p.name.startswith(prefixes) for p in seqs):
            seqs = [p for p in seqs if p.name.startswith(prefixes)]
        elif prefixes and any(re.match(r"^[vi]_", p.name) for p in seqs):
            seqs = []
    if not seqs:
        raise SlifeError(f"{root}: no homography sequences found (expected {EXPECTED})")
    pairs, counts = [], {"sequences": len(seqs), "missing_h": 0, "missing_image": 0}
    for s in seqs:
        ref = _find_image(s, 1)
        for i in range(2, max_index + 1):
            img, hf = _find_image(s, i), _h_file(s, i)
            if img is None and hf is None:
                continue
            if hf is None:
                counts["missing_h"] += 1
                continue
            if img is None:
                counts["missing_image"] += 1
                continue
            pairs.append(HomographyPair(s.name, i, ref, img, read_homography(hf)))
    if not pairs:
        raise SlifeError(f"{root}: no image pairs with homographies (expected {EXPECTED})")
    return pairs, counts

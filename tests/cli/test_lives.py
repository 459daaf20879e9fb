"""`slife inspect` end to end through typer's CliRunner: a life table, JSON, and a one-line error (exit 2)."""

import json

import numpy as np
from typer.testing import CliRunner

from slife.cli import app


def _life(d):
    d.mkdir()
    T = np.tile(np.eye(4), (5, 1, 1))
    T[2, 0, 0] = np.nan
    np.savez(d / "poses.npz", t=np.arange(5) * 0.1, T_world_cam=T, K=np.diag([50.0, 50.0, 1.0]),
             image_size=np.array([64, 48]))


def test_inspect_life(tmp_path):
    _life(tmp_path / "L")
    r = CliRunner().invoke(app, ["inspect", str(tmp_path / "L")])
    assert r.exit_code == 0, r.output
    assert "folder" in r.output and "4 (80.0%)" in r.output and "poses_invalid" in r.output
    r = CliRunner().invoke(app, ["inspect", "--json", str(tmp_path / "L")])
    s = json.loads(r.stdout)
    assert s["frames"] == 5 and s["posed_frames"] == 4 and s["counts"] == {"poses_invalid": 1}


def test_inspect_bad_input_one_line_exit_2(tmp_path):
    (tmp_path / "x.mp4").write_bytes(b"not a video at all")
    r = CliRunner().invoke(app, ["inspect", str(tmp_path / "x.mp4")])
    assert r.exit_code == 2
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "x.mp4" in lines[0]
    r = CliRunner().invoke(app, ["inspect", str(tmp_path / "nothing-here")])
    assert r.exit_code == 2 and "no such file" in r.output


def test_inspect_shard_folder(tmp_path):
    d = tmp_path / "shards"
    d.mkdir()
    (d / "manifest.json").write_text(json.dumps({"slife_version": "0.1.0", "shards": []}))
    r = CliRunner().invoke(app, ["inspect", "--json", str(d)])
    assert r.exit_code in (0, 1), r.output
    s = json.loads(r.stdout)
    assert isinstance(s, dict) and s  # the summary of slife.pairmine.shardset.inspect_shards
    (d / "manifest.json").unlink()  # a killed run: shards and mine.json, no manifest yet
    (d / "mine.json").write_text("{}")
    r = CliRunner().invoke(app, ["inspect", "--json", str(d)])
    assert r.exit_code == 1 and "manifest.json missing" in json.loads(r.stdout)["problems"][0]


def test_inspect_check_counts_undecodable_frames(tmp_path):
    from PIL import Image

    d = tmp_path / "F"
    _life(d)
    (d / "frames").mkdir()
    for i in range(5):
        Image.fromarray(np.full((48, 64, 3), 40 * i, np.uint8)).save(d / "frames" / f"{i:06d}.jpg")
    (d / "frames" / "000003.jpg").write_bytes(b"\xff\xd8 broken jpeg")
    r = CliRunner().invoke(app, ["inspect", "--check", "--json", str(d)])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["counts"]["frames_undecodable"] == 1 and "first: frame 3" in s["warnings"][-1]


def test_inspect_reader_options(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "lives"))
    from test_aria_mps import write_mps  # an Aria MPS folder in its real layout, with a small MP4

    write_mps(tmp_path / "A", video_frames=6)
    r = CliRunner().invoke(app, ["inspect", "--json", str(tmp_path / "A")])
    plain = json.loads(r.stdout)
    r = CliRunner().invoke(app, ["inspect", "--json", "-O", "upright=true", str(tmp_path / "A")])
    assert r.exit_code == 0, r.output
    up = json.loads(r.stdout)
    (c0,), (c1,) = plain["cameras"], up["cameras"]
    assert (c1["width"], c1["height"]) == (c0["height"], c0["width"])  # turned 90 degrees
    r = CliRunner().invoke(app, ["inspect", "-O", "upright=maybe", str(tmp_path / "A")])
    assert r.exit_code == 2 and "true/false" in r.output
    r = CliRunner().invoke(app, ["inspect", "-O", "speed=2", str(tmp_path / "A")])
    assert r.exit_code == 2 and "takes no option speed" in r.output and "upright" in r.output
    r = CliRunner().invoke(app, ["inspect", "-O", "upright", str(tmp_path / "A")])
    assert r.exit_code == 2 and "KEY=VALUE" in r.output


def test_inspect_and_mine_a_folder_of_image_frames(tmp_path):
    from PIL import Image

    d = tmp_path / "frames"
    d.mkdir()
    for i in range(12):
        Image.fromarray(np.full((24, 32, 3), 20 * i, np.uint8)).save(d / f"{i:06d}.jpg")
    r = CliRunner().invoke(app, ["inspect", str(d)])
    assert r.exit_code == 2 and "-O fps=N" in r.output and len(r.output.strip().splitlines()) == 1
    r = CliRunner().invoke(app, ["inspect", str(d), "-O", "fps=4", "--json"])
    s = json.loads(r.stdout)
    assert s["format"] == "frames" and s["frames"] == 12 and s["fps"] == 4.0
    r = CliRunner().invoke(app, ["mine-pairs", str(d), "-O", "fps=4", "-s", "temporal", "--fps", "0",
                                 "--min-gap", "0.5", "--max-gap", "1", "--short-side", "16", "--out", str(tmp_path / "s")])
    assert r.exit_code == 0, r.output
    man = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert man["life"]["format"] == "frames" and man["samples"] > 0


def test_inspect_shard_folder_table_is_readable_and_takes_a_manifest_path(tmp_path):
    """`slife inspect` on a shard set (or its manifest.json) prints lines, not JSON blobs; `resolve_shards` takes a
    manifest.json too and says what it expects."""
    import pytest

    from slife.errors import SlifeError
    from slife.pairmine.procedural import make_life
    from slife import pairmine as pm
    from slife.train.stream import resolve_shards

    life = make_life(30, rooms=(1, 2), videos=1, seed=3, image_dir=tmp_path / "imgs")
    out = tmp_path / "sh"
    man = json.loads(pm.run(pm.MineConfig(strategies=("temporal",), fps=0, short_side=16, pairs_per_shard=10), life,
                            out).read_text())
    for target in (out, out / "manifest.json"):
        r = CliRunner().invoke(app, ["inspect", str(target)], env={"COLUMNS": "200"})
        assert r.exit_code == 0, r.output
        assert "{" not in r.output and "[" not in r.output  # no raw JSON
        n = len(man["shards"])
        assert f"{n} tars, {man['samples']} samples (temporal {man['samples']})" in r.output
        assert f"pairs-000000.tar .. pairs-{n - 1:06d}.tar" in r.output and "frames" in r.output
    assert resolve_shards(str(out / "manifest.json")).paths == resolve_shards(str(out)).paths
    with pytest.raises(SlifeError, match=r"life.json: not a shard folder, manifest.json or .tar file"):
        (tmp_path / "life.json").write_text("{}")
        resolve_shards(str(tmp_path / "life.json"))

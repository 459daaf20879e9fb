"""`slife mine-pairs` end to end on the tiny synthetic life; errors are one line with exit 2."""

import json

from typer.testing import CliRunner

from slife.cli import app


def test_mine_pairs_cli(tmp_path, tiny_life):
    out = tmp_path / "shards"
    args = ["mine-pairs", str(tiny_life), "--strategy", "spatial+temporal+augmented", "--out", str(out),
            "--fps", "0", "--min-gap", "0.2", "--max-gap", "1", "--short-side", "32", "--pairs-per-shard", "20",
            "--preview", "1", "--max-depth", "6", "--voxel", "0.1"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    man = json.loads((out / "manifest.json").read_text())
    assert man["samples"] > 20 and "spatial" in man["summary"]["found_by_strategy"]
    assert man["summary"]["found_by_strategy"]["spatial"] > 0
    assert "total" in res.output and "Jaccard" in res.output
    assert (out / "preview.png").exists()
    assert man["command"].startswith("slife ")
    res = CliRunner().invoke(app, ["inspect", str(out), "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["ok"] is True
    # the same command again resumes (nothing to do); a different one is refused in one line
    assert CliRunner().invoke(app, args).exit_code == 0
    res = CliRunner().invoke(app, args[:-2] + ["--voxel", "0.2"])
    assert res.exit_code == 2 and "--overwrite" in res.output


def test_mine_pairs_needs_poses_for_spatial(tmp_path, tiny_screen):
    res = CliRunner().invoke(app, ["mine-pairs", str(tiny_screen), "--strategy", "spatial", "--out",
                                   str(tmp_path / "s")])
    assert res.exit_code == 2 and "slife sfm" in res.output


def test_mine_pairs_reader_options(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "lives"))
    from test_aria_mps import write_mps  # an Aria MPS folder in its real layout, with a small MP4

    write_mps(tmp_path / "A", video_frames=6)
    base = ["mine-pairs", str(tmp_path / "A"), "-s", "temporal+augmented", "--pairs-only", "--fps", "0"]
    res = CliRunner().invoke(app, base + ["-O", "upright=true", "--out", str(tmp_path / "up")])
    assert res.exit_code == 0, res.output
    man = json.loads((tmp_path / "up" / "manifest.json").read_text())
    assert man["config"]["reader_options"] == [["upright", "true"]] and man["summary"]["pairs"] > 0
    # a different reader option is a different shard set: refused without --overwrite
    res = CliRunner().invoke(app, base + ["--out", str(tmp_path / "up")])
    assert res.exit_code == 2 and "reader_options" in res.output
    res = CliRunner().invoke(app, base + ["-O", "fps=3", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "takes no option fps" in res.output


def test_mine_pairs_cli_appends_a_generation_to_a_grown_life(tmp_path, tiny_life):
    import shutil

    life = tmp_path / "life"
    shutil.copytree(tiny_life, life)
    args = ["mine-pairs", str(life), "-s", "spatial+temporal", "--out", str(tmp_path / "s"), "--fps", "0",
            "--min-gap", "0.2", "--max-gap", "1", "--short-side", "24", "--pairs-per-shard", "20", "--preview", "1"]
    assert CliRunner().invoke(app, args).exit_code == 0
    first = sorted(p.name for p in (tmp_path / "s").glob("pairs-*.tar"))
    res = CliRunner().invoke(app, ["synth", str(life), "--append-days", "1"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "generation 1" in res.output and "the set holds 2 generations" in res.output
    man = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert [s["name"] for s in man["shards"][: len(first)]] == first and len(man["shards"]) > len(first)
    res = CliRunner().invoke(app, ["inspect", str(tmp_path / "s"), "--json"])
    assert res.exit_code == 0 and [g["recordings"] for g in json.loads(res.output)["generations"]] == \
        [["video"], ["video-001"]]

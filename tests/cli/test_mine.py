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
    g = man["generations"][1]
    names = [s["name"] for s in man["shards"][g["first_shard"]:]]
    where = names[0] if len(names) == 1 else f"{names[0]} .. {names[-1]}"
    assert (f"the set holds 2 generations: {man['samples']} pairs in {len(man['shards'])} shards (generation 1: "
            f"{g['samples']} pairs in {where})") in " ".join(res.output.split())
    res = CliRunner().invoke(app, ["inspect", str(tmp_path / "s"), "--json"])
    assert res.exit_code == 0 and [g["recordings"] for g in json.loads(res.output)["generations"]] == \
        [["video"], ["video-001"]]


def _colmap_project(tmp_path, n=12):
    """A COLMAP text model of n posed frames with its images in <project>/images/cam/."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "lives"))
    from lives_scene import make_scene
    from test_colmap import write_colmap_txt

    proj = tmp_path / "proj"
    write_colmap_txt(proj / "sparse" / "0", make_scene(n=n))
    return proj


def test_mine_pairs_colmap_missing_images_named_warned_strict(tmp_path):
    proj = _colmap_project(tmp_path)
    gone = [0, 3, 5, 7, 9]  # the first image too: the images folder is still found by the others
    for i in gone:
        (proj / "images" / "cam" / f"{i:04d}.png").unlink()
    base = ["mine-pairs", str(proj), "-s", "spatial", "--fps", "0", "--short-side", "16"]
    res = CliRunner().invoke(app, base + ["--out", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    assert "has poses but no video" not in res.output
    man = json.loads((tmp_path / "s" / "manifest.json").read_text())
    s = man["summary"]
    assert (s["frames_missing"], s["frames_corrupt"]) == (5, 0)
    assert s["first_missing"] == str(proj / "images" / "cam" / "0000.png")
    assert man["life"]["reader_counts"] == {"frames_missing": 5}
    assert any("5 of 12 images of the model are missing" in w and "cam/0000.png" in w for w in man["warnings"])
    lost = f"{s['pairs_dropped_corrupt']} of {s['pairs']} pairs"
    assert s["pairs_dropped_corrupt"] > 0 and "5 missing, 0 corrupt" in res.output
    assert f"warning: {lost}" in res.output and "were not written: 5 frames with image file missing" in res.output
    cov = s["spatial_coverage"]
    assert cov["posed_frames"] == 12 and 0 < cov["with_spatial_pair"] <= 12
    assert f"spatial coverage: {cov['with_spatial_pair']} of 12 posed frames" in res.output
    # inspect on the shard set says it too
    res = CliRunner().invoke(app, ["inspect", str(tmp_path / "s")])
    assert res.exit_code == 0 and f"warning: {lost}" in res.output and "spatial coverage" in res.output
    # --strict: any loss is an error, in one line, before anything is written
    res = CliRunner().invoke(app, base + ["--out", str(tmp_path / "strict"), "--strict"])
    lines = [ln for ln in res.output.splitlines() if ln.startswith("error")]
    assert res.exit_code == 2 and len(lines) == 1 and "--strict" in lines[0] and "frames missing: 5" in lines[0]
    assert not (tmp_path / "strict").exists()


def test_mine_pairs_images_dir_must_exist(tmp_path):
    proj = _colmap_project(tmp_path, n=4)
    res = CliRunner().invoke(app, ["mine-pairs", str(proj), "-s", "spatial", "--fps", "0", "-O",
                                   f"images_dir={tmp_path / 'nope'}", "--out", str(tmp_path / "s")])
    assert res.exit_code == 2 and f"error: {tmp_path / 'nope'}: no such folder" in res.output
    (tmp_path / "empty").mkdir()
    res = CliRunner().invoke(app, ["inspect", str(proj), "-O", f"images_dir={tmp_path / 'empty'}"])
    assert res.exit_code == 2 and "holds none of the model's 4 images" in res.output


def test_mine_pairs_unreadable_videos_listed_skipped_counted(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "lives"))
    from lives_scene import make_scene, write_video

    sc = make_scene(n=12)
    write_video(tmp_path / "v" / "good.mp4", [sc.image(i) for i in range(12)])
    for name in ("bad1.mp4", "bad2.mov"):
        (tmp_path / "v" / name).write_bytes(b"not a video" * 50)
    base = ["mine-pairs", str(tmp_path / "v"), "-s", "temporal", "--fps", "0", "--min-gap", "0.1",
            "--max-gap", "0.5", "--short-side", "16"]
    res = CliRunner().invoke(app, base + ["--out", str(tmp_path / "a")])
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error")]
    assert res.exit_code == 2 and len(errors) == 1
    assert "2 of 3 videos cannot be read: bad1.mp4, bad2.mov" in errors[0] and "skip_unreadable=true" in errors[0]
    res = CliRunner().invoke(app, base + ["-O", "skip_unreadable=true", "--out", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    man = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert man["life"]["reader_counts"] == {"videos_skipped": 2} and man["samples"] > 0
    assert [w.split(":")[0] for w in man["warnings"]] == ["bad1.mp4", "bad2.mov"]
    assert "warning: bad1.mp4: skipped, cannot be read" in res.output
    res = CliRunner().invoke(app, base + ["-O", "skip_unreadable=true", "--strict", "--out", str(tmp_path / "c")])
    assert res.exit_code == 2 and "--strict" in res.output and "videos skipped: 2" in res.output
    assert "skip_unreadable=true" in CliRunner().invoke(app, ["mine-pairs", "--help"]).output


def test_mine_pairs_frames_line_counts_images_the_reader_left_out(tmp_path):
    """An unreadable image in a frames folder is in the end-of-run frames line and the manifest, not only in a
    warning; the log names the folder once."""
    from PIL import Image

    life = tmp_path / "fr1"
    life.mkdir()
    for i in range(20):
        Image.new("RGB", (32, 24), (i * 10, 50, 100)).save(life / f"{i:06d}.jpg")
    (life / "000007.jpg").write_bytes(b"junk")
    out = tmp_path / "sh"
    res = CliRunner().invoke(app, ["mine-pairs", str(life), "-O", "fps=5", "-s", "temporal", "-o", str(out),
                                   "--fps", "0", "--short-side", "16"])
    assert res.exit_code == 0, res.output
    s = json.loads((out / "manifest.json").read_text())["summary"]
    assert s["frames_left_out"] == {"frames_unreadable": 1} and s["frames_in_life"] == 19
    line = next(x for x in res.output.splitlines() if x.startswith("frames:"))
    assert line == (f"frames: 19 in life, 19 sampled, {s['frames_used']} used, 19 without pose, 0 missing, 1 corrupt "
                    f"(1 of them an image left out as unreadable when the life was read; 0 of {s['pairs']} pairs not "
                    "written)")
    assert f"{life}: {life}:" not in res.output


def test_mine_pairs_moved_life_is_refused_naming_both_paths(tmp_path, tiny_life):
    """A life copied elsewhere is another life to a shard set: the one-line error names both paths and the way on."""
    import shutil

    args = ["--fps", "4", "-s", "temporal", "--short-side", "16", "--min-gap", "0.2", "--max-gap", "1"]
    assert CliRunner().invoke(app, ["mine-pairs", str(tiny_life), "-o", str(tmp_path / "shA")] + args).exit_code == 0
    shutil.copytree(tiny_life, tmp_path / "lifeC")
    shutil.copytree(tmp_path / "shA", tmp_path / "shC")
    res = CliRunner().invoke(app, ["mine-pairs", str(tmp_path / "lifeC"), "-o", str(tmp_path / "shC")] + args)
    assert res.exit_code == 2
    msg = " ".join(res.output.split())
    assert (f"holds pairs mined with other settings (life differs: {tiny_life.resolve()} -> "
            f"{(tmp_path / 'lifeC').resolve()}; a life moved or copied elsewhere counts as another life); pass "
            "--overwrite to mine again into it") in msg


def test_mine_pairs_pairs_only_appends_a_generation(tmp_path, tiny_life):
    import shutil

    life = tmp_path / "life"
    shutil.copytree(tiny_life, life)
    out = tmp_path / "p"
    args = ["mine-pairs", str(life), "-s", "temporal", "--out", str(out), "--fps", "0", "--min-gap", "0.2",
            "--max-gap", "1", "--pairs-only"]
    assert CliRunner().invoke(app, args).exit_code == 0
    old = (out / "pairs.jsonl").read_text().splitlines()
    assert CliRunner().invoke(app, ["synth", str(life), "--append-days", "1"]).exit_code == 0
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    rows = (out / "pairs.jsonl").read_text().splitlines()
    assert rows[: len(old)] == old and len(rows) > len(old)
    assert (f"the set holds 2 generations: {len(rows)} pairs in pairs.jsonl (generation 1: its lines "
            f"{len(old) + 1}-{len(rows)})") in " ".join(res.output.split())
    assert "written" not in res.output  # no shards, no written column

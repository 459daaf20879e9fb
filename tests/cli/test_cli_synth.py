"""`slife synth` end to end through the CLI (typer CliRunner)."""

import numpy as np
from typer.testing import CliRunner

from slife.cli import app


def test_synth_command(tmp_path):
    out = tmp_path / "life"
    r = CliRunner().invoke(app, ["synth", str(out), "--scene", "bedroom", "--duration", "1", "--fps", "6",
                                 "--width", "48", "--height", "32", "--days", "2", "--seed", "4",
                                 "--texture-size", "32", "--points", "500"])
    assert r.exit_code == 0, r.output
    assert str(out) in r.output
    P = np.load(out / "poses.npz")
    assert len(P["t"]) == 6 and P["image_size"].tolist() == [48, 32]
    assert (out / "video.mp4").stat().st_size > 0 and len(list((out / "depth").iterdir())) == 6


def test_synth_bad_option_is_one_line(tmp_path):
    r = CliRunner().invoke(app, ["synth", str(tmp_path / "x"), "--scene", "moon"])
    assert r.exit_code == 2
    assert "unknown scene 'moon'" in r.output and len(r.output.strip().splitlines()) == 1


def test_synth_help_lists_every_option():
    r = CliRunner().invoke(app, ["synth", "--help"])
    assert r.exit_code == 0
    for opt in ("--kind", "--scene", "--duration", "--fps", "--width", "--height", "--seed", "--days", "--overwrite",
                "--append-days"):
        assert opt in r.output
    assert "files not made by synth" in " ".join(r.output.split())  # what --overwrite replaces is explained


def test_synth_refuses_a_folder_it_did_not_make(tmp_path):
    out = tmp_path / "u"
    (out / "depth").mkdir(parents=True)
    (out / "depth" / "mine.png").write_text("x")
    r = CliRunner().invoke(app, ["synth", str(out), "--kind", "static", "--duration", "1", "--fps", "2",
                                 "--width", "64", "--height", "48", "--points", "0"])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1
    assert "not made by `slife synth` (1 entry, first: depth); pass --overwrite" in r.output
    assert (out / "depth" / "mine.png").read_text() == "x"


def test_synth_append_days_refuses_other_settings(tiny_life, tmp_path):
    import shutil

    life = tmp_path / "life"
    shutil.copytree(tiny_life, life)
    r = CliRunner().invoke(app, ["synth", str(life), "--append-days", "1", "--fps", "30", "--width", "640",
                                 "--scene", "office"])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
    assert ("these options differ: --scene office (the life's: kitchen), --fps 30.0 (the life's: 8.0), --width 640 "
            "(the life's: 64); leave them out") in r.output
    assert not (life / "video-001.mp4").exists()
    r = CliRunner().invoke(app, ["synth", str(life), "--append-days", "1", "--overwrite"])
    assert r.exit_code == 2 and "--overwrite and --append-days do not go together" in r.output
    r = CliRunner().invoke(app, ["synth", str(life), "--append-days", "1", "--fps", "8", "--width", "64"])  # the same
    assert r.exit_code == 0, r.output
    assert (life / "video-001.mp4").exists() and len(np.load(life / "poses.npz")["t"]) == 48

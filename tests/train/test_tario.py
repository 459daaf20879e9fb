"""The fast tar member reader: same members as Python's tarfile in USTAR, PAX and GNU layouts; bad tars."""

import io
import tarfile

import pytest

from slife.train.stream import CountingHandler
from slife.train.tario import TarReadError, tar_members, tar_samples


def _tar(path, fmt, members):
    with tarfile.open(path, "w", format=fmt) as tf:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        d = tarfile.TarInfo("adir")
        d.type = tarfile.DIRTYPE
        tf.addfile(d)


MEMBERS = [("a_000.src.jpg", b"x" * 700), ("a_000.json", b"{}"), ("sub/" + "l" * 120 + ".tgt.jpg", b"y" * 512),
           ("b_001.src.jpg", b""), ("__meta__.json", b"m")]


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
def test_same_members_as_tarfile(tmp_path, fmt):
    p = tmp_path / "t.tar"
    members = MEMBERS if fmt != tarfile.USTAR_FORMAT else [m for m in MEMBERS if len(m[0]) < 100]
    _tar(p, fmt, members)
    with open(p, "rb") as f:
        got = list(tar_members(f, str(p)))
    assert got == members  # regular files only, long names whole, contents exact


def test_samples_grouped_as_webdataset(tmp_path):
    import webdataset as wds

    p = tmp_path / "t.tar"
    _tar(p, tarfile.PAX_FORMAT, MEMBERS)
    ours = list(tar_samples([{"url": str(p)}], CountingHandler()))
    ref = list(wds.tarfile_to_samples()([{"url": str(p)}]))
    assert ours == ref and ours[0]["__key__"] == "a_000" and set(ours[0]) >= {"src.jpg", "json"}


def test_odd_names_grouped_as_webdataset(tmp_path):
    import webdataset as wds

    p = tmp_path / "t.tar"
    odd = [("c_002.json", b"1"), ("c_002.JSON", b"2"), ("nodot", b"z"), ("d.x/.hidden", b"h"), ("d.x/e.y.Z", b"e"),
           ("__meta__/f.jpg", b"m"), ("c_003.jpg", b"j")]
    _tar(p, tarfile.PAX_FORMAT, odd)
    h = CountingHandler()
    ours = list(tar_samples([{"url": str(p)}], h))
    ref = list(wds.tarfile_to_samples(handler=wds.ignore_and_continue)([{"url": str(p)}]))
    assert ours == ref and h.counts["bad_sample"] == 1  # the repeated (lower-cased) extension is dropped, counted


def test_corrupt_and_truncated(tmp_path):
    p = tmp_path / "t.tar"
    _tar(p, tarfile.USTAR_FORMAT, MEMBERS[:2])
    raw = p.read_bytes()
    bad = bytearray(raw)
    bad[512 + 1024 + 10] ^= 0xFF  # inside the second header (after 700 bytes padded to 1024): bad checksum
    with pytest.raises(TarReadError, match="checksum"):
        list(tar_members(io.BytesIO(bytes(bad)), "x.tar"))
    with pytest.raises(TarReadError, match="truncated"):
        list(tar_members(io.BytesIO(raw[:600]), "x.tar"))
    h = CountingHandler()  # through the stream: the first sample survives, the failure is counted
    (tmp_path / "cut.tar").write_bytes(raw[:512 + 1024 + 300])
    out = list(tar_samples([{"url": str(tmp_path / "cut.tar")}], h))
    assert [s["__key__"] for s in out] == ["a_000"] and "json" not in out[0] and sum(h.counts.values()) == 1


def test_duplicate_stops_once_when_handler_says_stop(tmp_path):
    """A handler that does not continue sees the repeated extension once; the error reaches the caller."""
    p = tmp_path / "t.tar"
    _tar(p, tarfile.PAX_FORMAT, [("c_002.json", b"1"), ("c_002.JSON", b"2")])
    seen = []
    with pytest.raises(ValueError, match="duplicate"):
        list(tar_samples([{"url": str(p)}], lambda e: seen.append(e) and False))
    assert len(seen) == 1

"""Segments of a training run: a run continued on a shard set that has grown since its last checkpoint.

A run is one or more segments. Segment 0 is the run as it was started: steps 0 .. --steps, linear warmup then
cosine, a stream over the set it was started on. Every checkpoint records the shard set's fingerprint
(`fingerprint`: each tar's FOLDER/NAME, sample count, size, sha256 and generation) and the run's segments.
When a run is resumed, `plan` compares the set it reads now with the checkpoint's:
- the same tars: the run goes on inside the checkpoint's segment, exactly as if it had not stopped;
- a grown set (every tar of the checkpoint's set, unchanged, and more: `slife mine-pairs` appended a
  generation, or tars or shard folders were added to the spec): a new segment starts at the checkpoint's step.
  It runs --steps more steps (a continued run's --steps are steps to add); its stream starts afresh over the
  grown set (epochs and generators of its own; the new tars and the old ones are each split over ranks and
  loader workers, so every worker draws both), and draws each new pair `new_weight` times as often as an old
  one; its lr (`Segment.lr`) is re-warmed linearly over --warmup-steps to `continue_lr` x the run's peak lr,
  then decays by a half cosine to --min-lr at the segment's end;
- anything else (a tar changed or gone: other shards, another life): as before segments existed, the run goes
  on in its segment over the set as it is now, with a warning that the stream does not continue exactly.
A checkpoint made before fingerprints were recorded counts as segment 0 of a set taken as unchanged.
Reads: a checkpoint's `shardset`, `segments`, `step` and `config`; a `ShardSet`. Returns: a `Plan` (the segment,
the earlier segments' records, the line that says what changed).
Entry points: `fingerprint`, `plan`, `Segment`. The loop (`loop.py`) builds the stream and the schedule from the
plan and writes the records into checkpoints and train.json; the stream (`stream.py`) draws with the weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from dataclasses import dataclass, field

from slife.train.optim import lr_at
from slife.train.stream import ShardSet

log = logging.getLogger(__name__)


def fingerprint(shards: ShardSet) -> dict:
    """The identity of the set a run reads: {"spec", "pairs", "digest" (16 hex of the tars' identities),
    "tars": `ShardSet.tars()`}."""
    tars = shards.tars()
    digest = hashlib.sha256(json.dumps([[t["tar"], t["samples"], t["bytes"], t["sha256"]] for t in tars])
                            .encode()).hexdigest()[:16]
    return {"spec": shards.spec, "pairs": shards.total, "digest": digest, "tars": tars}


def _key(t: dict) -> tuple:
    return t["tar"], int(t["samples"]), int(t["bytes"])


def compare(old: list[dict], now: list[dict]) -> tuple[str, list[dict]]:
    """("same" | "grown" | "changed", the tars of `now` that `old` does not hold). Tars match by FOLDER/NAME,
    sample count and size, and by sha256 where both sets give one; "grown": every old tar is still there."""
    sha_now = {_key(t): t["sha256"] for t in now}
    have, want = Counter(_key(t) for t in now), Counter(_key(t) for t in old)
    kept = all(have[k] >= n for k, n in want.items()) and all(
        not (t["sha256"] and sha_now.get(_key(t)) and sha_now[_key(t)] != t["sha256"]) for t in old)
    left = Counter(want)
    new = []
    for t in now:
        if left[_key(t)] > 0:
            left[_key(t)] -= 1
        else:
            new.append(t)
    if not kept:
        return "changed", new
    return ("grown" if new else "same"), new


def describe(tars: list[dict]) -> str:
    """What a list of tars holds, by folder and generation: 'life generation 1 (2 tars, 412 pairs)'."""
    groups: dict[tuple, list[int]] = {}
    for t in tars:
        g = groups.setdefault((t["tar"].split("/", 1)[0], t.get("generation")), [0, 0])
        g[0] += 1
        g[1] += int(t["samples"])
    parts = []
    for (folder, gen), (n, pairs) in groups.items():
        what = f"{folder} generation {gen}" if gen is not None else folder
        parts.append(f"{what} ({n} tar{'s' * (n != 1)}, {pairs} pairs)")
    return ", ".join(parts)


@dataclass
class Segment:
    """One segment of a run (see the module docstring)."""

    index: int  # 0: the run as started; k: its k-th continuation
    start: int  # its first step (global step numbers)
    steps: int  # its length: --steps
    new_tars: tuple[str, ...] = ()  # FOLDER/NAME of the tars the set had gained when it started
    new_weight: float = 1.0  # how many times as often a new pair is drawn as an old one
    lr_scale: float = 1.0  # its peak lr as a share of the run's peak lr
    new: str = ""  # what the set had gained, in words
    new_pairs: int = 0  # pairs in the new tars
    pairs: int = 0  # pairs in the set it reads

    @property
    def end(self) -> int:
        return self.start + self.steps

    @property
    def span(self) -> str:
        """Its steps in words: 'steps 0..2000' (segment 0), 'segment 1: steps 2000..2500'."""
        return f"segment {self.index}: steps {self.start}..{self.end}" if self.index else f"steps 0..{self.end}"

    def lr(self, step: int, peak: float, warmup_steps: int, min_lr: float) -> float:
        """The lr of global step `step`: `optim.lr_at` over the segment's own steps, to lr_scale x peak."""
        return lr_at(step - self.start, peak * self.lr_scale, warmup_steps, self.steps, min_lr)

    def lr_rule(self, peak: float, warmup_steps: int, min_lr: float) -> str:
        warm = "warmup" if not self.index else "re-warmed"
        to = f"{peak:.3g}" if self.lr_scale == 1 else f"{self.lr_scale:g} x {peak:.3g} = {peak * self.lr_scale:.3g}"
        return (f"lr {warm} linearly over {warmup_steps} step{'s' * (warmup_steps != 1)} to {to}, then cosine to "
                f"{min_lr:g} at step {self.end}")

    def weights(self, tars: list[dict]) -> list[float] | None:
        """Per tar of `tars` (`ShardSet.tars()`): the draw weight of each of its pairs; None: all 1."""
        if not self.index or not self.new_tars or self.new_weight == 1:
            return None
        new = set(self.new_tars)
        return [self.new_weight if t["tar"] in new else 1.0 for t in tars]

    def new_share(self) -> float:
        """The share of the segment's draws that fall on new pairs."""
        old = self.pairs - self.new_pairs
        w = self.new_weight * self.new_pairs
        return w / (w + old) if w + old else 0.0

    def record(self, peak: float, warmup_steps: int, min_lr: float) -> dict:
        """The segment as the checkpoint's and train.json's `segments` list it."""
        return {"segment": self.index, "start_step": self.start, "steps": self.steps, "end_step": self.end,
                "pairs": self.pairs, "new": self.new, "new_tars": list(self.new_tars), "new_pairs": self.new_pairs,
                "new_weight": self.new_weight, "new_share": round(self.new_share(), 6), "lr_scale": self.lr_scale,
                "lr_peak": peak * self.lr_scale, "lr_rule": self.lr_rule(peak, warmup_steps, min_lr)}


@dataclass
class Plan:
    """Where a run stands on its set: the segment it trains in and what the log should say."""

    segment: Segment
    history: list[dict] = field(default_factory=list)  # records of the earlier segments
    continued: bool = False  # a new segment starts at the checkpoint's step (its stream starts afresh)
    message: str | None = None  # info line for rank 0: what changed (a new segment)
    warning: str | None = None  # warning line for rank 0 (a set changed in other ways; a setting changed)


def plan(ckpt: dict | None, shards: ShardSet, steps: int, new_weight: float, continue_lr: float,
         where: str = "checkpoint", now: dict | None = None) -> Plan:
    """The segment a run trains in, from the checkpoint it resumes (None: a fresh start) and the set it reads
    (`now`: its `fingerprint`, computed when not given); `where` names the checkpoint in messages."""
    now = now or fingerprint(shards)
    if ckpt is None:
        return Plan(Segment(0, 0, steps, pairs=now["pairs"]))
    step = int(ckpt["step"])
    records = [dict(r) for r in ckpt.get("segments") or []]
    cur = records.pop() if records else {"segment": 0, "start_step": 0}
    k = int(cur["segment"])
    seg = Segment(k, int(cur["start_step"]), steps, tuple(cur.get("new_tars") or ()),
                  new_weight if k else 1.0, continue_lr if k else 1.0, cur.get("new", ""),
                  pairs=now["pairs"])
    seg.new_pairs = sum(t["samples"] for t in now["tars"] if t["tar"] in set(seg.new_tars))
    old = ckpt.get("shardset")
    if not old:
        return Plan(seg, records)
    state, new = compare(old["tars"], now["tars"])
    if state == "same":
        warning = None
        if k and cur.get("new_weight") not in (None, new_weight):
            warning = (f"{where}: segment {k} was started with --new-weight {cur['new_weight']:g}, this run has "
                       f"{new_weight:g}: the run will not equal an uninterrupted one")
        return Plan(seg, records, warning=warning)
    if state == "changed":
        gone = len(old["tars"]) - (len(now["tars"]) - len(new))
        return Plan(seg, records, warning=(
            f"{where}: the shard set is not the one the checkpoint was trained on, nor a grown version of it "
            f"({gone} of its {len(old['tars'])} tars are gone or changed, {len(new)} others are in {shards.spec}): "
            f"going on in segment {k} over the set as it is now; the data stream will not continue exactly"))
    done = dict(cur, stopped_at=step)  # the segment the checkpoint was in, as far as it got
    n_new = sum(int(t["samples"]) for t in new)
    nxt = Segment(k + 1, step, steps, tuple(t["tar"] for t in new), new_weight, continue_lr, describe(new), n_new,
                  now["pairs"])
    n_old = len(old["tars"])
    message = (f"{where} (step {step}, segment {k}) was trained on {old['pairs']} pairs in {n_old} "
               f"tar{'s' * (n_old != 1)}; "
               f"the set has grown by {nxt.new}: segment {k + 1} starts at step {step} for {steps} "
               f"step{'s' * (steps != 1)} over "
               f"{now['pairs']} pairs, each new pair drawn {new_weight:g}x as often as an old one "
               f"({100 * nxt.new_share():.0f}% of draws)")
    return Plan(nxt, records + [done], continued=True, message=message)

"""Command: `slife demo` (the single-life study in miniature, end to end; stages in `slife/demo.py`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from slife.cli.app import app, console, progress_bar


@app.command("demo")
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Folder for lives, shards, runs, evaluations, "
                             "summary.json and report.md."),
    study: str = typer.Option("default", "--study", help="default: two lives and the two non-life controls (a 15-min "
                              "budget, about 32 min in all, 17 of them the evaluation); "
                              "full: three lives, the controls and the pairing ablation (the smallest budget that "
                              "measured the claims, bench/README.md), and a growing life (trained on days 1-2, grown "
                              "to days 1-4 and training continued, against a model trained on days 1-4 from the "
                              "start for the same steps) (60 min); ablation: the pairing ablation alone, one "
                              "life's model and the paper's five arms (spatial+temporal, temporal, spatial, random, "
                              "augmented) on that life with equal pair caps, each with the default study's training "
                              "time (22.5 min; run three seeds with bench/bench_demo_seeds.py for the order's "
                              "spread); objectives: one life learned by three "
                              "objectives side by side, a CroCo, a DINOv2 and an egomotion ViT, each with the same "
                              "training time (20 min), compared on the depth probe and on correspondence (held-out "
                              "top-1 by `slife top1`, graffiti by `slife match`) beside an untrained encoder of each "
                              "architecture."),
    budget_minutes: Optional[float] = typer.Option(None, help="Budget in minutes on 2 cores (default: the "
                                                   "study's): 62% of it is training time, shared by the models, "
                                                   "and the lives' sizes scale with it; the evaluation comes on top "
                                                   "(about 17 min for the default study, more for studies with more "
                                                   "models), so the default study takes about 32 min in all and "
                                                   "--budget-minutes 60 about 65 (< 2: a seconds-long smoke run)."),
    seed: int = typer.Option(0, help="Seed of the lives, mining, training and evaluation."),
    side_by_side: int = typer.Option(2, "--side-by-side", help="Models (and evaluation jobs: depth probes, CAS, "
                                     "correspondence) run at once, each in its own process on one torch thread (1: "
                                     "one at a time, in this process). It sets the training steps (the calibration "
                                     "times the models side by side), so a folder resumes only with the value it "
                                     "was made with."),
):
    """Run the single-life study in miniature: synthesize lives and controls, mine pairs, train a tiny CroCo per
    life and control (and, in the full and ablation studies, per pairing-ablation arm; in the full study, a
    growing life whose training is continued after it grows), evaluate the depth probe (with an untrained
    encoder, an oracle and the position prior as controls), correspondence and alignment beyond the
    positional shortcut on held-out pairs, and zero-shot correspondence on real photographs; write summary.json and report.md. With --study
    objectives, DINOv2 and egomotion arms train beside the life's CroCo and the report says whether CroCo beats
    them on correspondence in this run. The claims on the decoder's attention read it with the target masked, as
    training does, and the report gives them read with the target complete beside. Re-running resumes: finished
    stages are skipped; a folder made with other evaluation settings (the probe's, the attention's reading, the
    number of untrained CAS controls) redoes only its evaluation and report, one made with other settings of anything else stops with an error.
    Each stage prints the command it equals."""
    from slife.demo import DemoConfig, run

    cfg = DemoConfig(study=study, budget_minutes=budget_minutes, seed=seed, side_by_side=side_by_side)

    def announce(stage: str, command: str) -> None:
        console.print(f"[bold cyan]== {stage}[/bold cyan]  [dim]{command}[/dim]")

    report = run(cfg, out, announce=announce, task=lambda description, total: progress_bar(description, total=total))
    console.print(f"report: {report}")
    console.print(f"numbers: {Path(report).parent / 'summary.json'}")

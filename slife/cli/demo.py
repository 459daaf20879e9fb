"""Command: `slife demo` (the single-life study in miniature, end to end; stages in `slife/demo.py`)."""

from __future__ import annotations

from pathlib import Path

import typer

from slife.cli.app import app, console, progress_bar


@app.command("demo")
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Folder for lives, shards, runs, evaluations and report.md."),
    budget_minutes: float = typer.Option(15.0, help="Wall-time budget on 2 cores after installation; sizes and "
                                                    "training steps scale with it (< 2: a seconds-long smoke run)."),
    seed: int = typer.Option(0, help="Seed of the lives, mining, training and evaluation."),
):
    """Run the single-life study in miniature: synthesize lives and controls, mine pairs (with the pairing
    ablation), train a tiny CroCo per life and arm, evaluate CAS / depth probe / correspondence, write
    report.md. Re-running resumes: finished stages are skipped. Each stage prints the command it equals."""
    from slife.demo import DemoConfig, run

    cfg = DemoConfig(budget_minutes=budget_minutes, seed=seed)

    def announce(stage: str, command: str) -> None:
        console.print(f"[bold cyan]== {stage}[/bold cyan]  [dim]{command}[/dim]")

    report = run(cfg, out, announce=announce, task=lambda description, total: progress_bar(description, total=total))
    console.print(f"report: {report}")

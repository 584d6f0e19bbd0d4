"""The PBT run's report (report.md + report.html through :mod:`fastrl.reports.writer`).

From summary.json's content (:meth:`fastrl.tune.pbt.PBT.summary`): the windows and what
each was used for, every member's last window-A score beside its window-B score (the pick),
the winner's Deflated Sharpe Ratio over the population, and the replay: the winner's
schedule trained from scratch on fresh seeds against both presets, with the tune study's
confirmation, paired-difference and test-day sections
(:func:`fastrl.tune.report_study.confirmation_sections`). Without a replay the report says
the winner is unconfirmed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastrl.reports import writer
from fastrl.reports.format import format_number as fmt
from fastrl.reports.writer import Document, Section, Table
from fastrl.tune.pbt_winner import REPLAY_KEY
from fastrl.tune.report_study import OBJECTIVE_LABELS, confirmation_sections

WINDOW_NAMES = {"train": "train", "rounds": "A (rounds)", "pick": "B (pick)",
                "confirmation": "C (confirmation)", "test": "test"}


def _span(dates: dict[str, list[str]] | None) -> tuple[str, str]:
    """First and last traded day over the symbols ("-" without timestamps)."""
    if not dates:
        return "-", "-"
    return (min(d[0] for d in dates.values())[:10], max(d[1] for d in dates.values())[:10])


def pbt_document(summary: dict[str, Any], images: dict[str, Path]) -> Document:
    """The report's content: settings, windows, the pick, the DSR, the replay."""
    s = summary
    replay = s.get("replay")
    winner = s["winner"]
    doc = Document(
        title=f"fastrl-tune --pbt: {', '.join(s['symbols'])} ({s['freq']})",
        verdict=s["verdict"],
        paragraphs=[
            f"{s['population']} members x {s['envs_per_member']} envs, "
            f"{s['global_step_per_member']:,} env steps each, exploit/explore every "
            f"{s['ready']:,} steps ({s['rounds']} rounds) on window A; seed config "
            f"{s['seed_preset']}, seed {s['seed']}; {s['elapsed_s']:.0f} s, "
            f"{s['env_steps_per_s']:,.0f} env steps/s over the population.",
            f"Winner: member {winner}, the best of the final members on window B (Sharpe "
            f"{fmt(s['winner_pick_sharpe'])}), which no round saw; its window-A Sharpe at the "
            f"last round was {fmt(s['winner_val_sharpe'])}. `winner/` is its checkpoint "
            "(`fastrl-eval`), `winner.yaml` its lineage schedule (`fastrl-train --config`)."],
        images=dict(images))
    rows = []
    for key, name in WINDOW_NAMES.items():
        window = s["windows"].get(key) or {}
        first, last = _span(window.get("dates"))
        days = window.get("days")
        rows.append([name, "-" if days is None else str(days), first, last,
                     window.get("use", "")])
    doc.sections.append(Section(
        "Windows, in time order", paragraphs=[
            "Each block of days after the training bars is used for one thing only, so the "
            "pick is not scored on the bars the rounds selected on, and the replay is not "
            "scored on the bars that picked the winner."],
        table=Table(["window", "days", "first day", "last day", "used for"], rows,
                    numeric=False)))
    picked = [-float("inf") if v is None else v for v in s["pick_sharpe"]]
    ranks = sorted(range(len(picked)), key=lambda m: -picked[m])
    doc.sections.append(Section(
        "The pick: every final member on window B", paragraphs=[
            "Window-A Sharpe: the last round's score (the rounds exploit on it, so the best "
            "of it is biased upwards). Window-B Sharpe: the same backtest on the next "
            "window, once; the winner is its argmax."],
        table=Table(["member", "window-A Sharpe (last round)", "window-B Sharpe",
                     "rank on B"], [
            [f"{m}{' (winner)' if m == winner else ''}", fmt(s["final_val_sharpe"][m]),
             fmt(s["pick_sharpe"][m]), str(ranks.index(m) + 1)]
            for m in range(len(s["pick_sharpe"]))])))
    dsr = s["dsr"]
    doc.sections.append(Section(
        "Deflated Sharpe Ratio of the winner over the population", bullets=[
            f"DSR of the winner's {dsr.get('bars', 'n/a')} per-bar returns on window B, "
            f"against the Sharpes of the {dsr['n_trials']} members there ({dsr['n_trials']} "
            f"trials; expected best-of-{dsr['n_trials']} Sharpe by luck "
            f"{fmt(dsr.get('expected_max_sharpe_per_bar'), '.4f')} per bar, the winner's "
            f"{fmt(dsr.get('winner_sharpe_per_bar'), '.4f')}): **{fmt(dsr.get('dsr'))}**",
            f"Reading: {dsr['reading']}."]))
    if replay is None:
        doc.sections.append(Section("Replay", paragraphs=[
            "**Skipped (--no-replay): the winner is unconfirmed.** Its scores above come "
            "from the run itself; nothing compares its schedule, trained from scratch, with "
            "the presets on bars the run never chose on."]))
    else:
        objective = OBJECTIVE_LABELS.get(s.get("objective", "excess"), s.get("objective"))
        doc.sections.append(Section("Replay", paragraphs=[
            f"`winner.yaml`'s config (the winner's lineage schedule) trained from scratch on "
            f"fresh seeds {replay['seeds']} (never the run's seed {s['seed']}), with the fast "
            "and baseline presets on the same seeds, budget and --set options; each trained "
            "on every bar before window C and scored on C by the tune study's score (the "
            f"time-average of the validation {objective} curve), then backtested once on the "
            "test days. The comparison is of this replay, not of the PBT member itself."]))
        doc.sections += confirmation_sections(replay, s["windows"]["test"]["days"],
                                              candidate=REPLAY_KEY, label="replayed winner")
    return doc


def write_report(summary: dict[str, Any], folder: str | Path,
                 images: dict[str, Path] | None = None) -> tuple[Path, Path]:
    """report.md and report.html into ``folder``."""
    return writer.write_pages(pbt_document(summary, images or {}), Path(folder))


__all__ = ["pbt_document", "write_report"]

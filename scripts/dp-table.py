"""Prints the figures of issue 29's table for runs of scripts/dp-table.sh (each a folder with checkpoint/
and report/report.json), one column a run."""
import json
import statistics
import sys
from pathlib import Path


def mean_or_none(values: list) -> str:
    """The mean to 3 places, or "none" (no label had enough records to evaluate)."""
    return f"{statistics.mean(values):.3f}" if values else "none"


def figures(run: Path) -> dict:
    report = json.loads((run / "report" / "report.json").read_text())
    log = [json.loads(line) for line in (run / "checkpoint" / "log.jsonl").read_text().splitlines()]
    fid = report["fidelity"]
    r2 = {(p["statistic"], p["level"]): p["r2_synthetic_vs_train"] for p in fid["probabilities"]}
    shape = fid["shape"]
    privacy = report["privacy"]["membership"]
    copies = report["privacy"]["exact_copies"]
    aurocs = [u["synthetic"]["auroc"] for u in report["utility"]]
    real_aurocs = [u["real"]["auroc"] for u in report["utility"]]
    ledger = run / "checkpoint" / "privacy.json"
    epsilon = json.loads(ledger.read_text())["total_epsilon"] if ledger.is_file() else None
    return {
        "epsilon (ledger total)": "no DP" if epsilon is None else f"{epsilon:.3f}",
        "final val loss": f"{log[-1]['val_loss']:.5f}",
        "R2 visit unigram": f"{r2[('unigram', 'visit')]:.3f}",
        "R2 same-visit pairs": f"{r2[('same_visit_bigram', 'visit')]:.3f}",
        "R2 consecutive pairs": f"{r2[('consecutive_visit_bigram', 'visit')]:.3f}",
        "codes per visit (train)": f"{shape['train']['codes_per_visit']['mean']:.2f}",
        "codes per visit (synthetic)": f"{shape['synthetic']['codes_per_visit']['mean']:.2f}",
        "visits per record (synthetic)": f"{shape['synthetic']['visits_per_record']['mean']:.1f}",
        "utility AUROC, mean (synthetic)": mean_or_none(aurocs),
        "utility AUROC, mean (real)": mean_or_none(real_aurocs),
        "model likelihood attack": f"{privacy['model_attack']['accuracy']:.3f}",
        "dataset attack": f"{privacy['dataset_attack']['accuracy']:.3f}",
        "exact copies of training records": f"{copies['synthetic_copies']} / {copies['synthetic_records']}",
        "epoch seconds (median)": f"{statistics.median(e['seconds'] for e in log):.1f}",
    }


def main() -> None:
    runs = [Path(a) for a in sys.argv[1:]]
    columns = [figures(r) for r in runs]
    names = [r.name for r in runs]
    width = max(len(k) for k in columns[0])
    print("| " + " | ".join(["figure".ljust(width)] + names) + " |")
    print("| " + " | ".join(["---"] * (len(names) + 1)) + " |")
    for key in columns[0]:
        print("| " + " | ".join([key.ljust(width)] + [c[key] for c in columns]) + " |")


if __name__ == "__main__":
    main()

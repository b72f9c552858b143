"""The final report's figure (``report.png`` in the bundle): the retrain's val curve, and val mIoU
against end-to-end ``predict()`` latency for every variant, the bundle's default marked."""

from __future__ import annotations

from pathlib import Path

from automl.bundle.variants import VARIANTS
from automl.plotting import pyplot


def plot_final(report: dict, path: Path) -> Path:
    plt = pyplot()
    fig, (curve, trade) = plt.subplots(1, 2, figsize=(11, 4.2))
    history = report["retrain"].get("history") or []
    if history:
        curve.plot([h["epoch"] for h in history], [h["val_miou"] for h in history], marker="o", color="tab:blue")
        full = [h for h in history if h.get("full_val")]
        curve.scatter([h["epoch"] for h in full], [h["val_miou"] for h in full], s=70, facecolors="none",
                      edgecolors="black", label="full val (others: the eval subset)", zorder=3)
        if full:
            curve.legend(fontsize=8)
    else:
        curve.text(0.5, 0.5, "retrain reused: no curve", ha="center", va="center", transform=curve.transAxes)
    curve.set_xlabel("epoch")
    curve.set_ylabel("val mIoU")
    curve.set_title(f"final retrain: {report['retrain']['epochs']} epochs")
    curve.grid(alpha=0.3)

    val, lat = report["evaluation"]["val"], report["latency"]["results"]
    default = report["default_predictor"]["variant"]
    for v in VARIANTS:
        if v.key in val and v.key in lat:
            x, y = lat[v.key]["median_ms"], val[v.key]["miou"]
            is_default = v.label == default  # the report names the default variant by its label
            trade.scatter([x], [y], s=200 if is_default else 50, marker="*" if is_default else "o")
            trade.annotate(v.label + (" (bundle default)" if is_default else ""), (x, y), fontsize=8, xytext=(4, 4),
                           textcoords="offset points")
    trade.set_xlabel(f"predict() ms, batch 1, {report['latency']['threads']} threads")
    trade.set_ylabel("val mIoU")
    trade.set_title("variants: accuracy against latency")
    trade.grid(alpha=0.3)
    fig.suptitle(f"Final report: {report['study']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_distill(table: dict, path: Path) -> Path:
    """``distill.png``: val mIoU against end-to-end latency for the teacher, the student trained
    alone and the distilled student (fp32 and INT8), the bundle's default model starred."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    default = table["default_model"]
    for r in table["rows"]:
        if r["latency_ms"] is None:
            continue
        star = r["row"].startswith(default) and "alone" not in r["row"]
        ax.scatter([r["latency_ms"]], [r["val_miou"]], s=160 if star else 50, marker="*" if star else "o")
        ax.annotate(r["row"], (r["latency_ms"], r["val_miou"]), fontsize=8, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel(f"predict() ms, batch 1, {table['latency_threads']} threads")
    ax.set_ylabel("val mIoU (selection split)")
    ax.set_title(f"teacher and student ({table['kd']['method']} KD; default: {default})")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

"""Render the final report (a plain dict, also written as report.json) as Markdown and as a
rich table for the console."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from automl.bundle.variants import TORCH_FP32, VARIANTS, Variant


def _f(v: float | None, digits: int = 4) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _ms(v: dict | None) -> str:
    return "-" if v is None else f"{v['median_ms']:.1f}"


def _spread(v: dict | None) -> str:
    return "-" if v is None else f"{v['p10_ms']:.1f}–{v['p90_ms']:.1f}"


def _holdout(report: dict) -> dict:
    """Holdout scores by variant key; empty when the data had no untouched holdout."""
    return (report.get("holdout") or {}).get("scores", {})


def _variants(report: dict) -> list[Variant]:
    ev, lat = report["evaluation"], report["latency"]["results"]
    present = set(lat) | {k for split in ev.values() for k in split} | set(_holdout(report))
    return [v for v in VARIANTS if v.key in present]


def _speedup(lat: dict, k: str) -> str:
    base = lat.get(TORCH_FP32.key, {}).get("median_ms")
    return f"{base / lat[k]['median_ms']:.2f}x" if base and k in lat else "-"


SUMMARY_COLUMNS = ("variant", "val mIoU", "holdout mIoU", "latency ms", "p10–p90", "vs torch", "model alone ms",
                   "model vs torch")


def summary_rows(report: dict) -> list[tuple[str, ...]]:
    """Per variant: mIoU on the selection split (val) and on the untouched holdout; end-to-end
    predict() latency (median, p10–p90, speed-up vs torch fp32); the model alone (preprocessed
    input → logits) and its speed-up."""
    ev, lat, held = report["evaluation"], report["latency"]["results"], _holdout(report)
    alone = report["latency"].get("model_only", {})  # absent in reports written before it was measured
    rows = []
    for v in _variants(report):
        k = v.key
        val = ev["val"].get(k, {}).get("miou")
        rows.append((v.label, _f(val), _f(held.get(k, {}).get("miou")), _ms(lat.get(k)), _spread(lat.get(k)),
                     _speedup(lat, k), _ms(alone.get(k)), _speedup(alone, k)))
    return rows


def split_line(report: dict) -> str:
    """Which images selected and which were held out, in one sentence."""
    d, h = report["data_split"], report.get("holdout")
    scored = "" if not h else ", ".join(Variant.parse(k).label for k in h["scores"])
    held = (f"untouched holdout: {h['source']} ({h['images']} images), scored once, after every decision, by "
            f"{scored}" if h else "no untouched holdout")
    also = " and the selection split" if report.get("retrain", {}).get("train_on_trainval") else ""
    return (f"Trained on {d['train_images']} train images{also}; selection split (val: trials, TTA, INT8, "
            f"default) {d['selection']}, {d['selection_images']} images; {held}.")


def report_table(report: dict) -> Table:
    lat = report["latency"]
    t = Table(title=f"final: {report['study']} — default {report['default_predictor']['variant']}",
              caption=f"batch 1, threads {lat['threads']}, {lat['cpu']}, median of {lat['runs']} runs, "
                      f"image {lat['image_size'][1]}x{lat['image_size'][0]}\n{escape(split_line(report))}")
    for col in SUMMARY_COLUMNS:
        t.add_column(col, justify="left" if col == "variant" else "right")
    for row in summary_rows(report):
        t.add_row(*row)
    return t


DISTILL_COLUMNS = ("model", "arch/encoder", "val mIoU", "holdout mIoU", "predict() ms", "model alone ms", "size MB",
                   "params M")


def distill_rows(d: dict) -> list[list[str]]:
    """The teacher/student table (``report["distill"]``), one row per model and precision."""
    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    return [[r["row"], r["model"], _f(r["val_miou"]), _f(r["holdout_miou"]), ms(r["latency_ms"]),
             ms(r["model_alone_ms"]), ms(r["size_mb"]), f"{r['params'] / 1e6:.2f}"] for r in d["rows"]]


def distill_table(d: dict) -> Table:
    t = Table(title=f"distillation ({d['kd']['method']}): default model {d['default_model']}",
              caption=escape(f"KD gain over the student alone, val: {d['kd_gain_val']:+.4f} "
                             f"({'helped' if d['kd_helped'] else 'did not help'}); batch 1, "
                             f"threads {d['latency_threads']}"))
    for col in DISTILL_COLUMNS:
        t.add_column(col, justify="left" if col in ("model", "arch/encoder") else "right")
    for row in distill_rows(d):
        t.add_row(*(escape(c) for c in row))
    return t


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _per_class(classes: list[str], scores: dict) -> list[str]:
    keys = [v for v in VARIANTS if v.key in scores]
    return _table(["class", *(v.label for v in keys)],
                  [[c, *(_f(scores[v.key]["per_class_iou"].get(c)) for v in keys)] for c in classes]
                  + [["**mIoU**", *(f"**{scores[v.key]['miou']:.4f}**" for v in keys)]])


def _holdout_section(report: dict) -> list[str]:
    h = report.get("holdout")
    if not h:
        return []
    return ["## Untouched holdout", "",
            f"**{h['what'][0].upper()}{h['what'][1:]}.** {h['source']} ({h['images']} images) was read only after "
            "the TTA, INT8 and default decisions were taken, on the selection split. No choice depends on "
            "these scores, so they estimate what the shipped model does on data it has not seen.", "",
            *_per_class(report["classes"], h["scores"]), ""]


def _selection_lines(record: dict) -> list[str]:
    from automl.study.selection import describe

    return ["### Selection", "",
            "Incumbent rule: the baseline (with a second seed, the seed probe) stays unless a challenger leads "
            "its mean by more than the noise margin, max(floor, 1.64 · 0.866 · seed difference).", "",
            describe(record) + (f". {record['why'][0].upper()}{record['why'][1:]}." if "incumbent" in record else "."),
            ""]


def _runs(lat: dict) -> str:
    """The timed runs: as asked, or fewer where `automl run`'s budget was short (never under 5)."""
    done = sorted({r["runs"] for r in [*lat["results"].values(), *lat.get("model_only", {}).values()]})
    if not done or done == [lat["runs"]]:
        return f"{lat['runs']} runs"
    span = f"{done[0]}" if len(done) == 1 else f"{done[0]}–{done[-1]}"
    return f"{span} runs per variant ({lat['runs']} asked; fewer to end within the run's budget)"


def _weight_average(r: dict) -> list[str]:
    wa = r.get("weight_average")
    if not wa:
        return []
    return ["## Weight average (EMA)", "",
            f"An exponential moving average of the weights over the last {wa['horizon']:.0%} of the retrain's "
            f"steps (decay {wa['decay']}): val mIoU {wa['val_miou_average']:.4f} against "
            f"{wa['val_miou_trained']:.4f} for the trained weights (needed +{wa['min_gain']:.4f}): "
            f"**{'kept' if wa['kept'] else 'dropped'}**.", ""]


# Class indices back to the masks' own encoding with numpy and bundle.json alone; the same table
# as automl.data.label_map.original_table (tests/test_label_map.py runs both).
_ORIGINAL_SNIPPET = {
    "values": """\
m = json.load(open("bundle.json"))["label_map"]
table = np.full(256, m["void"][0] if m["void"] else 0, np.uint16)   # void and unused indices
for value, index in reversed(list(m["values"].items())):           # a class's first value wins
    table[index] = int(value)
original = table[mask]   # mask: H×W uint8 class indices; .astype(np.uint8) when all values < 256""",
    "colors": """\
m = json.load(open("bundle.json"))["label_map"]
rgb = lambda c: [int(c[i:i + 2], 16) for i in (1, 3, 5)]            # "#rrggbb" -> [r, g, b]
table = np.array([rgb(m["void"][0] if m["void"] else "#000000")] * 256, np.uint8)  # void, unused
for colour, index in reversed(list(m["colors"].items())):          # a class's first colour wins
    table[index] = rgb(colour)
original = table[mask]   # mask: H×W uint8 class indices -> H×W×3 uint8 RGB""",
}


def _original_values_section(report: dict) -> list[str]:
    """How to turn predicted class indices back into the masks' raw values or colours."""
    lm = report.get("label_map")
    if not lm:
        return []
    kind = "values" if lm.get("values") is not None else "colors"
    first: dict[int, str] = {}
    for key, index in lm[kind].items():
        first.setdefault(int(index), str(key))
    what = "raw value" if kind == "values" else "colour"
    pairs = ", ".join(f"{i} {name} → {first.get(i, '-')}" for i, name in enumerate(report["classes"]))
    void = f" Void ({', '.join(map(str, lm['void']))}) was ignored in training." if lm.get("void") else ""
    return ["## Original mask values", "",
            f"The training masks held {'raw values' if kind == 'values' else 'colours'}; `data.label_map` mapped "
            f"them to class indices as they were read, and `bundle.json` records the map. Class index → {what} "
            f"(the first listed per class): {pairs}.{void}", "",
            "Predictions are class indices. `predictor.to_original(mask)` turns them back; without the package, "
            "with numpy and `bundle.json` alone (run in the bundle folder):", "",
            "```python", "import json", "", "import numpy as np", "", _ORIGINAL_SNIPPET[kind], "```", ""]


def _distill_section(report: dict) -> list[str]:
    """Search big, ship small: the teacher/student table (final.distill), or, in a student's own
    report, where it came from."""
    d = report.get("distill")
    if not d:
        return []
    kd = d["kd"]
    if d.get("role") == "student":
        return ["## Distilled student", "",
                f"This model is the student of the bundle above ({d['student']['model']}, chosen by "
                f"{d['student']['rule']}), distilled with {kd['method']} (weight {kd['weight']:g}, temperature "
                f"{kd['temperature']:g}; {kd['defaults']}).", ""]
    verdict = (f"**KD helped**: the distilled student scores {d['kd_gain_val']:+.4f} val mIoU over the same student "
               "trained alone" if d["kd_helped"] else
               f"**KD did not help**: the distilled student scores {d['kd_gain_val']:+.4f} val mIoU against the same "
               "student trained alone, so it is not the default")
    lines = ["## Search big, ship small (distillation)", "",
             f"Student {d['student']['model']} ({d['student']['rule']}), {d['epochs']} epochs alone and distilled, "
             f"same recipe and seed; {kd['method']} KD, weight {kd['weight']:g}, temperature {kd['temperature']:g} "
             f"({kd['defaults']}).", ""]
    lines += _table(list(DISTILL_COLUMNS), distill_rows(d))
    lines += ["", verdict + ".", f"Default model: **{d['default_model']}** ({d['default_why']}); "
              "`load_bundle(path, model='student')` loads the student, `bundle/student/` is a whole bundle.", ""]
    if d.get("figure"):
        lines += [f"![val mIoU against latency: teacher, student alone, distilled]({d['figure']})", ""]
    return lines


def render_markdown(report: dict) -> str:
    s, r, lat, tta, q = report["search"], report["retrain"], report["latency"], report["tta"], report["int8"]
    d = report["default_predictor"]
    lines = [f"# Final report: {report['study']}", "",
             f"Created {report['created']}. Bundle default: **{d['variant']}** "
             f"(`load_bundle(path)`; backend `{d['backend']}`, precision `{d['precision']}`, TTA {d['tta']}).", ""]

    lines += ["## Summary", ""]
    lines += _table(["variant", "val mIoU", "holdout mIoU", "predict() ms (median)", "p10–p90 ms", "vs torch fp32",
                     "model alone ms", "model vs torch fp32"], [list(row) for row in summary_rows(report)])
    lines += ["", split_line(report), "", f"Latency: batch 1, threads {lat['threads']}, CPU {lat['cpu']}, {lat['what']}, image "
                  f"{lat['image_size'][1]}x{lat['image_size'][0]}, median of {_runs(lat)} after "
                  f"{lat['warmup']} warm-up runs. \"Model alone\": the same predictor's "
                  "model on an already preprocessed input, logits out (no TTA, no argmax)."
                  + (f" Not timed, to end within the run's budget: {', '.join(lat['not_timed'])}."
                     if lat.get("not_timed") else ""), ""]
    if report.get("figure"):
        lines += [f"![retrain curve; val mIoU against latency per variant]({report['figure']})", ""]

    lines += ["## Per-class IoU (val, the selection split)", ""]
    lines += _per_class(report["classes"], report["evaluation"]["val"])
    lines.append("")

    lines += _distill_section(report)
    lines += _holdout_section(report)
    lines += _original_values_section(report)

    lines += _weight_average(r)
    lines += ["## Test-time augmentation", ""]
    if not tta["evaluated"]:
        lines.append("No TTA views configured (`final.tta`): not evaluated.")
    else:
        cost = ", ".join(f"{Variant.parse(k).label} +{ms:.1f} ms" for k, ms in tta["latency_cost_ms"].items())
        lines.append(f"Views: {tta['views']}. Val mIoU gain {tta['gain']:+.4f} (needed {tta['min_gain']:.4f}): "
                     f"**{'kept' if tta['kept'] else 'dropped'}**. Latency cost: {cost or '-'}.")
    lines.append("")

    lines += ["## INT8 (ONNX Runtime static quantization)", ""]
    if not q["enabled"]:
        lines.append("Disabled (`final.int8.enabled: false`).")
    elif q.get("error"):
        lines.append(f"Failed, the bundle ships fp32 only: {q['error']}")
    elif q.get("left_out"):
        lines.append(f"Left out, the bundle ships fp32 only: {q['left_out']}")
    elif not q["attempts"]:
        lines.append("Not run: the ONNX export failed.")
    else:
        verdict = (f"**accepted**: {q['chosen']}" if q["accepted"] else
                   f"**rejected** (not the default): no attempt lost at most {q['max_drop']:.4f} mIoU; "
                   f"model.int8.onnx holds the closest one ({q['chosen']})")
        lines.append(f"{q['recipe']}; {q['calibration_images']} calibration images (training split, eval "
                     f"preprocessing); pre-processing: {q['pre_process']}. Reference: {q['reference']} "
                     f"{q['reference_miou']:.4f}. {verdict}.")
        lines.append("")
        lines += _table(["attempt", "calibration", "fp32 nodes", "val mIoU", "drop", "result"],
                        [[a["name"], a["calibration"], str(len(a["excluded_nodes"])), _f(a["miou"]), _f(a["drop"]),
                          a["error"] or ("pass" if a["passed"] else "fail")] for a in q["attempts"]])
        if q.get("skipped"):
            lines += ["", f"Not tried, to end within the run's budget: {', '.join(q['skipped'])}."]
    lines.append("")

    counts = ", ".join(f"{n} {k}" for k, n in s["trials"].items())
    b = s["budget"]
    rt = s["retrained_trial"]
    lines += ["## Search", "",
              f"Trials: {counts} ({s['trials_total']} in all); budget {b['n_trials']} finished trials, "
              f"timeout {b['timeout_s'] or '-'} s, {b['trial_epochs']} epochs per trial; search wall time "
              f"{s['wall_s'] or '-'} s.",
              f"Retrained trial #{rt['number']} of study {s['study']} ("
              f"{'selected by the search' if rt['selected'] else 'chosen by hand'}, search val mIoU "
              f"{_f(rt['value'])}).", ""]
    if s.get("selection"):
        lines += _selection_lines(s["selection"])

    m, onnx = report["model"], report["onnx"]
    lines += ["## Retrain and model", "",
              f"{r['config']}; {r['epochs']} epoch(s), seed {r['seed']}, on {r['device']}, "
              f"{'train+val' if r['train_on_trainval'] else 'train'} split, {r['wall_s']} s"
              f"{' (reused from runs/<study>/final_model)' if r.get('reused') else ''}.",
              f"{m['arch']} / {m['encoder']}: {m['params'] / 1e6:.2f} M parameters; input "
              f"{m['input_size'][1]}x{m['input_size'][0]} (padded).",
              "ONNX: " + ("export failed (torch only)" if onnx is None else
                          f"{onnx['exporter']} exporter, {'dynamic' if onnx['dynamic'] else 'fixed'} input shape, "
                          f"opset {onnx['opset']}, max relative diff to torch {onnx['max_rel_diff']:.1e}") + ".",
              ""]
    lines += _table(["epoch", "train loss", "val mIoU"],
                    [[str(h["epoch"]), f"{h['train_loss']:.4f}",
                      f"{h['val_miou']:.4f}" + ("" if h["full_val"] else " (subset)")] for h in r["history"]])
    if report.get("notes"):
        lines += ["", "## Notes", "", *(f"- {n}" for n in report["notes"])]
    return "\n".join(lines) + "\n"

"""A study plan as files: ``studies/<name>.yaml``, each value with its reason as a comment, and
the search space it points at, ``search_spaces/<name>.yaml``, derived from the base space with
only the planned values changed."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any

import yaml

from automl.data.fingerprint import IMAGE_MODES, MASK_KINDS, Fingerprint
from automl.errors import ConfigError
from automl.plan.study import StudyPlan
from automl.terminal import visible

WIDTH = 110


def yaml_value(value: Any) -> str:
    """One YAML value on one line (a scalar, or a list or mapping in flow style)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False, allow_unicode=True).strip()
    return text.removesuffix("...").strip()


def _comment(text: str, indent: int) -> list[str]:
    pad = " " * indent
    return [f"{pad}# {line}" for line in textwrap.wrap(visible(text), WIDTH - indent - 2, break_on_hyphens=False)]


def _rel(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path.resolve(), start.resolve())).as_posix()


def found_summary(fp: Fingerprint) -> list[str]:
    """What the folder holds, in a few lines (the study file's header; the CLI prints more)."""
    (h, w), (h0, w0), (h1, w1) = fp.sizes.median, fp.sizes.smallest, fp.sizes.largest
    splits = ", ".join(f"{s}/ {n}" for s, n in fp.splits.items()) if fp.layout == "folders" else \
        f"images/ + masks/ {fp.splits['train']}"
    modes = ", ".join(f"{IMAGE_MODES.get(m, m)} {n}" for m, n in fp.image_modes.items())
    kind = MASK_KINDS[fp.mask_kind] + (" (grey: r = g = b)" if fp.grey_colours else "")
    what = "colours" if fp.mask_kind == "RGB" and not fp.grey_colours else "values"
    lines = [f"layout {fp.layout}: {splits} image/mask pairs",
             f"images: median {w}x{h} (smallest {w0}x{h0}, largest {w1}x{h1}); modes {modes}"
             + (f"; {fp.exif_rotated} EXIF-rotated (read upright)" if fp.exif_rotated else ""),
             f"masks: {kind}, {len(fp.values)} distinct {what}"]
    if fp.palette is not None:
        lines.append(f"palette file: {fp.palette.path.name} ({len(fp.palette.entries)} entries)")
    return lines


def render_study(plan: StudyPlan) -> str:
    """The study file: valid YAML that :func:`automl.config.load_study_file` reads, with the reason
    for each planned value as a comment above it."""
    reasons = {d.field: d.reason for d in plan.decisions}
    studies = plan.study_path.parent
    out = [*_comment(f"Planned by `automl init` from {plan.fingerprint.root.name}/; the comments say why each value "
                     "is what it is. Edit freely (a search checks every field), or re-plan with `automl init "
                     "--force`.", 0),
           *(f"#   {visible(line)}" for line in found_summary(plan.fingerprint)),
           *_comment(f"Run: {plan.run_command}", 0),
           f"name: {yaml_value(plan.name)}", "data:"]
    data = plan.data
    out += _comment(reasons["data.layout"], 2)
    out.append(f"  root: {yaml_value(_rel(data['root'], studies))}")
    if "layout" in data:
        out.append(f"  layout: {data['layout']}")
    out += _comment(reasons["data.classes"], 2)
    out.append(f"  classes: {yaml_value(data['classes'])}")
    out.append(f"  ignore_index: {data['ignore_index']}")
    if "label_map" in data:
        out += _label_map(data["label_map"], data["classes"])
    out += _comment(reasons["data.val_fraction"], 2)
    if "val_fraction" in data:
        out += [f"  val_fraction: {yaml_value(data['val_fraction'])}", f"  split_seed: {data['split_seed']}"]
    out += _comment(reasons["search_space"], 0)
    out.append(f"search_space: {yaml_value(_rel(plan.space_path, studies))}")
    out.append("objectives: [val_miou]   # add latency_ms and/or params_m for a Pareto search")
    sections: dict[str, list[tuple[str, Any]]] = {}
    for dotted, value in plan.settings.items():
        section, _, key = dotted.partition(".")
        sections.setdefault(section, []).append((key, value))
    for section, items in sections.items():
        if items == [("", items[0][1])]:  # a top-level field
            out += _comment(reasons[section], 0)
            out.append(f"{section}: {yaml_value(items[0][1])}")
            continue
        out.append(f"{section}:")
        for key, value in items:
            out += _comment(reasons[f"{section}.{key}"], 2)
            out.append(f"  {key}: {yaml_value(value)}")
    return "\n".join(out) + "\n"


def _label_map(label_map: dict, classes: list[str]) -> list[str]:
    out = ["  label_map:"]
    for kind in ("values", "colors"):
        if kind in label_map:
            out.append(f"    {kind}:")
            out += [f"      {yaml_value(k)}: {i}   # {visible(classes[i])}" for k, i in label_map[kind].items()]
    if label_map.get("void"):
        out.append(f"    void: {yaml_value(label_map['void'])}")
    return out


def render_space(plan: StudyPlan) -> str:
    """The derived search space: the base with the planned values changed, the changes listed."""
    head = _comment(f"Derived by `automl init` for study {plan.name} from {plan.base_space.name} (read it for why each "
                    "range is what it is); only these values were changed:", 0)
    for d in plan.space_changes:
        head += _comment(f"{d.field.removeprefix('search space: ')} = {yaml_value(d.value)}: {d.reason}", 0)
    body = yaml.safe_dump(plan.space, sort_keys=False, default_flow_style=None, width=WIDTH, allow_unicode=True)
    return "\n".join(head) + "\n" + body


def write_plan(plan: StudyPlan, *, force: bool = False) -> list[Path]:
    """Write the study file and its search space; refuse to overwrite either without ``force``."""
    files = {plan.study_path: render_study(plan), plan.space_path: render_space(plan)}
    existing = [p for p in files if p.exists()]
    if existing and not force:
        raise ConfigError(visible(f"{' and '.join(_rel(p, Path.cwd()) for p in existing)} already exist(s); pass "
                                  "--force to overwrite, or --name to plan another study"))
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    return list(files)

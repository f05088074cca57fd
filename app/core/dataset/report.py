"""The scan of a dataset as a report: a dict for ``--json`` and plain text for people."""

from __future__ import annotations

from typing import Any

from app.core.dataset.problems import PROBLEM_LABELS
from app.core.dataset.scan import Dataset


def dataset_report(ds: Dataset, top_tags: int = 50) -> dict[str, Any]:
    items = ds.items
    usable = ds.usable_items()
    freq = ds.tag_frequencies()
    problems = ds.problem_counts()
    return {
        "root": str(ds.root),
        "images": len(items),
        "usable": len(usable),
        "unusable": len(items) - len(usable),
        "captioned": sum(1 for i in items if i.has_caption),
        "uncaptioned_usable": sum(1 for i in usable if not i.has_caption),
        "steps_per_epoch_images": sum(i.repeats for i in usable),  # images × repeats
        "min_side": ds.min_side,
        "repeats": {folder: {"repeats": r, "images": n} for folder, (r, n) in sorted(ds.repeats_by_folder().items())},
        "problem_counts": {k.value: v for k, v in sorted(problems.items(), key=lambda kv: kv[0].value)},
        "files": [
            {
                "path": str(i.path.relative_to(ds.root)),
                "width": i.width,
                "height": i.height,
                "repeats": i.repeats,
                "usable": i.usable,
                "problems": [{"kind": p.kind.value, "blocking": p.blocking, "message": p.message} for p in i.problems],
            }
            for i in items
            if i.problems
        ],
        "tags": [{"tag": t, "count": c} for t, c in freq.most_common(top_tags)],
        "distinct_tags": len(freq),
    }


def format_report(report: dict[str, Any]) -> str:
    lines = [
        f"{report['root']}",
        f"  {report['images']} images: {report['usable']} usable, {report['unusable']} unusable; "
        f"{report['captioned']} captioned, {report['uncaptioned_usable']} usable without a caption",
        f"  images × repeats per epoch: {report['steps_per_epoch_images']}",
    ]
    if report["repeats"]:
        lines.append("  repeats (kohya N_name folders):")
        for folder, info in report["repeats"].items():
            lines.append(f"    {folder}: {info['repeats']} × {info['images']} images")
    if report["problem_counts"]:
        lines.append("  problems:")
        for kind, count in report["problem_counts"].items():
            label = next((v for k, v in PROBLEM_LABELS.items() if k.value == kind), kind)
            lines.append(f"    {label}: {count}")
    if report["files"]:
        lines.append("  files:")
        for f in report["files"]:
            mark = "UNUSABLE" if not f["usable"] else "note"
            for p in f["problems"]:
                lines.append(f"    [{mark if p['blocking'] else 'note'}] {p['message']}")
    if report["tags"]:
        lines.append(f"  tags ({report['distinct_tags']} distinct, most frequent first):")
        lines.append("    " + ", ".join(f"{t['tag']} ({t['count']})" for t in report["tags"]))
    if report["usable"] == 0:
        lines.append("  nothing here can be used for training")
    return "\n".join(lines)

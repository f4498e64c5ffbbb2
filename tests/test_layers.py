"""The import graph follows the layers: orchestration -> resources/assets ->
spark_jobs/training/serving -> storage and settings; nothing imports upward or across the middle."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYER = {
    "settings": 0,
    "storage": 0,
    "spark_jobs": 1,
    "training": 1,
    "serving": 1,
    "resources": 2,
    "assets": 3,
    "orchestration": 4,
}


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_no_module_imports_its_own_layer_or_above():
    wrong = []
    for package, layer in LAYER.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for module in imports(path):
                top = module.split(".")[0]
                if top != package and LAYER.get(top, -1) >= layer:
                    wrong.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not wrong, "\n".join(wrong)


LAKE_FOLDERS = {"tables", "inbox", "_staging", "ann_index", "gnn_checkpoint"}


def test_lake_paths_are_spelled_only_in_storage():
    """``storage/layout.py`` names the lake's folders; nothing else joins them onto a path."""
    spelled = []
    for package in [p for p in LAYER if p != "storage"] + ["bench", "tests"]:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.BinOp)
                    and isinstance(node.op, ast.Div)
                    and isinstance(node.right, ast.Constant)
                    and str(node.right.value).split("/")[0] in LAKE_FOLDERS
                ):
                    spelled.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not spelled, spelled

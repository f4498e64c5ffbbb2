"""The import graph follows the layers: orchestration -> resources/assets ->
spark_jobs/training/serving -> storage; nothing imports upward or across the middle."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYER = {
    "storage": 0,
    "spark_jobs": 1,
    "training": 1,
    "serving": 1,
    "resources": 2,
    "assets": 3,
    "orchestration": 4,
}
# still to move down (issue 16): the incremental stage's Dagster-free logic
KNOWN = {("assets/incremental.py", "orchestration.incremental_batch")}


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
                    name = str(path.relative_to(ROOT))
                    if (name, module) not in KNOWN:
                        wrong.append(f"{name} imports {module}")
    assert not wrong, "\n".join(wrong)

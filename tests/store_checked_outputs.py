"""Store the outputs that nbval compares: for every book notebook, copy the
outputs of the cells marked ``# NBVAL_CHECK_OUTPUT`` from the executed copy the
book build left in ``_build/jupyter_execute/book/`` (all other cells stay without
outputs). Run it after ``make book`` when such an output changes on purpose:

    .venv/bin/python tests/store_checked_outputs.py
"""
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
MARK = "# NBVAL_CHECK_OUTPUT"


def main() -> int:
    for path in sorted((ROOT / "book").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        marked = [c for c in nb.cells if c.cell_type == "code" and c.source.lstrip().startswith(MARK)]
        if not marked:
            continue
        built = ROOT / "_build" / "jupyter_execute" / "book" / path.name
        if not built.is_file():
            print(f"{built} missing: run `make book` first", file=sys.stderr)
            return 1
        executed = {c.source: c for c in nbformat.read(built, as_version=4).cells if c.cell_type == "code"}
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            if cell in marked:
                if cell.source not in executed:
                    print(f"{path.name}: a marked cell changed since the build; run `make book` again",
                          file=sys.stderr)
                    return 1
                cell.outputs = executed[cell.source].outputs
                cell.execution_count = executed[cell.source].execution_count
            else:
                cell.outputs, cell.execution_count = [], None
        nbformat.write(nb, path)
        print(f"{path.name}: stored the outputs of {len(marked)} checked cell(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Execute every notebook top to bottom with the current code and save it with its outputs.

    python notebooks/execute.py            # all three, full training (a few minutes each)
    python notebooks/execute.py 02         # those whose name contains "02"

GitHub then shows the committed notebooks with their tables and plots; the test suite runs
them again (with one training epoch) and checks that the committed ones carry outputs.
"""

from __future__ import annotations

import pathlib
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent


def main(argv=None) -> int:
    import nbclient
    import nbformat

    wanted = list(sys.argv[1:] if argv is None else argv)
    paths = [p for p in sorted(HERE.glob("*.ipynb"))
             if not wanted or any(w in p.name for w in wanted)]
    for path in paths:
        start = time.perf_counter()
        book = nbformat.read(path, as_version=4)
        nbclient.NotebookClient(book, timeout=1800, kernel_name="python3",
                                resources={"metadata": {"path": str(HERE)}}).execute()
        book.metadata.pop("widgets", None)
        nbformat.write(book, path)
        print(f"{path.name}: executed in {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

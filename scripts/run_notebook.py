"""Execute a notebook headlessly (nbclient) in its own folder; optionally print the newest manifest."""

import argparse
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from podmagic.ui import render
from podmagic.run import store  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--print-manifest", action="store_true")
    parser.add_argument("--output", type=Path, help="write the executed notebook here")
    args = parser.parse_args()
    nb = nbformat.read(args.notebook, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(args.notebook.parent.resolve())}})
    try:
        client.execute()
    except CellExecutionError as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        if args.output:
            nbformat.write(nb, args.output)
    print(f"executed {args.notebook} ({len(nb.cells)} cells)")
    if args.print_manifest:
        roots = [p.parent.parent.parent for p in args.notebook.parent.resolve().glob("**/artifacts/runpod/*/")]
        newest = max((d for r in set(roots) for d in store.iter_run_dirs(r)), key=lambda d: d.stat().st_mtime)
        print(render.manifest_text(store.read_json(newest / store.MANIFEST)))
        print(f"run dir: {newest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

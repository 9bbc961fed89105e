"""Generate the Python code for the .proto files in this folder into proto/gen/.

Why the files compile as `flowscope/api/...`: the wire packages are named `flow`, `observer`, `relay` and
`peer` (Hubble's names, which clients rely on), but the Python modules must live inside the one installed
package, `flowscope.api`, so that nothing generic lands in site-packages and nothing shadows the project's own
`flowscope.observer` and `flowscope.relay`. protoc's virtual include path gives the sources that prefix without
moving them. The generated code is rebuilt by scripts/setup and never edited by hand.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "gen"
PREFIX = "flowscope/api"


def main() -> int:
    from grpc_tools import protoc  # type: ignore[import-untyped]

    sources = sorted(f"{PREFIX}/{p.relative_to(HERE)}" for p in HERE.rglob("*.proto") if OUT not in p.parents)
    include = Path(protoc.__file__).parent / "_proto"
    tmp = OUT.with_name("gen.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    args = [
        "protoc",
        f"-I{PREFIX}={HERE}",
        f"-I{include}",
        f"--python_out={tmp}",
        f"--pyi_out={tmp}",
        f"--grpc_python_out={tmp}",
        *sources,
    ]
    if protoc.main(args) != 0:
        print("proto/build.py: protoc failed", file=sys.stderr)
        return 1
    api = tmp / PREFIX
    for folder in [api, *(p for p in api.rglob("*") if p.is_dir())]:
        (folder / "__init__.py").touch()
        (folder / "py.typed").touch()
    shutil.rmtree(OUT, ignore_errors=True)
    tmp.rename(OUT)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

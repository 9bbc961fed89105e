"""Which folder installs as which part of the one package, `flowscope`.

Each top-level folder is one stage of the data's path and installs as `flowscope.<folder>`, so nothing generic
(`cli`, `observer`, ...) lands in site-packages. pyproject.toml holds everything else; only this mapping needs
code, because setuptools cannot discover renamed packages by itself.
"""

import runpy
from pathlib import Path

from setuptools import Extension, find_packages, setup

ROOT = Path(__file__).resolve().parent
STAGES = ("common", "observer", "relay", "cli", "lab")
GENERATED = "proto/gen/flowscope/api"  # made by proto/build.py (scripts/setup)


def mapped(package: str, folder: str) -> dict[str, str]:
    """`package` from `folder`, and every package below it from the folder below that."""
    below = find_packages(str(ROOT / folder))
    return {package: folder} | {f"{package}.{name}": f"{folder}/{name.replace('.', '/')}" for name in below}


def generate_schema_code() -> None:
    """A fresh checkout has no proto/gen: generate it, as scripts/setup does."""
    if runpy.run_path(str(ROOT / "proto" / "build.py"))["main"]() != 0:
        raise SystemExit("setup.py: could not generate the protobuf code (proto/build.py)")


if not (ROOT / GENERATED).is_dir():
    generate_schema_code()

package_dir = {name: path for stage in STAGES for name, path in mapped(f"flowscope.{stage}", stage).items()}
package_dir |= mapped("flowscope.api", GENERATED)
package_dir["flowscope.bpf"] = "bpf"  # the datapath's C sources, compiled by bcc when the agent starts

# `-o json` writes protobuf's JSON from wire bytes in C (cli/printer/protojson.py says why); its stub is data.
# Its parts are cli/printer/jsonwire*.c and .h (jsonwire.c names them); link-time optimisation inlines across
# them as the compiler did when they were one file, and only PyInit_jsonwire is exported.
JSONWIRE = sorted(path.relative_to(ROOT).as_posix() for path in (ROOT / "cli" / "printer").glob("jsonwire*.[ch]"))
jsonwire = Extension(
    "flowscope.cli.printer.jsonwire",
    [path for path in JSONWIRE if path.endswith(".c")],
    depends=[path for path in JSONWIRE if path.endswith(".h")],
    extra_compile_args=["-O3", "-flto", "-fvisibility=hidden"],
    extra_link_args=["-O3", "-flto"],
)

setup(
    packages=sorted(package_dir),
    package_dir=package_dir,
    package_data={
        "flowscope.bpf": ["*.c", "include/**/*.h"],
        "flowscope.api": ["**/*.pyi", "**/py.typed"],
        "flowscope.cli.printer": ["jsonwire.pyi"],
        "flowscope.observer.history": ["schema/*.sql", "schema/cluster/*.sql"],  # the history schema's migrations
    },
    ext_modules=[jsonwire],
)

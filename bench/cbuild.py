"""Build a benchmark's C load generator on first use (the machine's `cc`), once per
source version, into the temp directory; shared by the benches that have one."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path


def built(source: Path, name: str) -> Path:
    """The executable compiled from `source`, named `opentrunk-{name}-{digest}`."""
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
    exe = Path(tempfile.gettempdir()) / f"opentrunk-{name}-{digest}"
    if not exe.exists():
        compiler = shutil.which("cc") or shutil.which("gcc")
        if compiler is None:
            raise RuntimeError(f"the {name} generator needs a C compiler (apt-get install gcc)")
        building = exe.with_suffix(f".{os.getpid()}")
        subprocess.run(
            [compiler, "-O2", "-Wall", "-o", str(building), str(source)],
            check=True,
            capture_output=True,
        )
        building.replace(exe)
    return exe

"""Where the edge's main thread spends its time per call: bench/edge_calls.py with the
`opentrunk serve` process run under cProfile (main thread only; the database thread
pool is not profiled).

    .venv/bin/python bench/sip_edge_profile.py --rates 60 --duration 30 --out /tmp/edge.prof
    .venv/bin/python -m pstats /tmp/edge.prof          # sort tottime / stats 40

Every argument but --out goes to bench/edge_calls.py. cProfile roughly doubles the
edge's CPU per call, so run it well below the highest clean rate; the figures are for
finding and counting work per call (calls per function / calls made), not for quoting
the CPU per call (take that from bench/edge_calls.py itself).
"""

from __future__ import annotations

import atexit
import cProfile
import os
import sys
import time
from pathlib import Path

_OUT_ENV = "OPENTRUNK_CPROFILE_OUT"


def _run_profiled_cli() -> None:
    """Launcher mode: the real `opentrunk` command line under cProfile."""
    from opentrunk.cli.main import app

    # The main thread's CPU time, not the wall clock: on a busy machine the wall clock
    # charges a function for the time the scheduler kept the process off its core.
    profiler = cProfile.Profile(time.thread_time)
    atexit.register(lambda: profiler.dump_stats(os.environ[_OUT_ENV]))
    profiler.enable()
    try:
        app()
    finally:
        profiler.disable()


def main() -> None:
    argv = sys.argv[1:]
    out = Path("edge.prof")
    if "--out" in argv:
        at = argv.index("--out")
        out = Path(argv[at + 1])
        del argv[at : at + 2]
    here = Path(__file__).resolve()
    sys.path.insert(0, str(here.parent))
    sys.path.insert(0, str(here.parents[1] / "tests"))
    import edge_calls
    from e2e import harness  # type: ignore[import-not-found]

    launcher_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"sip-edge-profile-{os.getpid()}"
    launcher_dir.mkdir(exist_ok=True)
    launcher = launcher_dir / "opentrunk-profiled"
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{here}" --launch "$@"\n')
    launcher.chmod(0o755)
    harness.OPENTRUNK = str(launcher)
    os.environ[_OUT_ENV] = str(out.resolve())
    sys.argv = [str(here.with_name("edge_calls.py")), *argv]
    try:
        edge_calls.main()
    finally:
        launcher.unlink()
        launcher_dir.rmdir()
    print(f"profile written to {out}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--launch"]:
        del sys.argv[1]
        sys.argv[0] = "opentrunk"
        _run_profiled_cli()
    else:
        main()

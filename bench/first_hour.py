"""The first hour, measured: README's quick start run as a new user would, from fresh virtual
environments — the core install for "Quick start", the full one for "Neural retrieval in
minutes" — with each install's time and size and each command's wall time.

    python bench/first_hour.py                  # both installs (pip without a cache: a new machine)
    python bench/first_hour.py --skip-full      # the core install and its commands only

The commands are read from README.md's code blocks under those headings, so the bench runs what
README says. Paths to `../shared/data` are made absolute and everything runs in a temporary
directory (nothing is written into the checkout). Results: a table, and
`bench/results/first_hour.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
RESULTS = ROOT / "bench" / "results"


def readme_block(heading: str) -> list[str]:
    """The commands of the first ```bash block after `heading` (comments and blank lines dropped)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(heading)
    block = re.search(r"```bash\n(.*?)```", text[start:], re.S)
    if block is None:
        raise SystemExit(f"README.md has no bash block after {heading!r}")
    commands = []
    for line in block.group(1).splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line and not line.startswith("#"):
            commands.append(line.replace("../shared", str(SHARED)))
    return commands


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def install(venv: Path, spec: str) -> dict:
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-cache-dir", "--quiet"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True, capture_output=True)
    t0 = time.perf_counter()
    r = subprocess.run([*pip, spec], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"pip install {spec} failed:\n{r.stderr[-3000:]}")
    return {"spec": spec, "seconds": round(seconds, 1), "mb": round(du(venv) / 2**20)}


def run(venv: Path, commands: list[str], cwd: Path) -> list[dict]:
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "COLUMNS": "120"}
    env.pop("PYTHONPATH", None)
    rows = []
    for command in commands:
        t0 = time.perf_counter()
        r = subprocess.run(shlex.split(command), cwd=cwd, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        rows.append({"command": command, "seconds": round(seconds, 1), "exit": r.returncode})
        print(f"{seconds:7.1f} s  exit {r.returncode}  {command}", flush=True)
        if r.returncode:
            print(r.stderr[-2000:], file=sys.stderr)
    return rows


def torch_imported(venv: Path) -> bool:
    code = "import korag.cli, sys; print('torch' in sys.modules)"
    r = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True)
    return r.stdout.strip() == "True"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-full", action="store_true", help="only the core install and the quick start")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="korag-first-hour-"))
    work = tmp / "work"
    work.mkdir()
    result: dict = {}
    try:
        print("core install …", flush=True)
        result["core_install"] = install(tmp / "core", str(ROOT))
        print(f"  {result['core_install']}", flush=True)
        result["core_imports_torch"] = torch_imported(tmp / "core")
        result["quick_start"] = run(tmp / "core", readme_block("## Quick start"), work)
        if not args.skip_full:
            print("full install …", flush=True)
            result["full_install"] = install(tmp / "full", f"{ROOT}[all]")
            print(f"  {result['full_install']}", flush=True)
            result["neural"] = run(tmp / "full", readme_block("### Neural retrieval in minutes"), work)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print()
    print("| step | seconds | exit |")
    print("|---|---|---|")
    for key in ("core_install", "full_install"):
        if key in result:
            r = result[key]
            print(f"| pip install {Path(r['spec']).name} ({r['mb']:,} MB) | {r['seconds']} | 0 |")
    for r in result.get("quick_start", []) + result.get("neural", []):
        print(f"| `{r['command'].replace(str(SHARED), '../shared')}` | {r['seconds']} | {r['exit']} |")
    print(f"\ncore install imports torch: {result['core_imports_torch']}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "first_hour.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()

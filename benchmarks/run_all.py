"""`make bench`: run every benchmark script in this folder and print its figures."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SKIP = {"run_all.py", "screenshot.py"}

failed = []
for script in sorted(HERE.glob("bench_*.py")):
    if script.name in SKIP:
        continue
    print(f"\n=== {script.name} ===", flush=True)
    if subprocess.run([sys.executable, str(script)]).returncode != 0:
        failed.append(script.name)
if failed:
    print(f"\nfailed: {', '.join(failed)}")
    sys.exit(1)

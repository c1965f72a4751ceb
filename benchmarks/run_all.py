"""`make bench`: run every benchmark script in this folder and print its figures.

Each runs with its defaults (bench_serving.py: torch and onnx q4 servers, 64 tokens, 8 streams, sweep
1-16; it saves benchmarks/results/serving.json and .png, which git ignores)."""

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

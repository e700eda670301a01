"""Proof-of-work stamp benchmark: time to make and to verify a stamp at each cost.

    .venv/bin/python bench/stamps.py [--costs 0,4,8,10,12] [--budget 8] [--no-ts]

For each cost in bits prints, for Python (hearth/spaces/stamps.py, argon2-cffi)
and for TypeScript under Node (frontend/src/lib/spaces/stamps.ts, @noble/hashes):

- the measured mean time to make a stamp over several random seeds (how many:
  as many as fit in `--budget` seconds, 1 to 5), next to the expected time
  2**bits x one evaluation (the number of attempts is a geometric draw, so a
  mean of a few seeds is noisy; the expected figure is the one to quote);
- the time to verify one (a single Argon2id evaluation, uncached; at cost 0
  nothing is checked, so it is free).

A cost whose expected time for one stamp passes 3 x budget is not made, only
its expected time printed. The whole run takes about a minute on the 2-core
development machine.

Running the TypeScript: Node 20 cannot run .ts itself, so the script compiles
stamps.ts with the TypeScript compiler already in frontend/node_modules into
frontend/node_modules/.cache/hearth-bench-stamps/ (inside frontend/ so that
`@noble/hashes` resolves and `"type": "module"` applies) and runs a small
driver there with `node`. No bundler, no extra package.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hearth.spaces.stamps import Purpose, argon2, challenge, make_stamp, verify_stamp  # noqa: E402

FRONTEND = ROOT / "frontend"
OUT = FRONTEND / "node_modules" / ".cache" / "hearth-bench-stamps"
DID = "did:key:z6MkeeCwB6mEbxihbdLjyPFhcbU3hZoqiqNn1vTn47BEWads"
SPACE = "fd4f186b69a9d895a8f29f889049b3f28a351b9f972f559ae609e44e52fd88a1"

DRIVER = """
import { argon2, challenge, makeStamp, verifyStamp } from "./stamps.js";
const [costs, budget, did, space] = [JSON.parse(process.argv[2]), Number(process.argv[3]),
  process.argv[4], process.argv[5]];
const chal = challenge(did, space, "join", 1);
const evals = 40;
for (let i = 0; i < 10; i++) argon2(chal, crypto.getRandomValues(new Uint8Array(16))); // warm-up
let t0 = performance.now();
for (let i = 0; i < evals; i++) argon2(chal, crypto.getRandomValues(new Uint8Array(16)));
const evalS = (performance.now() - t0) / 1000 / evals;
const rows = [];
for (const bits of costs) {
  const expected = 2 ** bits * evalS;
  const row = { bits, expected, make: null, n: 0, verify: null };
  if (expected <= 3 * budget) {
    const n = Math.max(1, Math.min(5, Math.floor(budget / expected)));
    const makes = [], verifies = [];
    for (let i = 0; i < n; i++) {
      const now = Date.now();
      t0 = performance.now();
      const s = await makeStamp(did, space, "join", bits, now);
      makes.push((performance.now() - t0) / 1000);
      t0 = performance.now();
      verifyStamp(s, did, space, "join", bits, now);
      verifies.push((performance.now() - t0) / 1000);
    }
    row.make = makes.reduce((a, b) => a + b) / n;
    row.verify = verifies.reduce((a, b) => a + b) / n;
    row.n = n;
  }
  rows.push(row);
}
console.log(JSON.stringify({ evalS, rows }));
"""


def python_rows(
    costs: list[int], budget: float
) -> tuple[float, list[dict[str, float | int | None]]]:
    chal = challenge(DID, SPACE, Purpose.JOIN, 1)
    evals = 200
    t0 = time.perf_counter()
    for _ in range(evals):
        argon2(chal, os.urandom(16))
    eval_s = (time.perf_counter() - t0) / evals
    rows: list[dict[str, float | int | None]] = []
    for bits in costs:
        expected = 2**bits * eval_s
        row: dict[str, float | int | None] = {"bits": bits, "expected": expected, "make": None,
                                              "n": 0, "verify": None}  # fmt: skip
        if expected <= 3 * budget:
            n = max(1, min(5, int(budget / expected)))
            makes, verifies = [], []
            for _ in range(n):
                now = int(time.time() * 1000)
                t0 = time.perf_counter()
                s = make_stamp(DID, SPACE, Purpose.JOIN, bits, now)
                makes.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                verify_stamp(s, DID, SPACE, Purpose.JOIN, bits, now)
                verifies.append(time.perf_counter() - t0)
            row.update(make=statistics.fmean(makes), verify=statistics.fmean(verifies), n=n)
        rows.append(row)
    return eval_s, rows


def ts_rows(costs: list[int], budget: float) -> tuple[float, list[dict[str, float | int | None]]]:
    tsc = FRONTEND / "node_modules" / ".bin" / "tsc"
    if shutil.which("node") is None or not tsc.exists():
        raise SystemExit("TypeScript figures need node and frontend/node_modules (npm ci)")
    OUT.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [str(tsc), "--target", "es2022", "--module", "nodenext", "--moduleResolution", "nodenext",
         "--lib", "es2022,dom", "--skipLibCheck", "--outDir", str(OUT),
         str(FRONTEND / "src" / "lib" / "spaces" / "stamps.ts")],
        check=True,
    )  # fmt: skip
    (OUT / "driver.mjs").write_text(DRIVER)
    out = subprocess.run(
        ["node", str(OUT / "driver.mjs"), json.dumps(costs), str(budget), DID, SPACE],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    data = json.loads(out.stdout)
    return float(data["evalS"]), list(data["rows"])


def fmt(seconds: float | int | None) -> str:
    if seconds is None:
        return "-"
    s = float(seconds)
    return f"{s * 1000:.1f} ms" if s < 1 else f"{s:.2f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--costs", default="0,4,8,10,12")
    ap.add_argument("--budget", type=float, default=8.0, help="seconds per cost and language")
    ap.add_argument("--no-ts", action="store_true")
    args = ap.parse_args()
    costs = [int(c) for c in args.costs.split(",")]
    sides = {"python": python_rows(costs, args.budget)}
    if not args.no_ts:
        sides["node"] = ts_rows(costs, args.budget)
    for name, (eval_s, _) in sides.items():
        print(f"{name}: one Argon2id evaluation (t=1, m=1 MiB, p=1) = {eval_s * 1000:.2f} ms")
    head = f"{'bits':>4}"
    for name in sides:
        head += f" | {name + ' make (n)':>18} {'expected':>10} {'verify':>9}"
    print(head)
    for i, bits in enumerate(costs):
        line = f"{bits:>4}"
        for _, rows in sides.values():
            r = rows[i]
            made = f"{fmt(r['make'])} ({r['n']})" if r["make"] is not None else "-"
            line += f" | {made:>18} {fmt(r['expected']):>10} {fmt(r['verify']):>9}"
        print(line)
    print(json.dumps({k: {"eval_s": v[0], "rows": v[1]} for k, v in sides.items()}))


if __name__ == "__main__":
    main()

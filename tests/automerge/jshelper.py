"""Drive tests/interop/automerge_helper.mjs (real @automerge/automerge) from Python."""

from __future__ import annotations

import base64
import json
import select
import subprocess
from pathlib import Path
from typing import Any

from tests.timing import MS

ROOT = Path(__file__).resolve().parents[2]
INTEROP = ROOT / "tests" / "interop"
HELPER = INTEROP / "automerge_helper.mjs"
#: The slowest call (generating thousands of changes on a busy machine) takes ~30 s.
CALL_TIMEOUT = 180_000 * MS


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


class JsError(RuntimeError):
    pass


class JsHelper:
    """One Node process; ``call(op, **args)`` sends a request and returns the reply."""

    def __init__(self, timeout: float = CALL_TIMEOUT) -> None:
        self.timeout = timeout
        if not (INTEROP / "node_modules" / "@automerge" / "automerge").is_dir():
            raise RuntimeError("run scripts/install-test-deps.sh (npm ci in tests/interop) first")
        self.proc = subprocess.Popen(
            ["node", str(HELPER)],
            cwd=INTEROP,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        # Strict request/response, so nothing is left buffered between calls.
        ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout)
        if not ready:
            self.proc.kill()
            raise RuntimeError(f"node helper gave no answer to {op!r} in {self.timeout:.0f} s")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"node helper exited (code {self.proc.poll()})")
        reply: dict[str, Any] = json.loads(line)
        if not reply.pop("ok"):
            raise JsError(reply["error"])
        return reply

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()

"""Write tests/spaces/stamp_vectors.json: fixed stamp vectors that the Python tests
(test_stamps.py) and the PWA's (frontend/tests/stamps.test.ts) both check, so the two
implementations agree byte for byte on challenges, Argon2id outputs, tags, stamps
and refusals.

    python -m tests.spaces.make_stamp_vectors           # rewrite
    python -m tests.spaces.make_stamp_vectors --check   # fail if stale
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from hearth.spaces.stamps import (
    Purpose,
    StampError,
    argon2,
    challenge,
    make_stamp,
    tag,
    verify_stamp,
    worth,
)

PATH = Path(__file__).with_name("stamp_vectors.json")
ALICE = "did:key:z6MkeeCwB6mEbxihbdLjyPFhcbU3hZoqiqNn1vTn47BEWads"
BOB = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
SPACE = "fd4f186b69a9d895a8f29f889049b3f28a351b9f972f559ae609e44e52fd88a1"
OTHER_SPACE = "00" * 32
NOW = 1_780_000_001_000
HOUR = 3_600_000


def _verify_case(name: str, stamp: str | None, did: str, space: str, purpose: Purpose,
                 bits: int, now: int) -> dict[str, object]:  # fmt: skip
    try:
        verify_stamp(stamp, did, space, purpose, bits, now)
        reason = None
    except StampError as e:
        reason = e.reason
    return {"name": name, "stamp": stamp, "did": did, "space": space,
            "purpose": purpose.value, "bits": bits, "now": now, "reason": reason}  # fmt: skip


def _zero_pad(stamp: str) -> str:
    parts = stamp.split(".")
    parts[2] = "0" + parts[2]
    return ".".join(parts)


def build() -> dict[str, object]:
    argon = []
    for did, space, purpose, window in [
        (ALICE, SPACE, Purpose.JOIN, NOW // HOUR),
        (BOB, SPACE, Purpose.FIRST_POST, 0),
        ("did:web:example.com%3A8080", OTHER_SPACE, Purpose.JOIN, 2**53 - 1),
    ]:
        chal = challenge(did, space, purpose, window)
        for n in (0, 1, 255):
            nonce = bytes(15) + bytes([n])
            out = argon2(chal, nonce)
            argon.append({"did": did, "space": space, "purpose": purpose.value,
                          "window": window, "challenge": chal.hex(), "nonce": nonce.hex(),
                          "output": out.hex(), "worth": worth(chal, nonce)})  # fmt: skip
    seed = bytes.fromhex("0102030405060708")
    made = []
    for bits in (0, 3, 6):
        s = make_stamp(ALICE, SPACE, Purpose.JOIN, bits, NOW, seed=seed)
        made.append({"did": ALICE, "space": SPACE, "purpose": "join", "bits": bits,
                     "now": NOW, "seed": seed.hex(), "stamp": s.encode()})  # fmt: skip
    good = str(made[2]["stamp"])
    j = Purpose.JOIN
    verify = [
        _verify_case("ok", good, ALICE, SPACE, j, 6, NOW),
        _verify_case("ok-cheaper", good, ALICE, SPACE, j, 2, NOW),
        _verify_case("no-cost-no-stamp", None, ALICE, SPACE, j, 0, NOW),
        _verify_case("no-cost-garbage", "garbage", ALICE, SPACE, j, 0, NOW),
        _verify_case("missing", None, ALICE, SPACE, j, 4, NOW),
        _verify_case("malformed", "hs1.join.1.zz", ALICE, SPACE, j, 4, NOW),
        _verify_case("malformed-upper", good.upper(), ALICE, SPACE, j, 4, NOW),
        _verify_case("malformed-zero-pad", _zero_pad(good), ALICE, SPACE, j, 4, NOW),
        _verify_case("wrong-purpose", good, ALICE, SPACE, Purpose.FIRST_POST, 4, NOW),
        _verify_case("wrong-did", good, BOB, SPACE, j, 4, NOW),
        _verify_case("wrong-space", good, ALICE, OTHER_SPACE, j, 4, NOW),
        _verify_case("future", good, ALICE, SPACE, j, 4, NOW - HOUR),
        _verify_case("expired", good, ALICE, SPACE, j, 4, NOW + 2 * HOUR),
        _verify_case("too-cheap", str(made[0]["stamp"]), ALICE, SPACE, j, 12, NOW),
    ]
    return {
        "description": "Stamp vectors (hearth/spaces/stamps.py); written by make_stamp_vectors.py",
        "tags": [{"value": v, "tag": tag(v)} for v in (ALICE, BOB, SPACE)],
        "argon2": argon,
        "made": made,
        "verify": verify,
    }


def text() -> str:
    return json.dumps(build(), indent=1, sort_keys=True) + "\n"


def main() -> int:
    new = text()
    if "--check" in sys.argv[1:]:
        if not PATH.exists() or PATH.read_text() != new:
            print(f"{PATH} is stale: run python -m tests.spaces.make_stamp_vectors")
            return 1
        return 0
    PATH.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""hearth.netguard: which hosts a caller may make a service connect to."""

from __future__ import annotations

import pytest

from hearth.netguard import is_public_address, literal_refusal


@pytest.mark.parametrize(
    "address",
    [
        "::7f00:1",  # IPv4-compatible form of 127.0.0.1
        "::ffff:0:a00:1",  # SIIT form of 10.0.0.1
        "64:ff9b:1::1",  # local-use NAT64
        "fec0::1",  # site-local
        "ff02::1",  # multicast
        "fe80::1%eth0",  # zoned
        "::",
        "192.0.2.1",  # documentation
        "198.18.0.1",  # benchmarking
        "255.255.255.255",
    ],
)
def test_forms_older_pythons_call_global_are_not_public(address: str) -> None:
    assert not is_public_address(address)


@pytest.mark.parametrize(
    ("host", "refused"),
    [
        ("push.example.com", False),  # a name: judged by what it resolves to
        ("8.8.8.8", False),
        ("2606:4700::1111", False),
        ("127.0.0.1", True),
        ("127.0.0.1.", True),
        ("10.0.0.1", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("::ffff:7f00:1", True),
        ("fe80::1%25eth0", True),
        ("0.0.0.0", True),
        ("224.0.0.1", True),
        ("127.1", True),  # legacy numeric forms a URL parser reads as IPv4
        ("2130706433", True),
        ("0x7f.0.0.1", True),
        ("0177.0.0.1", True),
        ("8.8.8.010", True),
        ("1.2.3.4.5", True),
        ("[::1", True),
        ("", True),
    ],
)
def test_literal_hosts(host: str, refused: bool) -> None:
    assert (literal_refusal(host) is not None) is refused

"""Python peers over WebRTC, each scenario in a fresh network namespace (see harness.py)."""

from __future__ import annotations

import pytest

from tests.p2p.harness import run_scenario

pytestmark = pytest.mark.slow


def only_link(stats: dict) -> dict:  # type: ignore[type-arg]
    (link,) = stats["links"]
    return link  # type: ignore[no-any-return]


async def test_two_peers_sync_1000_changes_over_the_channel(changes_file: str) -> None:
    r = await run_scenario("sync_1000", changes_file=changes_file)
    assert r["changes"] == 1000
    assert r["equal_heads"] and r["b_len"] == 1000 and r["b_save_equal"]
    # the router carried signaling only
    m = r["metrics"]
    assert m["hearth_router_relayed_bytes"] == 0
    assert m["hearth_router_relayed_frames"] == 0
    assert m["hearth_router_signal_frames"] >= 2 and m["hearth_router_signal_bytes"] > 0
    a, b = only_link(r["a"]), only_link(r["b"])
    assert a["path"] == b["path"] == "channel"
    assert a["offerer"] != b["offerer"]  # exactly one side offered
    assert a["generation"] == b["generation"] == 1
    assert a["sentBytes"]["relay"] == b["sentBytes"]["relay"] == 0
    assert b["receivedBytes"]["channel"] > 200_000  # the document went over the channel


async def test_ice_failure_relays_everything_then_a_channel_takes_over() -> None:
    r = await run_scenario("ice_fail", n1=300, after_open=300)
    # phase 1: no usable address, ICE failed, the relay carried everything
    p1a, p1b = r["phase1"]["a"], r["phase1"]["b"]
    assert p1a["attemptsFailed"] >= 1 and p1a["channelsOpened"] == 0
    assert p1a["path"] == "relay"
    assert p1a["sentBytes"]["channel"] == 0 and p1a["sentBytes"]["relay"] > 0
    assert p1b["receivedBytes"]["channel"] == 0 and p1b["receivedPackets"]["relay"] >= 300
    assert r["phase1"]["metrics"]["hearth_router_relayed_bytes"] > 0
    # phase 2: a later attempt opened a channel mid-stream and took over
    assert r["sent_at_open"] >= 300
    assert r["received"] == r["sent"] and r["in_order"]  # nothing lost, duplicated or reordered
    a, b = r["a"], r["b"]
    assert a["path"] == b["path"] == "channel"
    assert a["channelsOpened"] == 1 and a["generation"] >= 2
    assert a["sentBytes"]["channel"] > 0 and b["receivedBytes"]["channel"] > 0


async def test_data_held_for_a_channel_goes_by_relay_when_ice_fails() -> None:
    r = await run_scenario("held_then_relayed", n=200)
    # while the first attempt ran, nothing was sent: the data waited for a channel
    held = r["held"]
    assert held["sentPackets"] == {"channel": 0, "relay": 0}
    assert r["outbox_held"] >= 200 and held["attemptsFailed"] == 0
    # the first message arrived only after that attempt failed (ICE timeout), long
    # before relay_delay: the failure released the held data to the relay
    first = r["at_first"]
    assert first["attemptsFailed"] >= 1 and first["channelsOpened"] == 0
    assert first["sentBytes"]["relay"] > 0
    # everything arrived once, in order, by relay
    assert r["received"] == r["sent"] == 200 and r["in_order"]
    a, b = r["a"], r["b"]
    assert a["path"] == "relay" and a["sentBytes"]["channel"] == 0
    assert b["receivedPackets"]["relay"] >= 200
    assert r["metrics"]["hearth_router_relayed_bytes"] > 0


async def test_turn_relay_only_with_router_credentials(changes_file: str) -> None:
    r = await run_scenario("turn", secret="hearth-test-secret", changes_file=changes_file)
    (server,) = r["servers"]
    assert server["urls"] == ["turn:127.0.0.1:3478?transport=udp"]
    assert server["username"].endswith(":" + r["a"]["did"])
    checks = r["checks"]
    assert checks["router_credentials"] == "ok"
    assert "401" in checks["expired"], checks
    assert "401" in checks["forged"], checks
    assert r["equal_heads"]
    assert r["nominated"] == [["relay", "relay"]]  # through coturn, not host to host
    assert only_link(r["a"])["path"] == "channel"
    assert r["metrics"]["hearth_router_relayed_bytes"] == 0


async def test_peer_vanishes_mid_transfer_and_resumes(changes_file: str) -> None:
    r = await run_scenario("vanish", changes_file=changes_file, vanish_at=300)
    assert 300 <= r["b_had_at_vanish"] <= r["b_had_on_return"] < 1000
    # A noticed: the link to B's first connection was closed
    assert r["noticed"]["connId"] == r["first_conn"] != r["second_conn"]
    # B came back with a new connection and caught up from where it was
    assert r["equal_heads"] and r["b_final"] == 1000
    link = only_link(r["b2"])
    assert link["path"] == "channel"
    assert link["receivedBytes"]["relay"] == 0


@pytest.mark.parametrize("how", ["kill", "freeze"])
async def test_peer_killed_mid_transfer_is_noticed_and_a_new_one_resumes(
    changes_file: str, how: str
) -> None:
    r = await run_scenario("vanish_kill", changes_file=changes_file, vanish_at=300, how=how)
    assert r["exit_status"] == -9  # SIGKILL: no WebSocket close, no channel close
    assert 300 <= r["b_had_at_kill"] < 1000
    if how == "freeze":
        # its socket stayed open: the router's idle timeout closed it
        assert r["closed_by"].get("idle", 0) >= 1, r["closed_by"]
    else:
        # the kernel closed its socket at once
        assert r["closed_by"].get("idle", 0) == 0, r["closed_by"]
    # A noticed: its link to the killed process's connection was closed
    assert r["noticed"]["connId"] == r["first_conn"] == r["first_link"]
    # the new process got a new connection, a channel, and the whole document
    assert r["second_conn"] == r["second_link"] != r["first_conn"]
    assert r["equal_heads"]
    link = only_link(r["b2"])
    assert link["path"] == "channel" and link["receivedBytes"]["relay"] == 0


async def test_dropped_channel_is_renegotiated_without_loss() -> None:
    r = await run_scenario("channel_drop", before=200, after=200)
    assert r["received"] == r["sent"] and r["in_order"]
    a, b = r["a"], r["b"]
    # the relay bridged the outage, then a second generation carried the rest
    assert a["attemptsFailed"] >= 1 and b["attemptsFailed"] >= 1
    assert a["channelsOpened"] >= 2 and b["channelsOpened"] >= 2
    assert a["generation"] == b["generation"] >= 2
    assert a["path"] == b["path"] == "channel"
    assert a["sentBytes"]["relay"] > 0 and a["sentBytes"]["channel"] > 0


async def test_simultaneous_joins_one_channel_per_pair_and_convergence(changes_file: str) -> None:
    r = await run_scenario("mesh", changes_file=changes_file, peers=3)
    assert r["converged"]
    ids = r["conn_ids"]
    offers = {}
    for me, links in zip(ids, r["links"], strict=True):
        assert sorted(c for c, _, _ in links) == sorted(i for i in ids if i != me)
        assert all(path == "channel" for _, _, path in links)
        for other, offerer, _ in links:
            offers[(me, other)] = offerer
    # exactly one side of every pair offered
    for (me, other), offerer in offers.items():
        assert offers[(other, me)] is not offerer
    assert r["metrics"]["hearth_router_relayed_bytes"] == 0

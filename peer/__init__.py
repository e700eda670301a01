"""The Python peer: joins documents through the router, opens WebRTC data
channels to the other connections (aiortc), syncs Automerge documents over
them, and falls back to the router's relayed `send` when it must.

See docs/p2p.md.
"""

"""uvicorn's WebSocket protocol, with the socket's transport visible to the app.

ASGI gives an application no way to see how many bytes the server still buffers
for a peer, nor to drop a connection whose peer stopped reading (a close frame
queued behind megabytes nobody reads never goes out, and a closing transport keeps
its buffer). The syncserver needs both to bound its outgoing memory
(`syncserver/outgoing.py`), so this subclass puts the asyncio transport into the
scope's extensions under `TRANSPORT_EXTENSION`; `syncserver/transport.py` reads
`get_write_buffer_size()` and calls `abort()` on it, nothing else. Under another
server (or a uvicorn without the sans-I/O protocol) the extension is absent and the
syncserver counts only its own queue.
"""

from __future__ import annotations

import asyncio
from typing import Any

from syncserver.transport import TRANSPORT_EXTENSION

try:
    from uvicorn.protocols.websockets.websockets_sansio_impl import (
        WebSocketsSansIOProtocol as _Base,
    )
except ImportError:  # pragma: no cover - older uvicorn
    _Base = None  # type: ignore[assignment,misc]


def protocol_class() -> type[asyncio.Protocol] | None:
    """The uvicorn `ws` protocol class to use, or None to keep uvicorn's default."""
    return None if _Base is None else SyncWebSocketProtocol


if _Base is not None:

    class SyncWebSocketProtocol(_Base):
        def handle_connect(self, event: Any) -> None:
            super().handle_connect(event)
            # The app task is created above but runs later: the scope can still grow.
            scope = getattr(self, "scope", None)
            if scope is not None:
                scope["extensions"][TRANSPORT_EXTENSION] = {"transport": self.transport}

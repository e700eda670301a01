"""Prometheus metrics of one syncserver (its own registry, so several can share a process)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge

from syncserver.storage import StorageStats


class SyncMetrics:
    def __init__(self, registry: CollectorRegistry, stats: Callable[[], StorageStats]) -> None:
        self.registry = registry
        self.peers = Gauge("hearth_syncserver_peers", "Connected peers", registry=registry)
        self.loaded_documents = Gauge(
            "hearth_syncserver_loaded_documents", "Documents held in memory", registry=registry
        )
        documents = Gauge("hearth_syncserver_documents", "Documents stored", registry=registry)
        documents.set_function(lambda: stats().documents)
        changes = Gauge("hearth_syncserver_changes_stored", "Changes stored", registry=registry)
        changes.set_function(lambda: stats().changes)
        change_bytes = Gauge(
            "hearth_syncserver_change_bytes_stored",
            "Bytes of change chunks stored",
            registry=registry,
        )
        change_bytes.set_function(lambda: stats().change_bytes)
        self.bytes_in = Counter(
            "hearth_syncserver_bytes_in", "WebSocket payload bytes received", registry=registry
        )
        self.bytes_out = Counter(
            "hearth_syncserver_bytes_out", "WebSocket payload bytes sent", registry=registry
        )
        self.messages_in = Counter(
            "hearth_syncserver_messages_in",
            "Messages received, by type",
            ["type"],
            registry=registry,
        )
        self.sync_rounds = Counter(
            "hearth_syncserver_sync_rounds",
            "Sync messages received and processed",
            registry=registry,
        )
        self.changes_received = Counter(
            "hearth_syncserver_changes_received",
            "New changes received and committed",
            registry=registry,
        )
        self.refused = Counter(
            "hearth_syncserver_refused",
            "Messages refused, by reason",
            ["reason"],
            registry=registry,
        )

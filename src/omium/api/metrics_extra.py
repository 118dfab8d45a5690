"""Metrics only the service records (the engine's are in ``omium.metrics``)."""

from __future__ import annotations

from prometheus_client import Gauge

# Set from the database at scrape time; in multiprocess mode the freshest value wins.
queue_depth = Gauge("omium_queue_depth", "Executions waiting for a worker",
                    multiprocess_mode="mostrecent")

"""Analytics: ingest (records → partial counts, poison) and detection (windows,
anomalies, alerts)."""

__all__: list[str] = []

"""Faust stream workers: windowed error rates, anomalies, alerts, fleet-wide recovery."""

__all__: list[str] = []

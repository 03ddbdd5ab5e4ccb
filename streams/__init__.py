"""errorflow's stream workers, on Kafka transactions (see README, "Stream workers").

- :mod:`streams.engine` — the generic exactly-once stage machinery (Kafka only, no domain);
- :mod:`streams.analytics` — ingest (records → partial counts, poison) and detection
  (windows, anomalies, alerts);
- :mod:`streams.breakers` — fleet circuit breakers and retry budgets;
- :mod:`streams.recovery` — recovery commands, resource parking, dead letters, sagas;
- :mod:`streams.healing` — room for the self-healing stage.
"""

__all__: list[str] = []

"""The generic exactly-once stage engine: partitions, transactions, changelogs, ticks.

It knows Kafka and nothing of errorflow's domain: no module here imports ``schemas`` or
another ``streams`` package.
"""

from streams.engine.stage import EngineSettings, EngineStage, Output

__all__ = ["EngineSettings", "EngineStage", "Output"]

"""Self-healing: detectors in the stream, actions in the runner."""

__all__: list[str] = []

"""Room for the self-healing stage (detectors live in the top-level ``healing`` package)."""

__all__: list[str] = []

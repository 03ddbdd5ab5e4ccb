"""The runner SDK: classify, retry, protect, record and publish."""

__all__: list[str] = []

"""Recovery: commands per strategy, resource parking, dead letters and compensation sagas."""

__all__: list[str] = []

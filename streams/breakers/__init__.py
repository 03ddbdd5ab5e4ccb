"""Fleet circuit breakers and retry budgets from every runner's calls."""

__all__: list[str] = []

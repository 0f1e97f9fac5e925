"""Actions: prime, mix, deliver, measure, retrieve, drain, clean — plain functions over a
:class:`~asab.actions.bench.Bench`, returning pydantic records."""

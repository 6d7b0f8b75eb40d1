"""The registry of metrics, keyed by the names an evaluation config lists."""

from mdrun.registry import Registry

METRICS: Registry = Registry("metric")

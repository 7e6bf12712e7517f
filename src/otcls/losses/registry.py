"""The loss registry: name → loss class (``loss: reot`` in a config)."""
from otcls.registry import Registry

LOSSES: Registry = Registry("loss")

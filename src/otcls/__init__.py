"""otcls: classification as optimal-transport matching for long-tailed data."""
__version__ = "0.1.0"

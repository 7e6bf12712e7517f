"""otcls.models."""

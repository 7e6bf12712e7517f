"""otcls.callbacks."""

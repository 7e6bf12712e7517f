"""otcls.data."""

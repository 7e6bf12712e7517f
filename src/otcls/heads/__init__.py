"""otcls.heads."""

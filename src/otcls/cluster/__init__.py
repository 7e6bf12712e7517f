"""otcls.cluster."""

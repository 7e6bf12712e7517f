"""otcls.reporting."""

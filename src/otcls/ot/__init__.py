"""otcls.ot."""

"""otcls.losses."""

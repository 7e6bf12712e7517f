"""otcls.tasks."""

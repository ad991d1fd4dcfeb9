"""The six stages: one plain function module each, thin Celery tasks in tasks.py, the chain in flow.py."""

"""Ray Train: the driver side (launch.py) and the per-worker entry (worker.py) around the loop."""

"""Sweeps: `rayfit tune` runs the shared loop as Ray Tune trials (see sweep.run_sweep)."""

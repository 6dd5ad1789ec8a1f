"""Loop features, one per file. Each is a rayfit.loop.Callback."""

"""Framework backends: each supplies the steps, state and export that the loop calls."""

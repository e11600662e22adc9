"""Analysis of trained sweeps."""

"""Device plugins (CPU on NumPy; GPU on CuPy and VPU later), their registry and properties."""

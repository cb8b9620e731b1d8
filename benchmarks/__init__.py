"""Scale benchmarks: scripts that measure, never tests that time."""

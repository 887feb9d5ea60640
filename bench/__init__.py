"""Benchmarks and the drawn-digit harness: measurements of siamese_lit, kept out of the runtime package."""

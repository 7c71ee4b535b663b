"""Pipeline stages: one module each, a pure batch-oriented core wrapped by a thin Beam PTransform."""

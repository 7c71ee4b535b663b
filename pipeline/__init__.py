"""Pipeline options, assembly of the stages, the CLI and the run report."""

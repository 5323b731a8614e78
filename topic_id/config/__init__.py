"""Configuration: the system registry, command-line overrides and profiles, checks before training."""

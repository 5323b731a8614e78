"""Reporting: a results tree read into Tables I and II, the paper's claims checked, rendered."""

"""Helpers both packages use: atomic file writes, audio decoding and resampling, pause finding.

It imports neither :mod:`data_prep` nor :mod:`topic_id`, so corpus preparation and the library
share one implementation of each without depending on each other.
"""

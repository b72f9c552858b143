"""Figures written to files by every stage (final report, study report, audit heatmaps)."""

from __future__ import annotations


def pyplot():
    """matplotlib.pyplot on the file-only backend (reports run on machines without a display)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt

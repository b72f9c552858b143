"""Diagnostics of the data with or without a trained model: audit, findings, per-sample inspection, mislabel ranking, and attaching them to the study."""

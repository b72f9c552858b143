"""Plan a study from a dataset folder (``automl init``): read what the masks encode, then choose
the split, crop, batch size, encoder weights, trial length and budget, each with its reason."""

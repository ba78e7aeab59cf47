"""Synthetic training data: query generation, filters and hard negatives."""

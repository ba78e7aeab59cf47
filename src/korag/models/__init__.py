"""Model acquisition: offline conversions and loading helpers."""

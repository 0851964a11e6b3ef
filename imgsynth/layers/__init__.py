"""Building blocks shared by two or more model families.

Nothing in ``imgsynth.layers`` imports from ``imgsynth.models`` (or anything above it).
"""

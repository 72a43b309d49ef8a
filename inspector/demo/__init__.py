"""The embedded demo world: a tiny text-to-image model trained here and the training set it memorized."""

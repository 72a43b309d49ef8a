"""Builds the embedded demo world: a tiny text-to-image model trained here and the training set it memorized.

Only the build lives here. The class the built model loads as at run time is
:class:`inspector.generation.demo_pipeline.DemoPipeline`, beside the engine that samples it: this package imports
the generation engine, never the reverse.
"""

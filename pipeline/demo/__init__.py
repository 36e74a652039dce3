"""The application layer: assembles sources, serving, publishing and consumers for the demo and benchmarks.

This package (and the command line) may import ``consumers``; the library modules of
``pipeline`` never do.
"""

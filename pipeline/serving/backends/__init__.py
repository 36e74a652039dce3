"""Triton Python-backend models. Each module defines ``TritonPythonModel``; a repository's
``model.py`` re-exports one. ``triton_python_backend_utils`` exists only inside Triton's stub,
so it is imported when a model initialises."""

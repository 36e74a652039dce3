"""Serving: the tensor contract, the Triton model repository, and the inference client."""

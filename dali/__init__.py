"""DALI pipeline definitions: written once, serialized for the GPU profile, run on CPU operators elsewhere."""

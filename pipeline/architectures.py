"""Names of the model variants (``pipeline.model.build`` builds them): known without importing PyTorch."""

ARCHITECTURES = ("mbv2_giam", "r18_giam_tiny", "r50_base", "r50_giam", "r50_giam_soft")

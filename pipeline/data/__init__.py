"""Datasets: the synthetic driving-scene simulator, COCO-format I/O and mask evaluation."""

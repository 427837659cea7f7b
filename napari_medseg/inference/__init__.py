"""Inference: sliding-window prediction of the model pair, boundary uncertainty, uncertain regions.

Heavy imports (torch, MONAI) happen when a submodule is imported, not here, so napari starts fast.
Main entry point: :func:`napari_medseg.inference.engine.predict_volume`.
"""

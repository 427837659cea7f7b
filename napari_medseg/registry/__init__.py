"""Model registry: every trained model of a store, its scores, and which one is in use."""

from napari_medseg.registry.model_registry import ModelRegistry, RegistryEntry, current_model_dir
from napari_medseg.registry.promotion import Decision, PromotionRule, decide

__all__ = ["Decision", "ModelRegistry", "PromotionRule", "RegistryEntry", "current_model_dir", "decide"]

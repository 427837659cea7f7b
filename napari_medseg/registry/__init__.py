"""Model registry: every trained model of a store, its scores, and which one is in use."""

from napari_medseg.registry.model_registry import ModelRegistry, RegistryEntry
from napari_medseg.registry.promotion import Decision, PromotionRule, decide

__all__ = ["Decision", "ModelRegistry", "PromotionRule", "RegistryEntry", "decide"]

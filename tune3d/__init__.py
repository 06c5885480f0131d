"""tune3d: make vision foundation models 3D-aware by fine-tuning them (FiT3D, Fin3R)."""

__version__ = "0.1.0"

"""cliphand: CLIP-Hand3D, 3D hand pose and mesh from one RGB image with context-aware prompting."""

__version__ = "0.1.0"

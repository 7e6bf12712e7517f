"""otcls.tasks: LightningModules (image classification here; molecules and segmentation add theirs)."""
from otcls.tasks.image import ImageClassifier

__all__ = ["ImageClassifier"]

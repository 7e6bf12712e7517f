"""otcls.heads: the TransportHead shared by every task."""
from otcls.heads.classifiers import CosineClassifier
from otcls.heads.transport_head import TransportHead

__all__ = ["TransportHead", "CosineClassifier"]

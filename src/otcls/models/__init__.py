"""otcls.models: backbones (feature extractors with an ``out_features`` attribute) and the ``MODELS`` registry."""
from otcls.registry import Registry

MODELS: Registry = Registry("model")

from otcls.models.resnet import ResNet10  # noqa: E402
from otcls.models.resnet_cifar import CifarResNet  # noqa: E402
from otcls.models.small_cnn import SmallCNN  # noqa: E402
from otcls.models.conv_mlp import ConvMLP  # noqa: E402
from otcls.models.gnn import MoleculeGNN  # noqa: E402

MODELS.register("resnet32")(lambda **kw: CifarResNet(depth=32, **kw))
MODELS.register("cifar_resnet")(CifarResNet)
MODELS.register("resnet10")(ResNet10)
MODELS.register("small_cnn")(SmallCNN)
MODELS.register("conv_mlp")(ConvMLP)
MODELS.register("gin")(lambda **kw: MoleculeGNN(conv="gin", **kw))
MODELS.register("gcn")(lambda **kw: MoleculeGNN(conv="gcn", **kw))

__all__ = ["MODELS", "CifarResNet", "ResNet10", "SmallCNN", "ConvMLP"]

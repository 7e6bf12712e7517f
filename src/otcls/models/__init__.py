"""otcls.models: backbones (feature extractors with an ``out_features`` attribute) and the ``MODELS`` registry."""
from otcls.registry import Registry

MODELS: Registry = Registry("model")

from otcls.models.resnet import ResNet10  # noqa: E402
from otcls.models.resnet_cifar import CifarResNet  # noqa: E402
from otcls.models.small_cnn import SmallCNN  # noqa: E402
from otcls.models.conv_mlp import ConvMLP  # noqa: E402

MODELS.register("resnet32")(lambda **kw: CifarResNet(depth=32, **kw))
MODELS.register("cifar_resnet")(CifarResNet)
MODELS.register("resnet10")(ResNet10)
MODELS.register("small_cnn")(SmallCNN)
MODELS.register("conv_mlp")(ConvMLP)


def _molecule_gnn(conv: str):
    # Imported when built: the molecule encoders need the [mol] extra, the image backbones do not.
    def build(**kw):
        from otcls.models.gnn import MoleculeGNN

        return MoleculeGNN(conv=conv, **kw)
    return build


MODELS.register("gin")(_molecule_gnn("gin"))
MODELS.register("gcn")(_molecule_gnn("gcn"))

__all__ = ["MODELS", "CifarResNet", "ResNet10", "SmallCNN", "ConvMLP"]

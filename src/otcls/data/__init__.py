"""otcls.data: long-tailed DataModules, long-tail profiles, test-prior variants and shot groups."""
from otcls.data.base import LongTailDataModule, TransformSubset
from otcls.data.cifar import CIFAR10LTDataModule, CIFAR100LTDataModule
from otcls.data.fashion_mnist import FashionMNISTLTDataModule
from otcls.data.imagenet_lt import ImageNetLTDataModule
from otcls.data.longtail import (PRIOR_VARIANTS, SHOT_GROUPS, class_counts, longtail_counts, shot_groups,
                                  stratified_split, subsample_per_class, prior_variant_indices)

__all__ = ["LongTailDataModule", "TransformSubset", "CIFAR10LTDataModule", "CIFAR100LTDataModule",
           "FashionMNISTLTDataModule", "ImageNetLTDataModule", "PRIOR_VARIANTS", "SHOT_GROUPS", "class_counts",
           "longtail_counts", "shot_groups", "stratified_split", "subsample_per_class", "prior_variant_indices"]

"""Class names for the models' outputs, available offline."""

from __future__ import annotations

__all__ = ["imagenet_labels"]


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names, offline, in the usual index order.

    >>> imagenet_labels()[281]
    'tabby'
    """
    from torchvision.models import ResNet18_Weights  # torchvision is slow to import; only here

    # Weight metadata is plain Python; reading it downloads nothing.
    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])

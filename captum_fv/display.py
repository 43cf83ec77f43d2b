"""Drawing images in notebooks: a grid of optimized images or examples with their titles."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch


def show_images(
    images: Any,
    titles: Optional[Sequence[str]] = None,
    ncols: Optional[int] = None,
    scale: float = 2.2,
    suptitle: Optional[str] = None,
) -> Any:
    """Draw images ``(N, C, H, W)`` in [0, 1] (1 or 3 channels) in a grid, each with its title, and
    return the matplotlib figure (shown at once in a notebook)."""
    import matplotlib.pyplot as plt  # plotting is optional at import time

    images = list(images)
    ncols = ncols or len(images)
    nrows = -(-len(images) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(scale * ncols, scale * nrows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, title in zip(axes.flat, images, titles or [""] * len(images)):
        x = torch.as_tensor(img).detach().float().cpu().clamp(0, 1)
        ax.imshow(
            x[0].numpy() if x.shape[0] == 1 else x.permute(1, 2, 0).numpy(),
            cmap="gray" if x.shape[0] == 1 else None,
            vmin=0,
            vmax=1,
        )
        ax.set_title(title, fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    plt.show()
    return fig

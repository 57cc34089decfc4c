"""The picture grid of ``lfp saliency --png``, after the paper's Figure 3.

Rows are images; the first column shows the image (with the foreground mask's outline where there is one), then
one column per model with its map over the image. Each map cell is titled with the model's name and its
prediction against the true label (green when right, red when wrong), plus the attribution share when a mask
exists. Each map is scaled to its own maximum (its positive part), as Grad-CAM pictures usually are; a colour bar
gives the scale, and a caption under the grid says what the number in brackets is and, given ``note``, anything
else the reader must know (e.g. that only the first rows are drawn).

Drawn with matplotlib's object API on the Agg canvas: no display, no pyplot state.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def _positive_scaled(m: np.ndarray) -> np.ndarray | None:
    pos = np.clip(m, 0, None)
    top = pos.max()
    return pos / top if top > 0 else None


def saliency_grid(
    images: torch.Tensor,
    maps: Sequence[torch.Tensor],
    names: Sequence[str],
    preds: Sequence[torch.Tensor],
    labels: torch.Tensor,
    class_names: Sequence[str],
    *,
    row_titles: Sequence[str] | None = None,
    masks: torch.Tensor | None = None,
    shares: Sequence[torch.Tensor] | None = None,
    targets: Sequence[torch.Tensor] | None = None,
    title: str | None = None,
    note: str | None = None,
    cell: float = 1.9,
):
    """A matplotlib ``Figure``: ``images`` (R, C, H, W) in [0, 1]; per model its maps (R, H, W), predictions and
    (optionally) shares and explained classes (shown when they differ from the prediction); ``note``: a line added
    to the caption."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    rows, cols = images.shape[0], len(maps) + 1
    caption = []
    if shares is not None:
        caption.append(
            "(0.xx) beside a prediction: the map's attribution share on the object, the fraction of its "
            "positive attribution inside the mask (outlined in white)"
        )
    if note:
        caption.append(note)
    fig = Figure(
        figsize=(cell * cols + 0.9, cell * rows * 1.2 + (0.5 if title else 0.1) + 0.25 * len(caption)),
        layout="constrained",
    )
    axes = np.atleast_2d(fig.subplots(rows, cols, squeeze=False))
    jet = colormaps["jet"]
    name_of = lambda c: class_names[int(c)] if 0 <= int(c) < len(class_names) else str(int(c))  # noqa: E731
    for r in range(rows):
        img = images[r].detach().cpu().float().clamp(0, 1).permute(1, 2, 0).numpy()
        grey = img.shape[2] == 1
        shown = img[:, :, 0] if grey else img
        ax = axes[r, 0]
        ax.imshow(shown, cmap="gray" if grey else None, vmin=0, vmax=1, interpolation="nearest")
        if masks is not None and masks[r].any():
            ax.contour(masks[r].cpu().numpy().astype(float), levels=[0.5], colors="white", linewidths=0.7)
        ax.set_title((row_titles[r] + "\n" if row_titles else "") + f"true {name_of(labels[r])}", fontsize=8)
        for k in range(len(maps)):
            ax = axes[r, k + 1]
            ax.imshow(shown, cmap="gray" if grey else None, vmin=0, vmax=1, interpolation="nearest")
            scaled = _positive_scaled(maps[k][r].detach().cpu().float().numpy())
            if scaled is not None:
                ax.imshow(jet(scaled)[:, :, :3], alpha=0.5, interpolation="bilinear")
            else:
                ax.text(
                    0.5,
                    0.5,
                    "no positive\nattribution",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white",
                    transform=ax.transAxes,
                )
            p, y = int(preds[k][r]), int(labels[r])
            line2 = f"pred {name_of(p)} · true {name_of(y)}"
            if targets is not None and int(targets[k][r]) != p:
                line2 += f"\n→ {name_of(targets[k][r])}"
            if shares is not None and torch.isfinite(shares[k][r]):
                line2 += f"  ({float(shares[k][r]):.2f})"
            ax.set_title(f"{names[k]}\n{line2}", fontsize=8, color="#1a7f37" if p == y else "#c0362c")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        for s in ax.spines.values():
            s.set_visible(False)
    bar = fig.colorbar(
        ScalarMappable(Normalize(0, 1), jet),
        ax=axes[:, 1:].ravel().tolist(),
        shrink=min(1.0, 2.5 / rows),
        fraction=0.05,
        pad=0.02,
    )
    bar.set_label("attribution, scaled to each map's maximum", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=9, wrap=True)
    if caption:
        fig.supxlabel("\n".join(caption), fontsize=8, wrap=True)
    fig.get_layout_engine().set(w_pad=0.02, h_pad=0.03, wspace=0.02, hspace=0.02)
    return fig


__all__ = ["saliency_grid"]

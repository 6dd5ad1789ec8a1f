"""PNG of the training curves (loss, accuracy or regression error, learning rate) from a history."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and workers
import matplotlib.pyplot as plt  # noqa: E402

PANELS = (
    ("loss", ("train_loss", "val_loss")),
    ("accuracy", ("train_accuracy", "val_accuracy")),
    ("learning rate", ("learning_rate",)),
)


def plot_history(history: list[dict[str, float]], path: Path) -> Path:
    """Draw one panel per metric family that the history holds; returns the PNG path."""
    panels = [(title, [k for k in keys if history and k in history[0]]) for title, keys in PANELS]
    panels = [(title, keys) for title, keys in panels if keys]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.5), squeeze=False)
    epochs = [row["epoch"] for row in history]
    for ax, (title, keys) in zip(axes[0], panels):
        for key in keys:
            ax.plot(epochs, [row[key] for row in history], marker="o", markersize=3, label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

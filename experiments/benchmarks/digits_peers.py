"""The README's digits job written for PyTorch Lightning and for Keras 3 `fit`, as a user would:
run as whole processes by whole_process.py.

Both do what experiments/digits_mlp.yaml asks of rayfit: scikit-learn's digits (test 20%, then
validation 15% of all rows, standardized), an MLP 64 -> 256 -> 128 -> 10 with ReLU and dropout
0.2, AdamW (lr 1e-3, weight decay 1e-4) with a cosine learning rate over 30 epochs, batch 64, at
most 30 epochs with early stopping on val_loss (patience 8), checkpoints (Lightning: the best 2
and the last; Keras: the best), a CSV log of the epochs, and the test metrics at the end.

    python experiments/benchmarks/digits_peers.py lightning   # in an empty folder: writes there
    python experiments/benchmarks/digits_peers.py keras
"""

from __future__ import annotations

import sys

import numpy as np

EPOCHS, BATCH, PATIENCE, SEED = 30, 64, 8, 0


def digits() -> tuple[np.ndarray, ...]:
    """(x_train, y_train, x_val, y_val, x_test, y_test), float32 features standardized on train."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=0.2, random_state=SEED, stratify=y)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=0.15 / 0.8, random_state=SEED, stratify=y_rest)
    mean, std = x_train.mean(0), x_train.std(0)
    std[std == 0] = 1.0  # constant pixels stay 0
    scale = lambda a: ((a - mean) / std).astype(np.float32)  # noqa: E731
    return scale(x_train), y_train, scale(x_val), y_val, scale(x_test), y_test


def lightning_job() -> None:
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    class MLP(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Dropout(0.2),
                                     nn.Linear(256, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 10))

        def _step(self, batch, name: str) -> torch.Tensor:
            x, y = batch
            out = self.net(x)
            loss = nn.functional.cross_entropy(out, y)
            self.log(f"{name}_loss", loss, prog_bar=True)
            self.log(f"{name}_accuracy", (out.argmax(1) == y).float().mean())
            return loss

        def training_step(self, batch, _):
            return self._step(batch, "train")

        def validation_step(self, batch, _):
            self._step(batch, "val")

        def test_step(self, batch, _):
            self._step(batch, "test")

        def configure_optimizers(self):
            optimizer = torch.optim.AdamW(self.parameters(), lr=1e-3, weight_decay=1e-4)
            return [optimizer], [torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=EPOCHS)]

    L.seed_everything(SEED)
    x_train, y_train, x_val, y_val, x_test, y_test = digits()
    loader = lambda x, y, shuffle: DataLoader(  # noqa: E731
        TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=BATCH, shuffle=shuffle)
    trainer = L.Trainer(
        max_epochs=EPOCHS, accelerator="cpu", devices=1, logger=CSVLogger("logs"),
        callbacks=[EarlyStopping("val_loss", patience=PATIENCE),
                   ModelCheckpoint(monitor="val_loss", save_top_k=2, save_last=True)],
    )
    model = MLP()
    trainer.fit(model, loader(x_train, y_train, True), loader(x_val, y_val, False))
    trainer.test(model, loader(x_test, y_test, False))


def keras_job() -> None:
    import keras

    keras.utils.set_random_seed(SEED)
    x_train, y_train, x_val, y_val, x_test, y_test = digits()
    model = keras.Sequential([
        keras.Input((64,)), keras.layers.Dense(256, activation="relu"), keras.layers.Dropout(0.2),
        keras.layers.Dense(128, activation="relu"), keras.layers.Dropout(0.2), keras.layers.Dense(10),
    ])
    steps = EPOCHS * -(-len(x_train) // BATCH)
    model.compile(
        keras.optimizers.AdamW(keras.optimizers.schedules.CosineDecay(1e-3, steps), weight_decay=1e-4),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"],
    )
    model.fit(
        x_train, y_train, batch_size=BATCH, epochs=EPOCHS, validation_data=(x_val, y_val), verbose=2,
        callbacks=[keras.callbacks.EarlyStopping(patience=PATIENCE),
                   keras.callbacks.ModelCheckpoint("best.keras", save_best_only=True),
                   keras.callbacks.CSVLogger("history.csv")],
    )
    print(dict(zip(["test_loss", "test_accuracy"], model.evaluate(x_test, y_test, verbose=0))))


if __name__ == "__main__":
    {"lightning": lightning_job, "keras": keras_job}[sys.argv[1]]()

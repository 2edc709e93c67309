"""The next-template network, its training loop and ONNX export (the only torch user).

Input: int64 windows (batch, k) of vocabulary indices; output: log-probabilities of
the next template (batch, vocab). A small recurrent net is enough: HDFS has ~30
templates, and the serving cost is dominated by the cache, not the network.
"""

from __future__ import annotations

import io
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn


class NextTemplate(nn.Module):
    def __init__(
        self, vocab: int, arch: str = "lstm", embed: int = 32, hidden: int = 64, layers: int = 2
    ):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[arch]
        self.rnn = rnn(embed, hidden, layers, batch_first=True)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        states, _ = self.rnn(self.embed(window))
        return torch.log_softmax(self.out(states[:, -1]), dim=-1)


@dataclass
class TrainResult:
    model: NextTemplate
    epochs: int
    loss: float
    seconds: float
    rows: int


def train(
    rows: Counter[tuple[int, ...]],
    vocab: int,
    *,
    arch: str = "lstm",
    epochs: int = 30,
    batch_size: int = 256,
    lr: float = 3e-3,
    seed: int = 0,
    threads: int = 1,
    progress: Any = None,
) -> TrainResult:
    """Fits on distinct (window, next) rows weighted by how often they occur."""
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    started = time.perf_counter()
    items = list(rows.items())
    data = torch.tensor([r for r, _ in items], dtype=torch.int64)
    weights = torch.tensor([c for _, c in items], dtype=torch.float32)
    # Square-root weighting keeps frequent rows dominant without drowning rare-but-normal
    # transitions, which would otherwise get near-zero probability and false alarms.
    weights = weights.sqrt()
    x, y = data[:, :-1], data[:, -1]
    model = NextTemplate(vocab, arch)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    loss_fn = nn.NLLLoss(reduction="none")
    generator = torch.Generator().manual_seed(seed)
    loss_value = float("nan")
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(items), generator=generator)
        total, total_w = 0.0, 0.0
        for start in range(0, len(items), batch_size):
            idx = order[start : start + batch_size]
            w = weights[idx]
            loss = (loss_fn(model(x[idx]), y[idx]) * w).sum() / w.sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * float(w.sum())
            total_w += float(w.sum())
        scheduler.step()
        loss_value = total / max(total_w, 1e-9)
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{loss_value:.4f}")
    model.eval()
    return TrainResult(model, epochs, loss_value, time.perf_counter() - started, len(items))


def _to_onnx(model: nn.Module, probe: torch.Tensor, input_name: str, output_name: str) -> bytes:
    """TorchScript-based export (opset 17) with a dynamic batch axis, as onnxruntime
    serves batches of any size."""
    model.eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (probe,),
            buffer,
            dynamo=False,
            input_names=[input_name],
            output_names=[output_name],
            dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
            opset_version=17,
        )
    return buffer.getvalue()


def export_onnx(model: NextTemplate, window: int) -> bytes:
    return _to_onnx(model, torch.zeros((2, window), dtype=torch.int64), "window", "log_probs")


def torch_log_probs(model: NextTemplate, windows: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(windows.astype(np.int64))).numpy()


class SessionAutoencoder(nn.Module):
    """Reconstructs a closed session's template profile (log1p counts); sessions unlike
    any normal one reconstruct badly. Complements the exact template-set statistic by
    also weighing how *many* of each template a session had."""

    def __init__(self, vocab: int, hidden: int = 32, code: int = 6):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(vocab, hidden),
            nn.ReLU(),
            nn.Linear(hidden, code),
            nn.ReLU(),
            nn.Linear(code, hidden),
            nn.ReLU(),
            nn.Linear(hidden, vocab),
        )

    def forward(self, counts: torch.Tensor) -> torch.Tensor:
        """Mean squared reconstruction error per session."""
        return ((self.net(counts) - counts) ** 2).mean(dim=-1)


def train_session_autoencoder(
    profiles: np.ndarray, *, epochs: int = 300, seed: int = 0, threads: int = 1
) -> SessionAutoencoder:
    """Fits on distinct profiles weighted by how often they occur."""
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    unique, counts = np.unique(profiles, axis=0, return_counts=True)
    x = torch.from_numpy(unique.astype(np.float32))
    w = torch.from_numpy(np.sqrt(counts).astype(np.float32))
    model = SessionAutoencoder(profiles.shape[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), 256):
            idx = order[start : start + 256]
            loss = (model(x[idx]) * w[idx]).sum() / w[idx].sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    return model


def export_session_onnx(model: SessionAutoencoder, vocab: int) -> bytes:
    return _to_onnx(model, torch.zeros((2, vocab), dtype=torch.float32), "profile", "error")

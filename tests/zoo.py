"""A zoo of small PyTorch models covering what users export: CNN with BatchNorm,
RNN over token ids, a small transformer with keyword inputs, multi-input/multi-output."""

from __future__ import annotations

import torch
from torch import nn


class ConvBnNet(nn.Module):
    """The seed's y = ReLU(BN(Conv(x))) twice, then a classifier: digits-sized (1×8×8)."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.1), nn.Linear(64, classes))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(image))


class TokenGru(nn.Module):
    """Integer token ids → embedding → GRU → logits."""

    def __init__(self, vocab: int = 50) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, 16)
        self.rnn = nn.GRU(16, 16, batch_first=True)
        self.out = nn.Linear(16, 3)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.rnn(self.embed(tokens))
        return self.out(hidden[:, -1])


class TinyTransformer(nn.Module):
    """A transformers-style model: keyword inputs, a dict of outputs."""

    def __init__(self, vocab: int = 100, width: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        layer = nn.TransformerEncoderLayer(width, 4, 64, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.classifier = nn.Linear(width, 2)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        hidden = self.encoder(self.embed(input_ids), src_key_padding_mask=attention_mask == 0)
        return {"logits": self.classifier(hidden[:, 0]), "last_hidden_state": hidden}


class TwoHeads(nn.Module):
    """Two inputs of different dtypes, two outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.dense = nn.Linear(6, 4)
        self.embed = nn.Embedding(10, 4)

    def forward(
        self, features: torch.Tensor, category: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mixed = torch.tanh(self.dense(features)) + self.embed(category)
        return mixed.sum(-1), torch.softmax(mixed, dim=-1)


class FixedBatch(nn.Module):
    """Only works at batch size 4, in torch as in ONNX."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(4, -1) * 2


class BatchAsConstant(nn.Module):
    """Reads its batch size into a Python int: runs at any size in torch, but an export
    traced at one size freezes the number (a real parity failure at another size)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * int(x.shape[0])


def seeded(module: nn.Module, seed: int = 0) -> nn.Module:
    """Re-initialize deterministically and give BatchNorm non-trivial statistics."""
    torch.manual_seed(seed)
    for sub in module.modules():
        if isinstance(sub, nn.BatchNorm2d):
            sub.running_mean.uniform_(-0.5, 0.5)
            sub.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(sub.weight, 0.5, 1.5)
            nn.init.uniform_(sub.bias, -0.2, 0.2)
    return module.eval()

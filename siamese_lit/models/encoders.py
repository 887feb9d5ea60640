"""Plain nn.Module encoders: usable without Lightning, shared by the classifier and the Siamese model.

Each maps a batch of normalised images (B, 28, 28) (or (B, 1, 28, 28)) to vectors (B, out_dim).
A new encoder is a subclass of Encoder and one `conf/model/net/NAME.yaml`: being a subclass is what
lets a model (and so a checkpoint) build it as `net` (siamese_lit.models.roles), and its size is
bounded by building it on the meta device (siamese_lit.checkpoints.limits), not by a formula.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from siamese_lit.utils.errors import check

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


def _images(x: Tensor) -> Tensor:
    """(B, 1, H, W) or (B, H, W) -> (B, H, W)."""
    return x.squeeze(1) if x.dim() == 4 else x


def _in_float32(layer: nn.Module, x: Tensor) -> Tensor:
    """`layer(x)` in float32 even under mixed precision: the encoders' last layer gives the logits or
    the embeddings, whose distances the Siamese model is scored on; bfloat16 would round them to 3
    significant digits."""
    with torch.autocast(x.device.type, enabled=False):
        return layer(x.float())


class Encoder(nn.Module):
    """What every network a model may build as `net` is: images (B, 28, 28) or (B, 1, 28, 28) to
    vectors (B, out_dim), with `out_dim` kept as an attribute. Its constructor may only build the
    network (it also runs on the meta device, where no tensor holds values)."""

    out_dim: int


class SequenceEncoder(Encoder):
    """Reads a digit as a sequence of its rows (28 steps of 28 pixels) with a recurrent network.

    The last layer's final hidden state (both directions when bidirectional) is projected to
    `out_dim`: the 10 logits of a classifier, or the embedding of a Siamese model.

    `forget_bias` (the LSTM cell's only; GRU and RNN cells have no forget gate and ignore it) starts
    the forget gates' bias there instead of PyTorch's uniform initialisation around 0 (Jozefowicz et
    al., 2015): with 1.0 the cell carries the first rows of the digit to the last step from the first
    updates on.

    `standardize` rescales each image to zero mean and unit variance before reading it, so a digit's
    overall brightness and contrast (a scanner's levels) cannot change its embedding.

    The projection runs in float32 even under mixed precision (_in_float32), as every encoder's last layer.
    """

    def __init__(
        self,
        cell: str = "lstm",
        input_size: int = 28,
        hidden_size: int = 128,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        out_dim: int = 10,
        forget_bias: float | None = None,
        standardize: bool = False,
    ) -> None:
        super().__init__()
        check(cell in CELLS, f"model.net.cell must be one of {sorted(CELLS)}, got {cell!r}.")
        check(hidden_size >= 1, f"model.net.hidden_size must be >= 1, got {hidden_size}.")
        check(num_layers >= 1, f"model.net.num_layers must be >= 1, got {num_layers}.")
        check(0 <= dropout < 1, f"model.net.dropout must be in [0, 1), got {dropout}.")
        check(
            out_dim >= 1, f"the output/embedding size (out_dim, embedding_dim) must be >= 1, got {out_dim}."
        )
        self.rnn = CELLS[cell](
            input_size,
            hidden_size,
            num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        if cell == "lstm" and forget_bias is not None:
            self._init_forget_gates(forget_bias)
        self.directions = 2 if bidirectional else 1
        self.head = nn.Linear(hidden_size * self.directions, out_dim)
        self.out_dim, self.standardize = out_dim, standardize

    @torch.no_grad()
    def _init_forget_gates(self, value: float) -> None:
        """PyTorch's LSTM biases are (input, forget, cell, output) gates, each `hidden_size` long, in
        two vectors that are summed: the forget slice of the input-side bias gets `value`, the
        hidden-side one 0."""
        h = self.rnn.hidden_size
        for name, bias in self.rnn.named_parameters():
            if name.startswith("bias_"):
                bias[h : 2 * h] = value if name.startswith("bias_ih") else 0.0

    def forward(self, x: Tensor) -> Tensor:
        x = _images(x)
        if self.standardize:
            std, mean = torch.std_mean(x, dim=(-2, -1), keepdim=True)
            x = (x - mean) / (std + 1e-5)  # a blank image stays 0
        _, h = self.rnn(x)
        if isinstance(h, tuple):  # LSTM: (h_n, c_n)
            h = h[0]
        # (layers * directions, B, H): the last layer's directions
        return _in_float32(self.head, torch.cat(list(h[-self.directions :]), dim=1))


class CNNEncoder(Encoder):
    """The small CNN of the Siamese introduction article: Conv(1->128, k5, s3), ReLU, LRN,
    MaxPool(4, 2), Dropout, then fully connected layers down to `out_dim`."""

    def __init__(
        self, channels: int = 128, hidden: Sequence[int] = (512, 128), dropout: float = 0.1, out_dim: int = 10
    ) -> None:
        super().__init__()
        check(out_dim >= 1, f"the embedding size must be >= 1, got {out_dim}.")
        check(0 <= dropout < 1, f"model.net.dropout must be in [0, 1), got {dropout}.")
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, kernel_size=5, stride=3),  # 28 -> 8
            nn.ReLU(),
            nn.LocalResponseNorm(5),
            nn.MaxPool2d(4, stride=2),  # 8 -> 3
            nn.Dropout(dropout),
            nn.Flatten(),
        )
        widths = [channels * 3 * 3, *hidden]
        layers: list[nn.Module] = []
        for i, o in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Linear(i, o), nn.ReLU()]
        self.head = nn.Sequential(*layers, nn.Linear(widths[-1], out_dim))
        self.out_dim = out_dim

    def forward(self, x: Tensor) -> Tensor:
        hidden = self.head[:-1](self.features(_images(x).unsqueeze(1)))
        return _in_float32(self.head[-1], hidden)


class MLPEncoder(Encoder):
    """The MATLAB example's MLP 784 -> 1024 -> 1024 -> out_dim, ReLU, He initialisation."""

    def __init__(self, input_size: int = 784, hidden: Sequence[int] = (1024, 1024), out_dim: int = 2) -> None:
        super().__init__()
        check(out_dim >= 1, f"the embedding size must be >= 1, got {out_dim}.")
        widths = [input_size, *hidden]
        layers: list[nn.Module] = []
        for i, o in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Linear(i, o), nn.ReLU()]
        layers.append(nn.Linear(widths[-1], out_dim))
        self.net = nn.Sequential(*layers)
        for m in self.net:
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        self.out_dim = out_dim

    def forward(self, x: Tensor) -> Tensor:
        return _in_float32(self.net[-1], self.net[:-1](_images(x).flatten(1)))

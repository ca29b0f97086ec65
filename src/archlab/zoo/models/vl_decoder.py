"""A tiny decoder-only vision-language model: image patches and text tokens in one causal transformer.

The teacher family of mmMamba (Liao et al., "Multimodal Mamba: Decoder-only Multimodal State Space Model via
Quadratic to Linear Distillation", arXiv 2502.13145, 2025), whose teacher HoVLE has no separate vision encoder: the
image is cut into patches, each patch linearly embedded (with a learned position), and the sequence
``[patches, text]`` goes through one stack of causal decoder layers; the language-model head reads the text
positions. Here the layers are :class:`~archlab.zoo.models.sequence.SequenceLayer`\\ s of
:class:`~archlab.zoo.mixers.causal_attention.CausalSelfAttention` (RoPE over the whole sequence), so
:mod:`archlab.compress.mmmamba` can swap their mixers.

:func:`caption_task` makes the small image-to-text task the tests and benchmarks use: an image of a digit, the
caption its English name spelt in characters ("seven" + end of sequence), accuracy the exact match of the greedy
caption.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import UserError
from archlab.zoo.mixers.causal_attention import CausalSelfAttention
from archlab.zoo.models.sequence import SequenceLayer

__all__ = ["DIGIT_NAMES", "CaptionTask", "TinyVLDecoder", "caption_accuracy", "caption_loss", "caption_task",
           "patchify"]

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def patchify(images: torch.Tensor, patch: int = 2) -> torch.Tensor:
    """``(B, C, H, W)`` images to ``(B, (H/p)·(W/p), C·p·p)`` non-overlapping patches, row-major over the grid,
    each patch's values ordered channel, row, column."""
    if images.ndim != 4 or images.shape[2] % patch or images.shape[3] % patch:
        raise UserError(f"patchify: need (B, C, H, W) images with H and W divisible by {patch}, "
                        f"got {tuple(images.shape)}")
    return F.unfold(images, patch, stride=patch).transpose(1, 2)


class TinyVLDecoder(nn.Module):
    """``forward(images (B, C, H, W), ids (B, T)) -> logits (B, T, vocab)`` at the text positions.

    ``embed`` gives the decoder's input sequence, ``layers`` its layers, ``head`` the logits of the text positions
    of a final hidden state: the three parts a layer-by-layer distillation needs.
    """

    def __init__(self, *, vocab_size: int, image_size: int = 8, in_chans: int = 1, patch: int = 2, dim: int = 64,
                 depth: int = 4, n_heads: int = 4, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        if image_size % patch:
            raise UserError(f"vl decoder: image_size {image_size} must be a multiple of patch {patch}")
        if vocab_size < 2 or depth < 1:
            raise UserError(f"vl decoder: needs vocab_size >= 2 and depth >= 1, got {vocab_size}, {depth}")
        self.vocab_size, self.image_size, self.in_chans, self.patch, self.dim = \
            vocab_size, image_size, in_chans, patch, dim
        self.n_patches = (image_size // patch) ** 2
        self.patch_embed = nn.Linear(in_chans * patch * patch, dim)
        self.patch_pos = nn.Parameter(torch.zeros(self.n_patches, dim))
        nn.init.trunc_normal_(self.patch_pos, std=0.02)
        self.tok_embed = nn.Embedding(vocab_size, dim)
        nn.init.normal_(self.tok_embed.weight, std=0.02)
        self.layers = nn.ModuleList(
            SequenceLayer(dim, CausalSelfAttention(dim, n_heads), mixer_name="causal_attention", mlp_ratio=mlp_ratio)
            for _ in range(depth))
        self.norm_f = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, vocab_size, bias=False)

    def patches(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) -> (B, n_patches, C * patch * patch)`` (:func:`patchify`)."""
        shape = (self.in_chans, self.image_size, self.image_size)
        if images.dim() != 4 or tuple(images.shape[1:]) != shape:
            raise UserError(f"vl decoder: expected images (B, {', '.join(map(str, shape))}), "
                            f"got {tuple(images.shape)}")
        return patchify(images, self.patch)

    def embed(self, images: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """The decoder's input ``(B, n_patches + T, dim)``: embedded patches, then embedded text."""
        if ids.dim() != 2 or ids.shape[0] != images.shape[0] or ids.dtype not in (torch.long, torch.int):
            raise UserError(f"vl decoder: expected integer token ids (B, T) for {images.shape[0]} images, "
                            f"got {tuple(ids.shape)} {ids.dtype}")
        return torch.cat([self.patch_embed(self.patches(images)) + self.patch_pos, self.tok_embed(ids)], dim=1)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """Logits of the text positions of a last hidden state ``(B, n_patches + T, dim)``."""
        return self.lm_head(self.norm_f(h[:, self.n_patches:]))

    def forward(self, images: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        h = self.embed(images, ids)
        for layer in self.layers:
            h = layer(h)
        return self.head(h)

    @torch.no_grad()
    def generate(self, images: torch.Tensor, bos: int, eos: int, max_len: int) -> torch.Tensor:
        """Greedy captions ``(B, <= max_len)`` after ``bos`` (each row padded with ``eos`` once it ended)."""
        ids = torch.full((len(images), 1), bos, dtype=torch.long, device=images.device)
        done = torch.zeros(len(images), dtype=torch.bool, device=images.device)
        for _ in range(max_len):
            nxt = self(images, ids)[:, -1].argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, eos), nxt)
            ids = torch.cat([ids, nxt[:, None]], dim=1)
            done |= nxt == eos
            if bool(done.all()):
                break
        return ids[:, 1:]


@dataclass
class CaptionTask:
    """Digit images with their names as character captions. ``inputs[split]`` is ``(images, ids, targets)``:
    ``ids`` = BOS + caption, ``targets`` = caption + EOS (``PAD`` = -100 after it, ignored by the loss)."""

    vocab: tuple[str, ...]
    bos: int
    eos: int
    max_len: int
    inputs: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    labels: dict[str, torch.Tensor]

    def encode(self, text: str) -> list[int]:
        return [self.vocab.index(c) for c in text]


def caption_task(images: dict[str, torch.Tensor], labels: dict[str, torch.Tensor]) -> CaptionTask:
    """The caption task of digit ``images[split]`` ``(N, C, H, W)`` with class ``labels[split]`` (0..9)."""
    chars = sorted(set("".join(DIGIT_NAMES)))
    vocab = (*chars, "<bos>", "<eos>")
    bos, eos = len(chars), len(chars) + 1
    max_len = max(len(n) for n in DIGIT_NAMES) + 1
    rows_in, rows_out = [], []
    for name in DIGIT_NAMES:
        codes = [chars.index(c) for c in name]
        pad = max_len - 1 - len(codes)
        rows_in.append([bos, *codes] + [eos] * pad)
        rows_out.append([*codes, eos] + [-100] * pad)
    table_in, table_out = torch.tensor(rows_in), torch.tensor(rows_out)
    inputs = {}
    for split, x in images.items():
        y = labels[split].long()
        if len(y) != len(x) or (len(y) and (int(y.min()) < 0 or int(y.max()) > 9)):
            raise UserError(f"caption task: {split}: needs one digit label 0..9 an image")
        inputs[split] = (x, table_in[y], table_out[y])
    return CaptionTask(vocab, bos, eos, max_len, inputs, {k: v.long() for k, v in labels.items()})


def caption_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Next-token cross-entropy over the caption (padding ignored)."""
    images, ids, targets = batch
    logits = model(images, ids)
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)


@torch.no_grad()
def caption_accuracy(model: nn.Module, task: CaptionTask, split: str = "test") -> float:
    """The share of images whose greedy caption is exactly their digit's name (then EOS)."""
    images, _, targets = task.inputs[split]
    was = model.training
    model.eval()
    try:
        out = model.generate(images, task.bos, task.eos, task.max_len)
    finally:
        model.train(was)
    want = targets.clone()
    want[want == -100] = task.eos
    out = F.pad(out, (0, want.shape[1] - out.shape[1]), value=task.eos)
    return float((out == want).all(dim=1).float().mean())

"""The ranker network: attention from each candidate onto the history, then a wide-and-deep MLP over the features.

Inputs per batch of B requests, L history slots and C candidates (d = item vector dimension, F = features):
``hist_vec`` (B, L, d), ``hist_type`` (B, L) event type codes, ``hist_age`` (B, L) log1p days before now,
``hist_mask`` (B, L) bool, ``cand_vec`` (B, C, d), ``cand_feat`` (B, C, F). Output: scores (B, C).
Item vectors are the encoder's, so any item with a vector can be scored, trained on or not.

Two content pathways (``NetConfig.content``):

``light`` (default): a few attention heads over the raw cosine similarities between the candidate and each history
    item; each head learns its sharpness and how much event type and recency matter. Few parameters, so it
    generalises from the small interaction logs typical of a catalogue (H&M: ~1k training baskets) and to new items.
``deep``: a learned projection of the vectors, a transformer layer over the history sequence and multi-head
    attention from the candidate projection; worth it with many thousands of users.
``none``: features only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from recsys.store.tables import HISTORY_TYPES

LIGHT_HEADS = 4


@dataclass
class NetConfig:
    dim: int
    n_features: int
    hidden: int = 64
    heads: int = 2
    content: str = "light"


class RankerNet(nn.Module):
    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        if cfg.content not in ("light", "deep", "none"):
            raise ValueError(f"content pathway must be light, deep or none, not {cfg.content!r}")
        h = cfg.hidden
        self.cfg = cfg
        n_in = cfg.n_features
        if cfg.content == "light":
            self.tau = nn.Parameter(torch.tensor([1.0, 5.0, 10.0, 20.0])[:LIGHT_HEADS])
            self.type_bias = nn.Embedding(len(HISTORY_TYPES) + 1, LIGHT_HEADS)
            nn.init.zeros_(self.type_bias.weight)
            self.age_w = nn.Parameter(torch.zeros(LIGHT_HEADS))
            n_in += 2 * LIGHT_HEADS
        elif cfg.content == "deep":
            self.proj = nn.Sequential(nn.Linear(cfg.dim, h), nn.LayerNorm(h))
            self.type_emb = nn.Embedding(len(HISTORY_TYPES) + 1, h)
            self.age = nn.Linear(1, h)
            # a learned "no history" token keeps attention defined for empty histories
            self.null = nn.Parameter(torch.zeros(1, 1, h))
            self.encoder = nn.TransformerEncoderLayer(h, cfg.heads, dim_feedforward=2 * h, dropout=0.1,
                                                      batch_first=True)
            self.attn = nn.MultiheadAttention(h, cfg.heads, batch_first=True)
            n_in += 3 * h
        self.feat_mean: torch.Tensor
        self.feat_std: torch.Tensor
        self.register_buffer("feat_mean", torch.zeros(cfg.n_features))
        self.register_buffer("feat_std", torch.ones(cfg.n_features))
        self.mlp = nn.Sequential(
            nn.Linear(n_in, 2 * h), nn.GELU(), nn.Dropout(0.1),
            nn.Linear(2 * h, h), nn.GELU(), nn.Linear(h, 1),
        )
        # wide part: a linear model over the inputs, so the deep part only has to learn interactions
        self.wide = nn.Linear(n_in, 1)

    def forward(self, hist_vec: torch.Tensor, hist_type: torch.Tensor, hist_age: torch.Tensor,
                hist_mask: torch.Tensor, cand_vec: torch.Tensor, cand_feat: torch.Tensor) -> torch.Tensor:
        f = ((cand_feat - self.feat_mean) / self.feat_std).clamp(-5.0, 5.0)
        parts = [f]
        if self.cfg.content == "light":
            parts.append(self._light(hist_vec, hist_type, hist_age, hist_mask, cand_vec))
        elif self.cfg.content == "deep":
            parts.append(self._deep(hist_vec, hist_type, hist_age, hist_mask, cand_vec))
        x = torch.cat(parts, dim=-1)
        return (self.mlp(x) + self.wide(x)).squeeze(-1)

    def _light(self, hist_vec: torch.Tensor, hist_type: torch.Tensor, hist_age: torch.Tensor,
               hist_mask: torch.Tensor, cand_vec: torch.Tensor) -> torch.Tensor:
        sims = torch.einsum("bcd,bld->bcl", F.normalize(cand_vec, dim=-1), F.normalize(hist_vec, dim=-1))
        bias = self.type_bias(hist_type) + hist_age.unsqueeze(-1) * self.age_w  # (B, L, H)
        logits = sims.unsqueeze(-1) * self.tau + bias.unsqueeze(1)  # (B, C, L, H)
        m = hist_mask[:, None, :, None]
        logits = logits.masked_fill(~m, -1e9)
        att = torch.softmax(logits, dim=2) * m
        out = (att * sims.unsqueeze(-1)).sum(2)  # (B, C, H): attended similarity per head
        peak = (att * logits.masked_fill(~m, 0.0)).sum(2) / self.tau.abs().clamp_min(1e-3)
        return torch.cat([out, peak], dim=-1)

    def _deep(self, hist_vec: torch.Tensor, hist_type: torch.Tensor, hist_age: torch.Tensor,
              hist_mask: torch.Tensor, cand_vec: torch.Tensor) -> torch.Tensor:
        b = hist_vec.shape[0]
        tok = self.proj(hist_vec) + self.type_emb(hist_type) + self.age(hist_age.unsqueeze(-1))
        tok = torch.cat([self.null.expand(b, 1, -1), tok], dim=1)
        pad = torch.cat([torch.zeros(b, 1, dtype=torch.bool, device=tok.device), ~hist_mask], dim=1)
        tok = self.encoder(tok, src_key_padding_mask=pad)
        q = self.proj(cand_vec)
        ctx, _ = self.attn(q, tok, tok, key_padding_mask=pad, need_weights=False)
        return torch.cat([ctx, q, ctx * q], dim=-1)


def listwise_loss(scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over each request's candidates; the positives' total probability is maximised. (B, C) -> scalar."""
    s = scores.masked_fill(~mask, -1e9)
    pos = s.masked_fill(labels <= 0, -1e9)
    has = (labels > 0).any(dim=1)
    loss = torch.logsumexp(s, dim=1) - torch.logsumexp(pos, dim=1)
    return loss[has].mean()

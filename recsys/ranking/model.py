"""The ranker network: a small sequence model over the history, attention from each candidate onto it, then an MLP.

Inputs per batch of B requests, L history slots and C candidates (d = item vector dimension, F = features):
``hist_vec`` (B, L, d), ``hist_type`` (B, L) event type codes, ``hist_age`` (B, L) log1p days before now,
``hist_mask`` (B, L) bool, ``cand_vec`` (B, C, d), ``cand_feat`` (B, C, F). Output: scores (B, C).
Item vectors are the encoder's, so any item with a vector can be scored, trained on or not.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from recsys.ranking.history import EVENT_TYPES


@dataclass
class NetConfig:
    dim: int
    n_features: int
    hidden: int = 64
    heads: int = 2


class RankerNet(nn.Module):
    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        h = cfg.hidden
        self.cfg = cfg
        self.proj = nn.Sequential(nn.Linear(cfg.dim, h), nn.LayerNorm(h))
        self.type_emb = nn.Embedding(len(EVENT_TYPES) + 1, h)
        self.age = nn.Linear(1, h)
        # a learned "no history" token keeps attention defined for empty histories
        self.null = nn.Parameter(torch.zeros(1, 1, h))
        self.encoder = nn.TransformerEncoderLayer(h, cfg.heads, dim_feedforward=2 * h, dropout=0.1,
                                                  batch_first=True)
        self.attn = nn.MultiheadAttention(h, cfg.heads, batch_first=True)
        self.feat_mean: torch.Tensor
        self.feat_std: torch.Tensor
        self.register_buffer("feat_mean", torch.zeros(cfg.n_features))
        self.register_buffer("feat_std", torch.ones(cfg.n_features))
        self.mlp = nn.Sequential(
            nn.Linear(3 * h + cfg.n_features, 2 * h), nn.GELU(), nn.Dropout(0.1),
            nn.Linear(2 * h, h), nn.GELU(), nn.Linear(h, 1),
        )
        # wide part: a linear model over the features, so the deep part only has to learn interactions
        self.wide = nn.Linear(cfg.n_features, 1)

    def forward(self, hist_vec: torch.Tensor, hist_type: torch.Tensor, hist_age: torch.Tensor,
                hist_mask: torch.Tensor, cand_vec: torch.Tensor, cand_feat: torch.Tensor) -> torch.Tensor:
        b = hist_vec.shape[0]
        tok = self.proj(hist_vec) + self.type_emb(hist_type) + self.age(hist_age.unsqueeze(-1))
        tok = torch.cat([self.null.expand(b, 1, -1), tok], dim=1)
        pad = torch.cat([torch.zeros(b, 1, dtype=torch.bool, device=tok.device), ~hist_mask], dim=1)
        tok = self.encoder(tok, src_key_padding_mask=pad)
        q = self.proj(cand_vec)
        ctx, _ = self.attn(q, tok, tok, key_padding_mask=pad, need_weights=False)
        f = ((cand_feat - self.feat_mean) / self.feat_std).clamp(-5.0, 5.0)
        x = torch.cat([ctx, q, ctx * q, f], dim=-1)
        return (self.mlp(x) + self.wide(f)).squeeze(-1)


def listwise_loss(scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over each request's candidates; the positives' total probability is maximised. (B, C) -> scalar."""
    s = scores.masked_fill(~mask, -1e9)
    pos = s.masked_fill(labels <= 0, -1e9)
    has = (labels > 0).any(dim=1)
    loss = torch.logsumexp(s, dim=1) - torch.logsumexp(pos, dim=1)
    return loss[has].mean()

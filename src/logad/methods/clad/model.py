"""The CLAD network: compressed bytes in, an anomaly logit and an embedding out.

::

    bytes (0-255) + [PAD] [MASK]       one token per compressed byte
      → byte embedding
      → dilated 1-D conv encoder       residual blocks, dilation 1, 2, 4, ...
      → strided conv (stride s)        the sequence gets s times shorter
      → [CLS] + positions
      → hybrid stack                   self-attention and mLSTM blocks, alternating
      → four-way pooling               mean | max | attention-weighted | [CLS]
      → head                           one logit (and a projection for the contrastive loss)

Padded positions are zeroed after every convolution, so a frame's outputs do
not depend on how much padding its batch needed. The mLSTM blocks run the
``mlstm_kernels`` chunkwise kernel (pure PyTorch, the same on CPU and CUDA):
matrix memory, exponential input gate, sigmoid forget gate, the stabiliser
state, after Beck et al. (2024), "xLSTM". They are causal, and padding sits at
the end of each row, so it never reaches a real position.

Masked byte modelling (stage 1) masks whole stride-aligned spans of bytes and
predicts each masked byte from the span's position (``stride`` x 256 logits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BYTE_VOCAB", "MASK", "PAD", "CLADNet", "NetConfig", "mlstm_parallel"]

PAD, MASK = 256, 257
BYTE_VOCAB = 258


@dataclass(frozen=True)
class NetConfig:
    """Shapes of :class:`CLADNet` (built from the method config)."""

    max_frame_bytes: int = 1024
    byte_embedding: int = 32
    encoder_width: int = 64
    encoder_blocks: int = 3
    encoder_kernel: int = 3
    stride: int = 4
    d_model: int = 64
    num_layers: int = 2
    num_heads: int = 4
    mlstm_heads: int = 2
    mlstm_chunk: int = 32
    dropout: float = 0.1
    projection: int = 32


def mlstm_parallel(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, i: torch.Tensor,
                   f: torch.Tensor, chunk: int) -> torch.Tensor:
    """mLSTM outputs ``h`` (B, H, S, D) from queries, keys, values (B, H, S, D) and the input
    and forget gate pre-activations (B, H, S), in the chunkwise form (mlstm_kernels).

    The recurrence it computes, per head, from zero states (C, n, m = 0), with ``d`` the
    key width::

        m_t = max(log sigmoid(f_t) + m_{t-1}, i_t)                 (stabiliser)
        C_t = exp(log sigmoid(f_t) + m_{t-1} - m_t) C_{t-1} + exp(i_t - m_t) v_t k_t^T
        n_t = exp(log sigmoid(f_t) + m_{t-1} - m_t) n_{t-1} + exp(i_t - m_t) k_t
        h_t = C_t (q_t / sqrt d) / max(|n_t . q_t / sqrt d|, exp(-m_t))
    """
    from mlstm_kernels.torch.chunkwise import mlstm_chunkwise__native_autograd

    s = q.shape[2]
    pad = (-s) % chunk
    if pad:
        q, k, v = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, v))
        i, f = (F.pad(x, (0, pad)) for x in (i, f))
    h = mlstm_chunkwise__native_autograd(q=q, k=k, v=v, i=i, f=f, chunk_size=chunk,
                                         return_last_states=False)
    return h[:, :, :s]


class _ConvBlock(nn.Module):
    def __init__(self, width: int, kernel: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.conv = nn.Conv1d(width, width, kernel, dilation=dilation, padding=dilation * (kernel - 1) // 2)
        # per-position norm over channels: a norm over the whole row (GroupNorm(1, .)) would
        # count the padding, so a frame's outputs would depend on its batch's padding
        self.norm = nn.LayerNorm(width)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        y = self.norm((self.conv(x) * keep).transpose(1, 2)).transpose(1, 2)
        y = self.drop(F.gelu(y)) * keep
        return x + y


class _AttentionBlock(nn.Module):
    def __init__(self, d: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * d, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        a, _ = self.attn(h, h, h, key_padding_mask=~valid, need_weights=False)
        x = x + self.drop(a)
        return x + self.drop(self.ff(self.norm2(x)))


class _MLSTMBlock(nn.Module):
    """Pre-norm residual mLSTM block: up-projection with an output gate, a short causal
    convolution in front of queries and keys, per-head matrix memory, group norm."""

    def __init__(self, d: int, heads: int, chunk: int, dropout: float) -> None:
        super().__init__()
        inner = 2 * d
        if inner % heads:
            raise ValueError(f"2 * d_model = {inner} must be a multiple of mlstm_heads = {heads}")
        self.heads, self.chunk, self.inner = heads, chunk, inner
        self.norm = nn.LayerNorm(d)
        self.up = nn.Linear(d, 2 * inner)
        self.conv = nn.Conv1d(inner, inner, 4, groups=inner, padding=3)
        self.qk = nn.Linear(inner, 2 * inner)
        self.v = nn.Linear(inner, inner)
        self.gates = nn.Linear(3 * inner, 2 * heads)
        # per-position, per-head norm (xLSTM's multi-head layer norm); GroupNorm over
        # (B, C, S) would also average over the sequence, padding included
        self.out_weight = nn.Parameter(torch.ones(inner))
        self.out_bias = nn.Parameter(torch.zeros(inner))
        self.skip = nn.Parameter(torch.ones(inner))
        self.down = nn.Linear(inner, d)
        self.drop = nn.Dropout(dropout)
        with torch.no_grad():  # xLSTM's start: input gate small, forget gate open
            self.gates.weight.zero_()
            self.gates.bias[:heads] = -3.0
            self.gates.bias[heads:] = torch.linspace(3.0, 6.0, heads)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        xm, z = self.up(self.norm(x)).chunk(2, dim=-1)
        xc = F.silu(self.conv(xm.transpose(1, 2))[..., :s].transpose(1, 2))
        q, k = self.qk(xc).chunk(2, dim=-1)
        v = self.v(xm)
        gi, gf = self.gates(torch.cat([q, k, v], dim=-1)).chunk(2, dim=-1)
        hd = self.inner // self.heads

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, s, self.heads, hd).transpose(1, 2)

        h = mlstm_parallel(heads(q), heads(k), heads(v), gi.transpose(1, 2), gf.transpose(1, 2), self.chunk)
        h = h.transpose(1, 2).reshape(b, s, self.heads, hd)
        h = F.layer_norm(h, (hd,)).reshape(b, s, self.inner) * self.out_weight + self.out_bias
        h = h + self.skip * xc
        y = self.down(h * F.silu(z))
        return x + self.drop(y) * valid[..., None]


class CLADNet(nn.Module):
    """Byte encoder + hybrid Transformer–mLSTM stack + four-way pooling + heads."""

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.encoder_width
        self.embed = nn.Embedding(BYTE_VOCAB, cfg.byte_embedding, padding_idx=PAD)
        self.inp = nn.Conv1d(cfg.byte_embedding, w, 1)
        self.blocks = nn.ModuleList(
            _ConvBlock(w, cfg.encoder_kernel, 2 ** j, cfg.dropout) for j in range(cfg.encoder_blocks))
        self.down = nn.Conv1d(w, cfg.d_model, cfg.stride, stride=cfg.stride)
        positions = math.ceil(cfg.max_frame_bytes / cfg.stride) + 1
        self.pos = nn.Embedding(positions, cfg.d_model)
        self.cls = nn.Parameter(torch.zeros(cfg.d_model))
        layers: list[nn.Module] = []
        for j in range(cfg.num_layers):
            layers.append(_AttentionBlock(cfg.d_model, cfg.num_heads, cfg.dropout) if j % 2 == 0
                          else _MLSTMBlock(cfg.d_model, cfg.mlstm_heads, cfg.mlstm_chunk, cfg.dropout))
        self.layers = nn.ModuleList(layers)
        self.norm = nn.LayerNorm(cfg.d_model)
        self.att_pool = nn.Linear(cfg.d_model, 1)
        pooled = 4 * cfg.d_model
        self.head = nn.Sequential(nn.Linear(pooled, cfg.d_model), nn.GELU(), nn.Dropout(cfg.dropout),
                                  nn.Linear(cfg.d_model, 1))
        self.proj = nn.Sequential(nn.Linear(pooled, cfg.d_model), nn.GELU(), nn.Linear(cfg.d_model, cfg.projection))
        self.mlm = nn.Linear(cfg.d_model, cfg.stride * 256)

    def encode(self, ids: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states (B, 1 + T, d) with [CLS] first, and their validity mask (B, 1 + T)."""
        b, n = ids.shape
        keep = (torch.arange(n, device=ids.device)[None, :] < lengths[:, None]).float()[:, None, :]
        x = self.inp(self.embed(ids).transpose(1, 2)) * keep
        for block in self.blocks:
            x = block(x, keep)
        s = self.cfg.stride
        if n % s:
            x = F.pad(x, (0, s - n % s))
        x = self.down(x).transpose(1, 2)  # (B, T, d)
        t = x.shape[1]
        valid_t = torch.arange(t, device=ids.device)[None, :] < ((lengths + s - 1) // s)[:, None]
        x = x * valid_t[..., None]
        x = torch.cat([self.cls.expand(b, 1, -1), x], dim=1)
        x = x + self.pos(torch.arange(t + 1, device=ids.device))[None]
        valid = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=ids.device), valid_t], dim=1)
        for layer in self.layers:
            x = layer(x, valid)
        return self.norm(x), valid

    def pool(self, h: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """mean | max | attention-weighted | [CLS] over the byte positions (B, 4d)."""
        body, vb = h[:, 1:], valid[:, 1:]
        m = vb[..., None].float()
        count = m.sum(1).clamp(min=1.0)
        mean = (body * m).sum(1) / count
        mx = body.masked_fill(~vb[..., None], -1e4).max(1).values
        mx = torch.where(vb.any(1, keepdim=True), mx, torch.zeros_like(mx))
        logits = self.att_pool(body).squeeze(-1).masked_fill(~vb, -1e4)
        att = (logits.softmax(1)[..., None] * body * m).sum(1)
        return torch.cat([mean, mx, att, h[:, 0]], dim=-1)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logit per frame (B,), contrastive embedding (B, projection), L2-normalised)."""
        h, valid = self.encode(ids, lengths)
        pooled = self.pool(h, valid)
        return self.head(pooled).squeeze(-1), F.normalize(self.proj(pooled), dim=-1)

    def mlm_logits(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Byte logits (B, T * stride, 256) for masked byte modelling."""
        h, _ = self.encode(ids, lengths)
        b, t1, _ = h.shape
        return self.mlm(h[:, 1:]).view(b, (t1 - 1) * self.cfg.stride, 256)

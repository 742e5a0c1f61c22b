"""The collaborative transformer: two modality encoders that attend to each other.

Two modalities per line:

* **semantic**: the SBERT vector of the line's message, one token;
* **sequence**: the SBERT vectors of the line's context, the ``2w + 1`` lines around it
  in its file (itself in the middle), each with a learned embedding of its offset;
  positions beyond the file's edges are padding and masked out.

Optionally (``file_types > 0``), a learned embedding of the line's file type is added
to its semantic token: syslog-family labels depend on which file a message sits in
(the keyword rule is a list per file type), which a message's words alone cannot tell.
Index 0 is any type not seen in training.

Optionally (``words > 0``), a learned bag of the message's words and word pairs (a
vocabulary of the training messages' n-grams) is added to the semantic token too:
keyword labels hang on exact words ("disabled", "not supported"), which a sentence
vector blurs among its neighbours. The bag's projection starts at zero, so the
network begins from the sentence vector alone; n-grams outside the vocabulary add
nothing.

Optionally (``piece_table`` given), the message's word pieces are read too: each
piece's static SBERT input vector (the model's own vocabulary table, frozen) goes
through a learned MLP, and their element-wise max over the message is added to the
semantic token. A max over pieces is an "any of these words" detector, which is what a
keyword label is, and a piece no training message held still has a vector near the
pieces that share its meaning; the sentence vector alone blurs the one word that
decides a keyword label among the rest of the message.

Each encoder layer is multi-head *impressed* attention (queries from its own
modality, keys and values from the other's), a residual and layer norm, an MLP,
a residual and layer norm; the two encoders run side by side, layer by layer, each
reading the other's previous layer. A modality adaptation layer then pools each
modality's tokens with ``adaptation_heads`` soft-attention heads, stacks them and
projects them into the common space; a balancing layer learns soft weights over
the two modality vectors and fuses them; an MLP classifies the fused vector (2
classes in point mode, 4 in collective mode).

With one semantic token, the sequence encoder's attention has a single key: it
injects the line's message into every context position (the MLP then compares
them). The semantic encoder's attention is over the context positions, and its
last layer's weights say which neighbouring line the verdict leaned on: the
explanation.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["WORD_DIM", "CollaborativeTransformer"]

WORD_DIM = 64  # width of a word vector; a bag is their mean, projected to the model width


class _EncoderLayer(nn.Module):
    def __init__(self, hidden: int, heads: int, ff: int, dropout: float) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(hidden, heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff, hidden))
        self.norm2 = nn.LayerNorm(hidden)
        self.drop = nn.Dropout(dropout)

    def forward(self, own: torch.Tensor, other: torch.Tensor, other_pad: torch.Tensor | None,
                need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        out, weights = self.attn(own, other, other, key_padding_mask=other_pad, need_weights=need_weights,
                                 average_attn_weights=True)
        x = self.norm1(own + self.drop(out))
        return self.norm2(x + self.drop(self.mlp(x))), weights


class _ModalityAdaptation(nn.Module):
    """Soft-attention pooling heads over a modality's tokens, stacked and projected."""

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.score = nn.Linear(hidden, heads)
        self.proj = nn.Linear(hidden * heads, hidden)
        self.norm = nn.LayerNorm(hidden)

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None) -> torch.Tensor:
        s = self.score(x)                                   # (B, T, heads)
        if pad is not None:
            s = s.masked_fill(pad[..., None], float("-inf"))
        a = torch.softmax(s, dim=1)
        pooled = torch.einsum("bth,btd->bhd", a, x).flatten(1)
        return self.norm(self.proj(pooled))


class _Balancing(nn.Module):
    """Learned soft weights over the modality vectors; their weighted sum is the fused vector."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.proj = nn.Linear(hidden, hidden)
        self.score = nn.Linear(hidden, 1, bias=False)

    def forward(self, vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.tanh(self.proj(vectors))                  # (B, M, hidden)
        w = torch.softmax(self.score(z).squeeze(-1), dim=1)  # (B, M)
        return (w[..., None] * z).sum(dim=1), w


class CollaborativeTransformer(nn.Module):
    def __init__(self, *, input_dim: int, context: int, hidden: int, layers: int, heads: int, ff: int,
                 dropout: float, adaptation_heads: int, classes: int, file_types: int = 0, words: int = 0,
                 piece_table: torch.Tensor | None = None) -> None:
        super().__init__()
        self.context = context
        self.file_type = nn.Embedding(file_types + 1, hidden) if file_types else None
        if self.file_type is not None:  # starts neutral: the message alone, until training moves it
            nn.init.zeros_(self.file_type.weight)
        self.words = nn.EmbeddingBag(words, WORD_DIM, mode="mean") if words else None
        self.words_out = nn.Linear(WORD_DIM, hidden, bias=False) if words else None
        if self.words_out is not None:  # neutral at the start too; an empty bag always adds nothing
            nn.init.zeros_(self.words_out.weight)
        self.piece_mlp = None
        if piece_table is not None:  # frozen and not saved: it comes with the SBERT model
            self.register_buffer("piece_table", piece_table.float(), persistent=False)
            self.piece_mlp = nn.Sequential(nn.Linear(piece_table.shape[1], hidden), nn.GELU(),
                                           nn.Linear(hidden, hidden))
        self.sem_in = nn.Sequential(nn.Linear(input_dim, hidden), nn.LayerNorm(hidden))
        self.seq_in = nn.Sequential(nn.Linear(input_dim, hidden), nn.LayerNorm(hidden))
        self.offset = nn.Embedding(2 * context + 1, hidden)
        self.sem_layers = nn.ModuleList(_EncoderLayer(hidden, heads, ff, dropout) for _ in range(layers))
        self.seq_layers = nn.ModuleList(_EncoderLayer(hidden, heads, ff, dropout) for _ in range(layers))
        self.sem_adapt = _ModalityAdaptation(hidden, adaptation_heads)
        self.seq_adapt = _ModalityAdaptation(hidden, adaptation_heads)
        self.balance = _Balancing(hidden)
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Dropout(dropout),
                                  nn.LayerNorm(hidden), nn.Linear(hidden, classes))

    def forward(self, own: torch.Tensor, ctx: torch.Tensor, ctx_pad: torch.Tensor, file_type: torch.Tensor | None = None,
                words: tuple[torch.Tensor, torch.Tensor] | None = None,
                pieces: tuple[torch.Tensor, torch.Tensor] | None = None,
                need_attention: bool = False) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Logits (B, classes), the semantic token's attention over the context positions in the
        last layer (B, 2w+1; with ``need_attention``), and the modality weights (B, 2).

        Args:
            own: (B, D) the lines' message vectors.
            ctx: (B, 2w+1, D) their context's vectors (anything at padded positions).
            ctx_pad: (B, 2w+1) True where a position is padding (the centre never is).
            file_type: (B,) the lines' file type indices (0: unknown), when the network has them.
            words: the lines' word bags, when the network has a vocabulary: (indices, offsets) as
                :class:`torch.nn.EmbeddingBag` takes them (an empty bag adds nothing).
            pieces: the lines' word pieces, when the network reads them, the same way (indices into
                the piece table; a line with none adds nothing).
        """
        positions = torch.arange(ctx.shape[1], device=ctx.device)
        sem = self.sem_in(own)
        if self.file_type is not None and file_type is not None:
            sem = sem + self.file_type(file_type)
        if self.words is not None and self.words_out is not None and words is not None:
            sem = sem + self.words_out(self.words(*words))
        if self.piece_mlp is not None and pieces is not None:
            sem = sem + self._max_over_pieces(*pieces, len(own))
        sem = sem[:, None, :]
        seq = self.seq_in(ctx) + self.offset(positions)[None]
        attention = None
        last = len(self.sem_layers) - 1
        for i, (ls, lq) in enumerate(zip(self.sem_layers, self.seq_layers, strict=True)):
            new_sem, w = ls(sem, seq, ctx_pad, need_weights=need_attention and i == last)
            new_seq, _ = lq(seq, sem, None)
            sem, seq = new_sem, new_seq
            if w is not None:
                attention = w[:, 0, :]
        fused, weights = self.balance(torch.stack([self.sem_adapt(sem, None), self.seq_adapt(seq, ctx_pad)], 1))
        return self.head(fused), attention, weights

    def _max_over_pieces(self, index: torch.Tensor, offsets: torch.Tensor, n: int) -> torch.Tensor:
        """(n, hidden): per line, the element-wise max of its pieces' MLP outputs (0 with none).
        Each distinct piece of the batch goes through the MLP once."""
        assert self.piece_mlp is not None
        hidden = self.piece_mlp[-1].out_features
        if not index.numel():
            return torch.zeros(n, hidden, device=index.device)
        distinct, inverse = torch.unique(index, return_inverse=True)
        h = self.piece_mlp(self.piece_table[distinct])[inverse]
        lengths = torch.diff(offsets, append=offsets.new_tensor([index.numel()]))
        line = torch.repeat_interleave(torch.arange(n, device=index.device), lengths)
        out = torch.full((n, hidden), float("-inf"), device=h.device, dtype=h.dtype)
        out = out.scatter_reduce(0, line[:, None].expand(-1, hidden), h, reduce="amax", include_self=True)
        return torch.where((lengths > 0)[:, None], out, torch.zeros((), dtype=h.dtype, device=h.device))

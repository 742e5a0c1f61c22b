"""CLAD's building blocks: frames (dictionary, chunking at line boundaries, header checks)
and the network (mLSTM against a step-by-step recurrence, padding invariance)."""

from __future__ import annotations

import math
import zlib

import pytest
import torch
import zstandard

from logad.methods.clad.frames import (
    FrameCodec,
    FrameError,
    check_zstd_frame,
    frame_windows,
    train_dictionary,
)
from logad.methods.clad.model import CLADNet, NetConfig, mlstm_parallel

HDFS_LINE = "081109 2035{:02d} 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_{} terminating"


def _lines(n: int, start: int = 0) -> list[str]:
    return [HDFS_LINE.format(j % 60, 7919 * j) for j in range(start, start + n)]


def _codec(max_frame_bytes: int = 256, codec: str = "zstd") -> FrameCodec:
    samples = [("\n".join(_lines(5, j)) + "\n").encode() for j in range(0, 400, 5)]
    return FrameCodec(codec, 3, train_dictionary(samples, 4096), max_frame_bytes)  # type: ignore[arg-type]


def _mlstm_reference(q, k, v, i, f) -> torch.Tensor:
    """The mLSTM recurrence, one step at a time (stabilised exponential gating), from zero
    states (C = 0, n = 0, m = 0) as in xLSTM."""
    b_, h_, s_, d_ = q.shape
    out = torch.zeros_like(v)
    for b in range(b_):
        for h in range(h_):
            c = torch.zeros(d_, d_, dtype=q.dtype)
            n = torch.zeros(d_, dtype=q.dtype)
            m = torch.zeros((), dtype=q.dtype)
            for t in range(s_):
                log_f = torch.nn.functional.logsigmoid(f[b, h, t])
                m_new = torch.maximum(log_f + m, i[b, h, t])
                decay = torch.exp(log_f + m - m_new)
                gain = torch.exp(i[b, h, t] - m_new)
                c = decay * c + gain * torch.outer(v[b, h, t], k[b, h, t])
                n = decay * n + gain * k[b, h, t]
                m = m_new
                qs = q[b, h, t] / math.sqrt(d_)
                out[b, h, t] = c @ qs / (torch.maximum((n @ qs).abs(), torch.exp(-m)) + 1e-6)
    return out


@pytest.mark.parametrize("chunk", [8, 16, 64])
def test_mlstm_matches_recurrent_reference(chunk: int) -> None:
    gen = torch.Generator().manual_seed(chunk)
    q, k, v = (torch.randn(2, 2, 37, 8, generator=gen, dtype=torch.float64) for _ in range(3))
    i = torch.randn(2, 2, 37, generator=gen, dtype=torch.float64)
    f = torch.randn(2, 2, 37, generator=gen, dtype=torch.float64) + 2.0
    got = mlstm_parallel(q, k, v, i, f, chunk)
    assert got.shape == v.shape
    torch.testing.assert_close(got, _mlstm_reference(q, k, v, i, f), rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("num_layers", [0, 1, 2, 4])  # conv only; + attention; + mLSTM; twice each
def test_frame_outputs_do_not_depend_on_batch_padding(num_layers: int) -> None:
    torch.manual_seed(num_layers)
    net = CLADNet(NetConfig(max_frame_bytes=256, encoder_blocks=3, num_layers=num_layers)).eval()
    ids = torch.randint(0, 256, (3, 200))
    lengths = torch.tensor([200, 120, 5])
    with torch.no_grad():
        alone, emb_alone = net(ids[1:2, :120], lengths[1:2])
        batched, emb = net(ids, lengths)
    torch.testing.assert_close(alone, batched[1:2], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(emb_alone, emb[1:2], rtol=1e-5, atol=1e-5)


def test_long_window_becomes_several_frames_whose_contents_concatenate_to_it() -> None:
    codec = _codec(max_frame_bytes=256)
    window = _lines(400)
    wf = frame_windows(codec, [_lines(5), window])
    assert list(wf.counts(2)) == [1, len(wf) - 1] and len(wf) > 2
    assert max(map(len, wf.frames)) <= 256
    spans = [s for s, o in zip(wf.spans, wf.owner, strict=True) if o == 1]
    assert spans[0][0] == 0 and spans[-1][1] == len(window)
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))  # line boundaries, no gap
    dctx = zstandard.ZstdDecompressor(dict_data=zstandard.ZstdCompressionDict(codec.dictionary))
    text = b"".join(dctx.decompress(fr) for fr, o in zip(wf.frames, wf.owner, strict=True) if o == 1)
    assert text == ("\n".join(window) + "\n").encode()


def test_frame_header_checks_name_the_frame() -> None:
    codec = _codec()
    good = codec.compress(("\n".join(_lines(3)) + "\n").encode())
    check_zstd_frame(good, dict_id=codec.dict_id, max_frame_bytes=256, name="frame 0")
    with pytest.raises(FrameError, match="frame 1 is not a zstd frame"):
        check_zstd_frame(b"\x1f\x8b" + good, dict_id=codec.dict_id, max_frame_bytes=256, name="frame 1")
    plain = zstandard.ZstdCompressor().compress(b"hello\n")
    with pytest.raises(FrameError, match="frame 2 was compressed with dictionary id 0"):
        check_zstd_frame(plain, dict_id=codec.dict_id, max_frame_bytes=256, name="frame 2")
    with pytest.raises(FrameError, match="frame 3 is 300 bytes"):
        check_zstd_frame(good + b"\0" * (300 - len(good)), dict_id=codec.dict_id, max_frame_bytes=256,
                         name="frame 3")


def test_deflate_codec_uses_the_dictionary() -> None:
    codec = _codec(codec="deflate")
    data = ("\n".join(_lines(4)) + "\n").encode()
    frame = codec.compress(data)
    d = zlib.decompressobj(zdict=codec.dictionary[-32768:])
    assert d.decompress(frame) == data
    assert len(frame) < len(zlib.compress(data, 3))

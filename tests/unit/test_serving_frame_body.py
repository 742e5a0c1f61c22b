"""Bodies of compressed frames, cut and checked from their headers (logad.serving.frames):
real zstd frames made by the zstandard library, zlib streams with a preset dictionary,
every truncation of a small stream and random bytes, the JSON form and its limits."""

from __future__ import annotations

import base64
import json
import os
import zlib

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from logad.methods.clad.frames import FrameCodec, train_dictionary
from logad.serving.frames import (
    ID_MAGIC,
    FrameBodyError,
    FrameSpec,
    check_zlib_frame,
    frame_body,
    id_frame,
    parse_json_frames,
    split_zstd_frames,
    zstd_frame_header,
)

LINES = [f"081109 2036{i % 60:02d} {100 + i} INFO dfs.DataNode$PacketResponder: PacketResponder {i % 3} for "
         f"block blk_{7000 + i} terminating" for i in range(400)]


@pytest.fixture(scope="module")
def dictionary() -> bytes:
    return train_dictionary([("\n".join(LINES[i:i + 10]) + "\n").encode() for i in range(0, 400, 5)], 2048)


@pytest.fixture(scope="module")
def codec(dictionary) -> FrameCodec:
    return FrameCodec("zstd", 3, dictionary, 512)


def _text(a: int, b: int) -> bytes:
    return "".join(x + "\n" for x in LINES[a:b]).encode()


def _parts(dictionary: bytes) -> list[bytes]:
    """zstd frames of every shape the format allows a compressor to write."""
    zd = zstandard.ZstdCompressionDict(dictionary)
    return [
        zstandard.ZstdCompressor(dict_data=zd).compress(_text(0, 5)),  # dict id, content size
        zstandard.ZstdCompressor(dict_data=zd, write_checksum=True).compress(_text(5, 9)),  # + checksum
        zstandard.ZstdCompressor(dict_data=zd, write_dict_id=False).compress(_text(9, 12)),  # dict, no id
        zstandard.ZstdCompressor(write_content_size=False).compress(_text(0, 3)),  # no content size
        _streamed(_text(0, 2)),  # written as a stream: no content size
        zstandard.ZstdCompressor(level=1, write_checksum=True).compress(os.urandom(300_000)),  # raw blocks, 3 of them
        zstandard.ZstdCompressor(level=1).compress(b"a" * 400_000),  # RLE blocks
        zstandard.ZstdCompressor().compress(b""),  # an empty frame
        zstandard.ZstdCompressor().compress(b"x" * 300),  # single segment, 2-byte content size
    ]


def _streamed(data: bytes) -> bytes:
    c = zstandard.ZstdCompressor(level=1).compressobj()
    return c.compress(data) + c.flush()


def test_splits_every_kind_of_zstd_frame_from_its_headers(dictionary):
    parts = _parts(dictionary)
    body = b"".join(parts)
    frames = split_zstd_frames(body)
    assert [f.data for f in frames] == parts
    assert [f.id for f in frames] == [str(i) for i in range(len(parts))]
    offsets = [0]
    for p in parts[:-1]:
        offsets.append(offsets[-1] + len(p))
    assert [f.offset for f in frames] == offsets
    for f in frames:
        params = zstandard.get_frame_parameters(f.data)
        assert f.dict_id == params.dict_id and f.checksum == params.has_checksum
        assert f.content_size == (None if params.content_size == zstandard.CONTENTSIZE_UNKNOWN
                                  else params.content_size)
    assert frames[0].dict_id == zstandard.ZstdCompressionDict(dictionary).dict_id() != 0
    assert frames[2].dict_id == 0 and frames[3].content_size is None and frames[1].checksum
    # what zstd itself reads back from the same body
    assert zstandard.ZstdDecompressor(dict_data=zstandard.ZstdCompressionDict(dictionary)).decompressobj() \
        .decompress(parts[0]) == _text(0, 5)
    assert split_zstd_frames(b"") == []


def test_skippable_frames_are_skipped_and_id_frames_name_the_next_frame(dictionary):
    parts = _parts(dictionary)[:3]
    skip = (0x184D2A5F).to_bytes(4, "little") + (5).to_bytes(4, "little") + b"12345"
    empty_skip = (0x184D2A50).to_bytes(4, "little") + bytes(4)
    body = skip + parts[0] + id_frame("blk_1") + parts[1] + empty_skip + parts[2] + skip
    frames = split_zstd_frames(body)
    assert [f.id for f in frames] == ["0", "blk_1", "2"] and [f.data for f in frames] == parts
    assert frames[0].offset == len(skip) and frames[1].offset == len(skip) + len(parts[0]) + len(id_frame("blk_1"))
    assert id_frame("日本")[:4] == ID_MAGIC.to_bytes(4, "little")
    assert split_zstd_frames(id_frame("日本") + parts[0])[0].id == "日本"
    for bad, words in ((id_frame("a") + id_frame("b") + parts[0], "two id frames in a row"),
                       (parts[0] + id_frame("a"), "names no frame"),
                       (ID_MAGIC.to_bytes(4, "little") + (2).to_bytes(4, "little") + b"\xff\xfe" + parts[0],
                        "not UTF-8"),
                       (ID_MAGIC.to_bytes(4, "little") + bytes(4) + parts[0], "1-256 characters")):
        with pytest.raises(FrameBodyError, match=words):
            split_zstd_frames(bad)


def test_every_truncation_is_a_clean_error_naming_the_frame_and_its_offset(dictionary):
    parts = [*_parts(dictionary)[:4], id_frame("w"), _parts(dictionary)[8]]
    body = b"".join(parts)
    starts = [0]
    for p in parts:
        starts.append(starts[-1] + len(p))
    whole = {starts[i] for i in (0, 1, 2, 3, 4, 6)}  # cuts at the end of a zstd frame leave whole frames
    for cut in range(len(body)):
        if cut in whole:
            assert len(split_zstd_frames(body[:cut])) == sum(s <= cut for s in starts[1:5]) + (cut == starts[6])
            continue
        with pytest.raises(FrameBodyError) as info:
            split_zstd_frames(body[:cut])
        e = info.value
        if cut == starts[5]:  # right after the id frame
            assert e.status == 400 and "names no frame" in e.reason and e.offset == starts[4], e.reason
            continue
        assert e.status == 400 and "truncated" in e.reason, (cut, e.reason)
        k = max(i for i in range(len(parts)) if starts[i] <= cut)  # the part the cut falls in
        frame_index = min(k, 4)  # the id frame and the frame it names are frame 4
        assert e.index == frame_index and f"frame {frame_index} " in e.reason, (cut, e.reason)
        assert e.offset == starts[k] and f"at byte {starts[k]:,}" in e.reason, (cut, e.reason)


def test_garbage_reserved_types_and_bits_are_refused_with_the_frame_named(dictionary):
    good = _parts(dictionary)[0]
    with pytest.raises(FrameBodyError, match=f"frame 1 at byte {len(good)}: not a zstd frame .*between frames"):
        split_zstd_frames(good + b"\x00\x01\x02\x03junk" + good)
    with pytest.raises(FrameBodyError, match="frame 0 at byte 0: not a zstd frame"):
        split_zstd_frames(b"hello")
    h = zstd_frame_header(good).size
    assert h == 4 + 1 + 4 + 2  # magic, descriptor, (single segment: no window) 4-byte dict id, content size
    block = int.from_bytes(good[h:h + 3], "little")
    reserved_type = good[:h] + (block | 0b110).to_bytes(3, "little") + good[h + 3:]
    with pytest.raises(FrameBodyError, match=f"frame 0 at byte 0: the block at byte {h} has the reserved block type"):
        split_zstd_frames(reserved_type)
    reserved_bit = good[:4] + bytes([good[4] | 0b1000]) + good[5:]
    with pytest.raises(FrameBodyError, match="reserved bit"):
        split_zstd_frames(reserved_bit)
    huge_block = good[:h] + ((200_000 << 3) | 0b100).to_bytes(3, "little") + good[h + 3:]
    with pytest.raises(FrameBodyError, match="over zstd's block maximum"):
        split_zstd_frames(huge_block)
    with pytest.raises(FrameBodyError, match="more than 3 frames") as info:
        split_zstd_frames(good * 4, max_frames=3)
    assert info.value.status == 413 and info.value.index == 3 and info.value.offset == 3 * len(good)
    assert len(split_zstd_frames(good * 3, max_frames=3)) == 3


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.binary(max_size=120), st.sampled_from([b"", b"\x28\xb5\x2f\xfd", b"\x50\x2a\x4d\x18"]))
def test_random_bytes_give_frames_or_a_frame_error_never_another_exception(data, prefix):
    try:
        frames = split_zstd_frames(prefix + data)
    except FrameBodyError as exc:
        assert exc.status == 400 and exc.reason.startswith("frame ")
    else:
        assert b"".join(f.data for f in frames) in prefix + data or not frames


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.data())
def test_corrupted_frames_give_frames_or_a_frame_error(dictionary, data):
    body = bytearray(b"".join(_parts(dictionary)[:4]))
    for _ in range(data.draw(st.integers(1, 4))):
        body[data.draw(st.integers(0, len(body) - 1))] = data.draw(st.integers(0, 255))
    try:
        split_zstd_frames(bytes(body))
    except FrameBodyError as exc:
        assert exc.status == 400


# -- checks for a model --------------------------------------------------------------------------


def test_frame_body_checks_every_frame_for_the_model(codec, dictionary):
    spec = FrameSpec.from_codec(codec)
    assert spec.dict_id == codec.dict_id != 0 and spec.max_frame_bytes == 512
    frames, _ = codec.frame_lines(LINES)
    assert len(frames) > 2
    limits = dict(max_body_bytes=1 << 20, max_frames=100)
    got = frame_body(b"".join(frames), "application/zstd", "", spec, **limits)
    assert [f.data for f in got] == frames
    assert frame_body(b"".join(frames), "application/octet-stream; x=1", "identity", spec, **limits)[1].data == frames[1]
    js = json.dumps({"frames": [{"id": f"w{i}", "data": base64.b64encode(f).decode()} for i, f in enumerate(frames)]})
    got = frame_body(js.encode(), "application/json", "", spec, **limits)
    assert [(f.id, f.data, f.offset) for f in got] == [(f"w{i}", f, None) for i, f in enumerate(frames)]
    other = zstandard.ZstdCompressor().compress(b"x\n")
    big = codec.compress(os.urandom(700))
    at = len(frames[0])
    for body, ctype, enc, status, words in [
        (frames[0] + other, "application/zstd", "", 422, f"frame 1 at byte {at} was compressed with dictionary id 0"),
        (frames[0] + big, "application/zstd", "", 413, f"frame 1 at byte {at} is {len(big):,} bytes"),
        (b"", "application/zstd", "", 422, "no frame"),
        (frames[0], "application/zstd", "zstd", 415, "Content-Encoding"),
        (frames[0], "text/plain", "", 415, "unsupported Content-Type"),
        (frames[0] * 101, "application/zstd", "", 413, "more than 100 frames"),
        (frames[0] * 20_000, "application/zstd", "", 413, "over the limit of 1,048,576"),
    ]:
        with pytest.raises(FrameBodyError, match=words) as info:
            frame_body(body, ctype, enc, spec, **limits)
        assert info.value.status == status, words


def test_zlib_frames_are_checked_from_their_header(dictionary):
    codec = FrameCodec("deflate", 6, dictionary, 512)
    spec = FrameSpec.from_codec(codec)
    assert spec.zlib_dict_adler == zlib.adler32(dictionary[-32768:])
    frame = codec.compress(_text(0, 4))
    check_zlib_frame(frame, spec, "frame 0")
    js = json.dumps({"frames": [{"data": base64.b64encode(frame).decode()}]}).encode()
    assert frame_body(js, "application/json", "", spec, max_body_bytes=1 << 20, max_frames=10)[0].data == frame
    with pytest.raises(FrameBodyError, match="send them as JSON") as info:
        frame_body(frame, "application/zstd", "", spec, max_body_bytes=1 << 20, max_frames=10)
    assert info.value.status == 415
    other = zlib.compressobj(6, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY, b"another dictionary")
    for data, status, words in [
        (zlib.compress(_text(0, 4)), 422, "names no preset dictionary"),
        (other.compress(_text(0, 4)) + other.flush(), 422, "preset dictionary whose Adler-32 is"),
        (b"\x28\xb5\x2f\xfd" + frame[4:], 400, "not a zlib stream"),
        (frame[:8], 400, "truncated"),
        (b"", 400, "empty"),
        (frame + os.urandom(600), 413, "over the model's frame limit"),
    ]:
        with pytest.raises(FrameBodyError, match=words) as info:
            check_zlib_frame(data, spec, "frame 3 (id 'x')")
        assert info.value.status == status and "frame 3 (id 'x')" in info.value.reason


def test_the_json_form_takes_one_shape_and_refuses_the_rest_at_its_first_wrong_character():
    ok = base64.b64encode(b"\x28\xb5\x2f\xfd").decode()
    assert parse_json_frames(f' {{ "frames" : [ {{"data": "{ok}", "id": "a"}}, {{"data": "{ok}"}} ] }} '.encode(),
                             max_frames=5, max_frame_bytes=64) == [("a", b"\x28\xb5\x2f\xfd"),
                                                                   (None, b"\x28\xb5\x2f\xfd")]
    for body, status, words in [
        ('{"frames": [', 400, "not valid JSON"),
        (f'{{"frames": [{{"data": "{ok}"}}]', 400, "not valid JSON"),
        ("[1, 2]", 422, "must be an object"),
        ('{"frames": [], "frames": []}', 422, "given twice"),
        ('{"lines": []}', 422, "unknown key 'lines'"),
        ("{}", 422, 'it has no "frames"'),
        ('{"frames": {}}', 422, "an array of frames"),
        ('{"frames": ["abc"]}', 422, "frame 0: an object"),
        ('{"frames": [{"id": "a"}]}', 422, "frame 0 (id 'a') has no \"data\""),
        ('{"frames": [{"data": 5}]}', 422, 'a string for "data"'),
        ('{"frames": [{"data": "a", "data": "b"}]}', 422, 'gives "data" twice'),
        ('{"frames": [{"data": "", "id": ""}]}', 422, "an id has 1-256 characters"),
        (f'{{"frames": [{{"data": "{ok}"}}, {{"id": "b", "data": "a*b="}}]}}', 400,
         "frame 1 (id 'b'): \"data\" is not valid base64"),
        (f'{{"frames": [{{"data": "{"A" * 200}"}}]}}', 413, "more than a frame of the model's limit"),
        (json.dumps({"frames": [{"data": ok}] * 6}), 413, "more than 5 frames"),
        ('{"frames": []} x', 400, "not valid JSON"),
        (b'{"frames": ["\xff"]}', 400, "bad UTF-8"),
        ("[" * 10_000, 422, "must be an object"),
    ]:
        with pytest.raises(FrameBodyError, match=words.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")) \
                as info:
            parse_json_frames(body if isinstance(body, bytes) else body.encode(), max_frames=5, max_frame_bytes=64)
        assert info.value.status == status, (body[:40], info.value.reason)

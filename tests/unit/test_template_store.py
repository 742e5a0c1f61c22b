"""The Drain3 template store: stable ids, dedup-equivalent mining, JSON round trip."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from drain3.drain import Drain

from logad.errors import DataError
from logad.parsing import UNKNOWN_ID, TemplateMiner, TemplateStore, mask_contents, template_id
from logad.sources.config import ParsingConfig, SourceConfig
from logad.sources.lines import LineSplitter

PARSING = ParsingConfig(
    sim_th=0.5,
    masking=[
        {"pattern": r"blk_-?\d+", "mask_with": "*"},
        {"pattern": r"(\d+\.){3}\d+(:\d+)?", "mask_with": "*"},
    ],
)
HDFS = SourceConfig(
    name="hdfs",
    format={"log_format": "<Date> <Time> <Pid> <Level> <Component>: <Content>"},
    parsing=PARSING,
    grouping={"kind": "session", "id_regex": r"blk_-?\d+"},
)


@pytest.fixture(scope="module")
def masked(hdfs_sample_lines) -> list[str]:
    content = LineSplitter(HDFS).split(pa.array(hdfs_sample_lines[:8000])).content
    return mask_contents(content, PARSING).to_pylist()


def test_template_ids_are_stable_content_hashes():
    assert template_id("Receiving block <*> src: <*> dest: <*>") == template_id("Receiving block <*> src: <*> dest: <*>")
    assert template_id("a") != template_id("b")
    assert 0 < template_id("") < 2**63


def test_mining_distinct_messages_equals_drain3_on_the_full_stream(masked):
    full = Drain(depth=PARSING.depth, sim_th=PARSING.sim_th, max_children=PARSING.max_children)
    for m in masked:
        full.add_log_message(m)
    miner = TemplateMiner(PARSING)
    miner.add(masked)
    store = miner.freeze()
    assert sorted(c.get_template() for c in full.clusters) == sorted(t.text for t in store.templates)
    assert sum(t.count for t in store.templates) == len(masked)


def test_every_mined_line_matches_and_unknown_lines_get_zero(masked):
    miner = TemplateMiner(PARSING)
    miner.add(masked)
    store = miner.freeze()
    ids = store.match(masked)
    assert (ids != UNKNOWN_ID).all()
    assert store.match(["completely new message shape here"])[0] == UNKNOWN_ID


def test_store_round_trips_through_json_with_identical_matches(tmp_path, masked):
    miner = TemplateMiner(PARSING)
    miner.add(masked)
    store = miner.freeze()
    store.save(tmp_path / "templates.json")
    loaded = TemplateStore.load(tmp_path / "templates.json")
    assert (loaded.match(masked) == store.match(masked)).all()
    assert loaded.parsing == PARSING
    # a folder works too, and nothing is pickled: the file is plain JSON
    assert TemplateStore.load(tmp_path).templates == loaded.templates
    assert json.loads((tmp_path / "templates.json").read_text())["format_version"] == 1


def test_store_rejects_files_that_are_not_stores(tmp_path):
    (tmp_path / "x.json").write_text('{"hello": 1}')
    with pytest.raises(DataError, match="not a logad template store"):
        TemplateStore.load(tmp_path / "x.json")
    with pytest.raises(DataError, match="no template store"):
        TemplateStore.load(tmp_path / "missing.json")


def test_masks_with_unnamed_groups_run_in_re2_and_agree_with_python_re():
    """Every shipped masking rule RE2 can compile runs as an Arrow kernel (unnamed groups
    included), and gives what Python's ``re`` gives on real lines."""
    import re
    from pathlib import Path

    import pyarrow as pa

    from logad.sources.config import load_source_config
    from logad.sources.lines import _re2_compiles, regex_replace

    assert _re2_compiles(r"blk_-?\d+(\s+blk_-?\d+)*")
    assert not _re2_compiles(r"(?<=a)b")  # look-behind: Python's re does it
    lines = pa.array([
        "Receiving block blk_-1608999687919862906 src: /10.250.19.102:54106 dest: /10.250.19.102:50010",
        "BLOCK* ask 10.250.14.224:50010 to delete  blk_-1 blk_22 blk_-333",
        "PacketResponder 1 for block blk_38865049064139660 terminating",
    ])
    for name in ("hdfs", "bgl", "openssh", "thunderbird"):
        for rule in load_source_config(Path(__file__).resolve().parents[2] / "data_pipelines" / f"{name}.yaml").parsing.masking:
            want = [re.sub(rule.pattern, "<*>", s) for s in lines.to_pylist()]
            assert regex_replace(lines, rule.pattern, "<*>").to_pylist() == want, (name, rule.pattern)
            assert regex_replace(lines, rule.pattern, "<*>", re2=False).to_pylist() == want

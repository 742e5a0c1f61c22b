"""docs/benchmarks.md is rendered from bench/results/*.json, and the two never drift apart."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))

import _common  # noqa: E402
import render_docs  # noqa: E402


def test_committed_page_is_the_render_of_the_committed_results():
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    assert page == render_docs.render(BENCH / "results"), (
        "docs/benchmarks.md is out of date with bench/results/*.json: run `python bench/render_docs.py`")


def test_every_results_file_is_a_list_of_runs():
    files = sorted((BENCH / "results").glob("*.json"))
    assert files
    for path in files:
        runs = json.loads(path.read_text())
        assert isinstance(runs, list) and runs, path.name
        for run in runs:
            assert {"title", "date", "machine", "command", "figures", "markdown"} <= run.keys(), path.name
            assert isinstance(run["figures"], dict), path.name
        dates = [r["date"] for r in runs]
        assert dates == sorted(dates), f"{path.name}: runs are kept oldest first"


def test_every_committed_benchmark_has_its_own_renderer():
    names = [p.stem for p in (BENCH / "results").glob("*.json")]
    known = [n for n in names if render_docs.renderer(n) is not render_docs.GENERIC]
    # a new benchmark may render through the fallback; these must not
    for name in ("ingest_throughput", "fastlogad", "compare_methods_hdfs", "serve_latency_threads0", "serve_load"):
        assert name in known


def test_rendering_is_deterministic(tmp_path):
    one = render_docs.render(BENCH / "results")
    assert one == render_docs.render(BENCH / "results")
    render_docs.write_page(BENCH / "results", tmp_path / "benchmarks.md")
    assert (tmp_path / "benchmarks.md").read_text() == one


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """record() writing into a temporary results folder and page."""
    results, doc = tmp_path / "results", tmp_path / "docs" / "benchmarks.md"
    monkeypatch.setattr(_common, "RESULTS", results)
    monkeypatch.setattr(_common, "DOC", doc)
    return results, doc


def test_record_appends_runs_and_regenerates_the_page(sandbox):
    results, doc = sandbox
    _common.record("Hostile ingest", "| case | skipped |\n|---|---:|\n| nul bytes | 3 |\n",
                   {"cases": 4, "skipped_lines": 3, "per_case": {"nul": {"skipped": 3, "ok": True}},
                    "timeline": [{"t": 0.0}, {"t": 0.5}]}, "hostile_ingest.json")
    _common.record("Hostile ingest", "second run\n", {"cases": 5, "skipped_lines": 2}, "hostile_ingest.json",
                   note="two more cases")
    runs = json.loads((results / "hostile_ingest.json").read_text())
    assert [r["figures"]["cases"] for r in runs] == [4, 5]
    assert runs[1]["note"] == "two more cases" and runs[0]["markdown"].startswith("| case |")
    page = doc.read_text()
    assert page == render_docs.render(results)
    # the fallback: the Markdown the latest run's script printed; its figures stay in the JSON
    assert "## Hostile ingest" in page
    assert "second run" in page and "| nul bytes | 3 |" not in page
    assert "`cases`" not in page
    assert "runs kept: 2 in `bench/results/hostile_ingest.json`" in page
    # a run that printed nothing shows its scalar figures, flattened
    _common.record("Hostile ingest", "", {"cases": 6, "per_case": {"nul": {"skipped": 1}},
                                          "headline": "6 cases, 0 lost"}, "hostile_ingest.json")
    page = doc.read_text()
    assert "| `cases` | 6 |" in page and "| `per_case.nul.skipped` | 1 |" in page
    assert "| 6 cases, 0 lost |" in page  # the run's own headline in the overview


def test_record_keeps_a_file_in_the_older_one_run_shape(sandbox):
    results, _ = sandbox
    results.mkdir(parents=True)
    legacy = {"title": "Serve faults", "date": "2026-12-01 10:00 UTC", "machine": "m", "command": "c",
              "killed": 1, "errors": 0}
    (results / "serve_faults.json").write_text(json.dumps(legacy))
    _common.record("Serve faults", "## Killed replicas\n\nfine\n", {"killed": 2, "errors": 1}, "serve_faults.json")
    runs = json.loads((results / "serve_faults.json").read_text())
    assert [r["figures"] for r in runs] == [{"killed": 1, "errors": 0}, {"killed": 2, "errors": 1}]
    assert runs[0]["date"] == "2026-12-01 10:00 UTC"


def test_a_renderer_that_fails_falls_back_to_the_generic_table(sandbox):
    results, doc = sandbox
    # serve_load.json has its own renderer, which needs figures["summary"]
    _common.record("Serving under load, new shape", "printed\n", {"requests": 12}, "serve_load.json")
    page = doc.read_text()
    assert "## Serving under load, new shape" in page
    assert "the renderer for `serve_load` failed on its runs (KeyError: 'summary')" in page
    assert "printed" in page


def test_fallback_demotes_headings_of_a_runs_markdown():
    md = "## Held out: a\n\ntext\n\n```\n# not a heading\n```\n\n### deeper\n"
    out = render_docs.demote(md)
    assert out.startswith("#### Held out: a") and "##### deeper" in out and "\n# not a heading\n" in out


def test_fallback_renders_a_run_without_figures_or_markdown():
    runs = [{"title": "Empty", "date": "2026-12-05 00:00 UTC", "machine": "m", "command": "c",
             "figures": {}, "markdown": ""}]
    text = render_docs.section("empty", runs, render_docs.renderer("empty"))
    assert text.startswith("## Empty\n") and "(no figures recorded)" in text


def test_check_mode_reports_a_stale_page(tmp_path, capsys):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nAppended by hand.\n")
    assert render_docs.main(["--check", "--doc", str(doc)]) == 1
    assert "out of date" in capsys.readouterr().err
    render_docs.main(["--doc", str(doc)])
    assert render_docs.main(["--check", "--doc", str(doc)]) == 0


def _colog_run(date: str, settings: dict | None, folds: dict[str, float], seeds: int) -> dict:
    rows = [{"dataset": "forensic", "protocol": "leave-one-source-out", "seeds": list(range(seeds)),
             "line": {"colog": {"f1": sum(folds.values()) / len(folds)}},
             "folds": [{"holdout": h, "line": {"colog": {"f1": f1, "f1_std": 0.01}}} for h, f1 in folds.items()]}]
    return {"date": date, "figures": {"rows": rows, **({"colog_config": settings} if settings else {})}}


def test_colog_variant_takes_each_held_out_fold_from_the_latest_run_of_the_same_settings():
    words = {"words": True}
    runs = [_colog_run("2026-01-01T10:00", words, {"a/logs": 0.5, "b/logs": 0.6}, 1),
            _colog_run("2026-01-01T11:00", None, {"a/logs": 0.9}, 1),          # other settings: never borrowed
            _colog_run("2026-01-01T12:00", words, {"b/logs": 0.7}, 3)]
    body = render_docs.colog_variant_body(runs)
    assert "a 0.500 (1 seed) / b 0.700 ± 0.010 (3 seeds)" in body
    assert "**0.600**" in body  # the mean of the two folds shown, not the latest run's one fold
    assert "earlier runs of the same settings: 2026-01-01 10:00 UTC" in body
    alone = render_docs.colog_variant_body(runs[2:])
    assert "b 0.700 ± 0.010 (3 seeds)" in alone and "**0.700**" in alone and "earlier runs" not in alone


def test_variants_of_one_kind_share_a_section_with_a_row_each(tmp_path):
    for name, settings, f1 in (("colog_a", None, 0.7), ("colog_b", {"words": True}, 0.6)):
        run = {**_colog_run("2026-01-01 10:00 UTC", settings, {"a/logs": f1}, 1),
               "title": name, "machine": "m", "command": f"c {name}", "markdown": ""}
        (tmp_path / f"{name}.json").write_text(json.dumps([run]))
    (tmp_path / "serve_latency_threads2.json").write_text(json.dumps([
        {"title": "old service", "date": "2026-01-01 09:00 UTC", "machine": "m", "command": "c", "figures": {},
         "markdown": ""}]))
    page = render_docs.render(tmp_path)
    assert page.count(f"## {render_docs.GROUPED['colog_variant']}") == 1
    assert "| `colog_a` | forensic, each host held out: a 0.700 | **0.700**" in page
    assert "| `colog_b` | forensic, each host held out: a 0.600 | **0.600**" in page
    assert "- `colog_b`: latest run: 2026-01-01 10:00 UTC, `c colog_b`" in page
    # a retired file is named, not shown
    assert "## old service" not in page and "`serve_latency_threads2.json` (" in page


def test_colog_variant_takes_each_protocol_from_the_latest_run_of_the_same_settings():
    pieces = {"pieces": True}
    held_out = _colog_run("2026-01-01T10:00", pieces, {"a/logs": 0.9, "b/logs": 0.8}, 3)
    bgl = {"date": "2026-01-01T11:00", "figures": {"colog_config": pieces, "rows": [
        {"dataset": "bgl", "protocol": "chronological", "seeds": [0, 1, 2], "line": {"colog": {"f1": 0.4, "f1_std": 0.1}}}]}}
    other = {"date": "2026-01-01T12:00", "figures": {"rows": [
        {"dataset": "liberty", "protocol": "chronological", "seeds": [0], "line": {"colog": {"f1": 0.5}}}]}}
    body = render_docs.colog_variant_body([held_out, bgl])
    assert "forensic, each host held out: a 0.900 ± 0.010 / b 0.800 ± 0.010 (3 seeds) | **0.850**" in body
    assert "bgl, chronological (3 seeds): 0.400 ± 0.100 | **0.400**" in body
    assert "earlier runs of the same settings: 2026-01-01 10:00 UTC" in body
    assert body.index("forensic, each host") < body.index("bgl, chronological")  # the main section's order
    assert render_docs.colog_headline([held_out, bgl]) == "CoLog line F1: forensic held-out host 0.850, bgl chronological 0.400"
    assert "CoLog at today's defaults" in body
    # a run of other settings is never borrowed, and its own latest settings win
    assert "liberty" not in render_docs.colog_variant_body([held_out, bgl, other].__getitem__(slice(0, 2)))
    assert "bgl" not in render_docs.colog_variant_body([held_out, bgl, other])


def test_a_grouped_section_says_the_shared_closing_sentences_once():
    texts, tail = render_docs._shared_tail(["Setting x. Notes above. Full table in its file.",
                                            "Notes above. Full table in its file."])
    assert texts == ["Setting x.", ""] and tail == "Notes above. Full table in its file."
    assert render_docs._shared_tail(["One.", "Two."]) == (["One.", "Two."], "")
    assert render_docs._shared_tail(["One.", ""]) == (["One.", ""], "")


def test_a_colog_run_before_a_default_changed_says_what_it_ran_with():
    key, before, after, since = render_docs._COLOG_DEFAULT_CHANGES[0]
    old = _colog_run("2026-01-01T10:00", None, {"a/logs": 0.7}, 1)
    new = _colog_run("2099-01-01T10:00", None, {"a/logs": 0.9}, 1)
    assert render_docs.colog_settings(old) == {key: before} and render_docs.colog_settings(new) == {}
    assert render_docs.colog_off_defaults(old) == {key: before} and render_docs.colog_off_defaults(new) == {}
    assert f"the default until {since}" in render_docs.colog_notes([old]) and render_docs.colog_notes([new]) == ""
    # the run at today's defaults never borrows a fold of the older one
    assert "**0.900**" in render_docs.colog_variant_body([old, new])
    assert "CoLog at today's defaults" in render_docs.colog_variant_body([old, new])
    assert render_docs.colog_headline([old]).endswith(f"(settings other than today's defaults: {key}={json.dumps(before)})")
    assert render_docs.colog_headline([new]) == "CoLog line F1: forensic held-out host 0.900"


def test_a_colog_variant_at_the_main_runs_settings_leaves_out_what_the_main_section_shows():
    def run(date: str, rows: list[dict]) -> dict:
        return {"date": date, "figures": {"rows": rows}}

    chrono = {"dataset": "forensic", "protocol": "chronological", "seeds": [0], "line": {"colog": {"f1": 0.99}}}
    held_out = _colog_run("2099-01-01T10:00", None, {"a/logs": 0.9, "b/logs": 0.8}, 3)["figures"]["rows"][0]
    variant = [run("2099-01-01T10:00", [chrono]), run("2099-01-01T11:00", [held_out])]
    main_one_seed = [run("2099-01-02T10:00", [chrono, {**held_out, "seeds": [0], "folds": [
        {**f, "line": {"colog": {"f1": 0.7}}} for f in held_out["folds"]]}])]
    body = render_docs.colog_variant_body(variant, main_one_seed)
    # the chronological row is the main section's (same seeds); the 3-seed held-out row stays
    assert "forensic, chronological" not in body and "(3 seeds) | **0.850**" in body
    assert "1 protocol the CoLog section above shows" in body
    assert "earlier runs" not in body  # the one earlier run gave only the row left out
    # a variant that names today's default is at the same settings as a run that names none
    named = [{**r, "figures": {**r["figures"], "colog_config": {"pieces": True}}} for r in variant]
    assert "forensic, chronological" not in render_docs.colog_variant_body(named, main_one_seed)
    # and within one file a run that names it takes rows from one that names none
    mixed = [variant[0], named[1]]
    assert "forensic, chronological | **0.990**" in render_docs.colog_variant_body(mixed)
    # other settings in the main section: nothing is left out
    older_main = [{**main_one_seed[0], "date": "2026-01-01T10:00"}]
    assert "forensic, chronological" in render_docs.colog_variant_body(variant, older_main)
    # a variant whose every row the main section shows keeps them all
    assert "forensic, chronological" in render_docs.colog_variant_body(variant[:1], main_one_seed)


def test_a_lone_colog_variant_sits_beside_the_main_section_too(tmp_path):
    chrono = {"dataset": "forensic", "protocol": "chronological", "seeds": [0], "line": {"colog": {"f1": 0.99}}}
    held_out = _colog_run("2099-01-01T10:00", None, {"a/logs": 0.9}, 3)["figures"]["rows"][0]
    for name, rows in (("colog", [chrono]), ("colog_more_seeds", [chrono, held_out])):
        run = {"title": name, "date": "2099-01-01 10:00 UTC", "machine": "m", "command": f"c {name}",
               "figures": {"rows": rows}, "markdown": ""}
        (tmp_path / f"{name}.json").write_text(json.dumps([run]))
    page = render_docs.render(tmp_path)
    variant = page[page.index("## colog_more_seeds"):]
    assert "forensic, chronological" not in variant and "a 0.900 ± 0.010 (3 seeds)" in variant

"""The fast paths of results at scale give exactly what the plain ones give."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from results.analysis import index, index_rows
from results.analysis.chartdata import qps_chart, serving_charts
from results.analysis.query import load_records
from results.model import records
from results.model.fastjson import loads_object
from results.model.parsers import uses_array
from results.model.records import records_from_run
from results.model.rundir import load_run
from results.model.schema import Record
from results.render import charts
from results.render.charts import SvgMarkups, draw, svg_markup
from tests.conftest import FIXTURES
from tests.unit.synthetic_runs import FIXTURE_RUN, make_run

OLD_RELEASES = sorted(p for p in FIXTURES.glob("vllm-*") if p.is_dir())


def _plain_loads(data: bytes, keep_array: Any = None) -> Any:
    # what records read before the fast reader: json.loads of the whole file
    return json.loads(data.decode("utf-8"))


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1, "b": [1, 2], "c": {"x": [1]}, "d": "caf\\u00e9", "e": null, "f": true}',
        '{"nan": NaN, "inf": Infinity, "big": 123456789012345678901234567890, "arr": [NaN]}',
        '{"dup": 1, "dup": [2], "x": 1e400}',
        "[1, 2]",
        "{}",
        '  {"spaces" :  [ [1.5, 2], [] ] , "s": "]"}  ',
    ],
)
def test_loads_object_is_json_loads_without_the_arrays_left_out(text: str) -> None:
    data = text.encode()
    expected = json.loads(text)
    assert repr(loads_object(data)) == repr(expected)
    if isinstance(expected, dict):
        kept = {k: v for k, v in expected.items() if not isinstance(v, list) or k == "arr"}
        assert repr(loads_object(data, lambda key: key == "arr")) == repr(kept)


@pytest.mark.parametrize(
    "data", [b'{"a": 1', b'{"a": [1, 2}', b"\xef\xbb\xbf{}", b"", b'{"a": 01}', b"{} x"]
)
def test_loads_object_fails_as_json_does(data: bytes) -> None:
    with pytest.raises(json.JSONDecodeError) as plain:
        json.loads(data.decode("utf-8"))
    with pytest.raises(json.JSONDecodeError) as fast:
        loads_object(data, lambda key: False)
    assert str(fast.value) == str(plain.value)


def test_loads_object_rejects_bad_utf8_as_reading_text_does() -> None:
    with pytest.raises(UnicodeDecodeError):
        loads_object(b'{"a": "\xff"}')


def test_only_the_arrays_a_parser_uses_are_read() -> None:
    assert uses_array("latency", "latencies")
    assert not uses_array("serve", "itls") and not uses_array("serve", "generated_texts")
    assert uses_array("serve", "mean_ttft_ms") and uses_array("serve", "request_throughput")
    assert not uses_array("throughput", "anything")


def _run_dirs(tmp_path: Path) -> list[Path]:
    """The real CPU sweep, a synthetic run with a failed point, and serve outputs whose
    types drifted (a measurement as a list, NaN, a cut-off file)."""
    runs = [
        FIXTURE_RUN,
        make_run(tmp_path, "20261122-060000-tiny-llama-cpu-0a1b2c", failed=["serve-qps4"]),
    ]
    odd = tmp_path / "20261122-054648-tiny-llama-cpu-0dd000"
    shutil.copytree(FIXTURE_RUN, odd)
    raw = odd / "raw" / "serve-qps2.json"
    data = json.loads(raw.read_text())
    data.update(mean_tpot_ms=[1.0, 2.0], rtfx=float("nan"), new_key={"nested": [1, 2]})
    raw.write_text(json.dumps(data))
    (odd / "raw" / "serve-qps4.json").write_text(raw.read_text()[:500])
    runs.append(odd)
    return runs


def test_records_are_the_same_as_with_json_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dirs = _run_dirs(tmp_path)
    fast = [[r.to_dict() for r in records_from_run(load_run(d))] for d in dirs]
    monkeypatch.setattr(records, "loads_object", _plain_loads)
    plain = [[r.to_dict() for r in records_from_run(load_run(d))] for d in dirs]
    assert repr(fast) == repr(plain)
    odd = {r["point_id"]: r for r in fast[2]}
    assert odd["serve-qps2"]["extra"]["mean_tpot_ms"] == [1.0, 2.0]  # a drifted type is kept
    assert "tpot_mean_ms" not in odd["serve-qps2"]["metrics"]
    assert "itls" not in odd["serve-qps2"]["extra"]
    assert odd["serve-qps4"]["verdict"] == "failed"
    assert "not valid JSON" in odd["serve-qps4"]["reasons"][-1]
    latency = {r["point_id"]: r for r in fast[0]}["latency"]
    assert "duration_s" in latency["metrics"] and "e2el_std_ms" in latency["metrics"]


def test_old_release_outputs_read_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    files = [f for folder in OLD_RELEASES for f in sorted(folder.glob("*.json"))]
    fast = [loads_object(f.read_bytes(), lambda key: False) for f in files]
    plain = [
        {k: v for k, v in json.loads(f.read_text()).items() if not isinstance(v, list)}
        for f in files
    ]
    assert repr(fast) == repr(plain)


def test_index_gives_back_exactly_what_the_runs_give(tmp_path: Path) -> None:
    """msgspec writes and reads the index; NaN (which it would write as null) goes through json."""
    root = tmp_path / "root"
    root.mkdir()
    for run_dir in _run_dirs(tmp_path / "src"):
        shutil.copytree(run_dir, root / run_dir.name)
    direct = load_records([root], use_index=False)
    for attempt in ("cold", "warm"):
        indexed = load_records([root])
        assert repr([r.to_dict() for r in indexed]) == repr([r.to_dict() for r in direct]), attempt
    nan = [r for r in indexed if "rtfx" in r.extra and math.isnan(r.extra["rtfx"])]
    assert nan, "the NaN record took the json path"
    assert any(r.qps == math.inf for r in indexed) is any(r.qps == math.inf for r in direct)


def test_index_rows_hold_the_record_as_to_dict() -> None:
    record = Record(
        run_id="r", point_id="serve-qpsinf", scenario="serve", qps=math.inf,
        engine_args=("--flag", "1"), metrics={"tpot_median_ms": 1.5, "duration_s": 2.0},
        extra={"label": None, "n": 3}, reasons=("a",), run_dir="/x/r",
    )  # fmt: skip
    text = index_rows.record_json(record)
    assert json.loads(text) == json.loads(json.dumps(record.to_dict()))
    assert index._record(text, "/y/r") == Record.from_dict({**record.to_dict(), "run_dir": "/y/r"})
    odd = Record(run_id="r", point_id="p", scenario="serve", extra={"x": [float("inf")]})
    assert json.loads(index_rows.record_json(odd))["extra"] == {"x": [math.inf]}
    assert index._record(index_rows.record_json(odd), "/z").extra == {"x": [math.inf]}


def _many_runs(root: Path) -> list[Record]:
    rates = (0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 12.0, 16.0, 24.0, math.inf)
    for n, quantization in enumerate((None, "fp8", "awq")):
        for repeat in range(2):
            make_run(
                root,
                f"20261122-06{n}{repeat}00-tiny-llama-cpu-0a1b{n}{repeat}",
                latency=1.0 + n + repeat / 10,
                throughput=1.0 + n,
                quantization=quantization,
                qps=rates,
                scenarios=("serve",),
            )
    return load_records([root], use_index=False)


def test_charts_drawn_by_workers_are_the_ones_drawn_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn = serving_charts(_many_runs(tmp_path))
    here = [svg_markup(chart) for chart in drawn]
    monkeypatch.setattr(charts, "PARALLEL_FROM_POINTS", 1)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    with SvgMarkups(drawn) as svgs:
        assert svgs._pool is not None or not charts.can_fork()
        assert svgs.result() == here


def test_many_rates_get_round_ticks_and_the_inf_separator(tmp_path: Path) -> None:
    chart = qps_chart(_many_runs(tmp_path), "tpot_median_ms")
    assert [label for _, label in chart.x_ticks] == ["inf"]  # too many rates to label each
    ax = draw(chart).axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[-1] == "inf" and len(labels) > 3
    assert all(re.fullmatch(r"\d+(\.\d+)?", label) for label in labels[:-1])
    assert [float(label) for label in labels[:-1]] == sorted(float(x) for x in labels[:-1])
    assert any(line.get_gid() == f"{chart.name}-inf-separator" for line in ax.get_lines())


def test_the_legend_and_labels_stay_inside_the_figure(tmp_path: Path) -> None:
    for chart in serving_charts(_many_runs(tmp_path)):
        fig = draw(chart)
        renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
        box = fig.bbox
        for artist in (fig.legends[0], fig.axes[0].xaxis, fig.axes[0].yaxis, fig._suptitle):
            extent = artist.get_window_extent(renderer)
            assert extent.x0 >= box.x0 - 1 and extent.y0 >= box.y0 - 1, (chart.name, artist)
            assert extent.x1 <= box.x1 + 1 and extent.y1 <= box.y1 + 1, (chart.name, artist)
        axes = fig.axes[0].get_window_extent(renderer)
        assert fig.legends[0].get_window_extent(renderer).y1 < axes.y0  # under the axes


_PARENT = os.getpid()
_REAL_SVG_MARKUP = charts.svg_markup


def _dies_in_a_worker(chart: charts.Chart) -> str:
    # at module level: the pool pickles it by name
    if os.getpid() != _PARENT:
        os._exit(137)  # as the OOM killer would end it
    return _REAL_SVG_MARKUP(chart)


def test_a_worker_killed_mid_chart_leaves_the_chart_to_this_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not charts.can_fork():
        pytest.skip("workers are forked only where fork is offered")
    drawn = serving_charts(_many_runs(tmp_path))
    here = [svg_markup(chart) for chart in drawn]
    monkeypatch.setattr(charts, "svg_markup", _dies_in_a_worker)
    monkeypatch.setattr(charts, "PARALLEL_FROM_POINTS", 1)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    with SvgMarkups(drawn) as svgs:
        assert svgs._pool is not None
        assert svgs.result() == here

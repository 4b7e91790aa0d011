"""Results of --slo and --find-max-qps: records, `show`, the report; old runs still read."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from results.analysis.slo import search_answers
from results.cli import main
from results.model.records import records_from_run
from results.model.rundir import load_run
from results.render.formats import render_csv, render_table
from results.render.report import render_report

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "runs"
RUN = "20261122-054648-tiny-llama-cpu-d56769"
SLO = [["ttft_p99_ms", 500.0]]
# the fixture's serving points, renamed as the search's probes: (probe, its raw file, met)
PROBES = [("search-1-qps2", "serve-qps2", True), ("search-2-qps8", "serve-qps8", False),
          ("search-3-qps4", "serve-qps4", True)]  # fmt: skip


def _slo(met: bool) -> dict[str, object]:
    check = {"metric": "ttft_p99_ms", "limit": 500.0, "value": 400.0 if met else 900.0}
    return {"met": met, "checks": [{**check, "met": met}]}


@pytest.fixture
def searched(tmp_path: Path) -> Path:
    """The fixture run as a --find-max-qps run left it: one planned probe, two added."""
    run_dir = tmp_path / "runs" / RUN
    shutil.copytree(FIXTURE / RUN, run_dir)
    run = json.loads((run_dir / "run.json").read_text())
    run["serve"].update(slo=SLO, find_max_qps=True, qps_tolerance=0.5, qps=[2.0, 8.0])
    run["points"] = [{"id": "search-1-qps2", "scenario": "serve", "qps": 2.0, "num_prompts": 20}]
    run["points"] += [p for p in run["points"] if p["scenario"] != "serve"]
    (run_dir / "run.json").write_text(json.dumps(run))
    status = json.loads((run_dir / "status.json").read_text())
    offline = [p for p in status["points"] if p["scenario"] != "serve"]
    status["points"] = []
    for probe, raw, met in PROBES:
        (run_dir / "raw" / f"{raw}.json").rename(run_dir / "raw" / f"{probe}.json")
        status["points"].append(
            {
                "id": probe,
                "scenario": "serve",
                "verdict": "ok",
                "reasons": [],
                "result": f"raw/{probe}.json",
                "qps": float(probe.rsplit("qps")[1]),
                "slo": _slo(met),
            }
        )
    status["points"] += offline
    status["search"] = {
        "spec": {"low": 2.0, "high": 8.0, "max_probes": 6},
        "probes": [{"id": p, "qps": float(p.rsplit("qps")[1]), "met": m} for p, _, m in PROBES],
        "result": "found", "max_qps": 4.0, "lowest_missed": 8.0, "probe_count": 3,
    }  # fmt: skip
    (run_dir / "status.json").write_text(json.dumps(status))
    return run_dir


def test_every_probe_is_a_record_with_its_slo(searched: Path) -> None:
    records = records_from_run(load_run(searched))
    serve = [r for r in records if r.scenario == "serve"]
    assert [(r.point_id, r.qps, r.slo_met) for r in serve] == [
        ("search-1-qps2", 2.0, True),
        ("search-2-qps8", 8.0, False),
        ("search-3-qps4", 4.0, True),
    ]
    assert all(r.verdict == "ok" and r.metrics for r in serve)  # a miss is still a measurement
    assert serve[1].slo["checks"][0]["value"] == 900.0
    assert serve[0].search["max_qps"] == 4.0
    assert serve[0].search["probes"] == [p for p, _, _ in PROBES]
    assert {r.slo_met for r in records if r.scenario != "serve"} == {None}
    [answer] = search_answers(records)
    assert answer.cell == "4"
    assert answer.describe().startswith(
        "max QPS under SLO (ttft_p99_ms <= 500 ms): 4 req/s, 8 misses (3 probes; "
    )
    assert render_csv(records).splitlines()[1].split(",").count("True") == 1


def test_show_says_the_answer_and_each_points_slo(searched: Path) -> None:
    result = CliRunner().invoke(main, ["show", str(searched)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "SLO" in lines[1].split()
    assert any(
        line.startswith("max QPS under SLO (ttft_p99_ms <= 500 ms): 4 req/s") for line in lines
    )
    assert sum("missed" in line.split() for line in lines) == 1


@pytest.mark.parametrize(
    ("result", "max_qps", "missed", "words"),
    [
        ("none", None, 2.0, "none: even the lowest rate (2 req/s) misses it"),
        ("above the range", 8.0, None, "above the range: the highest rate, 8 req/s, meets it"),
        (None, None, None, "the search did not finish"),
    ],
)
def test_the_other_answers(
    searched: Path, result: str | None, max_qps: float | None, missed: float | None, words: str
) -> None:
    status = json.loads((searched / "status.json").read_text())
    status["search"].update(result=result, max_qps=max_qps, lowest_missed=missed)
    (searched / "status.json").write_text(json.dumps(status))
    [answer] = search_answers(records_from_run(load_run(searched)))
    assert words in answer.describe()


def test_old_runs_read_as_before() -> None:
    records = records_from_run(load_run(FIXTURE / RUN))
    assert records and all(r.slo_met is None and not r.slo and not r.search for r in records)
    assert search_answers(records) == []
    assert "SLO" not in render_table(records)


def test_the_report_has_a_table_of_the_answers(searched: Path, tmp_path: Path) -> None:
    records = records_from_run(load_run(searched))
    page = render_report(records, charts=[])
    table = page.split('id="slo-search-table"', 1)[1].split("</table>", 1)[0]
    assert "ttft_p99_ms &lt;= 500 ms" in table
    assert '<td class="n">4</td><td class="n">8</td><td class="n">3</td><td>found</td>' in table
    old = records_from_run(load_run(FIXTURE / RUN))
    assert 'id="slo-search"' not in render_report(old, charts=[])

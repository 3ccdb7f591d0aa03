"""`ministudio jobs watch` draws one line per state: a progress bar with step, loss and ETA, then the outcome."""

from __future__ import annotations

import io
import json
from typing import Any

from functions.cli.jobs import render, watch


def test_running_job_shows_a_bar_with_step_loss_and_eta() -> None:
    job = {
        "id": "ftjob-a",
        "status": "running",
        "progress": {"step": 5, "total_steps": 20, "loss": 1.23456, "eval_loss": 1.5, "eta_seconds": 42.7},
    }
    assert render(job, width=20) == "ftjob-a running [#####---------------] 5/20  loss 1.2346  eval 1.5000  eta 42s"


def test_finished_jobs_show_their_outcome() -> None:
    assert render({"id": "j", "status": "succeeded", "fine_tuned_model": "ft:m:acme::j"}) == "j succeeded: ft:m:acme::j"
    failed = {"id": "j", "status": "failed", "error": {"message": "line 3 is not JSON"}}
    assert render(failed) == "j failed: line 3 is not JSON"
    assert render({"id": "j", "status": "queued"}) == "j queued"


class FakeApi:
    def __init__(self, states: list[dict[str, Any]]) -> None:
        self.states = states

    def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]


def test_watch_redraws_only_on_change_and_exits_by_outcome() -> None:
    out = io.StringIO()
    states = [
        {"id": "j", "status": "queued"},
        {"id": "j", "status": "queued"},
        {"id": "j", "status": "running", "progress": {"step": 1, "total_steps": 2}},
        {"id": "j", "status": "failed", "error": {"message": "boom"}},
    ]
    assert watch(FakeApi(states), "j", 0, out) == 1  # type: ignore[arg-type]
    assert out.getvalue().splitlines() == ["j queued", "j running [" + "#" * 15 + "-" * 15 + "] 1/2", "j failed: boom"]


def test_a_list_is_the_whole_page_for_scripts_and_a_table_of_its_data_for_people() -> None:
    from functions.cli.api import listing

    page = {"object": "list", "data": [{"id": "dep-1", "status": "ready"}, {"id": "dep-22", "status": "idle"}]}
    scripts, people = io.StringIO(), io.StringIO()
    assert listing(page, ["ID", "STATUS"], lambda d: [d["id"], d["status"]], True, scripts) is False
    assert json.loads(scripts.getvalue()) == page
    assert listing(page, ["ID", "STATUS"], lambda d: [d["id"], d["status"]], False, people) is True
    assert people.getvalue() == "ID      STATUS\ndep-1   ready\ndep-22  idle\n"

"""The web page of `ftcli serve`, in headless Chromium (Debian's, driven by Playwright): a job trained through the
API reaches `succeeded` on its page while the loss chart gets points; the Files view shows the check summary; the
playground streams an answer. Screenshots of the job page and the playground are saved as test artifacts
(`test-artifacts/`, or $FTCLI_TEST_ARTIFACTS)."""

from __future__ import annotations

import json
import random
import secrets
import time
from typing import Any

import httpx2
import pytest

from ftcli.service.client import make_client
from ftcli.service.settings import Settings
from tests.e2e.conftest import ARTIFACTS, Server
from tests.local.zorbia import QA, SYSTEM

pytestmark = [pytest.mark.e2e, pytest.mark.local, pytest.mark.slow]


def _lines(pairs: list[tuple[str, str]]) -> bytes:
    return "".join(
        json.dumps({"messages": [SYSTEM, {"role": "user", "content": q}, {"role": "assistant", "content": a}]}) + "\n"
        for q, a in pairs
    ).encode()


def test_watch_a_job_and_chat_in_the_browser(server: Server, browser_page: Any) -> None:
    page = browser_page
    root = server.url.removesuffix("/v1")
    with make_client(Settings(kind="compatible", base_url=server.url)) as sdk:
        train = sdk.files.create(file=("zorbia.jsonl", _lines(QA)), purpose="fine-tune")
        valid = sdk.files.create(file=("zorbia-valid.jsonl", _lines(QA[:3])), purpose="fine-tune")
        job = sdk.fine_tuning.jobs.create(
            model="ftcli/tiny",
            training_file=train.id,
            validation_file=valid.id,
            suffix="web",
            hyperparameters={"n_epochs": 15, "batch_size": 2},  # enough to answer in words
        )

    page.goto(f"{root}/#/jobs&token={server.key}")  # as `ftcli status --web` prints it: the key in the fragment
    page.wait_for_function("() => location.hash === '#/jobs'")  # kept for the tab, taken out of the address bar
    page.locator(f"#jobs a[href='#/jobs/{job.id}']").click()
    page.wait_for_selector(f"h1:has-text('{job.id}')")
    page.wait_for_selector("#job-status[data-status=succeeded]", timeout=240_000)  # the page follows the job live
    page.wait_for_selector("#loss-chart .series-train_loss")
    assert int(page.get_attribute("#loss-chart .series-train_loss", "data-points") or 0) == 75
    assert int(page.get_attribute("#loss-chart .series-valid_loss", "data-points") or 0) == 15
    assert "New fine-tuned model created" in page.inner_text("#events")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "job-page.png"), full_page=True)

    page.goto(f"{root}/#/files")
    page.wait_for_selector(f"#files td[data-file='{train.id}'] a", timeout=60_000)
    assert "10 examples, 0 errors" in page.inner_text(f"#files td[data-file='{train.id}']")

    page.goto(f"{root}/#/playground")
    model = f"ft:ftcli/tiny:local:web:{job.id}"
    page.select_option("#model", model)
    page.fill("#system", SYSTEM["content"])
    page.fill("#max-tokens", "24")
    page.fill("#prompt", QA[0][0])
    page.press("#prompt", "Enter")  # Enter sends
    page.wait_for_function(
        "() => { const m = document.querySelector('#conversation .message.assistant');"
        " return m && m.textContent.trim().length > 0 && !document.querySelector('#send').disabled; }",
        timeout=60_000,
    )
    assert page.inner_text("#conversation .message.user") == QA[0][0]
    assert page.locator("#conversation .message.assistant.error").count() == 0
    page.screenshot(path=str(ARTIFACTS / "playground.png"), full_page=True)

    # Compare mode: the same prompt to two models, side by side
    page.check("#compare")
    page.select_option("#compare-model", "ftcli/tiny")
    page.fill("#prompt", QA[1][0])
    page.click("#send")
    page.wait_for_function(
        "() => document.querySelectorAll('#conversation-compare .message.assistant').length === 1"
        " && document.querySelectorAll('#conversation .message.assistant').length === 2"
        " && !document.querySelector('#send').disabled",
        timeout=60_000,
    )
    assert page.inner_text("#conversation-compare .message.user") == QA[1][0]
    page.screenshot(path=str(ARTIFACTS / "playground-compare.png"), full_page=True)


def _job_with_a_long_history(server: Server) -> str:
    """A finished job of 300 steps, its events written to the server's store as its worker writes them (each step a
    metrics line, validation every 100 steps, a checkpoint line between the steps, many ordinary lines around)."""
    from ftcli.server.store import Store, new_id

    store = Store(server.data_dir, clean=False)
    job_id = new_id("ftjob")
    created = int(time.time())
    store.save_job(
        {
            "id": job_id,
            "object": "fine_tuning.job",
            "created_at": created,
            "model": "ftcli/tiny",
            "training_file": "file-history",
            "status": "succeeded",
            "fine_tuned_model": f"ft:ftcli/tiny:local:history:{job_id}",
            "finished_at": created,
            "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 3}}},
            "trained_tokens": 123456,
        }
    )
    store.add_event(job_id, f"Created fine-tuning job: {job_id}")
    store.add_event(job_id, "Fine-tuning job started")
    for index in range(40):
        store.add_event(job_id, f"Tokenized shard {index}")
    noise = random.Random(7)
    for step in range(1, 301):
        loss = 0.2 + 2.3 * 0.99**step + noise.uniform(-0.15, 0.15)
        data: dict[str, Any] = {"step": step, "train_loss": round(loss, 6), "total_steps": 300}
        if step % 100 == 0:
            data["valid_loss"] = round(loss + 0.2, 6)
        store.add_event(job_id, f"Step {step}/300: training loss={loss:.4f}", type_="metrics", data=data)
        if step == 150:
            store.add_event(job_id, "Checkpoint created at step 150")
    for index in range(30):
        store.add_event(job_id, f"Evaluated held-out prompt {index}")
    store.add_event(job_id, f"New fine-tuned model created: ft:ftcli/tiny:local:history:{job_id}")
    store.add_event(job_id, "The job has successfully completed")
    return job_id


def test_the_job_page_has_a_chart_with_axes_and_folds_the_step_lines(server: Server, browser_page: Any) -> None:
    page = browser_page
    job_id = _job_with_a_long_history(server)
    page.set_viewport_size({"width": 700, "height": 900})  # narrow: the jobs table must squeeze its columns
    page.goto(f"{server.url.removesuffix('/v1')}/#/jobs&token={server.key}")
    status = page.locator(f"#jobs a[href='#/jobs/{job_id}']").locator("xpath=../../td[2]/span")
    status.wait_for()
    assert status.evaluate("node => node.getClientRects().length") == 1  # "succeeded" on one line
    assert status.evaluate("node => node.getBoundingClientRect().height") < 2 * float(
        status.evaluate("node => parseFloat(getComputedStyle(node).lineHeight) || 20")
    )

    page.set_viewport_size({"width": 1200, "height": 900})
    page.goto(f"{server.url.removesuffix('/v1')}/#/jobs/{job_id}")
    page.wait_for_selector("#loss-chart .series-train_loss_smoothed")
    chart = page.locator("#loss-chart")
    assert chart.locator(".x-label").text_content() == "step" and chart.locator(".y-label").text_content() == "loss"
    x_ticks = [float(t) for t in chart.locator(".x-tick").all_text_contents()]
    y_ticks = [float(t) for t in chart.locator(".y-tick").all_text_contents()]
    assert len(x_ticks) >= 4 and x_ticks == sorted(x_ticks) and x_ticks[0] <= 1 and x_ticks[-1] >= 300
    assert len(y_ticks) >= 3 and y_ticks == sorted(y_ticks)
    assert chart.locator(".series-train_loss").get_attribute("data-points") == "300"
    assert chart.locator(".series-train_loss_smoothed").get_attribute("data-points") == "300"
    assert chart.locator(".series-valid_loss").get_attribute("data-points") == "3"

    # the 300 step lines are two folded lines (the checkpoint line splits them); with the 74 other lines, two pages
    folds = page.locator("#events .step-fold")
    assert folds.count() == 2
    assert [folds.nth(i).locator("summary").text_content().split(" · ")[0] for i in range(2)] == [
        "steps 151–300",
        "steps 1–150",
    ]
    events = page.inner_text("#events")
    assert "Step 37/300" not in events and "The job has successfully completed" in events
    assert page.locator("#events > li").count() == 50 and "page 1 of 2" in page.inner_text("#events-page")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "job-page-history.png"), full_page=True)
    page.click("#events-older")
    page.wait_for_selector("#events-page:has-text('page 2 of 2')")
    assert f"Created fine-tuning job: {job_id}" in page.inner_text("#events")
    page.click("#events-newer")
    page.locator("#events .step-fold summary").nth(1).click()  # opens: its 150 lines
    page.wait_for_selector("#events .step-fold[open] li:has-text('Step 37/300')")
    assert page.locator("#events .step-fold[open] li").count() == 150


def test_a_malformed_eval_run_does_not_break_the_evals_view_and_can_be_deleted(
    server: Server, browser_page: Any
) -> None:
    page = browser_page
    good = {
        "report": {
            "data": "held-out.jsonl",
            "cases": 1,
            "models": [{"model": "ftcli/tiny", "graders": {"chrf": {"mean": 0.5, "ci95": [0.4, 0.6]}}}],
            "failures": [],
        },
        "cases": [{"line": 1, "model": "ftcli/tiny", "reference": "four", "answer": "4", "chrf": 0.5}],
    }
    with httpx2.Client(base_url=server.url.removesuffix("/v1"), headers=server.auth, timeout=30) as http:
        posted = http.post("/ftcli/evals", json=good)
        assert posted.status_code == 200, posted.text
        good_id = posted.json()["id"]
    # Runs written by hand or by another version: the list's fields hold, the models' and the rows' don't
    folder = server.data_dir / "evals"
    broken_id, unreadable_id = f"eval-{secrets.token_hex(8)}", f"eval-{secrets.token_hex(8)}"
    (folder / f"{broken_id}.json").write_text(
        json.dumps(
            {
                "id": broken_id,
                "created_at": int(time.time()),
                "data": "<img src=x id=injected>",
                "cases": 2,
                "models": [{"model": "broken", "graders": None}, {"graders": {"chrf": {"mean": "high"}}}],
                "failures": [],
                "rows": [{"line": 1, "reference": {"nested": True}}, "not a row"],
            }
        )
    )
    (folder / f"{unreadable_id}.json").write_text('{"id": "' + unreadable_id + '", "cases": "many"}')
    odd_id = f"eval-{secrets.token_hex(8)}"  # served whole by the server, odd inside
    (folder / f"{odd_id}.json").write_text(
        json.dumps(
            {
                "id": odd_id,
                "created_at": int(time.time()),
                "data": "odd.jsonl",
                "cases": 1,
                "models": [{"model": "ftcli/tiny", "graders": {"chrf": {"mean": 0.25, "ci95": "wide"}}}, {}],
                "failures": [],
                "rows": [{"line": 1, "model": "ftcli/tiny", "reference": {"nested": True}, "chrf": "x"}],
            }
        )
    )

    page.goto(f"{server.url.removesuffix('/v1')}/#/evals&token={server.key}")
    page.wait_for_selector(f"#evals tr[data-eval='{good_id}']")
    broken = page.locator(f"#evals tr[data-eval='{broken_id}']")
    assert "damaged" in (broken.get_attribute("class") or "") and "a model has no name" in broken.inner_text()
    assert "broken —" in broken.inner_text()  # what is valid is shown
    assert page.locator("#injected").count() == 0 and "<img src=x id=injected>" in broken.inner_text()
    assert "0.500" in page.inner_text(f"#evals tr[data-eval='{good_id}']")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "evals-damaged.png"), full_page=True)

    page.goto(f"{server.url.removesuffix('/v1')}/#/evals/{good_id}")
    page.wait_for_selector("#eval-cases td:has-text('four')")
    page.goto(f"{server.url.removesuffix('/v1')}/#/evals/{odd_id}")
    page.wait_for_selector("#eval-problems")  # what is valid shows, the rest is named
    assert "0.250" in page.inner_text("#eval-summary") and '{"nested":true}' in page.inner_text("#eval-cases")
    page.screenshot(path=str(ARTIFACTS / "eval-odd.png"), full_page=True)
    page.goto(f"{server.url.removesuffix('/v1')}/#/evals/{broken_id}")  # the server can't serve it whole
    page.wait_for_selector("#eval-error")
    page.click(f"button.delete[data-eval='{broken_id}']")  # confirmed (the fixture accepts dialogs)
    page.wait_for_function("() => location.hash === '#/evals'")
    page.wait_for_selector(f"#evals tr[data-eval='{good_id}']")
    assert page.locator(f"#evals tr[data-eval='{broken_id}']").count() == 0
    assert not (folder / f"{broken_id}.json").exists() and (folder / f"{good_id}.json").exists()

"""The web page of `ftcli serve`, in headless Chromium (Debian's, driven by Playwright): a job trained through the
API reaches `succeeded` on its page while the loss chart gets points; the Files view shows the check summary; the
playground streams an answer. Screenshots of the job page and the playground are saved as test artifacts
(`test-artifacts/`, or $FTCLI_TEST_ARTIFACTS)."""

from __future__ import annotations

import json
from typing import Any

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

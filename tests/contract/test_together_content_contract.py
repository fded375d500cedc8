"""Together's vision option as ftcli sends it (`multimodal_params.train_vision`, set for a job whose data has images)
matches Together's own spec, served by Steady (../shared/together-spec): the create request is one it accepts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ftcli.service.backends.together import TogetherBackend
from ftcli.service.jobs import JobRequest
from tests.contract.conftest import Exchanges, recording

pytestmark = pytest.mark.contract
KEY = "tgp_v1_Contract5151secretKey"
MODEL = "Qwen/Qwen3-VL-8B-Instruct"


@pytest.fixture
def together(together_url: str, exchanges: Exchanges) -> Iterator[TogetherBackend]:
    from ftcli.service.client import make_client
    from ftcli.service.settings import Settings

    http = recording(exchanges)
    settings = Settings(kind="together", base_url=together_url, api_key=KEY)
    yield TogetherBackend(make_client(settings, max_retries=0, http_client=http))
    http.close()
    exchanges.assert_all_valid()


@pytest.mark.parametrize("train_vision", [True, False])
def test_the_vision_option_is_a_create_request_togethers_spec_accepts(
    together: TogetherBackend, exchanges: Exchanges, train_vision: bool
) -> None:
    request = JobRequest(model=MODEL, training_file="file-1", extra_hyperparameters={"train_vision": train_vision})
    together.create_job(request)
    assert exchanges.paths() == ["POST /fine-tunes", "GET /fine-tunes/{id}"]  # each valid, or the fixture fails

"""api/validation.py: task ids and listing cursors from the URL, checked before they reach Redis."""

from __future__ import annotations

import pytest
from flask import Flask

from api.errors import register_error_handlers
from api.validation import check_cursor, check_task_id, task_id_in_url
from pipeline.errors import InvalidOption, JobNotFound
from pipeline.jobs import new_task_id


def test_a_task_id_the_service_hands_out_is_returned_unchanged() -> None:
    task_id = new_task_id()
    assert check_task_id(task_id) == task_id


@pytest.mark.parametrize("bad", ["", "x:lease", "A" * 32, "0" * 31, "0" * 33, "0" * 32 + "\n", "g" * 32])
def test_an_id_that_could_never_be_one_is_job_not_found(bad: str) -> None:
    with pytest.raises(JobNotFound):
        check_task_id(bad)


def test_a_very_long_bad_id_is_cut_short_in_the_message() -> None:
    with pytest.raises(JobNotFound) as caught:
        check_task_id("z" * 500)
    assert caught.value.message == f"No job with id {'z' * 64}."


@pytest.mark.parametrize("cursor", [None, "0", "1700000000.123456", repr(1_700_000_000.5), "123456789012"])
def test_a_cursor_next_cursor_could_have_written_is_returned_unchanged(cursor: str | None) -> None:
    assert check_cursor(cursor) == cursor


@pytest.mark.parametrize("cursor", ["", "-1", "1_000", "１２３", "nan", "inf", "1e5", "1.", ".5", "1234567890123",
                                    "1." + "0" * 21, " 1"])
def test_any_other_cursor_is_an_invalid_option_naming_the_field(cursor: str) -> None:
    with pytest.raises(InvalidOption) as caught:
        check_cursor(cursor)
    assert caught.value.field == "cursor"


def test_the_hook_answers_404_for_a_malformed_id_and_lets_a_good_one_through() -> None:
    app = Flask(__name__)
    app.before_request(task_id_in_url)
    register_error_handlers(app)
    app.add_url_rule("/jobs/<task_id>", "job", lambda task_id: {"id": task_id})
    # A route without a task id is none of the hook's business.
    app.add_url_rule("/other/<name>", "other", lambda name: {"name": name})
    client = app.test_client()
    good = new_task_id()
    assert client.get(f"/jobs/{good}").json == {"id": good}
    refused = client.get("/jobs/x:lease")
    assert refused.status_code == 404
    assert refused.json == {"error": {"code": "not_found", "message": "No job with id x:lease."}}
    assert client.get("/other/x:lease").json == {"name": "x:lease"}

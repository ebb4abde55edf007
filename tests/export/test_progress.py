"""Progress lines: numbered, timed, silent when quiet, and no "done" for a step that failed."""

import io

import pytest

from export.progress import Progress, timed


def test_steps_are_numbered_and_say_when_they_are_done():
    stream = io.StringIO()
    progress = Progress(2, stream=stream)
    with progress.step("read"):
        progress.say("a table")
    with progress.step("write"):
        pass
    lines = stream.getvalue().splitlines()
    assert lines[:3] == ["[1/2] read …", "a table", lines[2]]
    assert lines[2].startswith("[1/2] read: done in ") and lines[2].endswith("s")
    assert lines[3] == "[2/2] write …" and lines[4].startswith("[2/2] write: done in ")


def test_a_failed_step_is_not_reported_done():
    stream = io.StringIO()
    progress = Progress(1, stream=stream)
    with pytest.raises(RuntimeError), progress.step("train"):
        raise RuntimeError("boom")
    assert stream.getvalue() == "[1/1] train …\n"


def test_quiet_progress_prints_nothing(capsys):
    progress = Progress(1, quiet=True)
    with progress.step("train"):
        progress.say("hidden")
    assert capsys.readouterr() == ("", "")


def test_a_part_of_a_step_says_how_long_it_took_under_the_step():
    stream = io.StringIO()
    progress = Progress(1, stream=stream)
    with progress.step("train"), timed(progress.say, "segments"):
        pass
    lines = stream.getvalue().splitlines()
    assert lines[1].startswith("  segments: ") and lines[1].endswith("s")
    assert lines[2].startswith("[1/1] train: done in ")

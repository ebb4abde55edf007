"""The read stage: one validated event log from the input files, and the errors that say why
there is nothing to learn from."""

import pytest

from export.config import BuildConfig
from export.errors import CannotTrainError, InputError
from export.stages.read import Sources, read_inputs, read_intent_truth


def _read(*paths, config=BuildConfig()):
    said = []
    return read_inputs(Sources(tuple(paths)), config, said.append), said


def test_events_from_several_files_become_one_log_in_time_order(tmp_path):
    late, early = tmp_path / "late.csv", tmp_path / "early.csv"
    late.write_text("ts,user_id,item_id,type\n2026-02-01T10:00:00Z,u1,b,view\n")
    early.write_text("ts,user_id,item_id,type\n2026-01-01T10:00:00Z,u2,a,purchase\n")
    data, said = _read(late, early)
    assert data.events["item_id"].tolist() == ["a", "b"]
    assert [f.name for f in data.lineage.files] == ["late.csv", "early.csv"]
    assert data.lineage.rows_kept == 2 and data.lineage.users == 2
    assert sorted(data.universe.ids) == ["a", "b"]
    assert "data quality" in said[0]
    part = data.with_events(data.events.iloc[:1])
    assert len(part.events) == 1 and part.universe is data.universe


def test_files_without_rows_say_there_is_nothing_to_learn_from(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("ts,user_id,item_id,type\n")
    with pytest.raises(CannotTrainError, match="the event files hold no rows.*--events"):
        _read(path)


def test_a_log_whose_rows_are_all_dropped_names_the_reason_and_the_mapping(tmp_path):
    """Allowed through validation (max_drop_share 1.0), no row left is still no model."""
    import msgspec

    path = tmp_path / "events.csv"
    path.write_text("ts,user_id,item_id,type\nyesterday,u1,a,view\nsoon,u2,b,view\n")
    config = msgspec.convert({"events": {"max_drop_share": 1.0}}, BuildConfig)
    with pytest.raises(CannotTrainError) as caught:
        _read(path, config=config)
    message = str(caught.value)
    assert "none of the 2 event rows was kept" in message and "'bad_timestamp'" in message
    assert "--map" in message and "events.max_drop_share" in message


def test_a_truth_file_must_hold_probabilities_per_session(tmp_path):
    path = tmp_path / "truth.csv"
    path.write_text("session_id,true_intent\ns1,0.2\ns2,1.5\n")
    with pytest.raises(InputError, match="true_intent must be a probability between 0 and 1"):
        read_intent_truth(path)
    path.write_text("session_id,p\ns1,0.2\n")
    with pytest.raises(InputError, match="lacks \\['true_intent'\\]"):
        read_intent_truth(path)
    path.write_text("session_id,true_intent\ns1,0.25\n")
    assert read_intent_truth(path).to_dict() == {"s1": 0.25}

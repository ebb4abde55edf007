import gzip

import pandas as pd
import pytest

from export.io import InputError, read_table


def test_csv_keeps_ids_as_text_and_sniffs_the_delimiter(tmp_path):
    path = tmp_path / "e.csv.gz"
    with gzip.open(path, "wt") as f:
        f.write("item_id;user_id\n007;0042\n")
    frame = read_table(path)
    assert frame.iloc[0].tolist() == ["007", "0042"]


def test_jsonl_and_parquet(tmp_path):
    (tmp_path / "e.jsonl").write_text('{"item_id": "a", "ts": 1}\n{"item_id": "b", "ts": 2}\n')
    assert list(read_table(tmp_path / "e.jsonl")["item_id"]) == ["a", "b"]
    pd.DataFrame({"item_id": ["x"]}).to_parquet(tmp_path / "e.parquet")
    assert list(read_table(tmp_path / "e.parquet")["item_id"]) == ["x"]


def test_unknown_suffix_and_missing_file_are_clear(tmp_path):
    (tmp_path / "events.xlsx").write_bytes(b"PK")
    with pytest.raises(InputError, match="use .csv, .jsonl or .parquet"):
        read_table(tmp_path / "events.xlsx")
    with pytest.raises(InputError, match="no such file"):
        read_table(tmp_path / "nope.csv")

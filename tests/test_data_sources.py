"""Every source behind `load_rows`: local files, Hugging Face `datasets` (saved folder, data-file folder), TFDS."""

from __future__ import annotations

import csv
import json

import pytest

from ftjax.data.sources import load_rows, parse_columns, strip_trace

ROWS = [{"mr": "name[Aromi], area[riverside]", "ref": "Aromi is by the river."},
        {"mr": "name[Zizzi]", "ref": "Zizzi, \"quoted\",\nover two lines."}]
OURS = [{"prompt": r["mr"], "completion": r["ref"]} for r in ROWS]
MAP = {"prompt": "mr", "completion": "ref"}


def write(path, rows):
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n\n" for r in rows))  # blank lines are skipped
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows))
    elif path.suffix == ".csv":
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("suffix, lines", [(".jsonl", [1, 3]), (".json", [1, 2]), (".csv", [2, 4]),
                                           (".parquet", [1, 2])])
def test_local_files_with_column_mapping(tmp_path, suffix, lines):
    path = write(tmp_path / f"e2e{suffix}", ROWS)
    rows = load_rows(str(path), MAP)
    assert [strip_trace(r) for r in rows] == OURS
    assert [r["_line"] for r in rows] == lines  # CSV: the physical line a (multi-line) record ends on
    assert {r["_source"] for r in rows} == {str(path)}


def test_unmapped_columns_pass_through_and_missing_ones_name_the_line(tmp_path):
    good = write(tmp_path / "good.jsonl", [{"text": "a", "intent": "x", "id": 7}])
    assert strip_trace(load_rows(str(good), {"label": "intent"})[0]) == {"text": "a", "id": 7, "label": "x"}
    path = write(tmp_path / "d.jsonl", [{"text": "a", "intent": "x"}, {"text": "b"}])
    with pytest.raises(ValueError, match=r"d\.jsonl:3: no column 'intent' \(mapped to 'label'\); columns are: text"):
        load_rows(str(path), {"label": "intent"})


def test_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_rows(str(tmp_path / "missing.jsonl"))
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: not valid JSON"):
        load_rows(str(tmp_path / "bad.jsonl"))
    (tmp_path / "wide.csv").write_text("a,b\n1,2\n1,2,3\n")
    with pytest.raises(ValueError, match=r"wide\.csv:3: more fields than the header"):
        load_rows(str(tmp_path / "wide.csv"))
    (tmp_path / "short.csv").write_text("a,b\n1,2\n1,\n3\n")  # "1," is an empty cell, "3" a short row
    with pytest.raises(ValueError, match=r"short\.csv:4: 1 of the header's 2 fields"):
        load_rows(str(tmp_path / "short.csv"))
    (tmp_path / "quote.csv").write_text('a,b\n"1\n2",3\n"4,5\n6,7\n')  # a quoted cell may span lines
    with pytest.raises(ValueError, match=r"quote\.csv:4: not valid CSV \(unexpected end of data\)"):
        load_rows(str(tmp_path / "quote.csv"))
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ValueError, match="unknown file type '.txt'"):
        load_rows(str(tmp_path / "x.txt"))
    with pytest.raises(ValueError, match="ours=theirs"):
        parse_columns("prompt")
    assert parse_columns("prompt=mr, completion=ref") == MAP


def test_hf_saved_folder_split_and_class_labels(tmp_path):
    import datasets

    features = datasets.Features({"text": datasets.Value("string"),
                                  "intent": datasets.ClassLabel(names=["card_arrival", "top_up"])})
    train = datasets.Dataset.from_dict({"text": ["where is my card", "top me up"], "intent": [0, 1]}, features)
    test = datasets.Dataset.from_dict({"text": ["card?"], "intent": [0]}, features)
    datasets.DatasetDict(train=train, test=test).save_to_disk(str(tmp_path / "dd"))
    train.save_to_disk(str(tmp_path / "one"))
    rows = load_rows(f"hf:{tmp_path / 'dd'}", {"label": "intent"})
    assert [strip_trace(r) for r in rows] == [{"text": "where is my card", "label": "card_arrival"},
                                              {"text": "top me up", "label": "top_up"}]
    assert rows[1]["_source"] == f"hf:{tmp_path / 'dd'}" and rows[1]["_line"] == 2
    assert [r["label"] for r in load_rows(f"hf:{tmp_path / 'dd'}@test", {"label": "intent"})] == ["card_arrival"]
    assert len(load_rows(f"hf:{tmp_path / 'one'}")) == 2
    with pytest.raises(ValueError, match="no split 'validation'; the folder has: train, test"):
        load_rows(f"hf:{tmp_path / 'dd'}@validation")


def test_hf_data_file_folder(tmp_path):
    folder = tmp_path / "e2e"
    folder.mkdir()
    write(folder / "train.jsonl", ROWS)
    assert [strip_trace(r) for r in load_rows(f"hf:{folder}@train", MAP)] == OURS


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    """A tiny TFDS builder, prepared locally as array_record (no download, no TensorFlow needed)."""
    import tensorflow_datasets as tfds

    class FtjaxTinyIntents(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "text": tfds.features.Text(), "label": tfds.features.ClassLabel(names=["neg", "pos"])}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(4), "test": self._generate_examples(2)}

        def _generate_examples(self, n):
            for i in range(n):
                yield i, {"text": f"text {i}", "label": i % 2}

    data_dir = tmp_path_factory.mktemp("tfds")
    FtjaxTinyIntents(data_dir=str(data_dir), file_format="array_record").download_and_prepare()
    return data_dir


def test_tfds_by_name(tfds_dir, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tfds_dir))
    rows = load_rows("tfds:ftjax_tiny_intents@train")
    assert sorted((r["text"], r["label"]) for r in rows) == [("text 0", "neg"), ("text 1", "pos"),
                                                             ("text 2", "neg"), ("text 3", "pos")]
    assert rows[0]["_source"] == "tfds:ftjax_tiny_intents@train"
    assert len(load_rows("tfds:ftjax_tiny_intents@test")) == 2
    with pytest.raises(ValueError, match="expected tfds:NAME@split"):
        load_rows("tfds:ftjax_tiny_intents")

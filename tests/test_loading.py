"""Readers and the load audit, on small files written byte for byte by each test."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from deft_core.errors import DataError
from deft_core.loading import DataOptions, load_pairs, parse_columns


def hh(prompt: str, response: str) -> str:
    return f"\n\nHuman: {prompt}\n\nAssistant: {response}"


def jsonl_bytes(records: list, line_end: str = "\n") -> bytes:
    return "".join(json.dumps(r) + line_end for r in records).encode()


HH_RECORDS = [
    {"chosen": hh("Hi?", "Hello, how can I help?"), "rejected": hh("Hi?", "Go away.")},
    {
        "chosen": hh("Tea or coffee?", "Either works.") + "\n\nHuman: Why?\n\nAssistant: Both have caffeine.",
        "rejected": hh("Tea or coffee?", "Either works.") + "\n\nHuman: Why?\n\nAssistant: No idea.",
    },
]


def test_hh_jsonl_prompt_is_shared_prefix(tmp_path):
    path = tmp_path / "hh.jsonl"
    path.write_bytes(jsonl_bytes(HH_RECORDS))
    data = load_pairs(DataOptions(str(path)))
    first, second = data.pairs
    assert data.audit.format == "hh"
    assert first.prompt == [{"role": "user", "content": "Hi?"}]
    assert first.chosen == "Hello, how can I help?"
    assert first.rejected == "Go away."
    assert [m["role"] for m in second.prompt] == ["user", "assistant", "user"]
    assert second.chosen == "Both have caffeine."
    assert (first.line, second.line) == (1, 2)


def test_hh_jsonl_gz_reads_like_plain(tmp_path):
    path = tmp_path / "hh.jsonl.gz"
    path.write_bytes(gzip.compress(jsonl_bytes(HH_RECORDS)))
    data = load_pairs(DataOptions(str(path)))
    assert len(data.pairs) == 2
    assert data.pairs[1].rejected == "No idea."


def test_bom_and_crlf_are_accepted(tmp_path):
    path = tmp_path / "windows.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + jsonl_bytes(HH_RECORDS, line_end="\r\n"))
    data = load_pairs(DataOptions(str(path)))
    assert len(data.pairs) == 2
    assert data.audit.rows_skipped == 0
    assert data.pairs[0].chosen == "Hello, how can I help?"


def test_malformed_lines_are_reported_with_line_numbers(tmp_path):
    path = tmp_path / "broken.jsonl"
    lines = [
        json.dumps(HH_RECORDS[0]),
        "{not json",
        "",
        "[1, 2]",
        json.dumps({"chosen": "x"}),
        json.dumps(HH_RECORDS[1]),
    ]
    path.write_text("\n".join(lines) + "\n")
    data = load_pairs(DataOptions(str(path)))
    assert len(data.pairs) == 2
    assert data.audit.counts["unparseable"] == 2
    assert data.audit.counts["missing_field"] == 1
    assert [e.line for e in data.audit.examples["unparseable"]] == [2, 4]
    assert data.audit.examples["missing_field"][0].line == 5
    assert data.audit.rows_read == 5  # the blank line is not a row


def test_strict_mode_fails_naming_file_and_line(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(HH_RECORDS[0]) + "\n{not json\n")
    with pytest.raises(DataError, match=r"broken\.jsonl:2: invalid JSON"):
        load_pairs(DataOptions(str(path), on_error="raise"))


def test_mismatched_prompt_is_skipped_and_reported(tmp_path):
    path = tmp_path / "mismatch.jsonl"
    bad = {"chosen": hh("Question A?", "Answer."), "rejected": hh("Question B?", "Answer.")}
    path.write_bytes(jsonl_bytes([HH_RECORDS[0], bad]))
    data = load_pairs(DataOptions(str(path)))
    assert len(data.pairs) == 1
    assert data.audit.counts["prompt_mismatch"] == 1
    assert data.audit.examples["prompt_mismatch"][0].line == 2


def test_empty_identical_and_duplicate_rows(tmp_path):
    path = tmp_path / "flags.jsonl"
    empty = {"chosen": hh("Q?", ""), "rejected": hh("Q?", "Something.")}
    same = {"chosen": hh("Q?", "Same."), "rejected": hh("Q?", "Same.")}
    path.write_bytes(jsonl_bytes([HH_RECORDS[0], empty, same, HH_RECORDS[0]]))
    data = load_pairs(DataOptions(str(path)))
    assert data.audit.counts["empty_response"] == 1
    assert data.audit.counts["identical_responses"] == 1
    assert data.audit.counts["duplicate"] == 1
    assert len(data.pairs) == 3
    assert data.pairs[2].flags == ["duplicate"]
    assert data.pairs[2].id == data.pairs[0].id + "-2"
    assert "identical_responses" in data.pairs[1].flags


def test_explicit_prompt_chosen_rejected_json_array(tmp_path):
    path = tmp_path / "explicit.json"
    records = [{"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Lyon."}]
    path.write_text(json.dumps(records))
    data = load_pairs(DataOptions(str(path)))
    assert data.audit.format == "explicit"
    assert data.audit.location_unit == "record"
    assert data.pairs[0].prompt == [{"role": "user", "content": "Capital of France?"}]
    assert data.pairs[0].rejected == "Lyon."


def test_chat_implicit_prompt_role_content(tmp_path):
    path = tmp_path / "chat.jsonl"
    prompt = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]
    record = {
        "chosen": [*prompt, {"role": "assistant", "content": "4"}],
        "rejected": [*prompt, {"role": "assistant", "content": "5"}],
    }
    path.write_bytes(jsonl_bytes([record]))
    data = load_pairs(DataOptions(str(path)))
    assert data.audit.format == "chat"
    assert data.pairs[0].prompt == prompt
    assert (data.pairs[0].chosen, data.pairs[0].rejected) == ("4", "5")


def test_sharegpt_conversations_from_value(tmp_path):
    path = tmp_path / "sharegpt.json"
    record = {
        "conversations": [{"from": "system", "value": "Sys."}, {"from": "human", "value": "Hello"}],
        "chosen": {"from": "gpt", "value": "Hi there!"},
        "rejected": {"from": "gpt", "value": "What?"},
    }
    path.write_text(json.dumps([record]))
    data = load_pairs(DataOptions(str(path)))
    assert data.pairs[0].prompt == [
        {"role": "system", "content": "Sys."},
        {"role": "user", "content": "Hello"},
    ]
    assert data.pairs[0].chosen == "Hi there!"


def test_unknown_role_is_invalid_field(tmp_path):
    path = tmp_path / "roles.json"
    record = {
        "conversations": [{"from": "narrator", "value": "Hello"}],
        "chosen": {"from": "gpt", "value": "a"},
        "rejected": {"from": "gpt", "value": "b"},
    }
    path.write_text(json.dumps([record, record | {"conversations": [{"from": "human", "value": "ok"}]}]))
    data = load_pairs(DataOptions(str(path)))
    assert data.audit.counts["invalid_field"] == 1
    assert "narrator" in data.audit.examples["invalid_field"][0].message


def test_column_mapping_on_csv(tmp_path):
    path = tmp_path / "custom.csv"
    path.write_text('question,good,bad\n"Say ""hi""",hi,"no,\nnever"\nSecond?,yes,no\n', encoding="utf-8")
    columns = parse_columns("prompt=question,chosen=good,rejected=bad")
    data = load_pairs(DataOptions(str(path), columns=columns))
    assert len(data.pairs) == 2
    assert data.pairs[0].prompt[0]["content"] == 'Say "hi"'
    assert data.pairs[0].rejected == "no,\nnever"
    assert data.pairs[1].line == 4  # the first record spans lines 2 and 3


def test_missing_mapped_column_is_reported(tmp_path):
    path = tmp_path / "custom.csv"
    path.write_text("question,good,bad\nQ,a,b\n")
    with pytest.raises(DataError, match="column 'answer_b'"):
        load_pairs(DataOptions(str(path), columns={"rejected": "answer_b"}, on_error="raise"))


def test_parquet_reader(tmp_path):
    path = tmp_path / "pairs.parquet"
    pq.write_table(pa.Table.from_pylist([{"prompt": "P", "chosen": "C", "rejected": "R"}] * 2), path)
    data = load_pairs(DataOptions(str(path)))
    assert len(data.pairs) == 2
    assert data.pairs[1].flags == ["duplicate"]


def test_hub_loader_reads_local_dataset_folder(tmp_path):
    folder = tmp_path / "my-dataset"
    folder.mkdir()
    (folder / "train.jsonl").write_bytes(jsonl_bytes(HH_RECORDS))
    data = load_pairs(DataOptions(str(folder), split="train"))
    assert data.source.kind == "hub"
    assert len(data.pairs) == 2


def test_unknown_hub_id_fails_clearly_offline():
    with pytest.raises(DataError, match="cannot load dataset"):
        load_pairs(DataOptions("no-such-owner/no-such-dataset-deft"))


def test_missing_file_and_bad_extension(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_pairs(DataOptions(str(tmp_path / "missing.jsonl")))
    odd = tmp_path / "pairs.txt"
    odd.write_text("x")
    with pytest.raises(DataError, match="unsupported file type"):
        load_pairs(DataOptions(str(odd)))


def test_file_without_pairs_fails(tmp_path):
    path = tmp_path / "junk.jsonl"
    path.write_text("{bad\n")
    with pytest.raises(DataError, match="no usable preference pairs"):
        load_pairs(DataOptions(str(path)))


def test_missing_columns_name_the_fields_found(tmp_path):
    path = tmp_path / "two.csv"
    path.write_text("question,good\nhi,there\nyo,ok\n")
    with pytest.raises(DataError) as error:
        load_pairs(DataOptions(str(path)))
    message = str(error.value)
    assert "all 2 rows were skipped" in message
    assert f"{path}:2: field 'chosen' is missing" in message
    assert "The rows have the fields question, good" in message
    assert "--columns prompt=NAME,chosen=NAME,rejected=NAME" in message


def test_empty_file_has_no_rows(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    with pytest.raises(DataError, match="the input has no rows"):
        load_pairs(DataOptions(str(path)))


def test_invalid_options_are_listed_together():
    with pytest.raises(DataError) as error:
        DataOptions("x", columns={"answer": "a"}, limit=0)
    assert "unknown column mapping" in str(error.value)
    assert "limit must be at least 1" in str(error.value)


def test_bundled_sample_loads_cleanly():
    data = load_pairs(DataOptions("sample"))
    assert len(data.pairs) >= 200
    assert data.audit.format == "hh"
    assert data.audit.rows_skipped == 0


def test_real_hh_file_audit(hh_path):
    data = load_pairs(DataOptions(str(hh_path)))
    assert data.audit.rows_read == 2312
    assert data.audit.counts["prompt_mismatch"] == 5
    assert data.audit.counts["empty_response"] == 4
    assert len(data.pairs) == 2312 - 9


def test_real_llama_factory_file(llama_factory_path):
    data = load_pairs(DataOptions(str(llama_factory_path)))
    assert data.audit.rows_read == 300
    assert data.audit.format == "chat"
    assert len(data.pairs) + data.audit.rows_skipped == 300
    assert all(pair.prompt[-1]["role"] == "user" for pair in data.pairs)


def test_line_cut_short_reports_its_end_column(tmp_path):
    path = tmp_path / "short.jsonl"
    path.write_text(json.dumps(HH_RECORDS[0]) + '\n{"prompt": "Q", "chosen": "A", "rejected":\n')
    with pytest.raises(DataError, match=r"short\.jsonl:2: invalid JSON: Expecting value at column 43"):
        load_pairs(DataOptions(str(path), on_error="raise"))

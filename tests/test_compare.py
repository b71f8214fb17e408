"""Model comparison: metric functions against hand-computed values, generation, evaluation of the
base model against naive formulas, a tiny trained adapter, the reward model, and `deft compare`.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deft_core.cli import main
from deft_core.compare.comparison import load_comparison, read_prompts_file, saved_comparisons
from deft_core.compare.evaluate import GenerationSettings, ModelEvaluation, evaluate_model
from deft_core.compare.generation import fit_prompt, generate, left_pad, split_at_stop
from deft_core.compare.metrics import (
    DiffSegment,
    corpus_bleu,
    implicit_rewards,
    mean_token_logprobs,
    perplexity,
    preference_accuracy,
    sentence_bleu,
    word_count,
    word_diff,
)
from deft_core.compare.report import diff_html, fenced, markdown_cell
from deft_core.compare.reward_model import load_reward_model, reward_model_scores
from deft_core.distributions import TokenDistributions
from deft_core.encoding import PairEncoder
from deft_core.errors import DeftError
from deft_core.loading import DataOptions, load_pairs
from deft_core.pairs import PreferencePair
from deft_core.training.command import execute
from deft_core.training.config import TrainConfig
from deft_core.training.runs import create_run, open_run

# A run small enough for 2 CPU cores: 12 pairs of the sample, 4 held out, 128 tokens, 2 steps.
TINY_RUN = dict(
    data="sample",
    limit=12,
    eval_size=4,
    selection="full",
    max_length=128,
    batch_size=1,
    grad_accum=1,
    max_steps=2,
    eval_steps=100,
    save_steps=100,
    lora_r=4,
    lora_alpha=8,
    lora_dropout=0.0,
    learning_rate=1e-3,
    name="compare-test",
)
MARKUP_PROMPT = "Repeat this: <script>alert('x')</script> and <b>bold</b>"


# Metric functions against values worked out by hand.


def test_sentence_bleu_hand_computed():
    # 13a splits on spaces here. Matched n-grams of "a b c d e" against "a b c d f": 4/5, 3/4,
    # 2/3, 1/2, equal lengths (brevity penalty 1): BLEU = 100 * (0.8 * 0.75 * 2/3 * 0.5) ** (1/4).
    assert sentence_bleu("a b c d e", "a b c d f") == pytest.approx(100 * 0.2**0.25, abs=1e-9)
    # Three words have no 4-gram, so effective order keeps n = 1..3, all matched: precision 1,
    # brevity penalty exp(1 - 4/3).
    assert sentence_bleu("a b c", "a b c d") == pytest.approx(100 * math.exp(1 - 4 / 3), abs=1e-9)
    assert sentence_bleu("the same words here", "the same words here") == pytest.approx(100.0)


def test_corpus_bleu_sums_counts():
    outputs, references = ["a b c d e", "a b c"], ["a b c d f", "a b c d"]
    # Summed matches/totals: 7/8, 5/6, 3/4, 1/2; lengths 8 against 9: brevity penalty exp(1 - 9/8).
    expected = 100 * math.exp(1 - 9 / 8) * (7 / 8 * 5 / 6 * 3 / 4 * 1 / 2) ** 0.25
    assert corpus_bleu(outputs, references) == pytest.approx(expected, abs=1e-9)
    mean_of_sentences = (
        sentence_bleu(outputs[0], references[0]) + sentence_bleu(outputs[1], references[1])
    ) / 2
    assert abs(corpus_bleu(outputs, references) - mean_of_sentences) > 1


def test_corpus_bleu_rejects_bad_input():
    with pytest.raises(ValueError, match="2 outputs but 1 references"):
        corpus_bleu(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="at least one output"):
        corpus_bleu([], [])


def test_preference_accuracy_ties_are_misses():
    assert preference_accuracy(np.array([1.0, 2.0, 3.0, 0.0]), np.array([0.0, 2.0, 4.0, -1.0])) == 0.5
    assert preference_accuracy(np.zeros(3), np.zeros(3)) == 0.0
    assert math.isnan(preference_accuracy(np.array([]), np.array([])))


def test_implicit_rewards_and_token_means():
    rewards = implicit_rewards(np.array([-10.0, -20.0]), np.array([-12.0, -20.0]), beta=0.1)
    np.testing.assert_allclose(rewards, [0.2, 0.0])
    with pytest.raises(ValueError, match="beta must be > 0"):
        implicit_rewards(np.zeros(1), np.zeros(1), beta=0)
    # Zero tokens divide by 1, so an empty response does not produce NaN.
    np.testing.assert_allclose(mean_token_logprobs(np.array([-6.0, -3.0]), np.array([3, 0])), [-2.0, -3.0])


def test_perplexity_weights_every_token_equally():
    # Total NLL 1 + 9 = 10 over 1 + 3 tokens: exp(2.5), not the mean of exp(1) and exp(3).
    assert perplexity(np.array([-1.0, -9.0]), np.array([1, 3])) == pytest.approx(math.exp(2.5))
    assert math.isnan(perplexity(np.array([]), np.array([])))


def test_word_diff_segments():
    segments = word_diff("the cat sat on the mat", "the dog sat on a mat")
    assert segments == [
        DiffSegment("equal", ("the",), ("the",)),
        DiffSegment("replace", ("cat",), ("dog",)),
        DiffSegment("equal", ("sat", "on"), ("sat", "on")),
        DiffSegment("replace", ("the",), ("a",)),
        DiffSegment("equal", ("mat",), ("mat",)),
    ]
    assert word_diff("", "new words") == [DiffSegment("insert", (), ("new", "words"))]
    # A line break is a word of its own, so the diff keeps the lines.
    assert word_diff("a\n\nb", "a\nb c") == [
        DiffSegment("equal", ("a", "\n"), ("a", "\n")),
        DiffSegment("delete", ("\n",), ()),
        DiffSegment("equal", ("b",), ("b",)),
        DiffSegment("insert", (), ("c",)),
    ]
    assert word_count("  two\nwords ") == 2


def test_diff_html_escapes_markup():
    rendered = diff_html("<b>old</b> tail", "<script>alert(1)</script> tail")
    assert "<script" not in rendered
    assert "<b>" not in rendered
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered
    assert '<del style="background:#fdd;color:#900">&lt;b&gt;old&lt;/b&gt;</del>' in rendered
    assert rendered.count("<ins") == 1
    lines = diff_html("one two\nthree", "one\nthree four")
    assert lines == (
        '<div style="white-space:pre-wrap">one <del style="background:#fdd;color:#900">two</del>\nthree '
        '<ins style="background:#dfd;color:#060;text-decoration:none">four</ins></div>'
    )


def test_markdown_escaping():
    assert fenced("a ``` b").startswith("````text\n")
    assert markdown_cell("a | b <i>") == "a \\| b &lt;i&gt;"


def test_generation_helpers():
    assert fit_prompt(list(range(10)), max_length=12, max_new_tokens=4) == (list(range(2, 10)), 2)
    # The prompt keeps half of max_length even when max_new_tokens would leave it less room.
    assert fit_prompt(list(range(10)), max_length=12, max_new_tokens=20) == (list(range(4, 10)), 4)
    assert split_at_stop([5, 6, 2, 2], [2]) == ([5, 6], True)
    assert split_at_stop([5, 6], [2]) == ([5, 6], False)
    input_ids, attention = left_pad([[7, 8, 9], [4]], pad_id=0)
    assert input_ids.tolist() == [[7, 8, 9], [0, 0, 4]]
    assert attention.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_generation_settings_list_every_problem():
    with pytest.raises(DeftError) as error:
        GenerationSettings(max_new_tokens=0, temperature=0, top_p=1.5, batch_size=0, template="html")
    message = str(error.value)
    assert "max_new_tokens must be at least 1, got 0" in message
    assert "temperature must be > 0, got 0" in message
    assert "top_p must be in (0, 1], got 1.5" in message
    assert "batch_size must be at least 1, got 0" in message
    assert "template must be one of auto, chat, raw, got 'html'" in message


def test_prompts_file_errors(tmp_path):
    good = tmp_path / "prompts.jsonl"
    good.write_text('"first"\n\n{"prompt": "second\\nline"}\n')
    assert read_prompts_file(good) == ["first", "second\nline"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('"ok"\n{broken\n')
    with pytest.raises(DeftError, match=r"bad.jsonl:2: invalid JSON"):
        read_prompts_file(bad)
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text('{"question": "x"}\n')
    with pytest.raises(
        DeftError, match=r'wrong.jsonl:1: expected a JSON string or an object with a "prompt"'
    ):
        read_prompts_file(wrong)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(DeftError, match="no prompts found"):
        read_prompts_file(empty)
    with pytest.raises(DeftError, match="prompts file not found"):
        read_prompts_file(tmp_path / "absent.txt")


def test_evaluation_round_trips_nan():
    evaluation = ModelEvaluation("base", {"bleu": math.nan, "reward_mean": 0.5}, [{"bleu": math.nan}], {})
    data = json.loads(json.dumps(evaluation.to_dict(), allow_nan=False))
    assert data["metrics"]["bleu"] is None
    restored = ModelEvaluation.from_dict(data)
    assert math.isnan(restored.metrics["bleu"])
    assert restored.metrics["reward_mean"] == 0.5


# Generation and evaluation with the real bundled model.


@pytest.fixture(scope="module")
def sample_q_diff(bundled_fp32) -> np.ndarray:
    """Q_diff over the first 40 sample pairs with the chat template, as training counts tokens."""
    pairs = load_pairs(DataOptions("sample", limit=40)).pairs
    encoder = PairEncoder(bundled_fp32.tokenizer, "chat", 128)
    vocab_size = bundled_fp32.model.get_output_embeddings().weight.shape[0]
    return TokenDistributions.from_encoded(
        encoder.encode_many(pairs), bundled_fp32.tokenizer, vocab_size
    ).q_diff


@pytest.mark.model
def test_batched_generation_matches_one_by_one(bundled_fp32):
    encoder = PairEncoder(bundled_fp32.tokenizer, "chat", 256)
    prompts = [
        [{"role": "user", "content": "Name a colour."}],
        [{"role": "user", "content": "Write one sentence about the sea and the wind over it at night."}],
        [{"role": "user", "content": "Hi"}],
    ]
    batched = generate(
        bundled_fp32.model, encoder, prompts, GenerationSettings(max_new_tokens=8, batch_size=3), 256
    )
    single = generate(
        bundled_fp32.model, encoder, prompts, GenerationSettings(max_new_tokens=8, batch_size=1), 256
    )
    assert [g.text for g in batched] == [g.text for g in single]
    assert [g.output_ids for g in batched] == [g.output_ids for g in single]
    assert all(len(g.output_ids) <= 8 for g in batched)
    assert all(g.text for g in batched)


@pytest.mark.model
def test_sampling_repeats_with_its_seed(bundled_fp32):
    encoder = PairEncoder(bundled_fp32.tokenizer, "chat", 256)
    prompts = [
        [{"role": "user", "content": "Tell me a story."}],
        [{"role": "user", "content": "Say something."}],
    ]

    def sample(seed: int) -> list[str]:
        settings = GenerationSettings(
            max_new_tokens=12, do_sample=True, temperature=1.0, seed=seed, batch_size=2
        )
        return [g.text for g in generate(bundled_fp32.model, encoder, prompts, settings, 256)]

    state = torch.get_rng_state()
    first = sample(1)
    assert torch.equal(state, torch.get_rng_state())  # the caller's random state is untouched
    assert sample(1) == first
    assert sample(2) != first


def naive_response_pass(model, prompt_ids: list[int], response_ids: list[int], q_diff: np.ndarray):
    """Return (summed log-prob, distribution reward) of a response by one plain forward pass."""
    with torch.no_grad():
        logits = model(torch.tensor([prompt_ids + response_ids])).logits[0].float()
    start = len(prompt_ids) - 1
    log_probs = F.log_softmax(logits[start : start + len(response_ids)], dim=-1)
    logp = log_probs.gather(-1, torch.tensor(response_ids)[:, None]).sum().item()
    reward = (log_probs @ torch.as_tensor(q_diff, dtype=torch.float32)).mean().item()
    return logp, reward


@pytest.mark.model
def test_base_metrics_match_naive_formulas(bundled_fp32, sample_q_diff):
    pairs = load_pairs(DataOptions("sample", limit=60)).pairs[-3:]
    settings = GenerationSettings(max_new_tokens=6, batch_size=2)
    evaluation = evaluate_model(
        "base", pairs, sample_q_diff, settings, device="cpu", dtype="float32", max_length=128, limit=3
    )
    assert evaluation.label == "base"
    assert evaluation.details["adapter"] is None

    model, encoder = bundled_fp32.model, PairEncoder(bundled_fp32.tokenizer, "chat", 128)
    chosen_means, rejected_means, chosen_logps, chosen_tokens = [], [], [], []
    for item in encoder.encode_many(pairs):
        chosen_logp, _ = naive_response_pass(model, item.prompt_ids, item.chosen_ids, sample_q_diff)
        rejected_logp, _ = naive_response_pass(model, item.prompt_ids, item.rejected_ids, sample_q_diff)
        chosen_means.append(chosen_logp / len(item.chosen_ids))
        rejected_means.append(rejected_logp / len(item.rejected_ids))
        chosen_logps.append(chosen_logp)
        chosen_tokens.append(len(item.chosen_ids))
    expected_accuracy = float(np.mean(np.array(chosen_means) > np.array(rejected_means)))
    expected_perplexity = math.exp(-sum(chosen_logps) / sum(chosen_tokens))
    assert evaluation.metrics["preference_accuracy"] == expected_accuracy
    assert evaluation.metrics["logprob_accuracy"] == expected_accuracy
    assert evaluation.metrics["perplexity"] == pytest.approx(expected_perplexity, rel=1e-4)

    outputs = [row["output"] for row in evaluation.outputs]
    assert evaluation.metrics["bleu"] == pytest.approx(corpus_bleu(outputs, [p.chosen for p in pairs]))
    for row, pair in zip(evaluation.outputs, pairs, strict=True):
        assert row["pair_id"] == pair.id
        assert row["bleu"] == pytest.approx(sentence_bleu(row["output"], pair.chosen))
        assert row["words"] == len(row["output"].split())
        assert 1 <= row["length"] <= 6
        # The reward scores the output's text tokens plus the end-of-turn token, as for a chosen response.
        item = encoder.encode_many([PreferencePair("", pair.prompt, row["output"], row["output"])])[0]
        _, reward = naive_response_pass(model, item.prompt_ids, item.chosen_ids, sample_q_diff)
        assert row["reward"] == pytest.approx(reward, abs=1e-4)
    assert evaluation.metrics["reward_mean"] == pytest.approx(
        np.mean([r["reward"] for r in evaluation.outputs])
    )


# A tiny trained adapter, shared by the tests below and by the CLI tests.


@pytest.fixture(scope="module")
def compare_home(tmp_path_factory):
    """A deft home with one tiny completed DPO run; the environment points at it for the module."""
    home = tmp_path_factory.getbasetemp() / "compare-home"
    previous = os.environ["DEFT_HOME"]
    if not (home / "trained").is_file():
        home.mkdir(exist_ok=True)
        (home / "models").symlink_to(Path(previous) / "models")
        os.environ["DEFT_HOME"] = str(home)
        config = TrainConfig(**TINY_RUN)
        assert execute(create_run(config), config) == 0
        (home / "trained").write_text("done\n")
    os.environ["DEFT_HOME"] = str(home)
    yield home
    os.environ["DEFT_HOME"] = previous


@pytest.fixture(scope="module")
def tiny_run(compare_home) -> Path:
    return next(path for path in (compare_home / "runs").iterdir() if (path / "adapter").is_dir())


@pytest.mark.model
def test_run_evaluation_applies_adapter(tiny_run, sample_q_diff):
    from deft_core.compare.candidates import load_candidate
    from deft_core.compare.passes import encode_outputs, make_scorer, output_rewards

    candidate = load_candidate(str(tiny_run), device="cpu", dtype="float32")
    base = load_candidate("base", device="cpu", dtype="float32")
    assert candidate.label == tiny_run.name
    assert candidate.template == "chat"
    prompts = [[{"role": "user", "content": "What is rain?"}], [{"role": "user", "content": "Be brief."}]]
    encoded = encode_outputs(PairEncoder(base.tokenizer, "chat", 128), prompts, ["Water falling.", "Okay."])

    # The output reward is computed with the adapter off, so both candidates give the base model's value.
    run_rewards = output_rewards(candidate, make_scorer(candidate, sample_q_diff), encoded, 2)
    base_rewards = output_rewards(base, make_scorer(base, sample_q_diff), encoded, 2)
    np.testing.assert_allclose(run_rewards, base_rewards, atol=1e-5)

    # With the adapter on, the log-probabilities differ from the base model's.
    ids = torch.tensor([encoded[0].prompt_ids + encoded[0].chosen_ids])
    with torch.no_grad():
        tuned = candidate.model(ids).logits
        with candidate.reference():
            reference = candidate.model(ids).logits
        plain = base.model(ids).logits
    assert not torch.allclose(tuned, plain)
    torch.testing.assert_close(reference, plain)


@pytest.mark.model
def test_unfinished_run_is_rejected(compare_home, sample_q_diff):
    pairs = load_pairs(DataOptions("sample", limit=2)).pairs
    settings = GenerationSettings(max_new_tokens=2)
    pending = create_run(TrainConfig(**{**TINY_RUN, "name": "pending"}))
    with pytest.raises(DeftError, match=rf"run {pending.run_id} did not finish \(state: pending\)"):
        evaluate_model(pending.run_id, pairs, sample_q_diff, settings)
    pending.set_status("running", pid=os.getpid())  # a live process, as while training
    with pytest.raises(DeftError, match=rf"run {pending.run_id} is still training; .* until it finishes"):
        evaluate_model(pending.run_id, pairs, sample_q_diff, settings)
    pending.set_status("completed")
    with pytest.raises(DeftError, match=rf"run {pending.run_id} has no adapter"):
        evaluate_model(pending.run_id, pairs, sample_q_diff, settings)
    with pytest.raises(DeftError, match="run not found: no-such-run"):
        evaluate_model("no-such-run", pairs, sample_q_diff, settings)


# The reward model: a tiny sequence-classification model built and saved here, never downloaded.


def build_reward_model(folder: Path, num_labels: int = 1, chat_template: bool = True) -> Path:
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from deft_core.models import load_tokenizer

    tokenizer = load_tokenizer("bundled")
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        num_labels=num_labels,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForSequenceClassification(config).save_pretrained(folder)
    if not chat_template:
        tokenizer.chat_template = None
    tokenizer.save_pretrained(folder)
    return folder


def test_reward_model_scores_batches_like_single(tmp_path):
    folder = build_reward_model(tmp_path / "reward")
    reward = load_reward_model(str(folder), "cpu", "float32")
    prompts = [
        [{"role": "user", "content": "Hello"}],
        [{"role": "user", "content": "A longer question here?"}],
    ] * 2
    outputs = ["Hi.", "A much longer answer with many more words in it.", "", "Sure"]
    batched = reward_model_scores(reward, prompts, outputs, batch_size=4)
    single = np.concatenate(
        [reward_model_scores(reward, [p], [o]) for p, o in zip(prompts, outputs, strict=True)]
    )
    np.testing.assert_allclose(batched, single, atol=1e-5)

    # One unpadded pass over the chat-rendered dialogue gives the same score.
    text = reward.tokenizer.apply_chat_template(
        [*prompts[1], {"role": "assistant", "content": outputs[1]}], tokenize=False
    )
    ids = reward.tokenizer(text, add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        direct = reward.model(**ids).logits[0, 0].item()
    assert batched[1] == pytest.approx(direct, abs=1e-5)
    assert len(set(np.round(batched, 6))) > 1


def test_reward_model_without_template_reads_text_pairs(tmp_path):
    folder = build_reward_model(tmp_path / "plain", chat_template=False)
    reward = load_reward_model(str(folder), "cpu", "float32")
    assert not reward.tokenizer.chat_template
    prompts = [[{"role": "user", "content": "Hello"}], [{"role": "user", "content": "Why?"}]]
    scores = reward_model_scores(reward, prompts, ["Hi there.", "Because."])
    ids = reward.tokenizer("User: Hello", "Hi there.", return_tensors="pt")
    with torch.no_grad():
        direct = reward.model(**ids).logits[0, 0].item()
    assert scores[0] == pytest.approx(direct, abs=1e-5)
    assert scores[0] != pytest.approx(scores[1], abs=1e-6)


def test_reward_model_needs_one_output(tmp_path):
    folder = build_reward_model(tmp_path / "two-labels", num_labels=2)
    with pytest.raises(DeftError, match="has 2 outputs; deft needs a reward model with a single score"):
        load_reward_model(str(folder), "cpu", "float32")
    with pytest.raises(DeftError, match="not a transformers model folder"):
        load_reward_model(str(tmp_path), "cpu", "float32")


# `deft compare` end to end.


@pytest.mark.model
def test_cli_compare_held_out_with_report(tiny_run, tmp_path, capsys):
    report = tmp_path / "comparison.md"
    earlier = saved_comparisons(open_run(tiny_run))
    code = main(["compare", tiny_run.name, "--limit", "2", "--max-new-tokens", "6", "--report", str(report)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "saved the comparison to" in captured.err
    assert tiny_run.name in captured.out

    results = saved_comparisons(open_run(tiny_run))
    assert len(results) == len(earlier) + 1
    comparison = load_comparison(results[0])
    assert comparison.labels == ["base", tiny_run.name]
    for evaluation in comparison.evaluations:
        assert set(evaluation.metrics) >= {
            "preference_accuracy",
            "reward_mean",
            "bleu",
            "perplexity",
            "length_mean",
        }
        assert len(evaluation.outputs) == 2
        assert all(math.isfinite(value) for value in evaluation.metrics.values())
    # Both models answered the same held-out prompts, the first two of the run's split.
    assert [r["pair_id"] for r in comparison.evaluations[0].outputs] == comparison.meta["held_out_ids"]
    assert [r["prompt"] for r in comparison.evaluations[0].outputs] == [
        r["prompt"] for r in comparison.evaluations[1].outputs
    ]

    text = report.read_text()
    assert text.startswith("# Model comparison")
    assert "| model | preference accuracy |" in text
    assert f"| {tiny_run.name} |" in text
    assert comparison.evaluations[1].outputs[0]["output"] in text


@pytest.mark.model
def test_cli_compare_typed_prompts_html(tiny_run, tmp_path, capsys):
    reward = build_reward_model(tmp_path / "reward")
    report = tmp_path / "comparison.html"
    argv = ["compare", str(tiny_run), "--no-base", "--prompt", MARKUP_PROMPT, "--prompt", "Say hi."]
    argv += ["--max-new-tokens", "5", "--sample", "--seed", "3", "--reward-model", str(reward)]
    code = main([*argv, "--report", str(report), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    data = json.loads(captured.out)
    assert Path(data["results_path"]).is_file()
    (evaluation,) = data["evaluations"]
    assert evaluation["label"] == tiny_run.name
    assert set(evaluation["metrics"]) == {
        "reward_mean",
        "length_mean",
        "words_mean",
        "finished_share",
        "reward_model_mean",
    }
    scores = [row["reward_model"] for row in evaluation["outputs"]]
    assert evaluation["metrics"]["reward_model_mean"] == pytest.approx(np.mean(scores))
    assert evaluation["details"]["settings"]["do_sample"] is True

    page = report.read_text()
    assert "<script>alert('x')</script>" not in page
    assert (
        "Repeat this: &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; and &lt;b&gt;bold&lt;/b&gt;" in page
    )
    assert "Plotly.newPlot" in page
    assert 'src="https://cdn' not in page  # plotly.js is inline, so the report opens offline


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["no-such-run"], "run not found: no-such-run"),
        (["RUN", "--temperature", "0.7"], "--temperature applies only to sampling; add --sample"),
        (["RUN", "--report", "out.txt"], "give a name ending in .md or .html"),
        (["RUN", "--prompts", "/nonexistent/prompts.txt"], "prompts file not found"),
        (["RUN", "RUN"], "a run is named twice"),
        (["RUN", "--sample", "--top-p", "0"], "top_p must be in (0, 1], got 0.0"),
        (["RUN", "--limit", "0"], "limit must be at least 1, got 0"),
    ],
)
def test_cli_compare_user_errors(argv, message, capsys):
    run = "some-run"
    code = main(["compare", *[run if a == "RUN" else a for a in argv]])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.count("\n") == 1  # one line, no traceback


def test_compare_prints_typed_prompt_outputs(tiny_run, capsys):
    argv = ["compare", str(tiny_run), "--prompt", "Say hi.", "--prompt", "Name a colour."]
    assert main([*argv, "--max-new-tokens", "4"]) == 0
    out = capsys.readouterr().out
    assert "prompt 1: " in out
    assert "Say hi." in out
    assert "prompt 2: " in out
    assert "Name a colour." in out
    assert out.count(f"  {tiny_run.name}: ") == 2
    assert out.count("  base: ") == 2


def test_cli_compare_prompt_options_exclusive(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "some-run", "--prompt", "x", "--prompts", "file.txt"])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err

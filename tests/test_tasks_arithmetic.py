"""The verifiable arithmetic task: problems from a seed, exact-match reward on ids and strings."""

import jax
import numpy as np
import pytest

from alignax import labels
from alignax.tasks import Annotator, ArithmeticTask, arithmetic_config, get_task
from alignax.tasks.arithmetic import EOS_ID, _next_step
from tests.helpers import tiny_model


@pytest.fixture(scope="module")
def task():
    return get_task("arithmetic")


def test_problems_are_correct_and_deterministic(task):
    problems = task.sample_problems(50, seed=0)
    assert problems == task.sample_problems(50, seed=0) != task.sample_problems(50, seed=1)
    for prompt, answer in problems:
        assert prompt.endswith("=") and int(answer) == eval(prompt[:-1])  # noqa: S307


def test_difficulty_config_controls_operand_range_and_answer_width():
    config = arithmetic_config()
    config.min_operand, config.max_operand, config.operators = 100, 999, "*"
    hard = ArithmeticTask(config)
    assert hard.answer_len == 6  # 999 * 999 = 998001
    for prompt, _ in hard.sample_problems(20, seed=0):
        a, b = prompt[:-1].split("*")
        assert 100 <= int(a) <= 999 and 100 <= int(b) <= 999
    config.operators = "/"
    with pytest.raises(ValueError, match="operators"):
        ArithmeticTask(config)


def test_sft_demos_score_one_and_corruptions_score_zero(task):
    data = task.sft_dataset(16, seed=0)
    problems = task.sample_problems(16, seed=0, split="train")
    answers = task.encode_answers([a for _, a in problems])
    reward = jax.jit(task.reward)
    np.testing.assert_array_equal(reward(data["tokens"], data["loss_mask"], answers), 1.0)
    # Drop the EOS from the response: not an exact match.
    no_eos = data["loss_mask"] * (data["tokens"] != EOS_ID)
    np.testing.assert_array_equal(reward(data["tokens"], no_eos, answers), 0.0)
    # Change the first answer digit.
    first = np.argmax(data["loss_mask"], axis=1)
    wrong = data["tokens"].copy()
    wrong[np.arange(16), first] = 3 + (wrong[np.arange(16), first] - 3 + 1) % 10
    np.testing.assert_array_equal(reward(wrong, data["loss_mask"], answers), 0.0)


def test_jitted_reward_agrees_with_string_checker_on_random_responses(task):
    rng = np.random.default_rng(0)
    problems = task.sample_problems(64, seed=3)
    prompts, answers = zip(*problems)
    responses = [a if rng.random() < 0.5 else str(int(a) + rng.integers(-2, 3)) for a in answers]
    # Some responses get an extra character before EOS.
    responses = [r + "1" if rng.random() < 0.2 else r for r in responses]
    width = 16
    tokens = np.zeros((64, width), np.int32)
    mask = np.zeros_like(tokens)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        p_ids, r_ids = task.encode_text(p), task.encode_text(r) + [EOS_ID]
        start = width - len(r_ids) - len(p_ids) - 1 - 2  # left padding, 2 pads on the right
        tokens[i, start : start + 1 + len(p_ids) + len(r_ids)] = [1, *p_ids, *r_ids]
        mask[i, start + 1 + len(p_ids) : start + 1 + len(p_ids) + len(r_ids)] = 1
    got = np.asarray(task.reward(tokens, mask, task.encode_answers(answers)))
    expected = [task.check(r, a) for r, a in zip(responses, answers)]
    np.testing.assert_array_equal(got, expected)
    assert 0 < np.mean(expected) < 1


def test_prompt_dataset_left_padded_with_answers(task):
    data = task.prompt_dataset(8, seed=0, split="eval")
    assert (data["prompt_mask"][:, -1] == 1).all()
    for row, mask, answer in zip(data["prompt_tokens"], data["prompt_mask"], data["answer"]):
        prompt = task.decode(row[mask == 1])
        assert int(answer) == eval(prompt[:-1])  # noqa: S307
    assert task.check(" 19 ", "19") == 1.0 and task.check("18", "19") == 0.0


def test_train_and_eval_problems_are_disjoint_by_construction(task):
    """No (a, op, b) is in both splits, whatever the seeds; every problem is in one of them."""
    train = {p for p, _ in task.sample_problems(3000, seed=1, split="train")}
    evaluation = {p for p, _ in task.sample_problems(500, seed=1, split="eval")}
    assert train and evaluation and not train & evaluation
    c = task.config
    universe = (c.max_operand - c.min_operand + 1) ** 2 * len(c.operators)
    # The eval share of all distinct problems is near eval_problem_fraction (0.2).
    everything = {
        f"{a}{op}{b}="
        for a in range(c.min_operand, c.max_operand + 1)
        for b in range(c.min_operand, c.max_operand + 1)
        for op in c.operators
    }
    held_out = {
        f"{a}{op}{b}="
        for a in range(21)
        for b in range(21)
        for op in "+-"
        if task.problem_split((a, b), op) == "eval"
    }
    assert len(everything) == universe
    assert 0.15 < len(held_out) / universe < 0.25
    assert evaluation <= held_out and not train & held_out
    prompts = task.prompt_dataset(64, seed=5, split="eval")["prompt_tokens"]
    decoded = {task.decode(row) for row in prompts}
    assert decoded <= held_out


def test_unknown_split_and_bad_fraction_name_the_key(task):
    with pytest.raises(ValueError, match="split='test'"):
        task.prompt_dataset(4, seed=0, split="test")
    config = arithmetic_config()
    config.eval_problem_fraction = 1.0
    with pytest.raises(ValueError, match="task.eval_problem_fraction"):
        ArithmeticTask(config)


def test_comparisons_are_labelled_by_the_verifier(task):
    """Pairs of a correct and a wrong answer: the correct one comes first for an annotator that
    follows the verifier, second when every label is flipped; the rows are BOS + prompt +
    response with the loss on the response; a pair of equal answers is a verified tie."""
    prompts = task.sample_prompts(6, seed=0, split="train")
    problems = task.sample_problems(6, seed=0, split="train")
    assert [task.decode(p) for p in prompts] == [q for q, _ in problems]
    answers = [task.answer_of(p) for p in prompts]
    assert answers == [a for _, a in problems]
    correct = [[*task.encode_text(a), EOS_ID] for a in answers]
    wrong = [[*task.encode_text(str(int(a) + 1)), EOS_ID] for a in answers]
    repeated = [p for p in prompts for _ in range(2)]
    responses = [r for pair in zip(wrong, correct) for r in pair]  # the wrong one first
    rng = np.random.default_rng(0)
    out = task.label_comparisons(repeated, responses, 2, Annotator(kind="hard"), rng)
    assert out["tokens"].shape == (6, 2, task.seq_len)
    np.testing.assert_array_equal(out["gold_reward"], np.tile([1.0, 0.0], (6, 1)))
    for i, prompt in enumerate(prompts):
        row, loss = out["tokens"][i, 0], out["loss_mask"][i, 0]
        assert row[0] == task.bos_id and task.decode(row) == task.decode(prompt) + answers[i]
        assert list(row[loss > 0]) == correct[i]
    flipped = task.label_comparisons(
        repeated, responses, 2, Annotator(kind="hard", flip_rate=1.0), rng
    )
    np.testing.assert_array_equal(flipped["gold_reward"], np.tile([0.0, 1.0], (6, 1)))
    ties = task.label_comparisons(repeated, [r for r in correct for _ in range(2)], 2,
                                  Annotator(kind="hard"), rng)  # fmt: skip
    np.testing.assert_array_equal(ties["gold_reward"], np.ones((6, 2)))
    with pytest.raises(ValueError, match="not of the form"):
        task.answer_of(task.encode_text("12+="))
    with pytest.raises(ValueError, match="answer_len"):
        task.encode(prompts[:1], [[3] * 9])


def test_reference_responses_are_what_the_verifier_accepts(task):
    prompts = task.prompt_dataset(64, seed=3, split="eval")
    width = task.answer_len + 1
    reference = task.reference_responses(prompts["answer_tokens"], width)
    mask = (reference != 0).astype(np.int32)
    tokens = np.concatenate([prompts["prompt_tokens"], reference], 1)
    loss_mask = np.concatenate([np.zeros_like(prompts["prompt_mask"]), mask], 1)
    reward = task.reward(tokens, loss_mask, answer_tokens=prompts["answer_tokens"])
    np.testing.assert_array_equal(np.asarray(reward), np.ones(64))
    assert [task.decode(r) for r in reference] == list(prompts["answer"])
    with pytest.raises(ValueError, match="answer_len"):
        task.reference_responses(prompts["answer_tokens"], width - 1)


def test_generator_comparisons_are_refused_on_arithmetic(task):
    config = labels.default_labels_config(source="generator")
    with pytest.raises(
        ValueError, match="labels.source='generator' needs .*generator_comparisons.*policy's"
    ):
        labels.comparisons(config, task, None, 4, seed=0, split="train")


def test_commuted_twins_share_a_split(task):
    """ "a+b" and "b+a" are one problem class: both train or both eval; "a-b" need not follow."""
    for a in range(21):
        for b in range(21):
            assert task.problem_split((a, b), "+") == task.problem_split((b, a), "+")
    config = arithmetic_config()
    config.num_steps = 3
    chained = ArithmeticTask(config)
    assert chained.problem_split((3, 4, 2, 5), "+*-") == chained.problem_split((4, 3, 2, 5), "+*-")
    splits = {chained.problem_split((a, b, 2, 5), "-*-") for a in range(21) for b in range(21)}
    assert splits == {"train", "eval"}
    twins = [
        (chained.problem_split((a, b, 2, 5), "-*-"), chained.problem_split((b, a, 2, 5), "-*-"))
        for a in range(21)
        for b in range(a)
    ]
    assert any(x != y for x, y in twins)


@pytest.fixture(scope="module")
def chained():
    config = arithmetic_config()
    config.update(num_steps=3, operators="+-*", max_operand=9)
    return ArithmeticTask(config)


def test_multi_step_solutions_write_each_step_then_the_answer(chained):
    assert chained.answer_of(chained.encode_text("3+4*2-5=")) == "7*2-5=14-5=9"
    assert chained.answer_of(chained.encode_text("1-9*3+0=")) == "-8*3+0=-24+0=-24"
    problems = chained.sample_problems(200, seed=0)
    assert max(len(s) for _, s in problems) <= chained.answer_len
    assert chained.prompt_len == 1 + len("9*9*9*9=")
    for prompt, solution in problems:
        steps = solution.split("=")
        assert len(steps) == 3 and int(steps[-1]) == _left_to_right(prompt[:-1])
        for step in steps[:-1]:
            assert _left_to_right(step) == _left_to_right(prompt[:-1])  # each step keeps value
    with pytest.raises(ValueError, match="not of the form a<op>b<op>c<op>c="):
        chained.answer_of(chained.encode_text("3+4="))
    config = arithmetic_config()
    config.num_steps = 0
    with pytest.raises(ValueError, match="task.num_steps=0"):
        ArithmeticTask(config)


def _left_to_right(expression: str) -> int:
    import re

    first, *rest = re.findall(r"^-?\d+|[+*-]\d+", expression)
    value = int(first)
    for term in rest:
        value = {
            "+": value + int(term[1:]),
            "-": value - int(term[1:]),
            "*": value * int(term[1:]),
        }[term[0]]
    return value


def test_multi_step_verifier_checks_the_answer_and_the_number_of_steps(chained):
    """The jitted reward agrees with the host checker: right answer after the last "=" with the
    solution's number of steps scores 1, whatever the intermediate steps say; a missing step, a
    wrong answer or a missing EOS scores 0."""
    problems = chained.sample_problems(6, seed=1)
    cases = []
    for prompt, solution in problems:
        steps = solution.split("=")
        cases += [
            (prompt, solution, solution + "|", 1.0),
            (prompt, solution, "=".join(["0", "1", steps[-1]]) + "|", 1.0),  # wrong steps
            (prompt, solution, steps[-1] + "|", 0.0),  # the steps left out
            (prompt, solution, "=".join([*steps[:-1], str(int(steps[-1]) + 1)]) + "|", 0.0),
            (prompt, solution, solution, 0.0),  # no EOS
            (prompt, solution, solution + "1|", 0.0),
        ]
    width = chained.seq_len + 4
    tokens = np.zeros((len(cases), width), np.int32)
    mask = np.zeros_like(tokens)
    for i, (prompt, _, response, _) in enumerate(cases):
        r_ids = [EOS_ID if ch == "|" else chained.encode_text(ch)[0] for ch in response]
        p_ids = [1, *chained.encode_text(prompt)]
        tokens[i, : len(p_ids) + len(r_ids)] = [*p_ids, *r_ids]
        mask[i, len(p_ids) : len(p_ids) + len(r_ids)] = 1
        assert chained.verified(r_ids, cases[i][1]) == bool(cases[i][3])
    answers = chained.encode_answers([solution for _, solution, _, _ in cases])
    got = np.asarray(jax.jit(chained.reward)(tokens, mask, answers))
    np.testing.assert_array_equal(got, [expected for *_, expected in cases])
    data = chained.sft_dataset(32, seed=0)
    solutions = [s for _, s in chained.sample_problems(32, seed=0, split="train")]
    reward = chained.reward(data["tokens"], data["loss_mask"], chained.encode_answers(solutions))
    np.testing.assert_array_equal(reward, 1.0)


def _ids(task, response: str) -> list[int]:
    """Token ids of a response written with "|" for EOS."""
    return [EOS_ID if ch == "|" else task.encode_text(ch)[0] for ch in response]


def test_step_labels_check_each_step_against_the_one_before(chained):
    prompt = chained.encode_text("3+4*2-5=")
    cases = {
        "7*2-5=14-5=9|": [True, True, True],
        "7*2-5=13-5=8|": [True, False, True],  # 13 is wrong; 13-5=8 follows from it
        "7*2-5=13-5=9|": [True, False, False],  # the right answer does not mend a wrong step
        "8*2-5=16-5=11|": [False, True, True],
        "7*2-5=14-5|": [True, False],  # stops before the answer
        "7*2-5=14-5=9": [True, True, False],  # no EOS: cut at the length cap
        "7*2-5=14-5=9=9|": [True, True, True, False],  # a step after the answer
        "9|": [False],  # the steps left out
        "|": [False],
    }
    for response, expected in cases.items():
        assert chained.step_labels(prompt, _ids(chained, response)) == expected, response
    assert chained.step_labels(prompt, [*_ids(chained, "7*2-5=14-5=9"), 99, EOS_ID])[-1] is False
    negative = chained.encode_text("1-9*3+0=")
    assert chained.step_labels(negative, _ids(chained, "-8*3+0=-24+0=-24|")) == [True] * 3
    one_step = get_task("arithmetic")
    assert one_step.step_labels(one_step.encode_text("12+7="), _ids(one_step, "19|")) == [True]
    with pytest.raises(ValueError, match="does not end with '='"):
        chained.step_labels(chained.encode_text("3+4"), _ids(chained, "7|"))


def test_every_step_right_implies_the_verifier_passes(chained):
    """On random corruptions of solutions: all steps right => verified; the reference solution
    has every step right; verified with a wrong step happens (the checker sees more)."""
    rng = np.random.default_rng(0)
    seen_verified_with_a_wrong_step = False
    for prompt, solution in chained.sample_problems(200, seed=2):
        assert all(chained.step_labels(chained.encode_text(prompt), _ids(chained, solution + "|")))
        steps = solution.split("=")
        j = rng.integers(len(steps))
        steps[j] = steps[j].replace(steps[j][-1], str(rng.integers(10)), 1)
        response = _ids(chained, "=".join(steps) + "|")
        labels = chained.step_labels(chained.encode_text(prompt), response)
        verified = chained.verified(response, solution)
        assert not all(labels) or verified
        seen_verified_with_a_wrong_step |= verified and not all(labels)
    assert seen_verified_with_a_wrong_step


def _oracle(task):
    """A completer that carries out every remaining step of the last written expression right."""

    def complete(rows):
        out = []
        for row in rows:
            expression, steps = task.decode(row).split("=")[-2], []
            while (expression := _next_step(expression)) is not None:
                steps.append(expression)
            out.append([*_ids(task, "=".join(steps)), EOS_ID])
        return out

    return complete


def test_monte_carlo_step_labels_score_whether_a_solution_is_still_reachable(chained):
    prompt = chained.encode_text("3+4*2-5=")
    responses = {  # response: (step_labels, Monte Carlo labels with an oracle completer)
        "7*2-5=14-5=9|": ([True, True, True], [1.0, 1.0, 1.0]),
        "7*2-5=13-5=8|": ([True, False, True], [1.0, 0.0, 0.0]),
        "6*2-3=12-3=9|": ([False, True, True], [1.0, 1.0, 1.0]),  # wrong, but worth as much
        "7*2-5=14=9|": ([True, False, False], [1.0, 0.0, 1.0]),  # skipped, yet verified
        "9|": ([False], [0.0]),
    }
    ids = [_ids(chained, r) for r in responses]
    got = labels.monte_carlo_step_labels(
        chained, [prompt] * len(ids), ids, _oracle(chained), num_rollouts=3
    )
    for (response, (checked, expected)), row, g in zip(responses.items(), ids, got):
        assert chained.step_labels(prompt, row) == checked, response
        assert g == expected, response
    # Every other rollout stops at once: each reachable step is reached half of the time.
    oracle, calls = _oracle(chained), []

    def half(rows):
        calls.append(len(rows))
        return [c if k % 2 == 0 else [EOS_ID] for k, c in enumerate(oracle(rows))]

    got = labels.monte_carlo_step_labels(chained, [prompt], ids[:1], half, num_rollouts=2)
    assert got == [[0.5, 0.5, 1.0]] and calls == [4]  # one call: 2 steps x 2 rollouts
    with pytest.raises(ValueError, match="num_rollouts=0"):
        labels.monte_carlo_step_labels(chained, [prompt], ids[:1], half, num_rollouts=0)


def test_monte_carlo_step_labels_from_a_policy(chained):
    """Sampled from a (random) policy: one label per step, shares of the rollouts; a task without
    step labels is refused, naming the capability."""
    model = tiny_model(vocab_size=chained.vocab_size, max_len=64)
    params = model.init(jax.random.key(0))
    complete = labels.policy_completer(
        model, params, chained, jax.random.key(1), max_new_tokens=16, chunk_size=8
    )
    problems = chained.sample_problems(3, seed=0)
    prompts = [chained.encode_text(p) for p, _ in problems]
    responses = [_ids(chained, s + "|") for _, s in problems]
    responses[1] = _ids(chained, "0=1|")
    got = labels.monte_carlo_step_labels(chained, prompts, responses, complete, num_rollouts=4)
    assert [len(g) for g in got] == [3, 2, 3]
    assert all(v in (0, 0.25, 0.5, 0.75, 1) for g in got for v in g)
    assert got[0][-1] == got[2][-1] == 1.0 and got[1][-1] == 0.0
    with pytest.raises(ValueError, match="step_labels"):
        labels.policy_completer(
            model, params, get_task("review"), jax.random.key(1), max_new_tokens=4
        )


def test_step_layout_puts_each_label_at_its_steps_last_token(chained):
    prompt = chained.encode_text("3+4*2-5=")
    responses = [_ids(chained, r) for r in ("7*2-5=13-5=8|", "7*2-5", "7*2-5=")]
    step_labels = [chained.step_labels(prompt, r) for r in responses]
    assert step_labels == [[True, False, True], [False], [True, False]]
    out = labels.step_layout(chained, [prompt] * 3, responses, step_labels)
    start = 1 + len(prompt)  # BOS + prompt
    for i, response in enumerate(responses):
        marked = np.flatnonzero(out["step_mask"][i]) - start
        ends = [j for j, t in enumerate(response) if t == chained.encode_text("=")[0]]
        assert marked.tolist() == sorted({*ends, len(response) - 1})
        assert np.all(out["loss_mask"][i, start + marked] == 1)
    np.testing.assert_array_equal(out["step_labels"][0, start + np.array([5, 10, 12])], [1, 0, 1])
    assert out["step_labels"][1, start + 4] == 0
    # Cut right after "=": the empty last step shares that token, which takes the lower label.
    assert out["step_labels"][2, start + 5] == 0 and out["step_mask"][2].sum() == 1
    with pytest.raises(ValueError, match="response 0 has 3 steps but 2 step labels"):
        labels.step_layout(chained, [prompt], responses[:1], [[1.0, 0.0]])
    with pytest.raises(ValueError, match="response 0 is empty"):
        labels.step_layout(chained, [prompt], [[]], [[]])

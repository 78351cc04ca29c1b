"""alignax.feedback: judges, position bias, ensembles, principles, routing, multi-objective
rewards. Each test names the property it checks."""

import jax
import numpy as np
import pytest

from alignax import feedback
from alignax.analysis.stats import mean_interval
from alignax.data.layouts import LM_KEYS
from alignax.feedback import directions
from alignax.feedback import judges as judges_lib
from alignax.models import build_model
from alignax.tasks import Annotator, get_task
from alignax.tasks.review import gold_reward_reference
from tests.helpers import run_notebook, tiny_config


@pytest.fixture(scope="module")
def task():
    return get_task("review")


@pytest.fixture(scope="module")
def pairs(task):
    """64 pairs of generator responses to training prompts (option 0 = a, option 1 = b)."""
    rng = np.random.default_rng(0)
    prompts = task.sample_prompts(64, rng, split="train")
    responses = task.sample_responses([p for p in prompts for _ in range(2)], rng)
    out = feedback.encode_pairs(task, prompts, responses[0::2], responses[1::2])
    out["gold_reward"] = task.gold_reward_np(
        out["tokens"].reshape(128, -1), out["loss_mask"].reshape(128, -1)
    ).reshape(64, 2)
    return out


def _review_model(heads, seed):
    """A tiny model over the review vocabulary with random params (drawn directly: the judges'
    properties hold for any params, and this skips compiling an initialiser)."""
    model = build_model(tiny_config(vocab_size=64, max_len=48, d_model=16, mlp_dim=32), heads)
    rng = np.random.default_rng(seed)
    params = jax.tree.map(
        lambda s: (0.3 * rng.standard_normal(s.shape)).astype(s.dtype), model.abstract_params
    )
    return model, params


# ----------------------------------------------------------------------------- pairs layout
def test_encode_pairs_holds_prompt_a_b_and_swap_reverses_them(task, pairs):
    one = feedback.encode_pairs(task, [[20]], [[9, 10, 2]], [[11, 2]])
    assert one["tokens"].shape[:2] == (1, 2)
    np.testing.assert_array_equal(one["tokens"][0, 0, :5], [1, 20, 9, 10, 2])
    np.testing.assert_array_equal(one["tokens"][0, 1, :4], [1, 20, 11, 2])
    swapped = feedback.swap(pairs)
    np.testing.assert_array_equal(swapped["tokens"][:, 0], pairs["tokens"][:, 1])
    np.testing.assert_array_equal(swapped["gold_reward"][:, 0], pairs["gold_reward"][:, 1])
    np.testing.assert_array_equal(feedback.swap(swapped)["loss_mask"], pairs["loss_mask"])
    with pytest.raises(ValueError, match="same length"):
        feedback.encode_pairs(task, [[20]], [[9]], [])


# ----------------------------------------------------------------------------- principles
def test_gold_constitution_reward_is_the_gold_raw_score(task, pairs):
    """The four principles at the gold weights sum to the gold reward's raw score, and their
    z-score is the gold reward."""
    tokens, mask = pairs["tokens"].reshape(128, -1), pairs["loss_mask"].reshape(128, -1)
    terms = task.gold_reward_terms_np(tokens, mask)
    raw = feedback.gold_constitution(task).reward_np(task, tokens, mask)
    np.testing.assert_allclose(raw, terms["raw"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        (raw - task.base_raw_mean) / task.base_raw_std, terms["gold"], rtol=1e-5, atol=1e-5
    )


def test_gold_constitution_judge_equals_the_bradley_terry_annotator(task, pairs):
    """sigmoid(delta raw / (T std)) = sigmoid(delta gold / T): the annotator's probability."""
    temperature = 0.5
    judge = feedback.ConstitutionJudge(
        task, feedback.gold_constitution(task), temperature * task.base_raw_std
    )
    expected = Annotator("bradley_terry", temperature).preference_probability(
        pairs["gold_reward"][:, 0], pairs["gold_reward"][:, 1]
    )
    np.testing.assert_allclose(judge(pairs), expected, atol=2e-5)


def test_direction_weighted_reward_is_the_weighted_sum_of_components(task):
    """DPA's scalar reward = sum_p w_p r_p, with every component derived independently from the
    slow pure-Python gold reference; also under jit."""
    texts = [
        ("food", "the food is not very good . <eos>"),
        ("the room", "it was bad . it was bad . it was bad ."),
        ("music and menu", "overall the music was very very tasty . <eos>"),
    ]
    principles = [feedback.principle(n) for n in feedback.PRINCIPLES]
    direction = np.array([0.3, -1.2, 0.5, 2.0])
    expected = []
    for prompt, response in texts:
        ref = gold_reward_reference(task, prompt.split(), response.split())
        components = [
            3 * np.tanh(ref["sentiment"] / 3),
            -ref["repetition"],
            ref["fluency"] - task.base_fluency,
            -ref["no_eos"],
        ]
        expected.append(np.dot(direction, components))
    batch = task.encode(
        [task.encode_text(p) for p, _ in texts], [task.encode_text(r) for _, r in texts]
    )
    reward = jax.jit(
        lambda t, m: feedback.directional_reward(
            feedback.vector_reward(task, t, m, principles), direction
        )
    )(batch["tokens"], batch["loss_mask"])
    np.testing.assert_allclose(np.asarray(reward), expected, rtol=1e-4, atol=1e-4)
    constitution = feedback.Constitution(tuple(principles), tuple(direction))
    np.testing.assert_allclose(
        constitution.reward_np(task, batch["tokens"], batch["loss_mask"]), expected, atol=1e-4
    )
    with pytest.raises(ValueError, match="direction"):
        feedback.directional_reward(np.zeros((3, 4)), [1.0, 2.0])


def test_principle_judges_prefer_what_their_principle_says(task):
    """Each single-principle judge prefers the response that is better on its component only."""
    a = ("it is great . <eos>", "it is good . <eos>", "it is . <eos>")
    b = ("it is bad . <eos>", "it is good . it is good .", "it is . it is . <eos>")
    pairs = feedback.encode_pairs(
        task,
        [task.encode_text("food")] * 3,
        [task.encode_text(r) for r in a],
        [task.encode_text(r) for r in b],
    )
    sentiment = feedback.principle_judge(task, "sentiment")(pairs)
    termination = feedback.principle_judge(task, "termination")(pairs)
    repetition = feedback.principle_judge(task, "non_repetition")(pairs)
    assert sentiment[0] > 0.5 and termination[0] == pytest.approx(0.5)
    assert termination[1] > 0.5
    assert repetition[2] > 0.5 and sentiment[2] == pytest.approx(0.5)
    assert "negations" in feedback.principle("sentiment").description
    with pytest.raises(ValueError, match="allowed"):
        feedback.principle("honesty")


# ----------------------------------------------------------------------------- position bias
def test_position_bias_is_measured_and_removed(task, pairs):
    """A known logit bias b injected into an order-consistent judge is measured exactly by the
    swap; logit averaging recovers the unbiased probabilities; probability averaging is
    order-consistent and keeps every unbiased verdict."""
    base = feedback.ConstitutionJudge(task, feedback.gold_constitution(task), 2.0)
    unbiased = feedback.position_bias(base, pairs)
    assert unbiased["logit_bias"] == pytest.approx(0.0, abs=1e-9)
    assert unbiased["first_preferred"] == pytest.approx(0.5, abs=1e-9)
    bias = 0.8
    biased = feedback.PositionBiased(base, bias)
    measured = feedback.position_bias(biased, pairs)
    assert measured["logit_bias"] == pytest.approx(bias, abs=1e-9)
    assert measured["first_preferred"] > 0.55
    assert measured["consistency"] < 1.0  # some verdicts flip with the order
    p = base(pairs)
    np.testing.assert_allclose(feedback.Debiased(biased, "logit")(pairs), p, atol=1e-9)
    averaged = feedback.Debiased(biased, "probability")
    d, d_swapped = averaged(pairs), averaged(feedback.swap(pairs))
    np.testing.assert_allclose(d + d_swapped, 1.0, atol=1e-12)
    np.testing.assert_array_equal(d > 0.5, p > 0.5)
    assert feedback.position_bias(averaged, pairs)["logit_bias"] == pytest.approx(0, abs=1e-9)
    with pytest.raises(ValueError, match="allowed"):
        feedback.Debiased(base, "median")


# ----------------------------------------------------------------------------- ensembles
class _Constant:
    def __init__(self, value):
        self.value = value

    def __call__(self, pairs):
        return np.full(len(pairs["tokens"]), self.value)


def test_ensemble_mean_and_disagreement(pairs):
    """Mean of the members' probabilities; disagreement = their standard deviation."""
    ensemble = feedback.JudgeEnsemble((_Constant(0.2), _Constant(0.8)))
    mean, spread = ensemble.probability_and_disagreement(pairs)
    np.testing.assert_allclose(mean, 0.5)
    np.testing.assert_allclose(spread, 0.3)
    weighted = feedback.JudgeEnsemble((_Constant(0.2), _Constant(0.8)), weights=(3.0, 1.0))
    np.testing.assert_allclose(weighted(pairs), 0.35)
    np.testing.assert_allclose(weighted.disagreement(pairs), np.sqrt(0.75 * 0.25) * 0.6)
    agree = feedback.JudgeEnsemble((_Constant(0.7), _Constant(0.7)))
    np.testing.assert_allclose(agree.disagreement(pairs), 0.0)
    with pytest.raises(ValueError, match="weights"):
        feedback.JudgeEnsemble((_Constant(0.2),), weights=(1.0, 2.0))


# ----------------------------------------------------------------------------- routing
def test_budget_routing_picks_exactly_the_least_confident_pairs():
    """floor(p N / 100) pairs, each no more confident than any pair left out; ties by index."""
    rng = np.random.default_rng(3)
    p = rng.random(200)
    for percent in (0, 2, 5, 7, 10, 25, 100):
        selected = feedback.least_confident(p, percent)
        count = percent * 200 // 100
        assert len(selected) == len(set(selected)) == count
        left_out = np.setdiff1d(np.arange(200), selected)
        if 0 < count < 200:
            assert np.abs(p[selected] - 0.5).max() <= np.abs(p[left_out] - 0.5).min()
        brute = sorted(range(200), key=lambda i: (abs(p[i] - 0.5), i))[:count]
        np.testing.assert_array_equal(selected, sorted(brute))
    ties = np.array([0.9, 0.5, 0.6, 0.4, 0.5, 0.5])
    np.testing.assert_array_equal(feedback.least_confident(ties, 50), [1, 4, 5])
    np.testing.assert_array_equal(feedback.least_confident(ties, 34), [1, 4])  # floor(2.04)
    np.testing.assert_array_equal(feedback.most_uncertain([0.1, 0.3, 0.3, 0.0], 50), [1, 2])
    with pytest.raises(ValueError, match="budget"):
        feedback.least_confident(p, 101)


def test_random_budget_and_merge_labels():
    """The random baseline spends the same count on distinct pairs; merging replaces exactly
    the selected labels by gold ones."""
    rng = np.random.default_rng(0)
    chosen = feedback.random_pairs(100, 10, rng)
    assert len(np.unique(chosen)) == 10 == feedback.budget_count(100, 10)
    judge, gold = np.ones(100, bool), np.zeros(100, bool)
    merged = feedback.merge_labels(judge, gold, chosen)
    assert not merged[chosen].any() and merged.sum() == 90
    assert judge.all()  # the input is not modified


# ----------------------------------------------------------------------------- model judges
def test_reward_model_judge_is_bradley_terry_of_its_rewards(task, pairs):
    """P = sigmoid((r_a - r_b) / T) of the reward model's own scores."""
    model, params = _review_model(("reward",), 1)
    judge = feedback.RewardModelJudge(model, params, temperature=0.5, chunk_size=48)
    flat = {k: pairs[k].reshape(128, -1) for k in ("tokens", "input_mask")}
    r = np.asarray(jax.jit(model.apply)(params, flat["tokens"], flat["input_mask"])["rewards"])
    r = r.reshape(64, 2).astype(np.float64)
    expected = 1 / (1 + np.exp(-(r[:, 0] - r[:, 1]) / 0.5))
    np.testing.assert_allclose(judge(pairs), expected, rtol=1e-5, atol=1e-6)


def test_with_principle_equals_encoding_the_principle_before_the_prompt(task):
    """Inserting principle tokens after BOS gives the same sequence and masks as encoding them
    as the first prompt words, for any response length."""
    prompts = [task.encode_text("food"), task.encode_text("the room and music")]
    a = [task.encode_text("it is good . <eos>"), task.encode_text("it was bad .")]
    b = [task.encode_text("it is . <eos>"), task.encode_text("<eos>")]
    cue = task.encode_text("excellent .")
    inserted = feedback.with_principle(feedback.encode_pairs(task, prompts, a, b), cue)
    direct = feedback.encode_pairs(task, [cue + p for p in prompts], a, b)
    for key in ("tokens", "input_mask"):
        np.testing.assert_array_equal(inserted[key][..., : task.seq_len], direct[key])
    np.testing.assert_array_equal(inserted["loss_mask"][..., : task.seq_len], direct["loss_mask"])
    assert inserted["loss_mask"].sum() == direct["loss_mask"].sum()


def test_self_judge_scores_the_policy_verdict(task, pairs):
    """P(a > b) = sigmoid((s(a) - s(b)) / T) with s the policy's per-token log-likelihood of the
    response after BOS, principle tokens, prompt (computed here by a direct forward pass);
    order-consistent; contrastive scores subtract the unconditioned likelihood."""
    model, params = _review_model(("lm",), 2)
    cue = feedback.principle_tokens(task, feedback.principle("sentiment"))
    judge = feedback.SelfJudge(model, params, cue, temperature=0.7, chunk_size=32)
    p = judge(pairs)
    np.testing.assert_allclose(p + judge(feedback.swap(pairs)), 1.0, atol=1e-9)

    def direct_scores(batch):
        n, k, length = batch["tokens"].shape
        flat = {key: batch[key].reshape(n * k, length) for key in batch}
        logits = jax.jit(model.apply)(params, flat["tokens"], flat["input_mask"])["logits"]
        logp = np.asarray(jax.nn.log_softmax(logits, -1), np.float64)
        tokens, mask = flat["tokens"], flat["loss_mask"]
        token_logp = np.take_along_axis(logp[:, :-1], tokens[:, 1:, None], -1)[..., 0]
        total = (token_logp * mask[:, 1:]).sum(1) / mask[:, 1:].sum(1)
        return total.reshape(n, k)

    conditioned = direct_scores(feedback.with_principle(pairs, cue))
    np.testing.assert_allclose(
        p, 1 / (1 + np.exp(-(conditioned[:, 0] - conditioned[:, 1]) / 0.7)), atol=1e-5
    )
    contrastive = feedback.SelfJudge(model, params, cue, contrastive=True, chunk_size=32)
    plain = direct_scores({k: pairs[k] for k in judges_lib.PAIR_KEYS})
    np.testing.assert_allclose(contrastive.scores(pairs), conditioned - plain, atol=1e-5)
    with pytest.raises(ValueError, match="principle_tokens"):
        feedback.SelfJudge(model, params, (), contrastive=True)


# ----------------------------------------------------------------------------- revision
def test_revision_operators_by_hand(task):
    def revised(text, principles, max_length=12):
        ids = task.encode_text(text)
        return task.decode(feedback.revise(ids, principles, max_length=max_length))

    assert revised("the food was not very bad <eos>", ("sentiment",)) == (
        "the food was very good <eos>"
    )
    assert revised("it was awful but not good <eos>", ("sentiment",)) == (
        "it was great but good <eos>"
    )
    # After ". it", "was" would repeat the pair "it was" and is dropped; "it good" is new; the
    # final "." would repeat "good ." and is dropped.
    assert revised("it was good . it was good . <eos>", ("non_repetition",)) == (
        "it was good . it good <eos>"
    )
    assert revised("it was good", ("termination",)) == "it was good <eos>"
    assert revised("it was good", ("termination",), max_length=3) == "it was <eos>"
    assert revised("it was good", ("sentiment",)) == "it was good"  # no EOS added unasked
    with pytest.raises(ValueError, match=r"no revision operator for principle\(s\) \['fluency'\]"):
        feedback.revise([3], ("fluency",), max_length=4)


def test_revisions_never_lower_their_principle_and_meet_it(task):
    """On 512 generator responses: the sentiment revision never lowers S (and raises it often);
    after all three revisions no repeated pair remains and every response ends."""
    rng = np.random.default_rng(1)
    prompts = task.sample_prompts(512, rng, split="train")
    responses = task.sample_responses(prompts, rng)

    def terms(principles):
        revised = [feedback.revise(r, principles, max_length=task.seq_len) for r in responses]
        rows = task.encode(prompts, revised)
        return task.gold_reward_terms_np(rows["tokens"], rows["loss_mask"])

    original, positive, all_three = (
        terms(()),
        terms(("sentiment",)),
        terms(("sentiment", "non_repetition", "termination")),
    )
    assert np.all(positive["sentiment"] >= original["sentiment"])
    assert np.mean(positive["sentiment"] > original["sentiment"]) > 0.2
    assert np.all(all_three["repetition"] == 0) and np.all(all_three["no_eos"] == 0)
    assert np.mean(original["repetition"] > 0) > 0.05  # there was repetition to remove


# ----------------------------------------------------------------------------- judge drift
def test_judge_accuracy_by_hand():
    judge = [[2.0, 1.0], [0.0, 3.0], [1.0, 1.0], [5.0, 4.0], [0.0, 1.0]]
    verified = [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 1.0]]
    # Pair 4 is a verified tie (left out); pairs 1 and 5 agree, 2 disagrees, 3 is a judge tie.
    accuracy, pairs = feedback.judge_accuracy(judge, verified)
    assert pairs == 4 and accuracy == pytest.approx((1 + 0 + 0.5 + 1) / 4)
    assert np.isnan(feedback.judge_accuracy([[1.0, 2.0]], [[3.0, 3.0]])[0])
    with pytest.raises(ValueError, match=r"must both be \[N, 2\]"):
        feedback.judge_accuracy([[1.0, 2.0]], [1.0, 2.0])


def test_drift_alarm_fires_once_after_patience_low_checks(tmp_path):
    alarm = feedback.DriftAlarm(min_accuracy=0.6, patience=2)
    assert not alarm.update(1, 0.5)
    assert not alarm.update(2, 0.7)  # resets the run of low checks
    assert not alarm.update(3, 0.5)
    assert not alarm.update(4, float("nan"))  # undefined: neither counts nor resets
    assert not alarm.update(3, 0.1)  # step 3 was checked already
    assert alarm.update(5, 0.55) and alarm.fired_at == 5
    assert not alarm.update(6, 0.1) and alarm.fired_at == 5  # fires once
    alarm.save(tmp_path / "alarm.json")
    again = feedback.DriftAlarm.load(tmp_path / "alarm.json")
    assert again == alarm
    with pytest.raises(ValueError, match="patience=0"):
        feedback.DriftAlarm(min_accuracy=0.5, patience=0)


def test_judge_drift_config_errors_name_the_key():
    import ml_collections

    from alignax.workflows.ppo import check_judge_drift_config

    drift = ml_collections.ConfigDict({"track": True, "pairs": "reference"})
    review, arithmetic = get_task("review"), get_task("arithmetic")

    def rewards(source, judge="runs/rm"):
        return ml_collections.ConfigDict({"source": source, "reward_model_from": judge})

    check_judge_drift_config(drift, rewards("model"), arithmetic)
    check_judge_drift_config(drift, rewards("gold"), arithmetic)  # a control watches the judge
    with pytest.raises(ValueError, match="judge_drift.pairs='reference'.*review task"):
        check_judge_drift_config(drift, rewards("model"), review)
    with pytest.raises(ValueError, match="needs a judge: rewards.reward_model_from"):
        check_judge_drift_config(drift, rewards("gold", judge=""), arithmetic)
    drift.pairs = "triples"
    with pytest.raises(ValueError, match="judge_drift.pairs='triples'"):
        check_judge_drift_config(drift, rewards("model"), review)
    drift.track = False
    check_judge_drift_config(drift, rewards("gold", judge=""), review)  # nothing to check
    # A judge given to a gold run that does not watch it would be an ignored override.
    with pytest.raises(ValueError, match="read only to watch the judge: set judge_drift.track"):
        check_judge_drift_config(drift, rewards("gold"), review)


def test_drift_alarm_calibrated_on_other_seeds_and_replayed():
    """Each seed's threshold is the lowest judge accuracy of the OTHER seeds' controls; the
    alarm replayed on a logged curve fires where DriftAlarm would (patience counted by hand)."""
    nan = float("nan")
    controls = {0: [0.6, 0.4, nan], 1: [0.7, 0.3], 2: [0.5, 0.45]}
    assert feedback.calibrated_thresholds(controls, default=0.5) == {0: 0.3, 1: 0.4, 2: 0.3}
    assert feedback.calibrated_thresholds({0: controls[0]}, default=0.5) == {0: 0.5}
    steps, accuracies = [0, 10, 20, 30, 40], [0.6, 0.2, 0.5, 0.2, 0.1]
    assert feedback.first_alarm(steps, accuracies, 0.3, patience=1) == 10
    assert feedback.first_alarm(steps, accuracies, 0.3, patience=2) == 40  # 30 and 40 in a row
    assert np.isnan(feedback.first_alarm(steps, accuracies, 0.05, patience=1))


def test_judge_drift_runlocal_fires_the_alarm_where_the_judge_errs(tmp_path):
    """experiments/judge_drift.py end to end on arithmetic: SFT -> judge -> PPO against the
    judge (tracked against verified answers) and against the verifier; with the alarm at its
    strictest it fires at the first evaluation where the judge prefers a wrong answer, and the
    report's numbers are the curves'."""
    import json

    from configs import judge_drift as config_module
    from experiments import judge_drift

    config = config_module.get_config("runlocal")
    with config.unlocked():
        config.stages.ppo.judge_drift.update(min_accuracy=1.0, patience=1)
    summary = judge_drift.run(config, tmp_path)
    results = json.loads((tmp_path / "results.json").read_text())
    runs = results["per_seed"]["0"]
    assert set(runs) == {"ppo_beta0", "ppo_beta0.1", "verifier"}
    for name in ("ppo_beta0", "ppo_beta0.1"):
        run, curve = runs[name], runs[name]["curve"]
        assert curve["step"][0] == 0 and len(curve["step"]) >= 2
        accuracies = np.array(curve["judge_accuracy"])
        assert np.all((accuracies >= 0) & (accuracies <= 1))
        low = [s for s, a in zip(curve["step"], accuracies) if a < 1.0]
        assert run["alarm_step"] == low[0] if low else np.isnan(run["alarm_step"])
        assert run["gold_best"] == max(curve["gold"]) and run["gold_end"] == curve["gold"][-1]
        assert summary[f"{name}/alarm_step"] == run["alarm_step"] or not low
    # The control watches the judge without optimising it.
    watched = np.array(runs["verifier"]["curve"]["judge_accuracy"])
    assert np.all((watched >= 0) & (watched <= 1))
    verifier = json.loads((tmp_path / "seed0" / "verifier" / "config.json").read_text())
    assert verifier["rewards"]["source"] == "gold"
    assert verifier["rewards"]["reward_model_from"] == str(tmp_path / "seed0" / "reward_model")
    assert runs["verifier"]["threshold"] == 1.0  # one seed: the configured threshold
    judge = json.loads((tmp_path / "seed0" / "reward_model" / "config.json").read_text())
    assert judge["init_from"] == judge["labels"]["policy_from"] == str(tmp_path / "seed0" / "sft")
    text = (tmp_path / "results.md").read_text()
    assert "Written by" in text and "| verifier (control) |" in text
    assert (tmp_path / "figures" / "judge_drift.png").exists()
    # Run again on the same workdir: every stage is found finished, the numbers are the same.
    again = judge_drift.run(config, tmp_path)
    same = lambda a, b: a == b or (np.isnan(a) and np.isnan(b))  # noqa: E731
    assert all(same(again[k], summary[k]) for k in summary if not k.startswith("seconds"))
    run_notebook("judge_drift.ipynb", tmp_path)


# ------------------------------------------------------------------- directions (DPA)
def test_direction_labels_follow_one_objective_at_each_axis():
    """At 0 degrees the labels depend on the first objective only, at 90 on the second only
    (a cold annotator: the standardised difference decides); 90 degrees weighs the first
    exactly 0."""
    assert directions.direction(90.0)[0] == 0.0 and directions.direction(0.0)[1] == 0.0
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(200, 2, 2)) * [3.0, 0.1]  # objectives on different scales
    spread = scores.reshape(-1, 2).std(0)
    for degrees, objective in ((0.0, 0), (90.0, 1)):
        chosen = directions.directional_labels(scores, spread, degrees, 1e-6, rng)
        np.testing.assert_array_equal(chosen, scores[:, 0, objective] > scores[:, 1, objective])
    # At 45 degrees both count, each in units of its spread.
    standardised = scores / spread
    chosen = directions.directional_labels(scores, spread, 45.0, 1e-6, rng)
    margin = standardised[:, 0].sum(-1) - standardised[:, 1].sum(-1)
    np.testing.assert_array_equal(chosen, margin > 0)


def test_direction_ties_are_pairs_the_direction_cannot_order():
    """At 90 degrees only the second objective counts: a pair equal on it is tied whatever the
    first says; at 0 degrees the same pair is ordered."""
    scores = np.array(
        [
            [[1.0, 0.0], [3.0, 0.0]],  # equal second objective
            [[1.0, 0.2], [1.0, 0.0]],  # equal first objective
            [[2.0, 0.5], [2.0, 0.5]],  # identical
        ]
    )
    spread = np.array([1.0, 0.5])
    np.testing.assert_array_equal(directions.tied(scores, spread, 90.0), [True, False, True])
    np.testing.assert_array_equal(directions.tied(scores, spread, 0.0), [False, True, True])
    margin = directions.directional_margin(scores, spread, 90.0)
    np.testing.assert_allclose(margin, [0.0, 0.4, 0.0], atol=1e-12)


def test_direction_steps_are_paired_by_seed_and_in_order_only_when_both_intervals_say_so():
    """Three directions, three seeds. A seed offset shared by every direction cancels; the
    first step lowers objective 1 and raises objective 2 in every seed (in order), the second
    raises objective 2 in one seed only (not shown)."""
    by_direction = {  # per seed: [objective 1, objective 2]
        0.0: [[2.0, 0.0], [3.0, 1.0], [2.5, 0.5]],
        45.0: [[1.0, 1.0], [2.1, 2.0], [1.4, 1.6]],
        90.0: [[0.0, 1.0], [1.0, 2.5], [0.5, 1.5]],
    }
    first, second = directions.front_steps({d: np.array(v) for d, v in by_direction.items()})
    assert (first["from"], first["to"], second["from"], second["to"]) == (0, 45, 45, 90)
    assert first["change"][0] == pytest.approx(mean_interval([-1.0, -0.9, -1.1]))
    assert first["change"][1] == pytest.approx(mean_interval([1.0, 1.0, 1.1]))
    assert first["in_order"] and not second["in_order"]
    assert second["change"][1] == pytest.approx(mean_interval([0.0, 0.5, -0.1]))


def test_tied_pairs_are_dropped_and_the_rest_labelled_chosen_first():
    """At 90 degrees pairs equal on the second objective are tied: with `drop_ties` they leave,
    and a cold annotator puts the higher second objective first in the rest; without, every
    pair stays."""
    scores = np.array(
        [
            [[1.0, 0.0], [3.0, 0.0]],  # tied at 90 degrees
            [[1.0, 0.0], [1.0, 0.4]],  # b better
            [[2.0, 0.6], [0.0, 0.2]],  # a better
        ]
    )
    pairs = {k: np.arange(12).reshape(3, 2, 2) * (i + 1) for i, k in enumerate(LM_KEYS)}
    spread, rng = np.array([1.0, 1.0]), np.random.default_rng(0)
    kept = directions.labelled_pairs(pairs, scores, spread, 90.0, 1e-6, rng, drop_ties=True)
    np.testing.assert_array_equal(kept["tokens"][:, 0], pairs["tokens"][[1, 2], [1, 0]])
    np.testing.assert_array_equal(kept["tokens"][:, 1], pairs["tokens"][[1, 2], [0, 1]])
    every = directions.labelled_pairs(pairs, scores, spread, 90.0, 1e-6, rng, drop_ties=False)
    assert len(every["tokens"]) == 3

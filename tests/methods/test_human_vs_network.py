"""Human vs network: scripted answers are scored exactly, disagreements and per-class failures match a hand count,
shortlists hold the truth, and a dataset without labels is a one-line error."""

from __future__ import annotations

import pytest
import torch

from cnnwidgets import InputError, zoo
from cnnwidgets.methods.attributes import wilson_interval
from cnnwidgets.methods.human_vs_network import score_answers, shortlist

from tests.conftest import assert_same_state, hooks_left, model_state

pytestmark = pytest.mark.usefixtures("one_thread")  # CI-sized: one thread, restored after each test


@pytest.fixture(scope="module")
def digits_cnn():
    return zoo.digits_cnn()


@pytest.fixture(scope="module")
def test_digits():
    return zoo.digits("test")


def test_scripted_answers_are_scored_exactly(digits_cnn, test_digits):
    before = model_state(digits_cnn.model)
    x, y = test_digits.tensors()
    network = digits_cnn.batch_logits(x[:20]).argmax(1).tolist()  # the reference: the model on the same images
    truth = y[:20].tolist()
    # the learner is right on the first 15 images, then answers the next digit up (wrong)
    answers = {i: truth[i] if i < 15 else (truth[i] + 1) % 10 for i in range(20)}
    answers[3] = str(truth[3])  # a class name counts as the class
    found = score_answers(digits_cnn, test_digits, answers)
    assert found.human_accuracy == 0.75
    assert found.network_accuracy == sum(n == t for n, t in zip(network, truth)) / 20
    assert found.interval("human") == wilson_interval(15, 20)
    expected = [i for i in range(20) if (i < 15) != (network[i] == truth[i])]
    assert [r.index for r in found.disagreements] == expected
    assert [r.network for r in found.records] == [[n] for n in network]
    by_class = found.failures_by_class()
    assert sum(images for images, _, _ in by_class.values()) == 20
    assert sum(human for _, human, _ in by_class.values()) == 5
    assert by_class[str(truth[19])][1] >= 1
    rows = found.rows()
    assert rows[19]["human_names"] == [str((truth[19] + 1) % 10)] and rows[19]["label_name"] == str(truth[19])
    assert_same_state(before, model_state(digits_cnn.model))
    assert hooks_left(digits_cnn.model) == 0


def test_top_k_answers(digits_cnn, test_digits):
    truth = test_digits.tensors()[1][:4].tolist()
    answers = {0: [(truth[0] + 1) % 10, truth[0]], 1: [(truth[1] + 1) % 10, (truth[1] + 2) % 10], 2: truth[2], 3: [truth[3]]}
    found = score_answers(digits_cnn, test_digits, answers, k=2)
    assert [r.human_correct for r in found.records] == [True, False, True, True]
    assert all(len(r.network) == 2 for r in found.records)
    with pytest.raises(InputError, match="guesses"):
        score_answers(digits_cnn, test_digits, {0: [1, 2, 3]}, k=2)


def test_shortlists_hold_the_truth_and_nothing_else_twice(digits_cnn, test_digits):
    truth = test_digits.tensors()[1][:6].tolist()
    lists = shortlist(digits_cnn, test_digits, range(6), k=4, seed=0)
    assert all(len(set(choices)) == 4 and label in choices for choices, label in zip(lists, truth))
    assert lists == shortlist(digits_cnn, test_digits, range(6), k=4, seed=0)  # seeded


def test_bad_input_gets_one_line_errors(digits_cnn, test_digits):
    unlabelled = [test_digits[i][0] for i in range(3)]
    with pytest.raises(InputError, match="no labels"):
        score_answers(digits_cnn, unlabelled, {0: 1})
    with pytest.raises(InputError, match="no labels"):
        shortlist(digits_cnn, unlabelled, [0, 1])
    with pytest.raises(InputError, match="not in the dataset"):
        score_answers(digits_cnn, test_digits, {10_000: 1})
    with pytest.raises(InputError, match="no class named"):
        score_answers(digits_cnn, test_digits, {0: "eleven"})
    with pytest.raises(InputError, match="no answers"):
        score_answers(digits_cnn, test_digits, {})

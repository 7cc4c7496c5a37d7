"""HumanVsNetwork through its messages: scripted answers sent as the front end sends them (a comm update with a
request id) are scored as a hand count says, for the learner and the network; disagreements, failures per class,
results and their CSV / JSON export; a dataset without labels and bad answers are one-line errors; the model is
untouched."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from cnnwidgets import InputError, Inspector, zoo
from cnnwidgets.widgets.attribute_slices import THUMB
from cnnwidgets.widgets.human_vs_network import HumanVsNetwork
from tests.conftest import assert_same_state, hooks_left, model_state
from tests.widgets.test_refused_values import browser_update

pytestmark = pytest.mark.usefixtures("one_thread")  # CI-sized: one thread, restored after each test


@pytest.fixture(scope="module")
def digits_cnn() -> Inspector:
    return zoo.digits_cnn()


@pytest.fixture
def game(digits_cnn) -> HumanVsNetwork:
    return HumanVsNetwork(digits_cnn, zoo.digits("test"), count=8, seed=3)


def test_scripted_answers_are_scored_as_a_hand_count_says(digits_cnn, game):
    before = model_state(digits_cnn.model)
    dataset = zoo.digits("test")
    x, y = dataset.tensors()
    truth = y[game.positions].tolist()
    network = digits_cnn.batch_logits(x[game.positions]).argmax(1).tolist()
    assert game.labels == truth and game.images.array.shape == (8, THUMB, THUMB, 3)
    assert all(label in choices and len(choices) == 5 for label, choices in zip(truth, game.choices))

    # the learner answers five images: right, wrong, right, wrong, right (by class index and by name)
    script = [truth[0], (truth[1] + 1) % 10, str(truth[2]), (truth[3] + 2) % 10, truth[4], None, None, None]
    sent = browser_update(game, answers=script, request=12)
    score = game.score
    assert score["request"] == 12 and score["answered"] == 5 and not game.error
    assert any("score" in m.get("state", {}) for m in sent)
    human_right = [True, False, True, False, True]
    network_right = [network[i] == truth[i] for i in range(5)]
    assert score["human"]["correct"] == 3 and score["human"]["accuracy"] == pytest.approx(3 / 5)
    assert score["human"]["interval"] == pytest.approx([0.2307, 0.8824], abs=1e-4)  # Wilson, 3 of 5
    assert score["network"]["correct"] == sum(network_right)
    assert score["network"]["accuracy"] == pytest.approx(sum(network_right) / 5)
    assert [d["slot"] for d in score["disagreements"]] == [i for i in range(5) if human_right[i] != network_right[i]]
    misses = {str(truth[i]): 0 for i in range(5)}
    for i in range(5):
        misses[str(truth[i])] += not human_right[i]
    assert {f["class"]: f["human"] for f in score["failures"]} == misses

    rows = game.results
    assert [row["index"] for row in rows] == game.positions[:5]
    assert [row["human_correct"] for row in rows] == human_right
    assert [row["network"][0] for row in rows] == network[:5]
    assert_same_state(before, model_state(digits_cnn.model))
    assert hooks_left(digits_cnn.model) == 0


def test_answering_from_python_and_export(game, tmp_path):
    game.answer_image(0, game.labels[0])
    game.answer_image(1, "7" if game.labels[1] != 7 else "1")
    assert game.score["answered"] == 2 and game.score["human"]["correct"] == 1
    with (game.export(tmp_path / "game.csv")).open() as file:
        table = list(csv.DictReader(file))
    assert [row["human_correct"] for row in table] == ["True", "False"] and table[0]["index"] == str(game.positions[0])
    exported = json.loads(game.export(tmp_path / "game.json").read_text())
    assert exported == json.loads(json.dumps(game.results))
    with pytest.raises(InputError, match=r"\.csv or \.json"):
        game.export(tmp_path / "game.xlsx")
    game.answer_image(1, None)  # taken back
    assert game.score["answered"] == 1 and len(game.results) == 1
    assert game.to_png()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("value, message", [([0] * 3, "one class"), (["nope"] + [None] * 7, "no class named"),
                                            ([99] + [None] * 7, "out of range"), ([[1, 2]] + [None] * 7, "not a class")])
def test_bad_answers_from_the_browser_are_rolled_back(game, value, message):
    game.answer_image(0, 3)
    before = (list(game.answers), dict(game.score))
    sent = browser_update(game, answers=value, request=40)
    assert (game.answers, game.score) == before
    assert message in game.error and "\n" not in game.error
    assert [m["state"]["answers"] for m in sent if "answers" in m.get("state", {})][-1] == before[0]


def test_a_dataset_without_labels_is_one_line(digits_cnn):
    pictures = [zoo.digits()[i][0] for i in range(6)]
    with pytest.raises(InputError, match="no labels") as raised:
        HumanVsNetwork(digits_cnn, pictures, count=3)
    assert "\n" not in str(raised.value)
    with pytest.raises(InputError, match="count"):
        HumanVsNetwork(digits_cnn, zoo.digits("test"), count=0)
    free = HumanVsNetwork(digits_cnn, zoo.digits("test"), indices=[0, 1], mode="free")
    assert free.mode == "free" and free.classes == [str(i) for i in range(10)] and np.array(free.labels).shape == (2,)
    sent = browser_update(free, mode="nope")  # an Enum refuses it; the browser gets "free" back
    assert free.mode == "free" and "mode" in free.error and sent[-1]["state"]["mode"] == "free"
    with pytest.raises(InputError, match="cannot index"):
        HumanVsNetwork(digits_cnn, iter([]), count=1)

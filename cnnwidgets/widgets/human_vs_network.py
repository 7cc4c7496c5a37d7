"""HumanVsNetwork: the learner labels dataset images, then sees their accuracy against the network's on the same
images, the disagreements side by side and, per true class, where each failed (Karpathy 2014; scored by
`methods.human_vs_network`).

The learner answers one class per image: from a shortlist (the true class among k − 1 random others,
`methods.shortlist`) or freely among all classes, with a search box. Answers are the synced list `answers` (a class
index or None per image); each change from the browser carries a request id that the `score` answer echoes.
"""

from __future__ import annotations

import csv
import json
import pathlib
from typing import cast

import numpy as np
import traitlets
from torch import nn

from .. import render
from ..backend import Inspector
from ..backend.images import ImageLike
from ..backend.index import Source
from ..errors import InputError
from ..methods.human_vs_network import Comparison, labelled_items, score_answers, shortlist
from .arrays import Array, array_message
from .attribute_slices import thumbnails
from .base import CnnWidget, front_end
from .defaults import as_inspector

DEFAULT_COUNT = 12
"""Images in a game by default: about two minutes of a learner's time."""
MAX_COUNT = 100


class HumanVsNetwork(CnnWidget):
    """`count` images of `dataset` (seeded random positions, or `indices`) to label. `mode` "shortlist" offers
    `choices` (k classes per image, the true one among them); "free" offers every class of `classes`. `answers`
    holds the learner's class per image (None before answering); `score` the two accuracies with Wilson 95 %
    intervals, the disagreements and the failures per class, over the answered images; `results` one dict per
    answered image; `export(path)` writes them as CSV or JSON."""

    _esm = front_end("human_vs_network")

    mode = traitlets.Enum(["shortlist", "free"], "shortlist").tag(sync=True)
    images = Array().tag(sync=True)
    classes = traitlets.List().tag(sync=True)
    choices = traitlets.List().tag(sync=True)
    answers = traitlets.List().tag(sync=True)
    score = traitlets.Dict().tag(sync=True)

    def __init__(self, inspector: Inspector | nn.Module | None, dataset: object, *, count: int = DEFAULT_COUNT,
                 indices: list[int] | None = None, k: int = 5, seed: int = 0, **kwargs: object) -> None:
        self.inspector = as_inspector(inspector)
        if dataset is None:
            raise InputError("HumanVsNetwork needs a labelled dataset; pass e.g. zoo.digits('test') with zoo.digits_cnn()")
        if indices is None:
            size = Source(dataset).length  # None for an iterable dataset
            if size is None:
                raise InputError("the human test needs images by position; pass a map-style Dataset, a list or a folder")
            if not isinstance(count, int) or not 1 <= count <= min(MAX_COUNT, size):
                raise InputError(f"count={count!r}; pass 1..{min(MAX_COUNT, size)} images")
            indices = [int(i) for i in np.random.default_rng(seed).choice(size, count, replace=False)]
        self.dataset, self.positions = dataset, list(indices)
        _, items = labelled_items(dataset, self.positions)  # a dataset without labels: a one-line InputError
        self.labels = [label for _, label in items]
        pictures = cast(list[ImageLike], [image for image, _ in items])
        classes = len(self.inspector.labels) if self.inspector.labels is not None else len(self.inspector.logits(pictures[0]))
        self.comparison: Comparison | None = None
        super().__init__(**kwargs)
        with self.hold_trait_notifications():
            self.classes = [self.inspector.label(i) for i in range(classes)]
            # a model without class names offers every class ("class 0", …) in free mode only
            named = self.inspector.labels is not None and classes >= 2
            self.choices = shortlist(self.inspector, dataset, self.positions, k=min(k, classes), seed=seed) if named else []
            self.images = array_message(thumbnails(self.inspector, pictures), positions=self.positions)
            self.answers = [None] * len(self.positions)
        self.score = self.answer(answered=0)

    @traitlets.validate("answers")
    def _check_answers(self, proposal: dict) -> list[int | None]:
        answers = proposal["value"]
        if not self.positions:
            return answers
        if len(answers) != len(self.positions):
            raise InputError(f"answers has {len(answers)} entries for {len(self.positions)} images; pass one class (or None) per image")
        checked: list[int | None] = []
        for answer in answers:
            if answer is None:
                checked.append(None)
            elif isinstance(answer, str) or (isinstance(answer, (int, np.integer)) and not isinstance(answer, bool)):
                index = self.inspector.class_index(answer if isinstance(answer, str) else int(answer))  # a name or an index; unknown names say so in one line
                if index >= len(self.classes):
                    raise InputError(f"class index {index} is out of range; pick 0..{len(self.classes) - 1}")
                checked.append(index)
            else:
                raise InputError(f"answer {answer!r} is not a class; pass a class index, a class name or None")
        return checked

    @traitlets.observe("answers")
    def _on_answers(self, _change: dict) -> None:
        answered = {position: answer for position, answer in zip(self.positions, self.answers) if answer is not None}
        if not answered:
            self.comparison = None
            self.score = self.answer(answered=0)
            return
        with self._working():
            comparison = score_answers(self.inspector, self.dataset, answered)
            self.comparison = comparison
            slot = {position: i for i, position in enumerate(self.positions)}
            self.score = self.answer(
                answered=len(comparison.records),
                human={"correct": sum(r.human_correct for r in comparison.records), "accuracy": comparison.human_accuracy,
                       "interval": list(comparison.interval("human"))},
                network={"correct": sum(r.network_correct for r in comparison.records), "accuracy": comparison.network_accuracy,
                         "interval": list(comparison.interval("network"))},
                disagreements=[{"slot": slot[r.index], "label": self.inspector.label(r.label), "human": self.inspector.label(r.human[0]),
                                "network": self.inspector.label(r.network[0]), "human_correct": r.human_correct}
                               for r in comparison.disagreements],
                failures=[{"class": name, "images": images, "human": human, "network": network}
                          for name, (images, human, network) in sorted(comparison.failures_by_class().items())],
            )

    def answer_image(self, slot: int, answer: int | str | None) -> None:
        """Answer image `slot` of the game (as a click does): a class index or name, or None to take it back."""
        if not 0 <= slot < len(self.positions):
            raise InputError(f"image {slot} is not in the game; pick 0..{len(self.positions) - 1}")
        answers = list(self.answers)
        answers[slot] = answer
        self.answers = answers

    @property
    def results(self) -> list[dict]:
        """One plain dict per answered image: dataset position, true class, the learner's and the network's answers
        (indices and names), and who was right."""
        return [] if self.comparison is None else self.comparison.rows()

    def export(self, path: str | pathlib.Path) -> pathlib.Path:
        """Write `results` to `path`: CSV (lists joined with ';') for .csv, JSON for .json."""
        path = pathlib.Path(path)
        rows = self.results
        if path.suffix == ".json":
            path.write_text(json.dumps(rows, indent=1))
        elif path.suffix == ".csv":
            with path.open("w", newline="") as file:
                fields = list(rows[0]) if rows else ["index", "label", "human", "network", "human_correct", "network_correct"]
                writer = csv.DictWriter(file, fields)
                writer.writeheader()
                writer.writerows({key: ";".join(map(str, value)) if isinstance(value, list) else value for key, value in row.items()}
                                 for row in rows)
        else:
            raise InputError(f"cannot export to {path.name!r}; pass a path ending in .csv or .json")
        return path

    def _figure_png(self) -> bytes:
        import matplotlib.pyplot as plt

        pictures = self.images.array
        figure, axes = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [2, 1]})
        axes[0].imshow(render.tile(pictures, columns=min(len(pictures), 8)))
        axes[0].axis("off")
        axes[0].set_title(f"{len(pictures)} images; {self.score.get('answered', 0)} answered", fontsize=9)
        if self.score.get("answered"):
            for x, who in enumerate(("human", "network")):
                found = self.score[who]
                low, high = found["interval"]
                axes[1].bar(x, found["accuracy"], color=["#ff7f0e", "#1976d2"][x], width=0.6)
                axes[1].errorbar(x, found["accuracy"], [[found["accuracy"] - low], [high - found["accuracy"]]], color="k", capsize=4)
            axes[1].set_xticks([0, 1], ["you", "network"])
            axes[1].set_ylim(0, 1.05)
            axes[1].set_title(f"accuracy on the same {self.score['answered']} images (Wilson 95 %)", fontsize=9)
        else:
            axes[1].axis("off")
        return render.figure_png(figure)

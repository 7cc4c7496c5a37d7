"""Human vs ConvNet (Karpathy 2014, "What I learned from competing against a ConvNet on ImageNet", which the CS231n
notes link): a learner labels dataset images, and their answers are scored against the truth and against the
network's own predictions on the same images: both accuracies with Wilson 95 % intervals, the images where exactly
one of them is right (the disagreements), and per true class how often each failed.

An answer is a class (index or label name) or, for a top-k game, up to k classes: it counts as right when the true
class is among them, as the network's does when the true class is among its k most probable. `shortlist` offers
the learner k classes per image to choose from: the true one among k − 1 others drawn at random (seeded), so the
list gives away nothing the network thinks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..backend.index import Source
from ..errors import InputError
from .attributes import wilson_interval

Answer = int | str | Sequence[int | str]


def labelled_items(dataset: object, indices: Sequence[int]) -> tuple[Source, list[tuple[object, int]]]:
    """(image, true class) of each of `indices`; a dataset without labels or random access is a one-line error."""
    source = Source(dataset)
    size = source.length  # None for an iterable dataset
    if not source.random_access or size is None:
        raise InputError("the human test needs images by position; pass a map-style Dataset, a list or a folder")
    items = []
    for index in indices:
        if not isinstance(index, (int, np.integer)) or not 0 <= index < size:
            raise InputError(f"image {index!r} is not in the dataset; pass positions 0..{size - 1}")
        image, label = source.item(int(index))
        if label is None:
            raise InputError("the dataset has no labels; the human-vs-network test needs the true class of each image")
        items.append((image, label))
    return source, items


def shortlist(inspector, dataset: object, indices: Sequence[int], k: int = 5, seed: int = 0) -> list[list[int]]:
    """For each image of `indices`, `k` class indices to choose from: its true class and k − 1 others at random."""
    classes = len(inspector.labels) if inspector.labels is not None else None
    if classes is None:
        raise InputError("the inspector has no class names to offer; pass labels= to the Inspector")
    if not isinstance(k, int) or not 2 <= k <= classes:
        raise InputError(f"k={k!r}; pass a shortlist length between 2 and {classes}")
    _, items = labelled_items(dataset, indices)
    generator = np.random.default_rng(seed)
    lists = []
    for _, label in items:
        others = generator.choice([c for c in range(classes) if c != label], k - 1, replace=False)
        choices = np.append(others, label)
        generator.shuffle(choices)
        lists.append([int(c) for c in choices])
    return lists


@dataclass
class Record:
    """One image of the game: its truth, the learner's answer(s), the network's top-k, and who was right."""

    index: int
    label: int
    human: list[int]
    network: list[int]
    human_correct: bool
    network_correct: bool

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Comparison:
    """The scores of a learner against the network on the same images (top-`k`)."""

    k: int
    records: list[Record]
    class_names: list[str] = field(default_factory=list)

    def _accuracy(self, who: str) -> float:
        return sum(getattr(r, f"{who}_correct") for r in self.records) / len(self.records)

    @property
    def human_accuracy(self) -> float:
        return self._accuracy("human")

    @property
    def network_accuracy(self) -> float:
        return self._accuracy("network")

    def interval(self, who: str) -> tuple[float, float]:
        """Wilson 95 % interval of "human" or "network" accuracy."""
        if who not in ("human", "network"):
            raise InputError(f"who={who!r}; pick 'human' or 'network'")
        return wilson_interval(sum(getattr(r, f"{who}_correct") for r in self.records), len(self.records))

    @property
    def disagreements(self) -> list[Record]:
        """Images where exactly one of the two is right, in answer order."""
        return [r for r in self.records if r.human_correct != r.network_correct]

    def failures_by_class(self) -> dict[str, tuple[int, int, int]]:
        """Per true class seen: (images, human misses, network misses)."""
        found: dict[str, list[int]] = {}
        for r in self.records:
            counts = found.setdefault(self._name(r.label), [0, 0, 0])
            counts[0] += 1
            counts[1] += not r.human_correct
            counts[2] += not r.network_correct
        return {name: (images, human, network) for name, (images, human, network) in found.items()}

    def _name(self, index: int) -> str:
        return self.class_names[index] if index < len(self.class_names) else f"class {index}"

    def rows(self) -> list[dict]:
        """One plain dict per image (with class names), ready for `csv.DictWriter` or a DataFrame."""
        return [{**r.as_dict(), "label_name": self._name(r.label), "human_names": [self._name(c) for c in r.human],
                 "network_names": [self._name(c) for c in r.network]} for r in self.records]


def score_answers(inspector, dataset: object, answers: Mapping[int, Answer], k: int = 1) -> Comparison:
    """Score `answers` (dataset position → class, class name, or up to `k` of them) against the truth and against
    the network's top-`k` on the same images."""
    if not isinstance(answers, Mapping) or not answers:
        raise InputError("no answers to score; pass {dataset position: class or class name, …}")
    if not isinstance(k, int) or k < 1:
        raise InputError(f"k={k!r}; pass a whole number of guesses ≥ 1")
    indices = list(answers)
    _, items = labelled_items(dataset, indices)
    guesses = []
    for index in indices:
        answer = answers[index]
        chosen = [answer] if isinstance(answer, (int, str, np.integer)) else list(answer)
        if not 1 <= len(chosen) <= k:
            raise InputError(f"image {index} has {len(chosen)} guesses; give 1 to k={k}")
        guesses.append([inspector.class_index(choice) for choice in chosen])
    batch = torch.cat([inspector.preprocess(image) for image, _ in items])
    logits = inspector.batch_logits(batch)
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices.tolist()
    records = [Record(int(index), label, human, network, label in human, label in network)
               for index, (_, label), human, network in zip(indices, items, guesses, top)]
    return Comparison(k, records, list(inspector.labels or []))

"""A dataset index: one streaming pass of a dataset through the model, kept small enough for any dataset size.

For each channel of each chosen layer it keeps the top-k images (by the channel's maximum over positions) and
where that maximum is; for every image its pooled CNN code, label, prediction, a content hash and a thumbnail.
Top-k sets are updated batch by batch (memory: k values per channel, whatever the dataset's size), in one
total order — activation descending, then image id ascending — so the result does not depend on batching, and
indexes of disjoint shards merge into exactly the index of the whole (`Index.merge`).

An index remembers a fingerprint of the model's weights and a hash of every image it saw; loading it with
another model or other images is refused, so a stale index is never shown. With `path=` the index is saved
as it goes (every `save_every` seconds and when interrupted) and a second call with the same path resumes
where the first stopped, or returns the finished index at once.

Modules: `datasets` (whatever a user passes, as items and model inputs), `value` (the `Index`: reading, checks,
save / load / merge), `builder` (`build_index`, the streaming pass).
"""

from .builder import build_index, default_layers
from .datasets import Source, image_hash, parse_item
from .value import FORMAT_VERSION, HASH_CHECKS, NO_IMAGE, Index, state_problem, weights_fingerprint

__all__ = ["FORMAT_VERSION", "HASH_CHECKS", "NO_IMAGE", "Index", "Source", "build_index", "default_layers",
           "image_hash", "parse_item", "state_problem", "weights_fingerprint"]

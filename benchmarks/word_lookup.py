"""Measurement: how far each NER corpus's words alone go, with no model (:func:`clinflair_utils.ner.word_lookup`).

Every test token is tagged with the entity type its word carried most often in train+dev; token
precision, recall and F1 over the entity types. The results chapter and the README set it beside
how much `general` adds over `chars` (the tagger without a language model) on each corpus: where
the words alone tell the entities, a `chars` tagger learns them from the task's own words.

    python benchmarks/word_lookup.py --json benchmarks/results/word_lookup.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from clinflair_utils.data import NER_DATASETS
from clinflair_utils.ner import word_lookup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(NER_DATASETS))
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    args = parser.parse_args()

    measured = {"method": "each test token gets the entity type its lower-cased word carried most often in "
                          "train+dev (O if never seen); token scores over entity types, in points",
                "corpora": {}}
    for dataset in args.datasets:
        scores = measured["corpora"][dataset] = word_lookup(dataset)
        print(f"{dataset}: token F1 {scores['token_f1']} (precision {scores['precision']}, "
              f"recall {scores['recall']}; {scores['entity_tokens']:,} of {scores['test_tokens']:,} test tokens "
              "in entities)", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(measured, indent=2) + "\n")


if __name__ == "__main__":
    main()

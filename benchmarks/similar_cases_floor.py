"""Where to put the similarity floor of similar-case search, from Banking77 train only.

    python benchmarks/similar_cases_floor.py [--csv PATH] [--seed 0]

Half of the train split plays the resolved-case history (its first 100, 500 or 5,000 texts: a new
team, a small one, an established one) and the other half the incoming tickets. For each ticket the
nearest case by cosine (MiniLM, the retriever's query understanding) counts as alike when it has
the ticket's intent. For each candidate floor it prints the share of tickets that would be shown a
case, how often the shown case is alike, and how often the hidden one would have been.

The floor to use is the highest one under which the hidden cases are mostly unlike (alike < 50%)
at every history size: above it, a floor starts hiding cases that would have helped.
`services.retriever.search.DEFAULT_CASE_MIN_SIMILARITY` is set from this output.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.classifier.intent_model import read_labeled_csv  # noqa: E402
from services.retriever.search import build_query, mean_vector, segment_vectors  # noqa: E402
from encoders.embedding import EmbeddingCache, load_encoder  # noqa: E402
from tooling.settings import FleetSettings  # noqa: E402

DEFAULT_CSV = ROOT.parent / "shared" / "datasets" / "banking77" / "train.csv"
HISTORY_SIZES = (100, 500, 5000)
FLOORS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    texts, labels = read_labeled_csv(args.csv, "text", "category")
    intents = np.array(labels)
    settings = FleetSettings.from_env()
    encoder = load_encoder(settings.embedding_model)
    cases = EmbeddingCache(settings.cache_dir / "embeddings", encoder)
    order = np.random.default_rng(args.seed).permutation(len(texts))
    history, tickets = order[: len(order) // 2], order[len(order) // 2 :]
    # Tickets go through the search's query understanding; cases are embedded as the index does.
    case_vectors = cases.encode([texts[i] for i in history])
    ticket_vectors = np.stack([mean_vector(segment_vectors(encoder, build_query(texts[i]))) for i in tickets])

    print(f"{args.csv}: {len(history)} texts as history, {len(tickets)} as tickets")
    for size in HISTORY_SIZES:
        similarity = ticket_vectors @ case_vectors[:size].T
        best = similarity.max(axis=1)
        alike = intents[history[:size][similarity.argmax(axis=1)]] == intents[tickets]
        print(f"history of {size}: the nearest case is alike for {alike.mean():.1%} of tickets")
        for floor in FLOORS:
            shown = best >= floor
            hidden_alike = f"{alike[~shown].mean():.1%}" if (~shown).any() else "n/a"
            print(f"  floor {floor:.2f}: shown {shown.mean():6.1%}, alike when shown {alike[shown].mean():6.1%}, "
                  f"alike when hidden {hidden_alike}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

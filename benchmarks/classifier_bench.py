"""Speed of the intent model: batched throughput and single-ticket latency (encoder + heads).

Loads a saved model (`--model DIR`) or, without one, trains on the CSV first (embeddings cached).
Latency is one `predict([ticket])` call end to end, tokenising and embedding included, measured
over `--single` distinct tickets after a warm-up; throughput is one `predict(tickets)` call.

    python -m benchmarks.classifier_bench [--model DIR] [--blas-threads N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from benchmarks.classifier_eval import DEFAULT_CACHE, DEFAULT_CSV
from services.classifier.intent_model import IntentModel, read_labeled_csv
from encoders.embedding import intent_encoders, load_encoder
from tooling.settings import FleetSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--label-column", default="category")
    parser.add_argument("--model", type=Path, help="saved model directory (else: train on --csv)")
    parser.add_argument("--encoder", help="registry name (default: the model's own, or FleetSettings.intent_encoder)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="embedding cache")
    parser.add_argument("--batch", type=int, default=2000, help="tickets in the throughput run")
    parser.add_argument("--single", type=int, default=500, help="tickets timed one by one")
    parser.add_argument("--blas-threads", type=int, help="cap BLAS threads (default: library's)")
    args = parser.parse_args(argv)

    texts, labels = read_labeled_csv(args.csv, args.text_column, args.label_column)
    if args.model:
        model = IntentModel.load(args.model, encoder=load_encoder(args.encoder) if args.encoder else None)
    else:
        started = time.perf_counter()
        encoder, second_encoder = intent_encoders(FleetSettings())
        encoder = load_encoder(args.encoder) if args.encoder else encoder
        model = IntentModel.train(texts, labels, encoder=encoder, second_encoder=second_encoder,
                                  cache_dir=args.cache_dir)
        print(f"trained on {len(texts)} rows in {time.perf_counter() - started:.1f}s")

    # Tickets the encoder has not cached anywhere: the timed path always embeds.
    rng = np.random.default_rng(0)
    sample = [texts[i] for i in rng.choice(len(texts), args.batch + args.single, replace=False)]
    batch, singles = sample[: args.batch], sample[args.batch :]

    with threadpool_limits(limits=args.blas_threads):
        model.predict(batch[:64])  # warm-up: first-call allocations, lazy imports
        started = time.perf_counter()
        model.predict(batch)
        throughput = len(batch) / (time.perf_counter() - started)

        latencies = []
        for text in singles:
            started = time.perf_counter()
            model.predict([text])
            latencies.append(time.perf_counter() - started)
    p50, p99 = np.percentile(np.array(latencies) * 1000, [50, 99])
    print(f"blas_threads        {args.blas_threads or 'default'}")
    print(f"throughput          {throughput:.0f} tickets/s  (one predict() of {len(batch)})")
    print(f"latency_p50         {p50:.1f} ms  (predict() of one ticket, n={len(singles)})")
    print(f"latency_p99         {p99:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())

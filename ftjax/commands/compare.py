"""ftjax compare RUN_A RUN_B [--split=test] [--out=DIR]

Side by side on the same test set: metrics with 95% bootstrap intervals, B minus A with a paired bootstrap
interval and a paired approximate-randomization p-value, metric bars and loss curves, and examples where the
two disagree. A RUN is a workdir (its eval/<split>.json) or an eval result file such as
runs/x/eval/test_baseline.json. Writes DIR/compare.md, compare.html (self-contained), compare.json, *.png.
"""

from __future__ import annotations

from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("split", "test", "which eval/<split>.json of a workdir")
flags.DEFINE_string("out", None, "report folder (default: compare_<A>_vs_<B>)")
flags.DEFINE_integer("bootstrap", 1000, "resamples for intervals and permutations for the p-values")
flags.DEFINE_integer("examples", 5, "how many disagreeing examples to show")


def main(argv: list[str]) -> None:
    if len(argv) != 3:
        raise ValueError("give two runs: ftjax compare RUN_A RUN_B")
    from pathlib import Path

    from ftjax.eval.compare import compare_runs

    a, b = argv[1:]
    out = FLAGS.out or f"compare_{Path(a).name}_vs_{Path(b).name}"
    summary = compare_runs(a, b, out, FLAGS.split, FLAGS.bootstrap, FLAGS.examples)
    print((Path(out) / "compare.md").read_text().split("\n![")[0].rstrip())
    print(f"\nwrote {out}/compare.md, compare.html, compare.json ({summary['items']} items)")

"""ftjax ensemble --workdir=DIR --members=RUN_A,RUN_B[,...] [--checkpoint=best|last|STEP]

Several classification- or regression-head runs of one task (e.g. the same config at three seeds) as one model:
`ftjax eval --workdir=DIR` then predicts the label with the highest mean probability over the members (a
regression head: the mean value). DIR gets only config.json; the members stay where they are and load one at a
time during evaluation.
"""

from __future__ import annotations

from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "the ensemble's folder (new)")
flags.DEFINE_list("members", [], "the member runs' workdirs, comma-separated")
flags.DEFINE_string("checkpoint", "best", "which checkpoint of each member: best, last or a step number")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.workdir:
        raise ValueError("give --workdir=DIR for the ensemble")
    from ftjax.eval.ensemble import make_ensemble

    path = make_ensemble(FLAGS.workdir, FLAGS.members, FLAGS.checkpoint)
    print(f"wrote {path}: {len(FLAGS.members)} members; score it with "
          f"`ftjax eval --workdir={FLAGS.workdir} --split=test`")

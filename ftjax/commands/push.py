"""ftjax push --folder=EXPORT --repo=ORG/NAME [--public] [--revision=BRANCH] [--dry_run]

Uploads an `ftjax export` folder (PEFT adapter, merged model or GGUF, with its README.md model card) to a Hugging
Face Hub model repository, created private unless --public. --dry_run lists the files and uploads nothing.
"""

from __future__ import annotations

from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("folder", None, "an export folder (ftjax export --out)", required=True)
flags.DEFINE_string("repo", None, "the Hub model repository, ORG/NAME", required=True)
flags.DEFINE_bool("public", False, "create the repository public (default: private)")
flags.DEFINE_string("revision", None, "branch to push to (default: main)")
flags.DEFINE_string("message", None, "commit message")
flags.DEFINE_bool("dry_run", False, "list what would be uploaded; upload nothing")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments: {' '.join(argv[1:])}")
    from ftjax.hub import push_folder

    files = push_folder(FLAGS.folder, FLAGS.repo, private=not FLAGS.public, revision=FLAGS.revision,
                        message=FLAGS.message, dry_run=FLAGS.dry_run)
    verb = "would upload" if FLAGS.dry_run else "uploaded"
    print(f"{verb} {len(files)} files to https://huggingface.co/{FLAGS.repo}:")
    for f in files:
        print(f"  {f}")

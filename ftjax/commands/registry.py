"""ftjax registry register|list|show|promote|rollback|pull [--registry=DIR|URI] --name=NAME [flags]

  register --workdir=RUN [--checkpoint=best] [--parent=V] [--promote]   a training run as a new version
  list                                     every version: champion, metrics, decision, lineage
  show [--version=V]                       one version (default: the champion), its tags, metrics, lineage
  promote --version=V [--reason=TEXT]      make V the champion (the serving version)
  rollback                                 give the champion back to the version it replaced
  pull --version=V --out=DIR               the version as a workdir (for ftjax eval / monitor / init_from)
  attach --version=V --folder=DIR [--as=audit]   a report folder (ftjax audit's) stored with the version

The registry is MLflow's model registry: --registry is a folder (default `registry`, a SQLite store inside it,
made by the first command) or a tracking server URI (http://...). Each version's MLflow run holds the run's
config, summary, evaluation results and checkpoint (adapter + heads) as artifacts, its data fingerprints,
objective and lineage as tags.
"""

from __future__ import annotations

import json

from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("registry", "registry", "registry folder (SQLite MLflow store) or MLflow tracking URI")
flags.DEFINE_string("name", None, "registered model name", required=True)
flags.DEFINE_string("workdir", None, "register: the training run")
flags.DEFINE_string("checkpoint", "best", "register: best, last or a step number")
flags.DEFINE_string("version", None, "show / promote / pull: the version number")
flags.DEFINE_string("parent", None, "register: the version this run continued from (lineage)")
flags.DEFINE_bool("promote", False, "register: make the new version the champion too")
flags.DEFINE_string("reason", "", "promote: why (kept as a tag)")
flags.DEFINE_string("out", None, "pull: the new workdir")
flags.DEFINE_string("folder", None, "attach: the folder to store with the version (e.g. RUN/audit)")
flags.DEFINE_string("as", "audit", "attach: its name among the version's artifacts")

SUBCOMMANDS = ("register", "list", "show", "promote", "rollback", "pull", "attach")


def main(argv: list[str]) -> None:
    if len(argv) != 2 or argv[1] not in SUBCOMMANDS:
        got = " ".join(argv[1:]) or "nothing"
        raise ValueError(f"usage: ftjax registry {{{'|'.join(SUBCOMMANDS)}}} --name=NAME [flags] (got: {got})")
    from ftjax.registry.store import Registry

    what = argv[1]
    need = {"register": "workdir", "promote": "version", "pull": "version", "attach": "folder"}
    if what in need and not FLAGS[need[what]].value:
        raise ValueError(f"registry {what} needs --{need[what]}")
    if what == "attach" and not FLAGS.version:
        raise ValueError("registry attach needs --version")
    if what == "pull" and not FLAGS.out:
        raise ValueError("registry pull needs --out=DIR (a new folder)")
    reg = Registry(FLAGS.registry)
    name = FLAGS.name
    if what == "register":
        version = reg.register(FLAGS.workdir, name, checkpoint=FLAGS.checkpoint, parent=FLAGS.parent)
        print(f"registered {FLAGS.workdir} as {name} version {version}")
        if FLAGS.promote:
            reg.promote(name, version, FLAGS.reason or "registered with --promote")
            print(f"{name}: champion is now version {version}")
    elif what == "list":
        _table(reg.versions(name))
    elif what == "show":
        print(json.dumps(reg.show(name, FLAGS.version), indent=2, sort_keys=True))
    elif what == "promote":
        before = reg.promote(name, FLAGS.version, FLAGS.reason)
        print(f"{name}: champion is now version {FLAGS.version} (was {before or 'none'})")
    elif what == "rollback":
        print(f"{name}: rolled back; champion is now version {reg.rollback(name)}")
    elif what == "attach":
        print(f"attached {FLAGS.folder} to {name} version {FLAGS.version}: "
              f"{reg.attach(name, FLAGS.version, FLAGS.folder, FLAGS['as'].value)}")
    else:
        print(f"pulled {name} version {FLAGS.version} to {reg.pull(name, FLAGS.version, FLAGS.out)}")


def _table(versions: list[dict]) -> None:
    if not versions:
        print(f"{FLAGS.name}: no versions")
        return
    for v in versions:
        tags, metrics = v["tags"], v["metrics"]
        shown = ", ".join(f"{k}={metrics[k]:.4g}" for k in sorted(metrics) if not k.endswith(("_low", "_high"))
                          and not k.startswith("train/"))
        print(f"{'*' if v['champion'] else ' '} v{v['version']:<4} parent={tags.get('parent_version') or '-':<4} "
              f"{tags.get('refresh.decision', ''):<9} {shown}  {tags.get('workdir', '')}")

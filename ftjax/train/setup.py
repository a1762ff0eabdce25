"""Set a run up on the mesh: load the model, add the adapter, place the train state by the sharding rules, and
jit the steps with explicit shardings. What `loop.main` trains with and `ftjax bench` times."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import jax
import ml_collections
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from ftjax import distributed, sharding
from ftjax.models.config import ModelConfig, check_limits
from ftjax.models.heads import head_name
from ftjax.models.scan import stack_blocks
from ftjax.peft.apply import trainable_filter
from ftjax.peft.report import parameter_report
from ftjax.tasks import task_configs
from ftjax.train.optimizer import optimizer, schedule
from ftjax.train.restore import init_from
from ftjax.train.build import build_model
from ftjax.train.config import preference_loss
from ftjax.train.state import TrainState
from ftjax.train.step import make_eval_step, make_train_step

log = logging.getLogger("ftjax.train")
ROWS = ("inputs", "targets", "positions", "attention_mask", "segment_ids", "values")  # batch arrays split over rows


@dataclasses.dataclass
class TrainSetup:
    model_config: ModelConfig
    counts: dict  # parameter_report: base, trainable
    mesh: jax.sharding.Mesh
    shards: distributed.DataShards  # which micro-batch rows this process loads
    state: TrainState  # the arrays, placed on the mesh
    shardings: TrainState  # their NamedShardings
    learning_rate: optax.Schedule  # the optimizer's schedule (logged per step)
    batch_shardings: dict[str, NamedSharding]  # train batches [accum, micro, ...]
    eval_shardings: dict[str, NamedSharding]  # validation batches [batch, ...]
    eval_graphdef: nnx.GraphDef  # the model in eval mode (no dropout), for generation
    train_steps: dict[str, Any]  # per task (ftjax.tasks): (state, batch) -> (state, metrics); state donated
    eval_steps: dict[str, Any]  # per task: (state, batch) -> (nll sum, targets, hits)
    transfer: dict | None = None  # what model.init_from loaded (ftjax.train.restore.init_from)

    @property
    def train_step(self) -> Any:
        """The step of a single-task run."""
        return self.train_steps[""]

    def eval_model(self, state: TrainState) -> nnx.Module:
        """The model in eval mode with `state`'s weights (for generation)."""
        return nnx.merge(self.eval_graphdef, state.trainable, state.rng, state.frozen)

    def place_eval(self, batch: dict) -> dict[str, jax.Array]:
        return jax.device_put({k: batch[k] for k in self.eval_shardings}, self.eval_shardings)


def setup(config: ml_collections.ConfigDict, total_steps: int) -> TrainSetup:
    """The unsharded model is dropped on return."""
    tc = config.train
    tasks = task_configs(config)
    # Mesh and shardings: parameters by their logical axes, batches over data x fsdp. The base model is loaded
    # straight onto the mesh, shard by shard.
    mesh = sharding.make_mesh(config.mesh.shape)
    rules = sharding.check_rules(config.mesh.rules)
    model = build_model(config, mesh, rules)
    virtual = config.peft.num_virtual_tokens if config.peft.method in ("prompt", "prefix") else 0
    check_limits(model.config, max(t.data.max_length for t in tasks.values()), virtual)
    model.set_remat(config.model.remat)
    transfer = init_from(model, config) if config.model.get("init_from") else None
    counts = parameter_report(model, config.peft)
    if config.model.get("scan_layers", False):  # after everything that addresses blocks by index
        stack_blocks(model)
        if parameter_report(model, config.peft)["trainable_params"] != counts["trainable_params"]:
            raise ValueError("model.scan_layers: peft.freeze/unfreeze select only some layers' parameters, which "
                             "stacked layers cannot tell apart; set model.scan_layers=False")
    log.info("parameters: %s trainable of %s base (%.4f%%)", f"{counts['trainable_params']:,}",
             f"{counts['base_params']:,}", counts["trainable_percent"])

    replicated = NamedSharding(mesh, P())
    micro = tc.batch_size // tc.grad_accum_steps  # global micro-batch; each process loads its rows
    replicas = mesh.shape["data"] * mesh.shape["fsdp"]
    if tc.batch_size % tc.grad_accum_steps or micro % replicas:
        raise ValueError(f"train.batch_size={tc.batch_size} must split into grad_accum_steps={tc.grad_accum_steps} "
                         f"micro-batches divisible by data x fsdp = {replicas}")
    preference = tc.preference if preference_loss(config) != "none" else None
    shards = distributed.DataShards(mesh, 2 * micro if preference else micro)  # a pair is two rows
    model.train()
    graphdef, trainable, rng, frozen = nnx.split(model, trainable_filter(config.peft), nnx.RngState, ...)
    model.eval()
    eval_graphdef = nnx.graphdef(model)
    shard = lambda tree: sharding.state_shardings(tree, mesh, rules)
    trainable, frozen = jax.device_put(trainable, shard(trainable)), jax.device_put(frozen, shard(frozen))
    rng = jax.device_put(rng, replicated)

    learning_rate = schedule(tc.schedule, tc.learning_rate, total_steps, tc.warmup_steps)
    tx = optimizer(tc, learning_rate)
    placed = lambda tree: jax.tree.map(lambda x: x.sharding, tree)
    # optimizer moments sharded like their parameters, step counters replicated
    opt_shardings = optax.tree_map_params(tx, lambda _, s: s, jax.eval_shape(tx.init, trainable), placed(trainable),
                                          transform_non_params=lambda _: replicated)
    opt_state = jax.jit(tx.init, out_shardings=opt_shardings)(trainable)
    state = TrainState(trainable, opt_state, rng, frozen)
    shardings = TrainState(placed(trainable), opt_shardings, placed(rng), placed(frozen))
    positions = {"index": replicated, "valid": replicated}  # flat target positions into the whole micro-batch
    batch_shardings = {k: NamedSharding(mesh, P(None, sharding.BATCH_AXES)) for k in ROWS} | positions | {
        "weight": replicated}  # each target's example weight (data.synthetic_weight, a row's `weight`)
    # every process builds the whole validation batch; its rows split over data x fsdp when they divide
    eval_rows = P(sharding.BATCH_AXES) if tc.eval_batch_size % replicas == 0 else P()
    eval_shardings = {k: NamedSharding(mesh, eval_rows) for k in ROWS} | positions
    train_steps, eval_steps = {}, {}
    for name, task in tasks.items():  # one compiled step per task: its head and loss
        head = head_name(task)
        step = make_train_step(graphdef, tx, tc.loss_chunk, head, task.head.label_smoothing,
                               accuracy=task.head.type != "regression", preference=preference)
        train_steps[name] = jax.jit(step, donate_argnums=0, in_shardings=(shardings, batch_shardings),
                                    out_shardings=(shardings, replicated))
        eval_steps[name] = jax.jit(make_eval_step(eval_graphdef, tc.loss_chunk, head, preference),
                                   out_shardings=replicated,
                                   in_shardings=(shardings, eval_shardings))
    return TrainSetup(model.config, counts, mesh, shards, state, shardings, learning_rate, batch_shardings,
                      eval_shardings, eval_graphdef, train_steps, eval_steps, transfer)

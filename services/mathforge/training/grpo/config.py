"""The GRPO stage's config: the shared training sections plus rollout, objective, reward, services,
iterative RL and evaluation. Defaults are the paper's (DeepSeekMath §4) where it gives a number.

    config = load_config(GrpoConfig, ["--config", "configs/tiny/grpo.yaml", "objective.beta=0.02"])
"""

from __future__ import annotations

import dataclasses

from mathforge.training.config import (
    BatchConfig,
    ConfigError,
    OptimConfig,
    ScheduleConfig,
    TrainConfig,
    option,
)
from mathforge.training.grpo.advantages import STD_ESTIMATORS, Normalisation
from mathforge.training.grpo.loss import AGGREGATIONS, ClipConfig

SUPERVISIONS = ("outcome", "process")
METHODS = ("sft", "rft", "online_rft", "dpo", "grpo")  # training/objective/methods.py
REWARD_KINDS = ("rule", "orm", "prm", "mix")
WEIGHT_SYNCS = ("volume", "collective")


@dataclasses.dataclass
class TaskConfig:
    """Where the RL questions (with reference answers) come from."""

    paths: list[str] = option([], "JSONL files of {question, answer} records")
    synthetic_problems: int = option(0, "add this many synthetic arithmetic problems (training split)")
    synthetic_difficulty: int = option(2, "operations per synthetic problem (1-5)")
    instruction: str = option(
        "Please reason step by step, and put your final answer within \\boxed{}.",
        "appended to every question (DeepSeekMath §3.2: the zero-shot CoT instruction)",
    )


@dataclasses.dataclass
class RolloutConfig:
    """How many outputs are sampled per step, and how."""

    questions_per_step: int = option(
        16, "questions per step; x group_size = the batch (DeepSeekMath §4: 1024 outputs)"
    )
    group_size: int = option(64, "outputs sampled per question, G (DeepSeekMath §4: 64)")
    max_new_tokens: int = option(1024, "longest output in tokens (DeepSeekMath §4: 1024)")
    temperature: float = option(1.0, "sampling temperature (our choice: sample from pi_old itself)")
    top_p: float = option(1.0, "nucleus sampling; 1 = off")
    top_k: int = option(0, "top-k sampling; 0 = off")
    prompts_per_call: int = option(
        8, "questions per Generate call (keeps each call under the sampler's limits)"
    )
    max_staleness: int = option(
        0,
        "0 = on-policy (DeepSeekMath §4: sample from v only once v is published); k >= 1 = the next batches "
        "are sampled in the background from weights at most k versions older than the trainer's",
    )
    dynamic_sampling: bool = option(
        False, "drop groups whose rewards are all equal and draw more questions to refill (DAPO)"
    )
    max_extra_draws: int = option(
        2, "dynamic sampling: at most this many refill rounds per batch; then the batch trains short"
    )


@dataclasses.dataclass
class ObjectiveConfig:
    """The GRPO objective (DeepSeekMath §4), or another method of the paper's unified view (§5.2.1)."""

    method: str = option(
        "grpo",
        "sft, rft (offline samples of the starting policy, kept if right), online_rft, dpo (right/wrong "
        "pairs of the starting policy's samples) or grpo (docs/objective.md)",
    )
    dpo_beta: float = option(0.1, "method=dpo: beta of the DPO loss (the sharpness of the preference)")
    beta: float = option(0.04, "weight of the k3 KL to pi_ref in the loss (DeepSeekMath §4: 0.04)")
    clip_eps: float = option(0.2, "clip range of the ratio pi/pi_old (the usual 0.2; the paper gives none)")
    clip_eps_high: float = option(0.0, "upper clip range (clip-higher, DAPO: 0.28); 0 = clip_eps")
    mu: int = option(1, "policy updates per batch of samples (DeepSeekMath §4: 1)")
    updates_per_step: int = option(1, "optimizer steps per pass over the batch (mini-batches)")
    supervision: str = option("outcome", "outcome (one reward per output) or process (per-step rewards)")
    aggregation: str = option("sequence", "sequence (per-output mean, DeepSeekMath §4) or token (token mean)")
    std_estimator: str = option("population", "group std: population (n) or sample (n-1, TRL's)")
    std_eps: float = option(1e-4, "added to the group std before dividing (TRL's value)")
    scale_rewards: bool = option(True, "divide by the group std (False: only subtract the mean)")
    importance_cap: float = option(
        2.0, "off-policy samples: cap of the importance weight pi_old / pi_sampler (docs/grpo.md)"
    )

    def clip(self) -> ClipConfig:
        return ClipConfig(self.clip_eps, self.clip_eps_high or self.clip_eps, self.beta)

    def normalisation(self) -> Normalisation:
        return Normalisation(self.std_estimator, self.std_eps, self.scale_rewards)


@dataclasses.dataclass
class RewardConfig:
    """What the reward service is asked for."""

    kind: str = option("rule", "rule, orm, prm or mix (the reward service's kinds)")
    weights: dict[str, float] = option({}, "for kind=mix: weight by component (rule, orm, prm)")
    format_penalty: float = option(0.0, "rule reward: subtracted when no final answer can be extracted")


@dataclasses.dataclass
class ServicesConfig:
    """The sampler and reward services, deadlines, and where new weights are published."""

    sampler: str = option(
        "127.0.0.1:50054",
        "sampler replicas: dns:///<headless service>:<port> (every pod it resolves to; in a cluster "
        "dns:///mathforge-sampler:50054) or a comma-separated list of host:port",
    )
    reward: str = option(
        "127.0.0.1:50053",
        "reward replicas: dns:///<headless service>:<port> (in a cluster dns:///mathforge-reward:50053) "
        "or a comma-separated list of host:port",
    )
    policy_line: str = option(
        "",
        "this run's line in shared sampler and reward services (e.g. grpo-seed1): its own policy "
        "versions and reward models beside other runs' (docs/services.md); empty = the default line",
    )
    replica_refresh_s: float = option(30.0, "how often the replicas behind a dns:/// target are looked up")
    generate_timeout_s: float = option(600.0, "deadline of one Generate call")
    score_timeout_s: float = option(300.0, "deadline of one Score call")
    load_timeout_s: float = option(600.0, "deadline of LoadWeights / LoadModel")
    retry_budget_s: float = option(600.0, "how long calls retry an unavailable (restarting) service")
    ready_timeout_s: float = option(600.0, "how long to wait for a service to become ready")
    publish_dir: str = option(
        "", "shared directory for published policy weights; empty = <out_dir>/published"
    )
    keep_versions: int = option(3, "published versions kept on disk (older ones are deleted)")
    weight_sync: str = option(
        "volume",
        "how new policy weights reach the samplers: volume (safetensors on publish_dir, LoadWeights "
        "with its path) or collective (broadcast in buckets over torch.distributed, gloo on CPU and "
        "NCCL on GPU, into every replica at once; docs/grpo.md)",
    )
    weight_sync_port: int = option(29600, "collective: port of the trainer's rendezvous store (0 = any free)")
    weight_sync_host: str = option(
        "",
        "collective: address the samplers reach the trainer at (empty: this host's name; in a "
        "PyTorchJob the master pod's, which the samplers' allow-list names)",
    )
    weight_sync_bucket_mb: int = option(256, "collective: most megabytes per broadcast bucket")
    weight_sync_timeout_s: float = option(300.0, "collective: how long a transfer group may take to form")


@dataclasses.dataclass
class IterativeConfig:
    """Iterative RL (DeepSeekMath §4): every `every` steps retrain the RM with replay and reset pi_ref."""

    every: int = option(0, "steps per iteration, M; 0 = a single iteration (pi_ref never reset)")
    retrain_reward_model: bool = option(False, "retrain the reward model at each iteration boundary")
    reward_model_kind: str = option("orm", "which RM is retrained and reloaded: orm or prm")
    reward_model_init: str = option("", "checkpoint the RM is retrained from (the serving RM's)")
    reward_model_config: str = option("", "reward-training YAML the retraining starts from (empty: defaults)")
    reward_model_lr: float = option(2e-5, "RM learning rate (DeepSeekMath §4: 2e-5)")
    reward_model_steps: int = option(100, "optimizer steps of each RM retraining")
    replay_fraction: float = option(
        0.1, "share of historical samples replayed in RM retraining (DeepSeekMath §4)"
    )
    samples_per_question: int = option(4, "fresh policy samples kept per question for RM retraining")
    labels: str = option(
        "shepherd",
        "PRM labels of the fresh samples: shepherd (Math-Shepherd: the policy continues each step prefix) "
        "or outcome (cheaper proxy: every step gets the final answer's correctness)",
    )
    shepherd_samples_per_step: int = option(
        4, "Math-Shepherd continuations per step prefix (Math-Shepherd used 8; fewer is cheaper)"
    )
    shepherd_estimation: str = option(
        "hard", "Math-Shepherd step label: hard (any right) or soft (share right)"
    )
    reward_job: str = option(
        "local",
        "where RM retraining runs: local (a separate torchrun process group) or cluster (a PyTorchJob)",
    )
    reward_job_deadline_s: float = option(
        0.0, "give up on an RM retraining job after this long; 0 = no deadline"
    )
    reward_job_processes: int = option(1, "processes of a local RM retraining job")


@dataclasses.dataclass
class EvalConfig:
    """Held-out greedy accuracy through the sampler and the reward service's rule grader."""

    every: int = option(0, "evaluate every N steps (and at start and end); 0 = never")
    problems: int = option(200, "held-out synthetic problems (the test split)")
    difficulty: int = option(0, "their difficulty; 0 = the task's")


@dataclasses.dataclass
class GrpoConfig(TrainConfig):
    """GRPO: G samples per question, group-relative advantages, clipped updates, k3 KL (DeepSeekMath §4)."""

    stage: str = option("grpo", "stage name")
    out_dir: str = option("runs/grpo", "checkpoints, published weights and the final model")
    optim: OptimConfig = dataclasses.field(
        default_factory=lambda: OptimConfig(lr=1e-6, weight_decay=0.0, beta2=0.95)
    )
    schedule: ScheduleConfig = dataclasses.field(
        default_factory=lambda: ScheduleConfig(kind="constant", warmup_steps=0)
    )
    batch: BatchConfig = dataclasses.field(
        default_factory=lambda: BatchConfig(
            seq_len=2048, micro_batch_size=8, global_batch_tokens=0, steps=1000
        )
    )
    task: TaskConfig = dataclasses.field(default_factory=TaskConfig)
    rollout: RolloutConfig = dataclasses.field(default_factory=RolloutConfig)
    objective: ObjectiveConfig = dataclasses.field(default_factory=ObjectiveConfig)
    reward: RewardConfig = dataclasses.field(default_factory=RewardConfig)
    services: ServicesConfig = dataclasses.field(default_factory=ServicesConfig)
    iterative: IterativeConfig = dataclasses.field(default_factory=IterativeConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)

    @property
    def outputs_per_step(self) -> int:
        return self.rollout.questions_per_step * self.rollout.group_size

    def accumulation_steps(self, world_size: int) -> int:
        """Micro-batches per optimizer step: one mini-batch of this process's outputs."""
        per_process = self.outputs_per_step // world_size
        per_update = per_process // self.objective.updates_per_step
        return max(1, -(-per_update // self.batch.micro_batch_size))

    def validate(self) -> None:
        super().validate()
        r, o, it = self.rollout, self.objective, self.iterative
        checks = [
            (bool(self.model.init_from), "model.init_from must name the starting policy (the SFT model)"),
            (
                bool(self.task.paths) or self.task.synthetic_problems > 0,
                "no questions: set task.paths and/or task.synthetic_problems",
            ),
            (r.group_size >= 2, f"rollout.group_size {r.group_size} must be >= 2 (a group needs a baseline)"),
            (r.questions_per_step >= 1, "rollout.questions_per_step must be >= 1"),
            (r.max_new_tokens >= 1, "rollout.max_new_tokens must be >= 1"),
            (r.temperature > 0, "rollout.temperature must be > 0: GRPO samples from pi_old"),
            (r.prompts_per_call >= 1, "rollout.prompts_per_call must be >= 1"),
            (r.max_staleness >= 0, f"rollout.max_staleness must be >= 0, got {r.max_staleness}"),
            (r.max_extra_draws >= 0, f"rollout.max_extra_draws must be >= 0, got {r.max_extra_draws}"),
            (
                o.importance_cap >= 1,
                f"objective.importance_cap must be >= 1 (a weight cap below 1 shrinks every token), "
                f"got {o.importance_cap}",
            ),
            (
                r.max_staleness == 0 or not it.retrain_reward_model,
                "rollout.max_staleness >= 1 with iterative.retrain_reward_model is not supported: "
                "batches in flight would be scored by the reward model being replaced",
            ),
            (
                o.mu >= 1 and o.updates_per_step >= 1,
                "objective.mu and objective.updates_per_step must be >= 1",
            ),
            (o.supervision in SUPERVISIONS, f"objective.supervision must be one of {SUPERVISIONS}"),
            (o.method in METHODS, f"objective.method must be one of {METHODS}, got {o.method!r}"),
            (
                o.method == "grpo" or o.supervision == "outcome",
                f"objective.supervision=process is GRPO's; objective.method={o.method} reads outcomes",
            ),
            (
                o.method not in ("rft", "dpo", "sft") or r.max_staleness == 0,
                f"objective.method={o.method} does not sample the current policy: "
                "rollout.max_staleness must be 0",
            ),
            (
                o.method != "dpo" or (o.mu == 1 and o.updates_per_step == 1 and o.dpo_beta > 0),
                "objective.method=dpo reads the policy's log-probabilities before the update: it needs "
                "objective.mu=1, objective.updates_per_step=1 and objective.dpo_beta > 0",
            ),
            (o.aggregation in AGGREGATIONS, f"objective.aggregation must be one of {AGGREGATIONS}"),
            (o.std_estimator in STD_ESTIMATORS, f"objective.std_estimator must be one of {STD_ESTIMATORS}"),
            (
                o.supervision != "process" or self.reward.kind in ("prm", "mix"),
                "objective.supervision=process needs per-step rewards: reward.kind prm or mix",
            ),
            (self.reward.kind in REWARD_KINDS, f"reward.kind must be one of {REWARD_KINDS}"),
            (it.every >= 0, "iterative.every must be >= 0"),
            (
                not it.retrain_reward_model or it.every > 0,
                "iterative.retrain_reward_model needs iterative.every > 0",
            ),
            (
                not it.retrain_reward_model or bool(it.reward_model_init),
                "iterative.retrain_reward_model needs iterative.reward_model_init (the RM checkpoint)",
            ),
            (it.reward_model_kind in ("orm", "prm"), "iterative.reward_model_kind must be orm or prm"),
            (0 <= it.replay_fraction < 1, "iterative.replay_fraction must be in [0, 1)"),
            (it.labels in ("shepherd", "outcome"), "iterative.labels must be shepherd or outcome"),
            (it.shepherd_samples_per_step >= 1, "iterative.shepherd_samples_per_step must be >= 1"),
            (
                it.shepherd_estimation in ("hard", "soft"),
                "iterative.shepherd_estimation must be hard or soft",
            ),
            (it.reward_job in ("local", "cluster"), "iterative.reward_job must be local or cluster"),
            (it.reward_job_deadline_s >= 0, "iterative.reward_job_deadline_s must be >= 0"),
            (it.reward_job_processes >= 1, "iterative.reward_job_processes must be >= 1"),
            (self.eval.every >= 0, "eval.every must be >= 0"),
            (
                self.services.keep_versions >= 2,
                "services.keep_versions must be >= 2 (the serving one and the next)",
            ),
            (
                self.services.weight_sync in WEIGHT_SYNCS,
                f"services.weight_sync must be one of {WEIGHT_SYNCS}, got {self.services.weight_sync!r}",
            ),
            (self.services.weight_sync_bucket_mb >= 1, "services.weight_sync_bucket_mb must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        try:
            o.clip()
            o.normalisation()
        except ValueError as exc:
            raise ConfigError(f"objective: {exc}") from None
        world_free = self.outputs_per_step
        if world_free % o.updates_per_step:
            raise ConfigError(
                f"the batch of {world_free} outputs (rollout.questions_per_step x rollout.group_size) "
                f"does not split into objective.updates_per_step={o.updates_per_step} equal mini-batches"
            )

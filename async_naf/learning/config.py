"""The one home of the learning stage's settings: agent hyper-parameters and the trainer (torch-free).

Every hyper-parameter is declared once, here, with its default, unit and validation:

- :class:`AgentParams` (every agent), :class:`NAFParams` (NAF and Linear-NAF: + ``lr``, ``fast_update``) and
  :class:`DDPGParams` (+ ``actor_lr``, ``critic_lr``): what a user tunes. The trainer node exposes them as
  nested parameters ``naf.*`` and ``ddpg.*`` (``--set trainer.naf.lr=3e-4``; ``config/train.yaml``).
- :class:`NAFConfig` / :class:`DDPGConfig`: those plus what the problem decides (``obs_dim``, ``act_dim``,
  action bounds) and what only in-process use needs (``updates_per_step`` of ``agent.train_steps``, the
  exploration ``noise`` of ``agent.act(explore=True)``, ``seed``). Built by :meth:`TrainerConfig.agent_config`
  in the trainer; saved in every agent checkpoint.
- :class:`TrainerConfig`: the trainer node (buffer, schedule, budgets, checkpoints, metrics) with the two
  parameter sets above nested in it.

``config/naf.yaml`` mirrors the agent defaults for ``config_from_yaml`` and a test keeps the two equal;
``docs/parameters.md`` is generated from these dataclasses.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from async_naf.common.checks import bounds_array, integers, number, numbers
from async_naf.common.noise import NoiseConfig
from async_naf.common.publishers import PublisherWatchConfig
from async_naf.learning.replay import EVICTIONS
from async_naf.task.tasks import TASK_NAMES

ALGORITHMS = ("naf", "linear_naf", "ddpg")
EXECUTORS = ("events", "single_threaded", "multi_threaded")
ACTIVATIONS = ("relu", "tanh")


def check_positive_int(owner: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{owner}.{name} must be a positive integer, got {value!r}")
    return int(value)


def normalize_bound(value: float | Sequence[float]) -> float | tuple[float, ...]:
    if np.ndim(value) == 0:
        return float(cast(float, value))
    return tuple(float(v) for v in cast(Sequence[float], value))


# ------------------------------------------------------------------------------------ hyper-parameters
@dataclass(kw_only=True)
class AgentParams:
    """Hyper-parameters every agent shares.

    Attributes:
        hidden_sizes: widths of the hidden layers (two layers of 100, as in Gu et al. 2017).
        activation: hidden activation, ``'relu'`` or ``'tanh'``.
        gamma: discount factor per environment step, in [0, 1].
        tau: soft target-network update per gradient step (target += tau * (online - target)), in (0, 1].
        batch_size: transitions per gradient step.
        grad_clip_norm: clip the global gradient 2-norm to this value; 0 = no clipping.
        normalize_obs: normalise observations with running mean/variance (saved with the weights).
        obs_clip: normalised observations are clipped to [-obs_clip, obs_clip], standard deviations.
        adam_betas: Adam moment decay rates.
        adam_eps: Adam denominator epsilon.
        head_init_scale: output layers start with weights and biases uniform in [-s, s] (NAF: P starts
            near the identity).
    """

    hidden_sizes: tuple[int, ...] = (100, 100)
    activation: str = "relu"
    gamma: float = 0.98
    tau: float = 0.005
    batch_size: int = 64
    grad_clip_norm: float = 0.0
    normalize_obs: bool = True
    obs_clip: float = 10.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    head_init_scale: float = 3e-3

    def __post_init__(self) -> None:
        self._validate()

    def _validate(self) -> None:
        """Check and normalise the fields (ValueError); subclasses extend it cooperatively."""
        owner = type(self).__name__
        hs = self.hidden_sizes
        if isinstance(hs, (int, np.integer)):
            hs = (hs,)
        self.hidden_sizes = tuple(check_positive_int(owner, "hidden_sizes[i]", h) for h in hs)
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"{owner}.activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        self.gamma = number(f"{owner}.gamma", self.gamma, 0.0, 1.0)
        self.tau = number(f"{owner}.tau", self.tau, 0.0, 1.0, low_open=True)
        self.batch_size = check_positive_int(owner, "batch_size", self.batch_size)
        # None (checkpoints written before 0 meant "no clipping") reads as 0
        self.grad_clip_norm = number(f"{owner}.grad_clip_norm", self.grad_clip_norm or 0.0, 0.0)
        self.obs_clip = number(f"{owner}.obs_clip", self.obs_clip, 0.0, low_open=True)
        self.normalize_obs = bool(self.normalize_obs)
        b1, b2 = self.adam_betas
        self.adam_betas = (number(f"{owner}.adam_betas[0]", b1, 0.0, 1.0, high_open=True),
                           number(f"{owner}.adam_betas[1]", b2, 0.0, 1.0, high_open=True))
        self.adam_eps = number(f"{owner}.adam_eps", self.adam_eps, 0.0, 1.0, low_open=True)
        self.head_init_scale = number(f"{owner}.head_init_scale", self.head_init_scale, 0.0)

    @property
    def clip_norm(self) -> float | None:
        """``grad_clip_norm`` for the clipping functions: None when clipping is off."""
        return self.grad_clip_norm or None


@dataclass(kw_only=True)
class NAFParams(AgentParams):
    """NAF (and Linear-NAF) hyper-parameters: those of :class:`AgentParams`, plus:

    Attributes:
        lr: Adam learning rate (the starting one, with a schedule).
        lr_decay_start: updates before the learning rate starts to fall (with ``lr_half_life``).
        lr_half_life: after ``lr_decay_start`` updates the learning rate halves every ``lr_half_life`` updates,
            down to ``lr_min``: ``max(lr_min, lr * 0.5 ** ((updates - lr_decay_start) / lr_half_life))``
            (:meth:`lr_at`). Adam scales its steps with ``lr`` and normalises away the gradient's size, so
            at a constant rate a learnt policy keeps moving; the schedule lets it settle. A pure function of
            the update count, so a resumed run continues it exactly. 0 = a constant ``lr``.
        lr_min: the floor of the schedule (0 <= lr_min <= lr).
        fast_update: use the hand-derived gradient (default) instead of torch.autograd (same result).
        td_clip: Huber TD loss: each transition's TD error enters the gradient clipped to +-td_clip (in
            return units), so a few large errors cannot swamp a step; errors below it count as in the squared
            loss. 0 = the squared loss.
        bc_weight: behaviour-cloning term against the overestimation of actions the data never tried
            (offline training, ``async-naf train-offline --bc-weight``; TD3+BC-style, Fujimoto and Gu 2021):
            the loss adds ``bc_weight * mean(((mu(x) - u) / half_range)^2)`` over the batch and the joints (u:
            the batch's action; half_range: half the action bounds' width). 0 = off.
        demo_bc_weight: behaviour cloning on the demonstration rows of each batch (``async-naf train --demos``;
            the demonstrations' BC loss of Nair et al. 2018, "Overcoming exploration in reinforcement learning
            with demonstrations"): the loss adds ``demo_bc_weight * mean(((mu(x) - u) / half_range)^2)`` over
            the batch's demonstration rows and the joints. NAF's mu follows the data only through the
            quadratic advantage, which takes many updates to learn from a few demonstrations; this term
            moves mu to them directly. No effect without demonstrations; 0 = off.
        demo_bc_filter: clone a demonstration row only while it did better than the current value says,
            ``y > V(x)`` (its one-step advantage estimate is positive: the binary filter of CRR, Wang et al.
            2020; NAF's Q-filter, Q(x, u_demo) > Q(x, mu(x)), never holds since mu maximises Q). The term
            fades by itself as the value estimates reach the demonstrations' returns.
        target_clip: clip every TD target y into the range any discounted return lies in,
            ``[min(0, r_lo), max(0, r_hi)] / (1 - gamma)`` (r_lo, r_hi: the smallest and largest reward of the
            batches so far, kept in checkpoints): a target outside it is an overestimate by construction. It
            stops the runaway of Q values bootstrapped on a small set of often-replayed rows (demonstrations,
            ``demo_ratio``) and changes nothing while the values stay in range. No effect with gamma = 1.
        separate_mu: mu gets hidden layers of its own (``hidden_sizes`` again, ``mu_l<i>`` and a ``mu`` head)
            instead of sharing V's and L's: the TD errors of V then reach mu only through the advantage term.
            Takes the autograd update (fast_update does not apply).
    """

    lr: float = 1e-3
    lr_decay_start: int = 0
    lr_half_life: int = 0
    lr_min: float = 0.0
    fast_update: bool = True
    td_clip: float = 0.0
    bc_weight: float = 0.0
    demo_bc_weight: float = 1.0
    demo_bc_filter: bool = True
    target_clip: bool = True
    separate_mu: bool = False

    def _validate(self) -> None:
        super()._validate()
        owner = type(self).__name__
        self.lr = number(f"{owner}.lr", self.lr, 0.0, low_open=True)
        integers(self, ("lr_decay_start", "lr_half_life"), 0, prefix=f"{owner}.")
        self.lr_min = number(f"{owner}.lr_min", self.lr_min, 0.0, self.lr)
        self.fast_update = bool(self.fast_update)
        self.td_clip = number(f"{owner}.td_clip", self.td_clip, 0.0)
        self.bc_weight = number(f"{owner}.bc_weight", self.bc_weight, 0.0)
        self.demo_bc_weight = number(f"{owner}.demo_bc_weight", self.demo_bc_weight, 0.0)
        self.demo_bc_filter = bool(self.demo_bc_filter)
        self.target_clip = bool(self.target_clip)
        self.separate_mu = bool(self.separate_mu)

    def lr_at(self, updates: int) -> float:
        """The learning rate of the update after ``updates`` updates (see ``lr_half_life``)."""
        if not self.lr_half_life or updates <= self.lr_decay_start:
            return self.lr
        return max(self.lr_min, self.lr * 0.5 ** ((updates - self.lr_decay_start) / self.lr_half_life))


@dataclass(kw_only=True)
class DDPGParams(AgentParams):
    """DDPG hyper-parameters: those of :class:`AgentParams` (``hidden_sizes`` for actor and critic), plus:

    Attributes:
        actor_lr: Adam learning rate of the actor (10x below the critic's, as in Lillicrap et al. 2016).
        critic_lr: Adam learning rate of the critic.
    """

    actor_lr: float = 1e-4
    critic_lr: float = 1e-3

    def _validate(self) -> None:
        super()._validate()
        numbers(self, ("actor_lr", "critic_lr"), 0.0, low_open=True, prefix=f"{type(self).__name__}.")


# ------------------------------------------------------------------------------------ agent configs
@dataclass
class _ProblemFields:
    """What the problem decides and what in-process use needs (positional: ``NAFConfig(obs_dim, act_dim)``).

    Attributes:
        obs_dim: observation size.
        act_dim: action size.
        action_low, action_high: action bounds, one number for all dimensions or ``act_dim`` numbers, in
            action units (rad/s for joint velocities).
        updates_per_step: gradient steps per environment step of ``agent.train_steps`` (in-process training;
            the trainer node schedules with its own ``updates_per_step``).
        noise: exploration noise of ``agent.act(obs, explore=True)`` (in-process; policy nodes have their own).
        seed: seed for weight initialisation and noise.
    """

    obs_dim: int
    act_dim: int
    action_low: float | Sequence[float] = -1.0
    action_high: float | Sequence[float] = 1.0
    updates_per_step: int = 1
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    seed: int = 0


@dataclass
class AgentConfig(_ProblemFields, AgentParams):
    """Base of :class:`NAFConfig` and :class:`DDPGConfig`: hyper-parameters + problem fields."""

    def _validate(self) -> None:
        super()._validate()
        owner = type(self).__name__
        self.obs_dim = check_positive_int(owner, "obs_dim", self.obs_dim)
        self.act_dim = check_positive_int(owner, "act_dim", self.act_dim)
        self.action_low = normalize_bound(self.action_low)
        self.action_high = normalize_bound(self.action_high)
        bounds_array(owner, self.action_low, self.action_high, self.act_dim)
        self.updates_per_step = check_positive_int(owner, "updates_per_step", self.updates_per_step)
        if isinstance(self.noise, dict):
            self.noise = NoiseConfig(**self.noise)
        if not isinstance(self.noise, NoiseConfig):
            raise ValueError(f"{owner}.noise must be a NoiseConfig, got {type(self.noise).__name__}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise ValueError(f"{owner}.seed must be an integer, got {self.seed!r}")
        self.seed = int(self.seed)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (inverse: ``from_dict``)."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Any:  # config_from_dict rejects what is not a dict
        return config_from_dict(cls, data, cls.__name__)


@dataclass
class NAFConfig(AgentConfig, NAFParams):
    """Everything a NAF or Linear-NAF agent needs: :class:`NAFParams` + the problem fields of
    :class:`_ProblemFields` (``NAFConfig(obs_dim, act_dim, lr=3e-4, ...)``)."""


@dataclass
class DDPGConfig(AgentConfig, DDPGParams):
    """Everything a DDPG agent needs: :class:`DDPGParams` + the problem fields of :class:`_ProblemFields`."""


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """JSON-able dict of a config dataclass (nested NoiseConfig as a dict, tuples as lists)."""
    return json_ready(dataclasses.asdict(cfg))


def json_ready(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    return obj


def config_from_dict(cls: type, data: Any, source: str = "checkpoint") -> Any:
    """Rebuild a config dataclass from :func:`config_to_dict` output (ValueError if it does not fit)."""
    if not isinstance(data, dict):
        raise ValueError(f"{source}: config is not a JSON object")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"{source}: unknown {cls.__name__} fields {sorted(unknown)}")
    try:  # lists from JSON become tuples in the config's own validation
        return cls(**data)
    except TypeError as exc:
        raise ValueError(f"{source}: bad {cls.__name__}: {exc}") from exc


# ------------------------------------------------------------------------------------ trainer
@dataclass
class TrainerConfig:
    """Parameters of the trainer node (one, global: ``/trainer``). Units: seconds, environment steps.

    Attributes:
        run_dir: output directory: metrics.csv, tensorboard/, checkpoints/, weights/.
        task: task name; defines obs_dim, act_dim and the action bounds of the agent.
        seed: seed of the agent's initialisation and of replay sampling.
        algorithm: ``naf`` (default), ``linear_naf`` (both take ``naf.*``) or ``ddpg`` (takes ``ddpg.*``).
        naf: NAF / Linear-NAF hyper-parameters (:class:`NAFParams`).
        ddpg: DDPG hyper-parameters (:class:`DDPGParams`).
        resume: continue from the newest checkpoint in run_dir (or resume_from) if there is one.
        resume_from: run directory to resume from instead of run_dir (empty: run_dir).
        replay_capacity: replay buffer size, transitions.
        replay_eviction: once the replay buffer is full, which row a new transition overwrites: ``random``
            (default: a uniformly random stored row, so older transitions thin out instead of disappearing;
            see :class:`~async_naf.learning.replay.ReplayBuffer` and docs/benchmarks.md, "The replay buffer
            fills") or ``oldest`` (a ring buffer: only the newest replay_capacity transitions are kept). A
            resumed run keeps its buffer file's.
        min_buffer_size: transitions in the buffer before the first update.
        demos: demonstration datasets (directories ``async-naf bag convert`` writes; ``async-naf train
            --demos`` converts bags into ``run_dir/demos/``), kept in a buffer of their own
            (:mod:`async_naf.learning.demos`); empty = none. A resumed run re-loads the ones its checkpoint
            records (path and sha256 of replay.npz) when this is empty.
        demo_ratio: share of demonstration rows in every update batch, 0..1 (``round(demo_ratio *
            batch_size)`` rows); before the replay buffer holds min_buffer_size rows the batches are all
            demonstrations. Ignored without demos. 0.1: at 0.5 door_pull took longer to 90 % greedy success
            than without demonstrations (docs/training.md, "Demonstrations against none").
        demo_pretrain_updates: with demos, a fresh run first takes this many updates on batches of
            demonstrations only, then publishes its first weights (the pre-training phase of DQfD, Hester et
            al. 2018). NAF and Linear-NAF clone every demonstration row meanwhile (``naf.demo_bc_weight``;
            ``naf.demo_bc_filter`` applies afterwards), so the robots start from a policy cloned from the
            demonstrations instead of a random one; DDPG only fits its critic and actor to them. They do not
            count against updates_per_step or max_updates_per_s; a resumed run does not repeat them (one
            restarted during the phase makes the rest). 0 = off; ignored (with a warning) without demos or
            at demo_ratio 0.
        pause_after_pretrain: when a pre-training phase ends (and its checkpoint, with periodic
            checkpoints, is written), pause the updates until the ``~/pause`` service resumes them; the robots
            get the pre-trained weights meanwhile. ``async-naf train --stop-at-success`` sets it, so the
            pre-trained policy is evaluated on exactly its weights and a run can end with them.
        updates_per_step: gradient updates per received environment step (all robots together); the
            update thread never runs ahead of updates_per_step * env_steps (pre-training updates aside).
        max_updates_per_s: upper bound on the update rate, updates/s (0 = none).
        action_limit: action bounds of the agent, +-value per joint in rad/s (7 values); empty = the
            task's default.
        weights_every_updates: publish policy weights every this many updates (and at episode ends).
        checkpoint_every_s: write a checkpoint this often, s (0 = only on request and at the end); with
            periodic checkpoints, also one when the pre-training phase (``demo_pretrain_updates``) ends.
        save_buffer: include the replay buffer in checkpoints.
        max_env_steps: stop after this many received transitions, all robots (0 = no limit).
        max_wall_s: stop after this many seconds since this process started (0 = no limit), s.
        deadline_unix: stop at this wall-clock time, s since the Unix epoch (0 = none): the run's end, fixed
            once when the graph is started (``async-naf train``, the launch file: start + max_wall_s), so a
            restarted or respawned trainer keeps the run's end instead of counting max_wall_s anew.
        keep_checkpoints: periodic checkpoints kept on disk, counting those an earlier trainer of the run wrote
            (a restart, ``--resume``: a resumed run with a smaller value deletes the older ones); older ones are
            deleted; final is always kept.
        tensorboard: write TensorBoard events to run_dir/tensorboard.
        log_every_updates: write training metrics (loss, q) to TensorBoard every this many updates.
        num_threads: torch CPU threads for the updates.
        executor: how the node spins its subscriptions and services: ``events`` (rclpy's EventsExecutor,
            C++ event queue, about 3x the message throughput; marked experimental in Jazzy),
            ``single_threaded`` or ``multi_threaded`` (a ~/save_checkpoint call does not pause the
            subscriptions).
        ack_period_s: publish the acknowledgement (~/acks: rows held per collector session) this often when
            it changed, and at least every second; collectors keep unacknowledged batches to send again, s.
        publisher_watch: the unknown-publisher alarm on the transitions and episode statistics
            (``/trainer/transitions``, ``/trainer/episode_stats``): ``/diagnostics`` ``<node>/publishers``
            (:mod:`async_naf.common.publishers`).
    """

    run_dir: str = "runs/default"
    task: str = "reach"
    seed: int = 0
    algorithm: str = "naf"
    naf: NAFParams = field(default_factory=NAFParams)
    ddpg: DDPGParams = field(default_factory=DDPGParams)
    resume: bool = False
    resume_from: str = ""
    replay_capacity: int = 1_000_000
    replay_eviction: str = "random"
    min_buffer_size: int = 1_000
    demos: tuple[str, ...] = ()
    demo_ratio: float = 0.1
    demo_pretrain_updates: int = 0
    pause_after_pretrain: bool = False
    updates_per_step: float = 1.0
    max_updates_per_s: float = 0.0
    action_limit: tuple[float, ...] = ()
    weights_every_updates: int = 100
    checkpoint_every_s: float = 300.0
    save_buffer: bool = True
    max_env_steps: int = 0
    max_wall_s: float = 0.0
    deadline_unix: float = 0.0
    keep_checkpoints: int = 2
    tensorboard: bool = True
    log_every_updates: int = 100
    num_threads: int = 1
    executor: str = "events"
    ack_period_s: float = 0.25
    publisher_watch: PublisherWatchConfig = field(default_factory=PublisherWatchConfig)

    def __post_init__(self) -> None:
        if not str(self.run_dir):
            raise ValueError("run_dir must not be empty")
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {EXECUTORS}, got {self.executor!r}")
        if self.replay_eviction not in EVICTIONS:
            raise ValueError(f"replay_eviction must be one of {EVICTIONS}, got {self.replay_eviction!r}")
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {self.algorithm!r}")
        if self.task not in TASK_NAMES:
            raise ValueError(f"unknown task {self.task!r}; choose one of {', '.join(TASK_NAMES)}")
        if isinstance(self.naf, dict):
            self.naf = NAFParams(**self.naf)
        if isinstance(self.ddpg, dict):
            self.ddpg = DDPGParams(**self.ddpg)
        integers(self, ("replay_capacity", "weights_every_updates", "log_every_updates", "keep_checkpoints",
                        "num_threads"), 1)
        integers(self, ("min_buffer_size", "max_env_steps", "seed", "demo_pretrain_updates"), 0)
        numbers(self, ("updates_per_step", "max_updates_per_s", "checkpoint_every_s", "max_wall_s",
                       "deadline_unix"), 0.0)
        numbers(self, ("ack_period_s",), 0.0, low_open=True)
        limits = tuple(float(v) for v in self.action_limit)
        if limits and (len(limits) != 7 or not all(math.isfinite(v) and v > 0 for v in limits)):
            raise ValueError(f"action_limit must be empty or 7 finite values > 0 (rad/s), got {limits}")
        self.action_limit = limits
        self.demos = tuple(str(p) for p in self.demos)
        if any(not p.strip() for p in self.demos):
            raise ValueError(f"demos must be dataset paths, got an empty one in {list(self.demos)}")
        numbers(self, ("demo_ratio",), 0.0, 1.0)
        if self.agent_params.batch_size > self.replay_capacity:
            raise ValueError("batch_size must not exceed replay_capacity")

    @property
    def agent_params(self) -> NAFParams | DDPGParams:
        """The hyper-parameters of the configured algorithm."""
        return self.ddpg if self.algorithm == "ddpg" else self.naf

    def agent_config(self, obs_dim: int, act_dim: int, action_low: npt.ArrayLike,
                     action_high: npt.ArrayLike) -> NAFConfig | DDPGConfig:
        """The agent's config: this trainer's hyper-parameters for its algorithm, the problem's sizes and
        bounds (action units), and this trainer's seed."""
        cls = DDPGConfig if self.algorithm == "ddpg" else NAFConfig
        low = tuple(float(v) for v in np.ravel(action_low))
        high = tuple(float(v) for v in np.ravel(action_high))
        return cls(obs_dim, act_dim, low, high, seed=self.seed, **dataclasses.asdict(self.agent_params))

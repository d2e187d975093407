"""Split-model core: `SplitModel` (a chain of N blocks cut at k in 0..N), `Payload`, the sessions, `run_split`.

A cut k (``placement == "edge_then_cloud"``) means the edge runs blocks [0, k) and the cloud runs [k, N); extra cuts
after index N are ``cloud_then_edge`` (cloud runs [0, k), edge runs [k, N)). Messages between the halves are
`Payload`s: a flat dict of named tensors plus small JSON-able metadata, so the wire format carries them as is.
Payload tensors live on the sender's device; the receiver moves them to its own device (numpy arrays accepted).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from executor.blocks import BlockSpec
from executor.profile import CutSpec

if TYPE_CHECKING:  # pragma: no cover
    import torch

log = logging.getLogger(__name__)

PAYLOAD_KINDS = ("observation", "activations", "decode", "token", "kv_cache", "actions")
WIRE_DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1}
_NATIVE_BYTES = {
    "uint8": 1,
    "int8": 1,
    "int32": 4,
    "int64": 8,
    "float16": 2,
    "bfloat16": 2,
    "float32": 4,
    "float64": 8,
    "bool": 1,
}
MAX_MESSAGES = 10_000  # guard in run_split: a protocol bug never loops forever

Actions = np.ndarray


class PayloadError(ValueError):
    """A payload that does not fit the receiving session (wrong kind, cut, step, names, shapes or dtypes)."""


class ModelNotRunnableError(RuntimeError):
    """The model was built on the meta device (shapes and sizes only) and cannot be executed."""


@dataclass
class Payload:
    """One message between the halves.

    kind: one of ``PAYLOAD_KINDS``; cut: the cut index (into ``cut_specs()``) the sender runs; step: decode step
    (openvla round trips) or 0. ``activations`` names the floating activations a wire format may compress
    (fp16/bf16/int8); every other tensor (uint8 images, int64 token ids, float32 state/noise/actions) must arrive
    bit-exact. ``meta`` is small JSON-able data.
    """

    kind: str
    cut: int
    tensors: dict[str, Any]
    step: int = 0
    activations: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in PAYLOAD_KINDS:
            raise PayloadError(f"unknown payload kind {self.kind!r}; valid: {PAYLOAD_KINDS}")
        unknown = set(self.activations) - set(self.tensors)
        if unknown:
            raise PayloadError(f"activations {sorted(unknown)} are not tensors of this payload")

    def nbytes(self) -> int:
        """Bytes of the tensors as held (not counting any header)."""
        return int(sum(_nbytes(t) for t in self.tensors.values()))

    def header(self) -> dict[str, Any]:
        """The JSON-able part (everything but the tensors)."""
        return {
            "kind": self.kind,
            "cut": self.cut,
            "step": self.step,
            "activations": list(self.activations),
            "meta": dict(self.meta),
        }


def _nbytes(t: Any) -> int:
    if isinstance(t, np.ndarray):
        return int(t.nbytes)
    return int(t.numel() * t.element_size())


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape and in-memory dtype of one payload tensor; ``activation`` tensors travel in the wire dtype."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    activation: bool = False

    def nbytes(self, wire_dtype: str) -> int:
        n = int(np.prod(self.shape, dtype=np.int64))
        if self.activation:
            return n * WIRE_DTYPE_BYTES[wire_dtype]
        return n * _NATIVE_BYTES[self.dtype]


def specs_nbytes(specs: list[TensorSpec], wire_dtype: str) -> int:
    return int(sum(s.nbytes(wire_dtype) for s in specs))


@dataclass
class Message:
    """One recorded message of a split run."""

    direction: str  # "up" (edge -> cloud) or "down"
    kind: str
    step: int
    nbytes: int


@dataclass
class SplitTrace:
    """What crossed the link during one `run_split`."""

    cut_index: int
    messages: list[Message] = field(default_factory=list)

    @property
    def up_bytes(self) -> int:
        return sum(m.nbytes for m in self.messages if m.direction == "up")

    @property
    def down_bytes(self) -> int:
        return sum(m.nbytes for m in self.messages if m.direction == "down")

    @property
    def round_trips(self) -> int:
        """Exchanges after the first (0 for a single request/reply; 0 for edge-only)."""
        return max(0, sum(1 for m in self.messages if m.direction == "up") - 1)


class EdgeSession(Protocol):
    def start(self, obs: Mapping[str, np.ndarray]) -> Payload | Actions: ...

    def on_reply(self, payload: Payload) -> Payload | Actions: ...


class CloudSession(Protocol):
    def on_request(self, payload: Payload) -> Payload: ...

    def accept(self, payload: Payload) -> dict[str, Any]:
        """The checked tensors of the session's first request (``SplitModel.cloud_batch`` batches them)."""
        ...


BatchResult = tuple[Any, Payload] | Exception
"""One request's outcome in ``SplitModel.cloud_batch``: (its cloud session, its reply), or its own error."""


class SplitModel(ABC):
    """A VLA model as a chain of ``num_blocks`` blocks that can be cut at any boundary (see module docstring)."""

    family: str = ""

    def __init__(self, preset: str, config: Any, device: Any, dtype: Any) -> None:
        self.preset = preset
        self.config = config
        self.device = device
        self.dtype = dtype
        self.block_names: tuple[str, ...] = ()
        self.block_modules: tuple[torch.nn.Module, ...] = ()

    # ---- structure -------------------------------------------------------------------------------------------
    @property
    def num_blocks(self) -> int:
        return len(self.block_names)

    @property
    def num_cuts(self) -> int:
        return self.num_blocks + 1 + len(self._reverse_cuts())

    @property
    def is_meta(self) -> bool:
        return str(self.device) == "meta"

    @property
    def _act_dtype(self) -> str:
        """Name of the activation dtype (``float32``, ``bfloat16``, ...)."""
        return str(self.dtype).removeprefix("torch.")

    def num_parameters(self) -> int:
        """Parameters of the modules that run (sum over ``block_modules``, shared parameters counted once)."""
        seen: dict[int, int] = {}
        for m in self.block_modules:
            for p in m.parameters():
                seen[id(p)] = p.numel()
        return int(sum(seen.values()))

    @abstractmethod
    def block_specs(self) -> list[BlockSpec]:
        """One BlockSpec per block, in chain order, with the exact parameter count of its module."""

    # ---- cuts ----------------------------------------------------------------------------------------------------
    def placement(self, cut_index: int) -> tuple[str, int]:
        """(placement, k) of a cut index; raises ValueError naming the valid range."""
        self._check_cut(cut_index)
        cut_index = int(cut_index)
        n = self.num_blocks
        if cut_index <= n:
            return "edge_then_cloud", cut_index
        return "cloud_then_edge", self._reverse_cuts()[cut_index - n - 1]

    def cut_specs(self, wire_dtype: str = "float32") -> list[CutSpec]:
        """Wire cost of every cut, from shapes alone (works on the meta device). Tensor bytes only, no headers."""
        if wire_dtype not in WIRE_DTYPE_BYTES:
            raise ValueError(f"unknown wire dtype {wire_dtype!r}; valid: {sorted(WIRE_DTYPE_BYTES)}")
        n = self.num_blocks
        actions = specs_nbytes(self._action_specs(), wire_dtype)
        cuts = []
        for k in range(n + 1):
            if k == n:
                cuts.append(CutSpec(k=n, name="edge_only"))
                continue
            rt, rt_up, rt_down = self._round_trip_specs(k)
            cuts.append(
                CutSpec(
                    k=k,
                    placement="edge_then_cloud",
                    up_bytes=specs_nbytes(self._payload_specs(k), wire_dtype),
                    down_bytes=actions,
                    round_trips=rt,
                    round_trip_up_bytes=specs_nbytes(rt_up, wire_dtype),
                    round_trip_down_bytes=specs_nbytes(rt_down, wire_dtype),
                    name="cloud_only" if k == 0 else f"after:{self.block_names[k - 1]}",
                )
            )
        for k in self._reverse_cuts():
            up, down = self._reverse_specs(k)
            cuts.append(
                CutSpec(
                    k=k,
                    placement="cloud_then_edge",
                    up_bytes=specs_nbytes(up, wire_dtype),
                    down_bytes=specs_nbytes(down, wire_dtype),
                    name=f"cloud:[0,{k})|edge:[{k},{n})",
                )
            )
        return cuts

    def _reverse_cuts(self) -> tuple[int, ...]:
        """k of each cloud_then_edge cut, appended after index N (none by default)."""
        return ()

    def _reverse_specs(self, k: int) -> tuple[list[TensorSpec], list[TensorSpec]]:
        raise NotImplementedError

    @abstractmethod
    def _payload_specs(self, k: int) -> list[TensorSpec]:
        """Tensors the edge sends after running blocks [0, k) (k = 0: the raw observation the model reads)."""

    @abstractmethod
    def _action_specs(self) -> list[TensorSpec]:
        """Tensors of the final reply (the actions)."""

    def _round_trip_specs(self, k: int) -> tuple[int, list[TensorSpec], list[TensorSpec]]:
        """(extra round trips, tensors up per trip, tensors down per trip) at forward cut k."""
        return 0, [], []

    def _check_cut(self, cut_index: Any) -> None:
        if isinstance(cut_index, bool) or not isinstance(cut_index, (int, np.integer)):
            raise TypeError(f"cut index must be an int, got {type(cut_index).__name__} {cut_index!r}")
        n = self.num_blocks
        extra = len(self._reverse_cuts())
        if not 0 <= cut_index <= n + extra:
            rev = f" and {n + 1}..{n + extra} (cloud_then_edge)" if extra else ""
            raise ValueError(
                f"cut index {cut_index} out of range for {self.family}/{self.preset}: valid 0..{n} "
                f"(edge_then_cloud){rev}"
            )

    # ---- execution ------------------------------------------------------------------------------------------------
    def _require_runnable(self) -> None:
        if self.is_meta:
            raise ModelNotRunnableError(
                f"{self.family}/{self.preset} is built on the meta device (shapes, parameter counts and payload "
                "sizes only) and cannot run; use preset 'tiny' or 'small', or build with on_meta=False on a machine "
                "with enough memory"
            )

    @abstractmethod
    def make_observation(self, seed: int) -> dict[str, np.ndarray]:
        """A deterministic observation for this preset (numpy Generator seeded with ``seed``)."""

    @abstractmethod
    def forward(self, obs: Mapping[str, np.ndarray]) -> Actions:
        """Unsplit reference: actions (chunk, dof) float32."""

    @abstractmethod
    def edge_session(self, cut_index: int) -> EdgeSession: ...

    @abstractmethod
    def cloud_session(self, cut_index: int) -> CloudSession: ...

    # ---- batching across requests ----------------------------------------------------------------------------------
    _stacked: tuple[str, ...] = ()
    """Per-request tensors without a leading batch dimension (stacked along a new axis 0 in a batch); every other
    tensor has one and is concatenated along axis 0."""

    def cloud_batch(self, cut_index: int, payloads: list[Payload]) -> list[BatchResult]:
        """The first cloud step of ``len(payloads)`` independent exchanges at one cut, run as one batched forward.

        Returns, per request in order, (its cloud session, its reply) or the exception that request alone raised:
        each payload is checked on its own first, and when the batched forward fails every request is re-run alone,
        so one bad request never fails the others. A session that is not finished (decode round trips) continues
        with ``on_request`` like one made by ``cloud_session``.
        """
        self._require_runnable()
        self._check_cut(cut_index)
        out: list[BatchResult | None] = [None] * len(payloads)
        ready: list[tuple[int, Any, dict[str, torch.Tensor]]] = []
        for i, p in enumerate(payloads):
            try:
                sess = self.cloud_session(cut_index)
                ready.append((i, sess, sess.accept(p)))
            except Exception as e:  # noqa: BLE001 - this request's own error
                out[i] = e
        if len(ready) > 1:
            try:
                replies = self._cloud_first_steps([s for _, s, _ in ready], [st for _, _, st in ready])
                for (i, sess, _), reply in zip(ready, replies):
                    out[i] = (sess, reply)
                ready = []
            except Exception as e:  # noqa: BLE001 - fall back to one at a time, below
                log.info(
                    "batched forward of %d requests at cut %d failed (%s: %s); running them one by one",
                    len(ready),
                    cut_index,
                    type(e).__name__,
                    e,
                )
        for i, _, _ in ready:
            try:
                sess = self.cloud_session(cut_index)
                out[i] = (sess, sess.on_request(payloads[i]))
            except Exception as e:  # noqa: BLE001 - this request's own error
                out[i] = e
        return [r for r in out if r is not None]

    def _cloud_first_steps(self, sessions: list[Any], states: list[dict[str, torch.Tensor]]) -> list[Payload]:
        """Run the first step of ``sessions`` (fresh cloud sessions of one cut) on their accepted ``states`` as one
        batch; returns their replies and leaves each session as its own ``on_request`` would."""
        raise NotImplementedError

    def stack_states(self, states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Per-request tensor dicts (same names) -> one batch (``_stacked`` names stacked, the rest concatenated)."""
        import torch

        return {n: (torch.stack if n in self._stacked else torch.cat)([s[n] for s in states]) for n in states[0]}

    def split_state(self, state: dict[str, torch.Tensor], n: int) -> list[dict[str, torch.Tensor]]:
        """Inverse of ``stack_states`` for a batch of ``n`` requests (views, made contiguous)."""
        parts: list[dict[str, torch.Tensor]] = [{} for _ in range(n)]
        for name, t in state.items():
            pieces = t.unbind(0) if name in self._stacked else t.chunk(n, dim=0)
            if len(pieces) != n:
                raise ValueError(f"tensor {name!r} of shape {tuple(t.shape)} does not split into {n} requests")
            for part, piece in zip(parts, pieces):
                part[name] = piece.contiguous()
        return parts

    # ---- helpers shared by the families ----------------------------------------------------------------------------
    def _check_observation(self, obs: Mapping[str, Any], specs: list[TensorSpec]) -> None:
        if not isinstance(obs, Mapping):
            raise TypeError(f"observation must be a mapping of arrays, got {type(obs).__name__}")
        for s in specs:
            if s.name not in obs:
                raise ValueError(f"observation is missing {s.name!r}; expected keys {[x.name for x in specs]}")
            a = obs[s.name]
            shape = tuple(a.shape)
            dtype = str(a.dtype).removeprefix("torch.")
            if shape != s.shape or dtype != s.dtype:
                raise ValueError(
                    f"observation[{s.name!r}] has shape {shape} dtype {dtype}, expected {s.shape} {s.dtype}"
                )

    def _receive(
        self, payload: Payload, cut_index: int, kinds: tuple[str, ...], specs: list[TensorSpec]
    ) -> dict[str, torch.Tensor]:
        """Check a received payload against the expected tensors and move them to this model's device/dtype."""

        if not isinstance(payload, Payload):
            raise PayloadError(f"expected a Payload, got {type(payload).__name__}")
        if payload.kind not in kinds:
            raise PayloadError(f"payload kind {payload.kind!r} not expected here; expected one of {kinds}")
        if payload.cut != cut_index:
            raise PayloadError(f"payload is for cut {payload.cut}, this session runs cut {cut_index}")
        names = {s.name for s in specs}
        if set(payload.tensors) != names:
            raise PayloadError(f"payload tensors {sorted(payload.tensors)} != expected {sorted(names)}")
        out = {}
        for s in specs:
            t = payload.tensors[s.name]
            if isinstance(t, np.ndarray):
                t = as_tensor(t, "cpu")
            if tuple(t.shape) != s.shape:
                raise PayloadError(f"payload tensor {s.name!r} has shape {tuple(t.shape)}, expected {s.shape}")
            dtype = str(t.dtype).removeprefix("torch.")
            if s.activation:
                if not t.is_floating_point():
                    raise PayloadError(f"payload activation {s.name!r} has dtype {dtype}, expected a float dtype")
                t = t.to(device=self.device, dtype=self.dtype)
            else:
                if dtype != s.dtype:
                    raise PayloadError(f"payload tensor {s.name!r} has dtype {dtype}, expected {s.dtype}")
                t = t.to(device=self.device)
            out[s.name] = t
        return out


def run_split(
    model: SplitModel,
    obs: Mapping[str, np.ndarray],
    cut_index: int,
    transport: Callable[[Payload], Payload] = lambda p: p,
) -> tuple[Actions, SplitTrace]:
    """Drive the edge and cloud sessions of one cut in-process; ``transport`` is applied to every message."""
    edge = model.edge_session(cut_index)
    cloud: CloudSession | None = None
    trace = SplitTrace(cut_index=cut_index)
    out = edge.start(obs)
    while isinstance(out, Payload):
        if len(trace.messages) >= MAX_MESSAGES:
            raise RuntimeError(f"split run at cut {cut_index} exceeded {MAX_MESSAGES} messages")
        trace.messages.append(Message("up", out.kind, out.step, out.nbytes()))
        if cloud is None:
            cloud = model.cloud_session(cut_index)
        reply = cloud.on_request(transport(out))
        trace.messages.append(Message("down", reply.kind, reply.step, reply.nbytes()))
        out = edge.on_reply(transport(reply))
    if not isinstance(out, np.ndarray):
        raise TypeError(f"edge session returned {type(out).__name__}, expected a Payload or actions")
    return out, trace


def build_modules(builder: Callable[[], Any], *, seed: int, on_meta: bool) -> Any:
    """Call ``builder`` on the meta device (no memory) or with torch's RNG seeded, without touching the global RNG."""
    import torch

    if on_meta:
        with torch.device("meta"):
            return builder()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return builder()


def as_tensor(a: Any, device: Any) -> torch.Tensor:
    """A numpy array (read-only ones are copied, torch cannot wrap them) or tensor as a tensor on ``device``."""
    import torch

    if isinstance(a, np.ndarray):
        a = np.ascontiguousarray(a)
        a = torch.from_numpy(a if a.flags.writeable else a.copy())
    return torch.as_tensor(a).to(device)


def module_params(module: Any) -> int:
    return int(sum(p.numel() for p in module.parameters()))

"""Hedged execution on the edge: while a split step's payload travels, the edge runs the cloud's blocks itself.

On a hedgeable cut (``executor.profile.hedgeable``: edge_then_cloud, one request and one reply) the edge already holds
the payload it sends, and every block stays loaded on the edge, so right after sending it can go on locally with
``model.cloud_session(cut).on_request(payload)``. Whichever actions come first are used: the cloud's reply when the
network is fast, the local continuation (done at the edge-only time) when it is not. The loser is abandoned: a late
reply is dropped by its request id, and the local continuation stops at the next block boundary (a forward pre-hook
on every block module raises :class:`HedgeCancelled` in the continuation's thread once it is cancelled).

``ecc_env.latency.step_timing`` prices the same rule for the environment (``DeadlineConfig.hedge``).
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from executor.client_connection import reply_counts
from executor.profile import hedgeable
from executor.protocol import TransportTimeout

if TYPE_CHECKING:  # pragma: no cover
    from executor.models import Payload, SplitModel

log = logging.getLogger(__name__)

_local = threading.local()  # ``continuation`` is set only in a continuation's own thread
_HOOKS_ATTR = "_ecc_hedge_hooks"


class HedgeCancelled(RuntimeError):
    """Raised inside a cancelled local continuation at its next block boundary."""


def cut_is_hedgeable(model: SplitModel, cut: int) -> bool:
    """The rule the environment prices (``executor.profile.hedgeable``) applied to the model's own cut description."""
    placement, _k = model.placement(cut)
    return hedgeable(placement == "edge_then_cloud", model.cut_specs()[int(cut)].round_trips)


def _abort_hook(_module: Any, _args: Any) -> None:
    cont = getattr(_local, "continuation", None)
    if cont is not None and cont.cancelled:
        raise HedgeCancelled("local continuation cancelled")


def install_abort_hooks(model: SplitModel) -> None:
    """Register the block-boundary cancellation check on every block module (once per model; a no-op outside a
    continuation's thread). Call it while no forward runs, e.g. before the first continuation starts."""
    if getattr(model, _HOOKS_ATTR, None) is None:
        handles = [m.register_forward_pre_hook(_abort_hook) for m in model.block_modules]
        setattr(model, _HOOKS_ATTR, handles)


class LocalContinuation:
    """Runs the cloud half of ``cut`` on the edge's model in a daemon thread; ``future`` gets the actions."""

    def __init__(self, model: SplitModel, cut: int, payload: Payload) -> None:
        install_abort_hooks(model)
        self.model, self.cut, self.payload = model, int(cut), payload
        self.cancelled = False
        self.future: concurrent.futures.Future[np.ndarray] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, name=f"hedge-cut{cut}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        _local.continuation = self
        try:
            reply = self.model.cloud_session(self.cut).on_request(self.payload)
            if getattr(reply, "kind", None) != "actions":
                raise RuntimeError(
                    f"cut {self.cut}: the local continuation ended with a {reply.kind!r} payload, "
                    "expected actions (not a hedgeable cut)"
                )
            self.future.set_result(np.asarray(reply.tensors["actions"].detach().cpu().numpy()))
        except HedgeCancelled as e:
            self.future.set_exception(e)
        except Exception as e:  # noqa: BLE001 - reported through the future; the network path still stands
            log.warning("local continuation at cut %d failed: %s: %s", self.cut, type(e).__name__, e)
            self.future.set_exception(e)
        finally:
            _local.continuation = None

    def cancel(self) -> None:
        """Stop at the next block boundary (the thread ends on its own; :meth:`join` waits for it)."""
        self.cancelled = True

    def join(self, timeout_s: float | None = None) -> bool:
        """Wait for the thread to end; True when it has."""
        self._thread.join(timeout_s)
        return not self._thread.is_alive()


class Hedger:
    """The edge client's hedging for ``model``: which cuts hedge (cached per cut), the current call's local
    continuation, and the race between it and the network reply."""

    def __init__(self, model: SplitModel, url: str) -> None:
        self.model, self.url = model, url
        self.current: LocalContinuation | None = None
        self._cuts: dict[int, bool] = {}

    def hedgeable(self, cut: int) -> bool:
        if cut not in self._cuts:
            self._cuts[cut] = cut_is_hedgeable(self.model, cut)
        return self._cuts[cut]

    def start(self, cut: int, payload: Payload) -> None:
        """Go on locally with ``payload`` (the edge blocks' output at ``cut``) while it travels."""
        self.current = LocalContinuation(self.model, cut, payload)

    def cancel(self) -> None:
        """Stop the current continuation at its next block boundary (without waiting)."""
        if self.current is not None:
            self.current.cancel()

    def reap(self, timeout_s: float = 10.0) -> None:
        """Wait for the previous call's abandoned local continuation to stop (it does at its next block)."""
        cont, self.current = self.current, None
        if cont is not None:
            cont.cancel()
            if not cont.join(timeout_s):
                log.warning(
                    "a cancelled local continuation at cut %d is still running after %.0f s", cont.cut, timeout_s
                )

    def race(
        self, future: concurrent.futures.Future, deadline: float | None, on_miss: Callable[[], None]
    ) -> np.ndarray | None:
        """Wait for the network reply or the local continuation, whichever is first. Returns the local actions when
        they won (or the deadline passed first: the network is abandoned, ``on_miss()`` records it, the local
        actions are awaited); None when the reply is in (or the network failed, or the local run did): the caller
        reads ``future`` as without a hedge."""
        cont = self.current
        assert cont is not None, "race() without a started continuation"
        timeout = None if deadline is None else max(deadline - time.perf_counter(), 0.0)
        concurrent.futures.wait([future, cont.future], timeout, return_when=concurrent.futures.FIRST_COMPLETED)
        if reply_counts(future, deadline) or (cont.future.done() and cont.future.exception() is not None):
            cont.cancel()
            return None
        future.cancel()  # local actions first, or the deadline passed: a late reply is dropped by its request id
        on_miss()  # stamped at min(deadline, local finish)
        try:
            return cont.future.result()
        except Exception:  # noqa: BLE001 - the local run failed after the deadline: report the deadline miss
            raise TransportTimeout(f"no reply from {self.url} before the deadline") from None

"""Scale-out on Ray: a Generator whose tasks run on Ray actors that keep their pipeline loaded.

``Generator(model=..., cluster="ray", workers=None)`` imports this package (and Ray) and hands
every task to :class:`~wan_nb.cluster.backend.ClusterBackend`. Nothing else in wan_nb imports
it, so ``import wan_nb`` stays light and Ray stays an optional extra (``pip install wan_nb[ray]``).

What runs where:

* the **driver** (the notebook kernel or script that made the Generator) validates arguments,
  writes the run folders, journals and relays every event, and holds the queue
  (:class:`~wan_nb.cluster.backend.RayEngine`, the generator's engine);
* each **worker** (:mod:`wan_nb.cluster.worker`) is a Ray actor with one GPU (or one CPU on a
  cluster without GPUs) hosting a :class:`~wan_nb.core.local_engine.LocalEngine`, whose events
  stream back with their seq.

Ray schedules the actors and carries every byte; wan_nb adds no transport of its own.
"""

from __future__ import annotations

from typing import Any, Callable

from wan_nb.protocol.errors import ClusterUnavailable

__all__ = ["attach", "connect", "ClusterUnavailable"]


def connect(cluster: str) -> Any:
    """Join the Ray cluster ``cluster`` names (once per process); returns the ``ray`` module.

    ``"ray"``: the cluster this machine belongs to (``ray.init(address="auto")``), else a new local
    one. Any other string is a Ray address (``"ray://head:10001"``, ``"10.0.0.5:6379"``).
    """
    if not isinstance(cluster, str) or not cluster.strip():
        raise ValueError(f"cluster={cluster!r}: use None (run here), 'ray', or a Ray address such as "
                         "'ray://head:10001'")
    try:
        import ray
    except ImportError:
        raise ClusterUnavailable("cluster= needs Ray: pip install 'wan_nb[ray]' (on the driver and on "
                                 "every node of the cluster)") from None
    if ray.is_initialized():
        return ray  # one Ray connection per process; every Generator of it shares the cluster
    # Worker output stays in the Ray session's log files: task failures arrive as events.
    options = dict(log_to_driver=False, ignore_reinit_error=True)
    if cluster == "ray":
        try:
            ray.init(address="auto", **options)
        except ConnectionError:
            ray.init(include_dashboard=False, **options)
    else:
        _token_auth_if_the_user_has_a_token()
        auth_error = getattr(ray.exceptions, "AuthenticationError", _NeverRaised)   # Ray 2.52+
        try:
            ray.init(address=cluster, **options)
        except (ConnectionError, ValueError, auth_error) as exc:
            if _refused_for_its_token(exc, auth_error):
                raise ClusterUnavailable(f"the Ray cluster at {cluster!r} requires token authentication and refused "
                                         "this connection: give this process the cluster's token, in "
                                         "~/.ray/auth_token, a file named by RAY_AUTH_TOKEN_PATH, or RAY_AUTH_TOKEN "
                                         "(see docs/cluster.md, 'Token authentication')") from None
            raise ClusterUnavailable(f"cannot reach the Ray cluster at {cluster!r}: {exc}. Start one with "
                                     "`ray start --head` (see docs/cluster.md).") from exc
    return ray


class _NeverRaised(Exception):
    """Stands for Ray's AuthenticationError in a Ray that has none (before 2.52)."""


def _refused_for_its_token(exc: BaseException, auth_error: type) -> bool:
    """Whether Ray's connection error was, somewhere down its chain, an authentication refusal.
    Ray 2.60 wraps it as text: a ConnectionError caused by a RuntimeError whose message holds the
    GCS client's traceback ending in ``AuthenticationError: ... InvalidAuthToken``."""
    seen = 0
    while exc is not None and seen < 16:
        if isinstance(exc, auth_error) or "InvalidAuthToken" in str(exc):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _token_auth_if_the_user_has_a_token() -> None:
    """Connect with token authentication when the user has a Ray token and left RAY_AUTH_MODE unset.

    Ray turns token authentication on by itself for ``address="auto"`` when a token exists
    (``~/.ray/auth_token``, ``RAY_AUTH_TOKEN_PATH``, ``RAY_AUTH_TOKEN``), but never for an explicit
    address, and since Ray 2.60 a head started by ``ray start`` on a machine holding a token
    requires it: ``cluster="<address>"`` then failed with ``InvalidAuthToken``. The user named the
    cluster, so their token goes to it, as Ray's own CLI does. Only whether a token exists is
    looked at here; its value is read by Ray's loader and never passes through wan_nb (nothing
    here prints or logs it). An explicit ``RAY_AUTH_MODE`` is always respected.
    """
    import os

    if os.environ.get("RAY_AUTH_MODE") is not None:
        return
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:   # a Ray before token authentication (2.52): nothing to turn on
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def attach(ctx: Any, *, cluster: str, workers: int | None, model: Any, worker_options: dict[str, Any],
           resubmit: Callable[..., Any]) -> Any:
    """Connect and build the engine (:class:`~wan_nb.cluster.backend.RayEngine`) that runs a
    generator's tasks on Ray workers; ``ctx`` is the generator's ``wan_nb.core.run.RunContext``."""
    from .backend import RayEngine  # imports Ray's side of wan_nb only when cluster= is used

    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
        raise ValueError(f"workers={workers!r}: give a number of pipeline workers >= 1, or None for one "
                         "per GPU of the cluster")
    ray = connect(cluster)
    return RayEngine(ctx, ray, model=model, workers=workers, worker_options=worker_options, resubmit=resubmit)

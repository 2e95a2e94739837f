"""2-D maps: UMAP (or PCA) fitted on a teacher layer, the student's layer transformed into the same plane."""

from __future__ import annotations

import threading
import time
import warnings

import numpy as np
from sklearn.decomposition import PCA

from ..errors import LRCError
from .common import _EPS, METHODS


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), _EPS)


class Map2D:
    """A 2-D map fitted on one set of vectors (the teacher's) that places other vectors (the student's) in it.

    method "umap" (umap-learn, deterministic with `seed`; the first call in a process pays numba's JIT compile)
    or "pca" (scikit-learn, instant). Vectors are L2-normalised first: the maps show directions, as COS-NCE does.
    """

    def __init__(self, method: str = "umap", seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.1):
        if method not in METHODS:
            raise LRCError(f"map method must be one of {', '.join(METHODS)}; got {method!r}")
        self.method, self.seed, self.n_neighbors, self.min_dist = method, seed, n_neighbors, min_dist
        self.model = None
        self.fit_seconds = 0.0

    def fit(self, x: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        x = _unit_rows(x)
        n = x.shape[0]
        if n < 3:
            raise LRCError(f"a 2-D map needs at least 3 examples; got {n}")
        if self.method == "umap" and n >= 10:
            import umap  # imported on first use: with numba it takes seconds, and most app pages never draw a map

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.model = umap.UMAP(n_components=2, n_neighbors=min(self.n_neighbors, n - 1),
                                       min_dist=self.min_dist, random_state=self.seed, transform_seed=self.seed,
                                       n_jobs=1, init="spectral" if n > 16 else "random")
                xy = self.model.fit_transform(x)
        else:
            self.method = "pca" if self.method == "umap" else self.method  # too few points for UMAP
            self.model = PCA(n_components=2, svd_solver="full", random_state=self.seed).fit(x)
            xy = self.model.transform(x)
        self.fit_seconds = time.perf_counter() - start
        return np.asarray(xy, dtype=np.float64)

    def transform(self, x: np.ndarray) -> np.ndarray:
        if self.model is None:
            raise LRCError("fit the map before transforming into it")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(self.model.transform(_unit_rows(x)), dtype=np.float64)


_WARM = {"thread": None}


def warm_up_umap(background: bool = True) -> threading.Thread | None:
    """Compile umap-learn's numba code once per process (a tiny fit and transform), in a daemon thread.

    The first UMAP of a process spends most of its time in numba's JIT compile (measured 25-40 s on 2 busy
    CPU cores, then about 1 s per map). The app starts this when the Layers tab is first used, so the compile
    overlaps loading the models; a later `Map2D("umap")` reuses the compiled code.
    """
    if _WARM["thread"] is not None:
        return _WARM["thread"]

    def work():
        try:
            x = np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32)
            m = Map2D("umap", seed=0)
            m.fit(x)
            m.transform(x[:5])
        except Exception:  # only a speed-up: a failure shows up (with its message) in the real map
            pass

    if not background:
        work()
        _WARM["thread"] = threading.current_thread()
        return None
    thread = threading.Thread(target=work, name="umap-warm-up", daemon=True)
    _WARM["thread"] = thread
    thread.start()
    return thread

"""Layer alignment between a teacher and a student: angles, linear CKA, 2-D maps, training snapshots.

No Gradio here; `studio/tabs/layers.py` only draws what this package returns (plain lists and floats, JSON-safe).
One measure per module: representations, cosines, cka, maps (UMAP/PCA), snapshots, and run (one run's cached
analysis), re-exported here.

Layers are numbered the Hugging Face way: 0 is the embedding output, k is the output of transformer layer k
(`hidden_states[k]`). A run's layer map says student layer m (1-based) learned from teacher layer layer_map[m-1].

Representations (`representation`):
    cls     the [CLS] vector, one row per example
    mean    the masked mean over real tokens, one row per example
    tokens  every real (non-padding) token, one row per token; rows remember their example and position

Angular similarity (`similarity_matrix`)
    For every (teacher layer i, student layer j): the mean cosine between the teacher's vector of an example and
    the student's vector of the *same* example (`cos_own`), and the mean cosine between the student's vector of
    an example and the teacher's vectors of *all other* examples (`cos_neg`, every other example of the sample,
    not a random K). `margin = cos_own - cos_neg` is the gap COS-NCE tries to open; angular distance is
    g = 1 - cos. In `tokens` mode a token is compared with the other examples' tokens at the same position
    (both real), exactly as the in-batch COS-NCE loss does, and averaged per example first, then over examples.

    Widths. A cosine needs both vectors in one space, so the student's vector goes through a learned projection
    W (student width -> teacher width) first:
      * student layer j uses its own projection W_j (every transformer layer of the student is mapped, since a
        layer map has one entry per student layer), also against teacher layers it was not mapped to: W_j is
        the learned change of basis from that student layer to the teacher's space, so the student layer's
        column of the heatmap shows where in the teacher that layer landed;
      * the embedding layer (never distilled) and any other layer without a projection borrow the projection
        of the nearest mapped student layer (`projection_source` records which, e.g. "W1 (borrowed)");
      * a run without projections (COS-NCE off, fine-tuning baselines) is compared directly when the widths
        match ("identity") and is marked not comparable (NaN) when they differ.
    Linear CKA needs no projection (it compares the two models' example-by-example similarity structure and
    is width-free), so the CKA matrix uses the raw hidden states for every pair.

Linear CKA (`cka_matrix`)
    Minibatch CKA (Nguyen, Raghu & Kornblith 2021): the rows are split into minibatches of `batch_size`, the
    unbiased HSIC estimator (Song et al. 2012) of every (teacher layer, student layer) pair and of every layer
    with itself is averaged over minibatches, and CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)). Memory is
    batch_size^2 per layer, never n x n, so it scales to any number of examples (or tokens). A layer whose
    vector is the same for every example (the [CLS] row of the embedding layer) has no similarity structure:
    its CKA is NaN ("n/a"), not a number made of rounding noise.

2-D maps (`Map2D`, `RunAnalysis.scatter`)
    Fit UMAP (or PCA, the fast fallback) on the teacher's vectors of one layer, then *transform* the student's
    projected vectors of a layer into that same plane: both models sit in one picture, and because the
    teacher's fit is fixed (and cached), the trained and the initial student land in the same coordinates.
    Vectors are L2-normalised first (COS-NCE only cares about angles). In `tokens` mode a point is an example:
    the mean of its token vectors.

Snapshots (`probe_alignment`, `read_snapshots`)
    With `snapshot_every: N`, the trainer calls `probe_alignment` on a fixed probe batch at step 0 and every
    N steps and writes {"type": "snapshot", "step", "layers", "cos_own", "cos_neg", "margin"} to events.jsonl.
"""

from .cka import _u_center, cka_matrix, hsic_unbiased
from .common import DEFAULT_CACHE_MB, METHODS, REPRESENTATIONS, Progress
from .cosines import _example_cosines, mapped_cosines, similarity_matrix
from .maps import Map2D, warm_up_umap
from .representations import Projector, Representations, collect_all, collect_representations
from .run import STUDENT_VARIANTS, RunAnalysis, clear_run_analyses, get_run_analysis, set_cache_budget
from .snapshots import probe_alignment, read_snapshots

__all__ = [
    "REPRESENTATIONS", "METHODS", "Representations", "collect_representations", "Projector", "similarity_matrix",
    "mapped_cosines", "cka_matrix", "hsic_unbiased", "Map2D", "probe_alignment", "read_snapshots", "RunAnalysis",
    "get_run_analysis", "clear_run_analyses", "set_cache_budget", "DEFAULT_CACHE_MB", "STUDENT_VARIANTS", "Progress",
    "warm_up_umap", "collect_all", "_example_cosines", "_u_center",
]

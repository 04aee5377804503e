"""Orthogonalization maps for Muon, batched over leading dims (one logical matrix per trailing 2-D slice).

Every map here acts on the last two dims of its input, so a stack of MoE experts ``[E, out, in]`` is
orthogonalized expert by expert in one batched call. Inputs are normalized in fp32 first (a loss-scaled
fp16/bf16 gradient cannot overflow, and a tiny matrix is not silently left unnormalized by a fixed eps),
then the iteration runs in ``dtype`` (bf16 by default, as in every reference implementation).

Maps:
    * ``"quintic"``: Keller Jordan's Newton-Schulz quintic (3.4445, -4.7750, 2.0315) x ``steps``.
      Output is roughly U S' V^T with S' in about [0.7, 1.2], which trains as well as U V^T.
    * ``"polar_express"``: the per-step minimax schedule of Amsel et al. (arXiv 2505.16932), as coded in
      microsoft/dion; closer to U V^T at the same cost.
    * :func:`regularized_polar`: the smoothed polar map M (M^T M + eps s_max^2 I)^(-1/2)
      = U diag(s / sqrt(s^2 + eps s_max^2)) V^T of "Regularized Muon" (arXiv 2605.23871), by a coupled
      Newton-Schulz inverse-square-root iteration.
    * :func:`schatten_power`: HTMuon's U S^p V^T (arXiv 2603.10067), exact (SVD in fp32).
"""

from __future__ import annotations

import torch
from torch import Tensor

QUINTIC_COEFFICIENTS: tuple[float, float, float] = (3.4445, -4.7750, 2.0315)
"""Keller Jordan's quintic (a, b, c), also torch.optim.Muon's default."""

POLAR_EXPRESS_COEFFICIENTS: tuple[tuple[float, float, float], ...] = (
    (8.15655, -22.48329, 15.87877),
    (4.04293, -2.80892, 0.50002),
    (3.89167, -2.77248, 0.50606),
    (3.28575, -2.36813, 0.46449),
    (2.34654, -1.70978, 0.42324),
)
"""Polar Express per-step (a, b, c) from microsoft/dion ``polar_express.py``; later steps repeat the last."""

POLAR_EXPRESS_SAFETY = 1.02
"""Polar Express divides by 1.02 * ||X||_F so that rounding cannot push a singular value past its interval."""

NS_METHODS = ("quintic", "polar_express")

GRAM_RESTART = 3
"""Gram Newton-Schulz re-forms X and its Gram matrix every this many steps (see :func:`_gram_iterate`)."""


def ns_flops(m: int, n: int, steps: int, gram: bool = False) -> float:
    """Matmul FLOPs of ``steps`` Newton-Schulz steps on one wide m x n slice (m <= n), plain or Gram form.

    Plain: X X^T, R R, P X per step, 4 m^2 n + 2 m^3. Gram: R R, Z R Z, Z Q per step (8 m^3), plus forming
    R and the final Q X (4 m^2 n) and the same again at every restart.
    """
    if not gram:
        return steps * (4.0 * m * m * n + 2.0 * m**3)
    restarts = (steps - 1) // GRAM_RESTART
    return 8.0 * steps * m**3 + (4.0 + 4.0 * restarts) * m * m * n


def gram_is_cheaper(m: int, n: int, steps: int) -> bool:
    """Whether the Gram form costs fewer FLOPs for a wide m x n slice (5 steps: when n > 2.5 m)."""
    m, n = min(m, n), max(m, n)
    return ns_flops(m, n, steps, gram=True) < ns_flops(m, n, steps)


def _coefficients(method: str, steps: int) -> list[tuple[float, float, float]]:
    if steps < 1:
        raise ValueError(f"ns_steps must be >= 1, got {steps}")
    if method == "quintic":
        return [QUINTIC_COEFFICIENTS] * steps
    if method == "polar_express":
        schedule = list(POLAR_EXPRESS_COEFFICIENTS[:steps])
        return schedule + [POLAR_EXPRESS_COEFFICIENTS[-1]] * (steps - len(schedule))
    raise ValueError(f"ns_method={method!r} is not known; accepted: {', '.join(NS_METHODS)}")


def normalize_fp32(matrix: Tensor, safety: float = 1.0) -> Tensor:
    """``matrix / (safety * ||matrix||_F)`` per trailing 2-D slice, in fp32; an all-zero slice stays zero.

    The guard is the smallest positive fp32 number, so it never changes a nonzero input (unlike a fixed
    1e-7, which leaves matrices with norm below 1e-7 unnormalized and far from orthogonal).
    """
    x = matrix.float()
    norm = torch.linalg.matrix_norm(x, ord="fro", keepdim=True)
    return x / (norm * safety).clamp_min(torch.finfo(torch.float32).tiny)


def newton_schulz(
    matrix: Tensor,
    method: str = "quintic",
    steps: int = 5,
    dtype: torch.dtype = torch.bfloat16,
    gram: bool = False,
) -> Tensor:
    """Approximate polar factor U V^T of each trailing 2-D slice of ``matrix`` (returned in fp32).

    Works on the wide orientation (rows <= cols) so the Gram matrix is the small one, as Keller Jordan's
    reference does; the map commutes with transposition, so the result is the same either way. With
    ``gram=True`` slices where the Gram form costs fewer FLOPs (:func:`gram_is_cheaper`: aspect ratio above
    2.5 at 5 steps) go through :func:`_gram_iterate` (same polynomial).
    """
    if matrix.ndim < 2:
        raise ValueError(
            f"newton_schulz needs a matrix or a stack of matrices, got shape {tuple(matrix.shape)}"
        )
    coefficients = _coefficients(method, steps)
    safety = POLAR_EXPRESS_SAFETY if method == "polar_express" else 1.0
    x = normalize_fp32(matrix, safety)
    tall = x.size(-2) > x.size(-1)
    if tall:
        x = x.mT
    x = x.to(dtype)
    if gram and gram_is_cheaper(x.size(-2), x.size(-1), steps):
        x = _gram_iterate(x, coefficients)
    else:
        for a, b, c in coefficients:
            g = x @ x.mT
            poly = b * g + c * (g @ g)
            x = a * x + poly @ x
    if tall:
        x = x.mT
    return x.float()


def gram_newton_schulz(
    matrix: Tensor, method: str = "quintic", steps: int = 5, dtype: torch.dtype = torch.float32
) -> Tensor:
    """:func:`newton_schulz` computed on the Gram side for every slice, whatever its aspect ratio.

    Same polynomial as plain Newton-Schulz, so in exact arithmetic the same output; cheaper when
    :func:`gram_is_cheaper` says so (see :func:`_gram_iterate`).
    """
    coefficients = _coefficients(method, steps)
    safety = POLAR_EXPRESS_SAFETY if method == "polar_express" else 1.0
    x = normalize_fp32(matrix, safety)
    tall = x.size(-2) > x.size(-1)
    if tall:
        x = x.mT
    x = _gram_iterate(x.to(dtype), coefficients)
    return (x.mT if tall else x).float()


def _gram_iterate(x: Tensor, coefficients: list[tuple[float, float, float]]) -> Tensor:
    """Newton-Schulz on the small m x m side, for a wide ``x`` (m <= n), in ``x``'s dtype.

    Every iterate is X_k = Q_k X_0 with Q_k a polynomial in R_0 = X_0 X_0^T, so with R_k = X_k X_k^T one
    step is Z = a I + b R_k + c R_k^2, Q <- Z Q, R <- Z R_k Z, and only the n-wide products R_0 = X X^T and
    the final Q X touch the long side (Gram Newton-Schulz: Dao-AILab gram-newton-schulz; DeepSpeed PR 7953).
    R_k squares X_k's condition number, so rounding in R grows with every step that amplifies the small
    singular values: measured in fp32 on rank-8-plus-noise matrices, without a restart the result drifts
    from plain Newton-Schulz by 1e-1 (relative Frobenius) after 8 Polar Express steps and overflows after 10
    quintic steps. Re-forming X <- Q X and R <- X X^T every ``GRAM_RESTART`` (3) steps (a restart, our
    choice of period from that measurement) keeps it within 5e-4 of fp64 Newton-Schulz in every case tried
    (tests/optim/test_muon_batched.py pins the accuracy against plain Newton-Schulz and SVD polar factors).
    """
    m = x.size(-2)
    eye = torch.eye(m, dtype=x.dtype, device=x.device)
    r = x @ x.mT
    q = None
    for i, (a, b, c) in enumerate(coefficients):
        if i and i % GRAM_RESTART == 0:
            x = q @ x
            r, q = x @ x.mT, None
        z = torch.baddbmm(eye.expand_as(r), r, r, beta=a, alpha=c) if r.ndim == 3 else a * eye + c * (r @ r)
        z = z + b * r
        q = z if q is None else z @ q
        r = z @ r @ z
    return q @ x


def _top_eigenvalue(gram: Tensor, iters: int = 12) -> Tensor:
    """Largest eigenvalue of each symmetric PSD matrix in ``gram`` (power iteration from a fixed random start)."""
    n = gram.size(-1)
    start = torch.randn(n, generator=torch.Generator().manual_seed(0)).to(gram)
    v = start.expand(*gram.shape[:-1]).unsqueeze(-1).clone()
    for _ in range(iters):
        v = gram @ v
        v = v / torch.linalg.vector_norm(v, dim=-2, keepdim=True).clamp_min(torch.finfo(v.dtype).tiny)
    return (v.mT @ gram @ v).squeeze(-1).squeeze(-1)


def regularized_polar(matrix: Tensor, eps: float = 1e-2, steps: int = 20) -> Tensor:
    """Smoothed polar map M (M^T M + eps s_max^2 I)^(-1/2) of each trailing 2-D slice (fp32 in, fp32 out).

    Each singular value s of M becomes s / sqrt(s^2 + eps s_max^2): directions with s^2 >> eps s_max^2 get
    a unit step as in Muon, weaker directions keep a step proportional to s instead of being blown up to 1
    (Muon amplifies a gradient's noise directions as much as its signal). ``eps`` is relative to the top
    singular value squared, so the map is scale-free and means the same for every shape (eps = 1e-2:
    directions below about a tenth of the strongest are damped); eps -> 0 recovers U V^T, and the top
    direction gets 1/sqrt(1 + eps). This is the "Regularized Muon" map of arXiv 2605.23871 (the gradient of a
    smoothing of the nuclear norm, sum_i sqrt(s_i^2 + eps)), with eps scaled by s_max^2: our choice.
    The inverse square root of A = X^T X + eps s_max^2 I (the small Gram side) comes from the coupled
    Newton-Schulz iteration Y <- Y T, Z <- T Z, T = (3I - Z Y)/2 started at Y = A / c, Z = I, in fp32, with
    c = 2 (1 + eps) s_max^2 from a power iteration (convergent while the estimate is above s_max^2 / 6).
    ``steps`` = 20 gets every singular value within 1% of its target for eps >= 1e-3 (tested); fewer steps
    leave the weakest directions smaller, never larger.
    """
    if eps <= 0:
        raise ValueError(f"regularized Muon needs eps > 0 (eps -> 0 is plain Muon), got {eps}")
    x = normalize_fp32(matrix)
    tall = x.size(-2) > x.size(-1)
    if not tall:
        x = x.mT  # work with X tall, so A = X^T X is the small side
    n = x.size(-1)
    eye = torch.eye(n, dtype=x.dtype, device=x.device)
    gram = x.mT @ x
    top = _top_eigenvalue(gram).clamp_min(torch.finfo(torch.float32).tiny)[..., None, None]
    a = gram + eps * top * eye
    scale = 2.0 * (1.0 + eps) * top
    y = a / scale
    z = eye.expand_as(a).clone()
    for _ in range(steps):
        t = 0.5 * (3.0 * eye - z @ y)
        y = y @ t
        z = t @ z
    out = x @ (z / scale.sqrt())  # Z -> (A / scale)^(-1/2), so A^(-1/2) = Z / sqrt(scale)
    if not tall:
        out = out.mT
    return out


def schatten_power(matrix: Tensor, power: float = 0.125) -> Tensor:
    """HTMuon's U (S / s_max)^p V^T per trailing 2-D slice, by an fp32 SVD (exact; cost O(mn min(m, n))).

    p -> 0 is Muon's U V^T, p = 1 is the (normalized) momentum itself. Dividing by the largest singular
    value keeps the top direction at unit step, so learning rates stay on Muon's scale.
    """
    if not 0.0 <= power <= 1.0:
        raise ValueError(f"HTMuon power must be in [0, 1], got {power}")
    x = matrix.float()
    u, s, vh = torch.linalg.svd(x, full_matrices=False)
    top = s[..., :1].clamp_min(torch.finfo(torch.float32).tiny)
    shaped = (s / top).pow(power) * (s > 0)
    return (u * shaped.unsqueeze(-2)) @ vh


def singular_value_range(matrix: Tensor) -> tuple[float, float]:
    """(min, max) singular value over every trailing 2-D slice: how far a map is from orthogonal."""
    s = torch.linalg.svdvals(matrix.float())
    return float(s.min()), float(s.max())

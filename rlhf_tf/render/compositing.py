"""Emission-absorption compositing, opacity correction and shading.

Small pure functions on ``[..., S, C]`` arrays (S samples along the last
sample axis), so one code path serves a ray, a tile of rays or a batch of
images. Numerically delicate operations live in named ``safe_*`` helpers with
finite values and finite gradients everywhere (tested in
``tests/test_raymarch.py``).

Front-to-back compositing of S samples with colours c_i and opacities a_i:

  T_i = prod_{j<i} (1 - a_j)          (transmittance in front of sample i)
  C   = sum_i T_i a_i c_i             (premultiplied colour)
  A   = 1 - prod_i (1 - a_i)          (accumulated opacity)

computed in log space, log T_i = sum_{j<i} log(1 - a_j), so that long rays do
not underflow one product at a time and an opaque sample (a = 1) is harmless.
"""

from __future__ import annotations

import jax.numpy as jnp


def safe_log1m(a):
  """log(1 - a) for opacities a in [0, 1], finite at a = 1.

  a is clamped to 1 - epsneg of its dtype (float32: log(1 - a) >= -16.6,
  float64: >= -36.7), which is an opaque sample for any practical purpose; the
  clamp is on the input so the gradient is 0 (not NaN) past it.
  """
  a = jnp.asarray(a)
  one_minus_eps = 1.0 - jnp.finfo(a.dtype).epsneg
  return jnp.log1p(-jnp.minimum(a, one_minus_eps))


def safe_normalize(v, eps):
  """v / max(|v|, eps) over the last axis: a unit vector where |v| >= eps, and
  shrinking linearly to 0 as v -> 0 (so shading fades out in flat regions
  instead of dividing by zero). Finite values and gradients everywhere."""
  sq = jnp.sum(v * v, axis=-1, keepdims=True)
  return v * jnp.reciprocal(jnp.sqrt(jnp.maximum(sq, eps * eps)))


def safe_pow(x, p, tiny=1e-12):
  """x^p for x in [0, 1] and p >= 1, with a finite gradient at x = 0."""
  return jnp.power(jnp.maximum(x, tiny), p)


def opacity_log_transmittance(alpha, segment_mm, reference_step_mm):
  """log(1 - alpha') for the opacity correction of a segment of length l.

  A TF opacity alpha is defined per ``reference_step_mm``; a segment of length
  l (mm) has alpha' = 1 - (1 - alpha)^(l / reference_step_mm), i.e.
  log(1 - alpha') = (l / reference) * log(1 - alpha). With l = 0 (a padding
  sample, or one beyond the volume box) the sample is exactly transparent.

  Args:
    alpha: [..., S] TF opacities in [0, 1].
    segment_mm: [..., S] (broadcastable) segment lengths in mm, >= 0.
    reference_step_mm: scalar, the step the TF opacities are defined for.

  Returns:
    [..., S] log transmittance of each segment, <= 0.
  """
  return (segment_mm / reference_step_mm) * safe_log1m(alpha)


def composite_log(rgb, log_trans):
  """Front-to-back compositing from per-sample log transmittances.

  Args:
    rgb: [..., S, 3] sample colours (not premultiplied).
    log_trans: [..., S] log(1 - a_i) <= 0 of each sample.

  Returns:
    (rgb [..., 3] premultiplied colour C = sum_i T_i a_i c_i,
     acc_alpha [..., ] A = 1 - prod_i (1 - a_i)).
  """
  # Exclusive cumulative sum: log T_i = sum_{j<i} log(1 - a_j).
  log_t = jnp.cumsum(log_trans, axis=-1) - log_trans
  alpha = -jnp.expm1(log_trans)  # Accurate for small opacities.
  weights = jnp.exp(log_t) * alpha
  out_rgb = jnp.sum(weights[..., None] * rgb, axis=-2)
  acc_alpha = -jnp.expm1(jnp.sum(log_trans, axis=-1))
  return out_rgb, acc_alpha


def composite_emission(emission, log_trans):
  """Front-to-back compositing of premultiplied segment colours.

  Args:
    emission: [..., S, 3] premultiplied colour e_i of each segment (its
      opacity already applied, e.g. preintegration.segment_optics).
    log_trans: [..., S] log transmittance log(1 - a_i) <= 0 of each segment.

  Returns:
    (rgb [..., 3] = sum_i T_i e_i, acc_alpha [...] = 1 - prod_i (1 - a_i)).
  """
  log_t = jnp.cumsum(log_trans, axis=-1) - log_trans
  out_rgb = jnp.sum(jnp.exp(log_t)[..., None] * emission, axis=-2)
  return out_rgb, -jnp.expm1(jnp.sum(log_trans, axis=-1))


def composite(rgb, alpha):
  """Front-to-back emission-absorption compositing.

  Args:
    rgb: [..., S, 3] sample colours in [0, 1] (not premultiplied).
    alpha: [..., S] sample opacities in [0, 1] (a = 1 is allowed).

  Returns:
    (rgb [..., 3] = sum_i T_i a_i c_i with T_i = prod_{j<i} (1 - a_j),
     acc_alpha [...] = 1 - prod_i (1 - a_i)).
  """
  return composite_log(rgb, safe_log1m(alpha))


def over_background(rgb, acc_alpha, background):
  """RGBA [..., 4]: premultiplied rgb over an opaque background colour (3,)."""
  bg = jnp.asarray(background, rgb.dtype)
  out = rgb + (1.0 - acc_alpha)[..., None] * bg
  return jnp.concatenate([out, acc_alpha[..., None]], axis=-1)


def shade(rgb, diffuse_term, specular_term, ambient, diffuse, specular):
  """Blinn-Phong with a white light: c * (ka + kd * d) + ks * s, clipped to 1.

  Args:
    rgb: [..., 3] material colour from the TF.
    diffuse_term: [...] d = |n . l| in [0, 1] (two-sided).
    specular_term: [...] s = |n . h|^shininess in [0, 1].
    ambient, diffuse, specular: scalar coefficients ka, kd, ks.
  """
  lit = rgb * (ambient + diffuse * diffuse_term)[..., None]
  lit = lit + (specular * specular_term)[..., None]
  return jnp.minimum(lit, 1.0)


def headlight_terms(gradient, view_dir, shininess, normal_eps):
  """Diffuse and specular factors for a headlight (light at the eye).

  With the light at the eye, l = h = -view_dir, so both terms depend on
  n . l only. Two-sided: |n . l|, so surfaces facing away light up as well
  (the gradient of an intensity ramp points either way across a boundary).

  Args:
    gradient: [..., 3] intensity gradient (HU/mm) in world (z, y, x).
    view_dir: [..., 3] unit ray directions (broadcastable to gradient).
    shininess: Blinn-Phong exponent p >= 1.
    normal_eps: |g| (HU/mm) below which the normal shrinks to 0.

  Returns:
    (d [...] = |n . l|, s [...] = |n . l|^p), both in [0, 1].
  """
  n = safe_normalize(gradient, normal_eps)
  ndl = jnp.minimum(jnp.abs(jnp.sum(n * view_dir, axis=-1)), 1.0)
  return ndl, safe_pow(ndl, shininess)


def tensor_headlight_terms(q, trace, shininess, normal_eps):
  """headlight_terms from the gradient's structure tensor J seen along the
  view (sampling.trilinear_packed with view_dir): d = sqrt(l^T J l) /
  max(sqrt(tr J), normal_eps), s = d^p.

  For a constant gradient g this is |g . l| / max(|g|, normal_eps), the
  two-sided headlight of headlight_terms; where neighbouring voxels'
  gradients point opposite ways (the crest of a thin plate) it stays the
  plate's |n . l| instead of swinging with the cancelling sum: the
  sign-invariant average of the normals' orientations that two-sided
  shading needs (cf. Bigun & Granlund 1987). Finite values and gradients
  everywhere (sqrt(q) is 0 with gradient 0 at q = 0).

  Args:
    q: [...] l^T J l >= 0 ((HU/mm)^2).
    trace: [...] trace J = mean |g|^2 >= q.
    shininess: Blinn-Phong exponent p >= 1.
    normal_eps: |g| (HU/mm) below which the terms shrink to 0.

  Returns:
    (d [...], s [...]), both in [0, 1].
  """
  q = jnp.asarray(q)
  pos = q > 0
  root_q = jnp.where(pos, jnp.sqrt(jnp.where(pos, q, 1.0)), 0.0)
  d = root_q / jnp.sqrt(jnp.maximum(trace, normal_eps * normal_eps))
  d = jnp.minimum(d, 1.0)
  return d, safe_pow(d, shininess)

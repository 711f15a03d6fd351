"""Pre-integrated classification (Engel, Kraus & Ertl 2001) over a 2D TF.

Point sampling classifies one sample per segment, so a TF feature narrower
than the step (a sharp opacity edge, a thin iso-band) is hit or missed
depending on where the samples fall: wood-grain rings. Pre-integration
classifies the whole segment between a front sample (x_f, y_f) and a back
sample (x_b, y_b), with the JH coordinates assumed linear in between.

The model integrated (``settings.preintegrate``):

- extinction per mm of a bin, sigma = -log(1 - alpha) / l_ref (alpha is
  the TF opacity per reference step l_ref), and its emission sigma * rgb:
  V = (sigma, sigma r, sigma g, sigma b);
- V constant over each intensity bin [i / n, (i + 1) / n] (the table's
  bins), linear in y between gradient-bin centres (clamped at the border
  rows), evaluated at the (half-)segment's mean y;
- per gradient row, the prefix integral over intensity,
  G(u) = P_i + (u - i) V_i with P_i = sum_{k<i} V_k (u = x n in bins).

A segment of length l then has the mean integrand

  Vbar = (G(u_b) - G(u_f)) / (u_b - u_f)    (V's mean if |u_b - u_f| < tiny)

(each segment is classified in two halves, front -> sampled midpoint ->
back, each split in two where its ends' exact slopes along the ray bracket
a crest or trough, at the stationary point of the cubic Hermite through
them (``extremum``), with (x, y) linear along each of the four pieces:
``segment_plan``) and the optics
of emission-absorption with V constant along it:

  tau = l sigmabar,   a = 1 - exp(-tau),
  e   = a * (sigma rgb)bar / sigmabar = l (sigma rgb)bar phi(tau),

with phi(z) = (1 - exp(-z)) / z (``absorption_ratio``): e is the
premultiplied colour, finite and smooth at sigmabar = 0. A constant medium
composites to exactly 1 - exp(-sigma L) (tests/test_preintegration.py).

Storing (P_i, V_i) per bin rather than G at bin edges keeps the difference
exact within a bin (same P_i on both sides) and makes a lookup one gather of
16 values (two gradient rows x 8): ``row_pairs``. The table is built outside
the march (a cumsum over x, ``block_cumsum``; its adjoint is JAX's), so the
ray cache's hand-written adjoint stops at the (P, V) table
(rlhf_tf.render.cached_segments).
"""

from __future__ import annotations

import jax.numpy as jnp

from rlhf_tf.render import block_cumsum, compositing, safe_math, sampling

# |u_b - u_f| (intensity bins) below which a segment takes the mean of its
# end values instead of the prefix difference quotient: the quotient's
# float32 rounding (eps |P| / |du|) stays below ~1e-3 of sigma there, and the
# mean's error, |du| times V's jump at a bin edge, is as small.
TINY_DU = 1e-3
# Extinctions (1/mm) below which shading_weight's quotients take their
# constant-segment values.
_TINY_SIGMA = 1e-6
# |z| below which absorption_ratio uses its Taylor series (error < z^5/720).
_SERIES_Z = 1e-2


def absorption_ratio(z):
  """phi(z) = (1 - exp(-z)) / z, phi(0) = 1: the absorbed fraction per unit
  optical depth. Finite values and gradients everywhere (series near 0)."""
  z = jnp.asarray(z)
  small = jnp.abs(z) < _SERIES_Z
  zs = jnp.where(small, 1.0, z)
  series = 1.0 - z / 2 * (1.0 - z / 3 * (1.0 - z / 4 * (1.0 - z / 5)))
  return jnp.where(small, series, -jnp.expm1(-zs) / zs)


def segment_table(tf_table, reference_step_mm):
  """[bins_y, bins_x, 8] (P, V) per bin from an RGBA TF table.

  Args:
    tf_table: [..., bins_y, bins_x, 4] RGBA, alpha per reference step.
    reference_step_mm: l_ref (mm).

  Returns:
    [..., bins_y, bins_x, 8]: P [..., :4] the integral of V over the bins
    left of this one (bin units), V [..., 4:] = (sigma, sigma rgb) in 1/mm.
  """
  sigma = -compositing.safe_log1m(tf_table[..., 3]) / reference_step_mm
  v = jnp.concatenate(
      [sigma[..., None], sigma[..., None] * tf_table[..., :3]], -1
  )
  # jnp.cumsum's order of additions, faster on CPU (block_cumsum).
  p = block_cumsum.cumsum(v[..., :-1, :], axis=-2)
  pad = [(0, 0)] * (p.ndim - 2) + [(1, 0), (0, 0)]
  return jnp.concatenate([jnp.pad(p, pad), v], -1)


def row_pairs(table):
  """[bins_y * bins_x, 2, 8]: each bin's (P, V) and the row above's
  (edge-padded), so a lookup is one gather of 16 contiguous values."""
  by, bx, ch = table.shape
  p = jnp.pad(table, ((0, 1), (0, 0), (0, 0)), mode='edge')
  return jnp.stack([p[:by], p[1:]], axis=-2).reshape(by * bx, 2, ch)


def coords(x, y, bins_x: int, bins_y: int):
  """(u, v): u = clip(x, 0, 1) bins_x in [0, bins_x] (intensity, bin edges
  at integers), v = y bins_y - 1/2 clamped to [0, bins_y - 1] (gradient,
  bin centres at integers, as sampling.tf_coords)."""
  u = jnp.clip(x, 0.0, 1.0) * bins_x
  v = jnp.clip(y * bins_y - 0.5, 0.0, bins_y - 1.0)
  return u, v


# A sample within EDGE_X of the intensity window's ends counts as on them
# (u clipped, du = 0). Data clipped to the window (air at exactly hu_min)
# sit there, and their trilinear HU is hu_min +- the last bit of the
# weights, while their slope is not 0 within a voxel of tissue: with a
# strict test that last bit decided du, hence the crest splits (session
# 20: +1e-4 HU moved 21 of 144 pixels by up to 0.086; now 1.2e-5).
EDGE_X = 1e-6


def coord_slope(x, slope, bins_x: int):
  """[...] du / dt (bins per mm) of ``coords``' u from x [...] and its
  slope dx / dt [...] (1/mm); 0 where u is clipped (x outside [0, 1]) or
  on the clip (within EDGE_X of 0 or 1)."""
  inside = (x > EDGE_X) & (x < 1.0 - EDGE_X)
  return jnp.where(inside, slope * bins_x, 0.0)


def extremum(u_a, u_b, s_a, s_b):
  """(tau [...] in [0, 1], u [...]): where to split a piece of ray from a
  sample a to a sample b, and the intensity there.

  The samples' exact slopes s_a, s_b (du / dtau, tau in [0, 1] from a to
  b) of opposite sign bracket an extremum of the field between them (a
  thin shell's crest that neither sample sits on): it is placed at the
  stationary point of the cubic Hermite H through (u_a, s_a) and
  (u_b, s_b) (the unique root of H' in (0, 1)), with value H(tau). Else
  the piece is taken as linear and not split (tau = 1, u = u_b: the piece
  after the split is empty). Finite values and gradients everywhere.
  """
  du = u_b - u_a
  c1 = s_a
  c2 = 3.0 * du - 2.0 * s_a - s_b
  c3 = s_a + s_b - 2.0 * du
  # H'(tau) = A tau^2 + B tau + C changes sign on [0, 1], so it has one
  # root there and B^2 - 4 A C > 0; at its roots r+-, H'' = +-sqrt(disc):
  # a crest (s_a > 0, H'' < 0) is r-, a trough r+. Stable pair: q/A, C/q.
  a, b, c = 3.0 * c3, 2.0 * c2, c1
  bracket = jnp.sign(s_a) * jnp.sign(s_b) < 0.0  # (s_a s_b may underflow.)
  disc = jnp.where(bracket, b * b - 4.0 * a * c, 1.0)
  root = jnp.sqrt(jnp.maximum(disc, 0.0))
  q = -0.5 * (b + jnp.where(b < 0.0, -root, root))
  q = jnp.where(bracket & (q != 0.0), q, 1.0)
  q_over_a = safe_math.safe_div(q, a, fallback=2.0)  # (A -> 0: r -> inf.)
  r_minus = jnp.where(b >= 0.0, q_over_a, c / q)
  r_plus = jnp.where(b >= 0.0, c / q, q_over_a)
  tau = jnp.where(s_a > 0.0, r_minus, r_plus)
  tau = jnp.clip(jnp.where(bracket, tau, 1.0), 0.0, 1.0)
  peak = u_a + tau * (c1 + tau * (c2 + tau * c3))
  return tau, jnp.where(bracket, peak, u_b)


def lookup_index(u, v_mean, bins_x: int, bins_y: int):
  """(flat row-pair index [...] int32, fu [...] = u - column, fv [...]
  weight of the upper row)."""
  u, v_mean = jnp.asarray(u), jnp.asarray(v_mean)
  i = jnp.clip(jnp.floor(u), 0, bins_x - 1).astype(jnp.int32)
  j = jnp.clip(jnp.floor(v_mean), 0, bins_y - 2).astype(jnp.int32)
  return (
      j * bins_x + i,
      u - i.astype(u.dtype),
      v_mean - j.astype(v_mean.dtype),
  )


def _interpolate_rows(rows, fv):
  """(P, V) [..., 4] each from row pairs [..., 2, 8], upper weight fv."""
  pv = rows[..., 0, :] + fv[..., None] * (rows[..., 1, :] - rows[..., 0, :])
  return pv[..., :4], pv[..., 4:]


def prefix_lookup(pairs, idx, fu, fv):
  """(G [..., 4] prefix integral at u, V [..., 4] integrand at u), both
  interpolated between the two gradient rows."""
  p, v = _interpolate_rows(pairs.at[idx].get(mode='promise_in_bounds'), fv)
  return p + fu[..., None] * v, v


def segment_mean(g_front, v_front, g_back, v_back, du):
  """[..., 4] mean integrand over a segment: (G_b - G_f) / du, or the mean
  of the end values where |du| < TINY_DU (safe_math.safe_div)."""
  return safe_math.safe_div(
      g_back - g_front,
      du[..., None],
      fallback=0.5 * (v_front + v_back),
      min_den=TINY_DU,
  )


def lookup_segments(pairs, u_f, v_f, u_b, v_b, bins_x: int, bins_y: int):
  """[..., 4] mean (sigma, sigma rgb) (1/mm) of segments from (u_f, v_f) to
  (u_b, v_b) (``coords``), at the mean gradient row."""
  v_mean = 0.5 * (v_f + v_b)
  front = prefix_lookup(pairs, *lookup_index(u_f, v_mean, bins_x, bins_y))
  back = prefix_lookup(pairs, *lookup_index(u_b, v_mean, bins_x, bins_y))
  return segment_mean(*front, *back, u_b - u_f)


def segment_optics(mean, seg_mm):
  """(e [..., 3] premultiplied colour, log transmittance [...]) of segments
  of length seg_mm [...] with mean integrand ``mean`` [..., 4]."""
  tau = seg_mm * mean[..., 0]
  e = (seg_mm * absorption_ratio(tau))[..., None] * mean[..., 1:]
  return e, -tau


def shading_weight(mean_sigma, sigma_front, sigma_back):
  """[...] w in [0, 1]: where a segment's shading is taken (0 front, 1 back).

  The extinction-weighted centroid of a segment whose extinction steps from
  sigma_front to sigma_back at the fraction c that gives its mean,
  w = 1/2 + (sigma_b - sigma_f) c (1 - c) / (2 sigmabar): a segment entering
  an opaque material at c is shaded at (1 + c) / 2, where its light comes
  from, not at the mean of an end outside the material and one inside (that
  jumps as the surface crosses a sample: shaded rings). 1/2 for a constant
  segment."""
  jump = sigma_back - sigma_front
  c = safe_math.safe_div(
      sigma_back - mean_sigma, jump, fallback=0.5, min_den=_TINY_SIGMA
  )
  c = jnp.clip(c, 0.0, 1.0)
  shift = safe_math.safe_div(
      jump * c * (1.0 - c), 2.0 * mean_sigma, fallback=0.0, min_den=_TINY_SIGMA
  )
  return jnp.clip(0.5 + shift, 0.0, 1.0)


def shade_premultiplied(e, log_trans, diffuse_term, specular_term, settings):
  """compositing.shade on premultiplied colours: a shade(c) with c = e / a,
  min(e (ka + kd d) + ks s a, a), a = 1 - exp(log_trans)."""
  a = -jnp.expm1(log_trans)
  lit = e * (settings.ambient + settings.diffuse * diffuse_term)[..., None]
  lit = lit + (settings.specular * specular_term * a)[..., None]
  return jnp.minimum(lit, a[..., None])


def segment_from_rows(
    rows_f, rows_b, fu_f, fu_b, fv, du, seg_mm, shade_f, shade_b, settings
):
  """Shaded premultiplied colour [..., 3] and log transmittance [...] of
  segments from their ends' gathered row pairs.

  Args:
    rows_f, rows_b: [..., 2, 8] ``row_pairs`` rows of the front and back
      end at the segment's mean gradient row (``lookup_index``).
    fu_f, fu_b: [...] the ends' fractions within their intensity bin.
    fv: [...] weight of the upper gradient row.
    du: [...] u_b - u_f (bins).
    seg_mm: [...] segment length (mm).
    shade_f, shade_b: (diffuse, specular) [...] headlight terms of the ends
      (unused with shading off).
    settings: render_settings.RenderSettings.
  """

  (p_f, v_f), (p_b, v_b) = [_interpolate_rows(r, fv) for r in (rows_f, rows_b)]
  mean = segment_mean(
      p_f + fu_f[..., None] * v_f, v_f, p_b + fu_b[..., None] * v_b, v_b, du
  )
  e, log_trans = segment_optics(mean, seg_mm)
  if settings.shading:
    w = shading_weight(mean[..., 0], v_f[..., 0], v_b[..., 0])
    d, s = [f + w * (b - f) for f, b in zip(shade_f, shade_b)]
    e = shade_premultiplied(e, log_trans, d, s, settings)
  return e, log_trans


def sample_depths(start, length, num: int, step_mm: float, first=0):
  """([..., 2 num] depths, [..., num] segment lengths (mm)) of the points a
  pre-integrated ray samples: the ends first .. first + num - 1
  (sampling.segment_ends) and then the midpoint of each segment j, from end
  j to end j + 1 (so the last midpoint belongs to a segment whose back end
  is the next call's first end); both relative to the ray's first grid
  point."""
  ends = sampling.segment_ends(start, length, num + 1, step_mm, first)
  seg = ends[..., 1:] - ends[..., :-1]
  return jnp.concatenate([ends[..., :-1], ends[..., :-1] + 0.5 * seg], -1), seg


def split_midpoints(samples: dict) -> dict:
  """Fields [..., 2 num] sampled at sample_depths -> the ends' [..., num]
  under their own name and the midpoints' [..., num] under name + '_mid'
  ('seg' is kept; labels are only needed at the ends)."""
  out = {}
  for k, v in samples.items():
    if k == 'seg':
      out[k] = v
      continue
    num = v.shape[-1] // 2
    out[k] = v[..., :num]
    if k != 'label':
      out[k + '_mid'] = v[..., num:]
  return out


def split_at_extremum(a, b, half_mm, bins_x: int):
  """(the point [...] dict where the piece a -> b is split, (length before,
  length after) (mm)) by ``extremum``: u there from the cubic Hermite
  through a's and b's values and slopes du (bins per mm), the other
  fields (v, shading terms) linear between a and b."""
  tau, u = extremum(a['u'], b['u'], a['du'] * half_mm, b['du'] * half_mm)
  p = {k: a[k] + tau * (b[k] - a[k]) for k in a if k not in ('u', 'du')}
  p['u'] = jnp.clip(u, 0.0, float(bins_x))
  return p, (tau * half_mm, (1.0 - tau) * half_mm)


def segment_plan(front, mid, back, seg_mm, settings, bins_x: int, bins_y: int):
  """How to classify segments from their front end, sampled midpoint and
  back end, each a dict of [...] u, v (``coords``), du (``coord_slope``)
  and, with shading, diffuse, specular.

  A segment is two halves, front -> midpoint -> back. The field is sampled
  (trilinear) at the midpoint, not reconstructed from the ends: at the
  default step of one voxel a thin shell met at a grazing angle peaks
  between two samples, and a cubic through the ends' values and slopes
  (the former Hermite midpoint) missed it (Cranium, sharp TF: 32.9 dB vs the
  1/8-step reference; sampled, 39.7 dB). Each half is split where its
  ends' slopes bracket an extremum (``split_at_extremum``: a crest between
  the half-step samples; else not: the piece after the split is empty), so
  a segment is four pieces, each linear in (u, v) between its ends and
  classified by ``segment_from_rows`` at its own mean gradient row, then
  composited front to back, e = e_1 + exp(lt_1) e_2 + ..., lt = lt_1 + ...
  Splitting the halves that bracket nothing at their middle too (four
  pieces always) gains at most 0.2 dB (Cranium 256^2, pre-integrated +
  tensor_normals, vs the 1/8-step reference: default TF shaded 50.24 vs
  50.46 dB, unshaded 49.90 vs 50.01; sharp 42.79 vs 42.83, 42.75 vs 42.75)
  for twice the pieces to classify in the native march.

  Returns:
    (the row-pair indices [4, ...] to gather for the pieces' front ends
     and for their back ends (each at the piece's row), and
     segment(rows_f, rows_b) -> (shaded premultiplied colour [..., 3], log
     transmittance [...]) of the rows [4, ..., 2, 8] gathered there.)
  """
  half = 0.5 * seg_mm
  peak_1, lengths_1 = split_at_extremum(front, mid, half, bins_x)
  peak_2, lengths_2 = split_at_extremum(mid, back, half, bins_x)
  points = (front, peak_1, mid, peak_2, back)
  keys = ('u', 'v') + (('diffuse', 'specular') if settings.shading else ())
  # The four pieces as one batch [4, ...] (one copy of the optics in the
  # compiled graph, not four: XLA compiles the cached VJP ~3x faster).
  fronts, backs = [
      {k: jnp.stack([p[k] for p in ps]) for k in keys}
      for ps in (points[:-1], points[1:])
  ]
  lengths = jnp.stack(lengths_1 + lengths_2)
  v_mean = 0.5 * (fronts['v'] + backs['v'])
  look_f, look_b = [
      lookup_index(p['u'], v_mean, bins_x, bins_y) for p in (fronts, backs)
  ]

  def shade(p):
    return (p['diffuse'], p['specular']) if settings.shading else None

  def segment(rows_f, rows_b):
    e, lt = segment_from_rows(
        rows_f,
        rows_b,
        look_f[1],
        look_b[1],
        look_f[2],
        backs['u'] - fronts['u'],
        lengths,
        shade(fronts),
        shade(backs),
        settings,
    )
    # Front to back: piece k is seen through exp(lt_0 + ... + lt_{k-1}).
    before = jnp.concatenate([jnp.zeros_like(lt[:1]), jnp.cumsum(lt[:-1], 0)])
    return jnp.sum(jnp.exp(before)[..., None] * e, 0), jnp.sum(lt, 0)

  return (look_f[0], look_b[0]), segment


def classify(pairs, samples, settings, bins_x: int, bins_y: int):
  """Shaded premultiplied colours and log transmittances of the S segments
  between S + 1 sampled ends (``segment_plan``: two pre-integrated halves
  through each segment's sampled midpoint, each split at a bracketed
  extremum).

  Args:
    pairs: row_pairs(segment_table(tf_table, l_ref)).
    samples: dict of [..., S + 1] x, y (JH coordinates), slope (dx / dt,
      1/mm) and, with shading, diffuse, specular at the ends, the same
      under name + '_mid' at the segments' midpoints and 'seg' segment
      lengths (mm) (both [..., >= S], as ray_samples.sample_rays gives
      them; only the first S are used).
    settings: render_settings.RenderSettings.

  Returns:
    (emission [..., S, 3], log_trans [..., S]).
  """
  num = samples['x'].shape[-1] - 1

  def point(suffix, part):
    x = samples['x' + suffix][..., part]
    u, v = coords(x, samples['y' + suffix][..., part], bins_x, bins_y)
    du = coord_slope(x, samples['slope' + suffix][..., part], bins_x)
    p = dict(u=u, v=v, du=du)
    if settings.shading:
      for k in ('diffuse', 'specular'):
        p[k] = samples[k + suffix][..., part]
    return p

  idxs, segment = segment_plan(
      point('', slice(0, num)),
      point('_mid', slice(0, num)),
      point('', slice(1, num + 1)),
      samples['seg'][..., :num],
      settings,
      bins_x,
      bins_y,
  )
  return segment(*[pairs.at[i].get(mode='promise_in_bounds') for i in idxs])

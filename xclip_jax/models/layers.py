"""Building blocks shared by every tower: fp32 LayerNorm, QuickGELU MLP, attention, drop path.

Parameters carry logical axis names (`nnx.with_partitioning`) that `xclip_jax.sharding` maps onto a
device mesh. Parameters are float32; activations run in the configured compute dtype, while LayerNorm
statistics and attention softmax are always computed in float32.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

Initializer = nnx.initializers.Initializer

# Logical axis names used by parameters (see xclip_jax/sharding.py for the mesh rules).
EMBED = "embed"  # model width of a tower (D, W_t, or E)
HEADS = "heads"  # attention projection output (heads x head_dim flattened)
HIDDEN = "mlp"  # hidden layer of the feed-forward block
VOCAB = "vocab"  # token vocabulary
JOINT = "joint"  # the joint video-text embedding (E) at projection outputs
NORM = "norm"  # LayerNorm scale/bias vectors (replicated by default)
LAYERS = "layers"  # leading axis of stacked block parameters (model.scan_layers; never sharded)

TRUNC_NORMAL_002 = nnx.initializers.truncated_normal(stddev=0.02, lower=-100.0, upper=100.0)


class KeySequence:
  """The parameter keys of `nnx.Rngs(params=seed)`, counted in Python.

  `nnx.Rngs(params=seed).params()` returns fold_in(key(seed), n) for n = 0, 1, 2, ...; so does `params()`
  here. nnx keeps n in a variable updated with `count[...] += 1`, which under tracing asks each tracer for
  `.sharding`, and JAX then walks the whole jaxpr to word the error: quadratic in the number of draws
  (~900 in B/32), seconds to tens of seconds per trace of a model constructor. `offset` may be a traced
  integer: stacked blocks are built by one vmapped constructor whose layer i starts where the sequential
  construction would have (xclip_jax/models/layer_stack.py).
  """

  def __init__(self, key: jax.Array | int, offset: int | jax.Array = 0):
    self.key = jax.random.key(key) if isinstance(key, int) else key
    self.offset = offset
    self.count = 0

  def params(self) -> jax.Array:
    key = jax.random.fold_in(self.key, self.offset + self.count)
    self.count += 1
    return key

  def skip(self, draws: int) -> int | jax.Array:
    """Reserves the next `draws` keys (drawn elsewhere); returns the index of the first."""
    start = self.offset + self.count
    self.count += draws
    return start


def symmetric_uniform(bound: float) -> Initializer:
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


def torch_linear_init(fan_in: int) -> Initializer:
  """PyTorch's default `nn.Linear` init (kaiming-uniform, a=sqrt(5)): U(+-1/sqrt(fan_in))."""
  return symmetric_uniform(1.0 / math.sqrt(fan_in))


def packed_xavier_uniform(width: int) -> Initializer:
  """Xavier-uniform of a packed (3W, W) `in_proj_weight`, as `nn.MultiheadAttention` draws it.

  We keep q, k and v as separate (W, W) kernels, but sample them with the bound of the packed matrix so
  that new attention modules start from the same distribution as the official code.
  """
  return symmetric_uniform(math.sqrt(6.0 / (width + 3 * width)))


def param(value: jax.Array, axes: Sequence[str | None]) -> nnx.Param:
  """A float32 parameter annotated with logical axes.

  Eager sharding stays off: parameters are created unsharded (or abstractly) and placed on the mesh by
  `jax.jit(..., out_shardings=...)`, so building a model never needs a mesh in scope.
  """
  return nnx.Param(jnp.asarray(value, jnp.float32), out_sharding=tuple(axes), eager_sharding=False)


def compute_dtype(name: str) -> jnp.dtype:
  return jnp.dtype(name)


def target_platform() -> str:
  """The platform the program being traced will run on: that of the mesh set with `jax.set_mesh` (a TPU plan
  compiled on a CPU host runs on TPUs), else JAX's default backend. CPU-only forms key on this."""
  device = getattr(jax.sharding.get_abstract_mesh(), "abstract_device", None)
  return device.platform if device is not None else jax.default_backend()


# XLA:CPU gives matrix products to YNNPACK by default. At this model's shapes its float32 products run at 111-161
# GFLOP/s where XLA's Eigen products reach 182-189 (a Zen 4, scripts/cpu_ceiling.py), while its bf16 ones use
# AVX512-BF16 and are the fast ones: float32 inference programs take Eigen's (docs/performance.md).
EIGEN_PRODUCTS = {"xla_cpu_experimental_ynn_fusion_type": ""}


def inference_compiler_options(dtype: str | jnp.dtype, platform: str | None = None) -> dict[str, str] | None:
  """XLA options for an inference or evaluation program of compute dtype `dtype` on `platform` (default:
  `target_platform()`): Eigen's products for float32 on a CPU, else none (`jax.jit(..., compiler_options=)`).

  Every program that computes the probabilities a user compares (predict, main's evaluation, search, the
  notebook) takes the same options, so they give the same numbers. Training programs keep XLA's default: no
  measured gain there. An XLA that does not know the option (a later JAX) gets none.
  """
  platform = target_platform() if platform is None else platform
  if platform != "cpu" or jnp.dtype(dtype) != jnp.float32 or not _xla_accepts_eigen_products():
    return None
  return dict(EIGEN_PRODUCTS)


@functools.cache
def _xla_accepts_eigen_products() -> bool:
  """Whether this XLA accepts `EIGEN_PRODUCTS` (one tiny compile, once per process)."""
  try:
    jax.jit(lambda x: x + 1, compiler_options=EIGEN_PRODUCTS).lower(jax.ShapeDtypeStruct((), jnp.float32)).compile()
  except jax.errors.JaxRuntimeError:
    return False
  return True


def matmul(x: jax.Array, kernel: jax.Array, dtype: jnp.dtype) -> jax.Array:
  """`x @ kernel` (`kernel` 2-D) in the compute dtype `dtype`.

  In bfloat16/float16 on CPU the products are accumulated in float32 and rounded to `dtype` once, at the
  end: that is the form XLA:CPU gives to its half-precision matrix kernels (AVX512-BF16), about twice the
  speed of float32; a bf16-in, bf16-out product would be computed in float32 (docs/performance.md). The
  gradient's two products take the same form (left to autodiff, they would run in float32); the kernel's
  gradient is accumulated and returned in float32. Other backends and float32 keep the plain product.
  """
  x = x.astype(dtype)
  if dtype == jnp.float32 or target_platform() != "cpu":
    return jnp.matmul(x, kernel.astype(dtype))
  return _cpu_half_matmul(x, kernel)


def _half_product(x: jax.Array, kernel: jax.Array) -> jax.Array:
  return jnp.matmul(x, kernel.astype(x.dtype), preferred_element_type=jnp.float32).astype(x.dtype)


@jax.custom_vjp
def _cpu_half_matmul(x: jax.Array, kernel: jax.Array) -> jax.Array:
  return _half_product(x, kernel)


def _cpu_half_matmul_forward(x, kernel):
  return _half_product(x, kernel), (x, kernel)


def _cpu_half_matmul_backward(residuals, grad):
  x, kernel = residuals
  grad = grad.astype(x.dtype)
  kernel_grad = jnp.einsum("...k,...n->kn", x, grad, preferred_element_type=jnp.float32)
  return _half_product(grad, kernel.T), kernel_grad.astype(kernel.dtype)


_cpu_half_matmul.defvjp(_cpu_half_matmul_forward, _cpu_half_matmul_backward)


class LayerNorm(nnx.Module):
  """LayerNorm with float32 statistics and parameters, returning the compute dtype."""

  def __init__(self, width: int, *, eps: float = 1e-5, dtype: str = "float32"):
    self.scale = param(jnp.ones((width,)), (NORM,))
    self.bias = param(jnp.zeros((width,)), (NORM,))
    self.eps = eps
    self.dtype = compute_dtype(dtype)

  def __call__(self, x: jax.Array) -> jax.Array:
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    variance = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
    y = (x32 - mean) * jax.lax.rsqrt(variance + self.eps)
    return (y * self.scale[...] + self.bias[...]).astype(self.dtype)


class Linear(nnx.Module):
  """Dense layer (kernel stored (in, out), as Flax does) with logical axes on its parameters."""

  def __init__(self, in_features: int, out_features: int, *, axes: tuple[str | None, str | None],
               rngs: KeySequence, use_bias: bool = True, kernel_init: Initializer | None = None,
               bias_init: Initializer | None = None, dtype: str = "float32"):
    kernel_init = kernel_init or torch_linear_init(in_features)
    bias_init = bias_init or nnx.initializers.zeros_init()
    self.kernel = param(kernel_init(rngs.params(), (in_features, out_features)), axes)
    self.bias = param(bias_init(rngs.params(), (out_features,)), (axes[1],)) if use_bias else None
    self.dtype = compute_dtype(dtype)

  def __call__(self, x: jax.Array) -> jax.Array:
    y = matmul(x, self.kernel[...], self.dtype)
    if self.bias is not None:
      y = y + self.bias[...].astype(self.dtype)
    return y


def store_weights_in_compute_dtype(module: nnx.Module) -> nnx.Module:
  """Stores every half-precision `Linear`'s kernel and bias in its compute dtype, in place, for inference.

  Each call of such a layer rounds them to that dtype anyway, so the outputs are bit-identical; stored
  rounded, a forward pass no longer converts ~all of the model's weights on every call (15% of a bf16 B/32
  inference step on a CPU, docs/performance.md) and the weights take half the memory. Never for training:
  the optimizer updates float32 weights.
  """
  for _, node in nnx.iter_graph(module):
    if isinstance(node, Linear) and node.dtype != jnp.float32:
      for weight in (node.kernel, node.bias):
        if weight is not None:
          weight.set_value(weight.get_value().astype(node.dtype))
  return module


def quick_gelu(x: jax.Array) -> jax.Array:
  """CLIP's activation x * sigmoid(1.702 x); exact or tanh GELU would change the released models."""
  return x * jax.nn.sigmoid(1.702 * x)


class MLP(nnx.Module):
  """Linear -> QuickGELU -> Linear, the feed-forward block of every CLIP-style transformer."""

  def __init__(self, width: int, hidden: int, *, rngs: KeySequence, dtype: str = "float32",
               kernel_init: Initializer | None = None, bias_init: Initializer | None = None):
    self.fc1 = Linear(width, hidden, axes=(EMBED, HIDDEN), rngs=rngs, dtype=dtype, kernel_init=kernel_init,
                      bias_init=bias_init)
    self.fc2 = Linear(hidden, width, axes=(HIDDEN, EMBED), rngs=rngs, dtype=dtype, kernel_init=kernel_init,
                      bias_init=bias_init)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.fc2(quick_gelu(self.fc1(x)))


def attention_backend(requested: str, dtype: jnp.dtype, head_dim: int) -> str:
  """Chooses the attention's implementation: ours (`heads_first`) or one of `jax.nn.dot_product_attention`'s.

  "auto" picks cuDNN's fused kernel on GPU for half-precision inputs and head sizes it supports, the
  heads-first products (`heads_first_attention`) on CPU, and XLA's implementation everywhere else (TPU,
  GPU float32).
  """
  if requested != "auto":
    return requested
  platform = target_platform()
  if platform == "gpu" and dtype in (jnp.bfloat16, jnp.float16) and head_dim % 8 == 0 and head_dim <= 128:
    return "cudnn"
  return "heads_first" if platform == "cpu" else "xla"


def heads_first_attention(q: jax.Array, k: jax.Array, v: jax.Array, *, causal: bool = False) -> jax.Array:
  """Softmax attention of q (N, Lq, H, D) over k, v (N, Lk, H, D), computed as batched (N, H) products.

  The numerics of `jax.nn.dot_product_attention`'s XLA implementation (scores accumulated and normalised
  in float32, probabilities in the input dtype, scale after the product), but the heads are moved in
  front first, so that both products are plain batched matrix products. Given (N, L, H, D) operands and
  an (N, L, H, D) result instead, XLA:CPU computes the probabilities-times-values product transposed, at a
  tenth of its speed: at B/16 (198 tokens) this form takes half the time forward and 0.56x forward +
  backward in float32 (docs/performance.md#where-the-time-goes).
  """
  half = q.dtype != jnp.float32
  accumulate = jnp.float32 if half else None
  q, k, v = (x.transpose(0, 2, 1, 3) for x in (q, k, v))
  scores = jnp.einsum("nhqd,nhkd->nhqk", q, k, preferred_element_type=accumulate) * (q.shape[-1] ** -0.5)
  if causal:
    mask = jnp.tril(jnp.ones(scores.shape[-2:], bool))
    scores = jnp.where(mask, scores, -0.7 * jnp.finfo(scores.dtype).max)
  probabilities = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
  out = jnp.einsum("nhqk,nhkd->nhqd", probabilities, v, preferred_element_type=accumulate).astype(v.dtype)
  return out.transpose(0, 2, 1, 3)


class Attention(nnx.Module):
  """Multi-head attention with separate q/k/v projections.

  Covers every attention of X-CLIP: self-attention of CLIP blocks (with biases, optionally causal),
  the cross-frame message attention, the MIT, and the prompt generator's text->video cross-attention
  (no q/k/v bias). Query scaling is head_dim**-0.5 as in CLIP.
  """

  def __init__(self, width: int, heads: int, *, rngs: KeySequence, qkv_bias: bool = True,
               dtype: str = "float32", implementation: str = "auto",
               qkv_init: Initializer | None = None, out_init: Initializer | None = None,
               bias_init: Initializer | None = None):
    if width % heads:
      raise ValueError(f"Attention width {width} is not divisible by {heads} heads.")
    self.heads = heads
    self.head_dim = width // heads
    self.dtype = compute_dtype(dtype)
    self.implementation = implementation
    common = dict(rngs=rngs, dtype=dtype, bias_init=bias_init)
    self.query = Linear(width, width, axes=(EMBED, HEADS), use_bias=qkv_bias, kernel_init=qkv_init, **common)
    self.key = Linear(width, width, axes=(EMBED, HEADS), use_bias=qkv_bias, kernel_init=qkv_init, **common)
    self.value = Linear(width, width, axes=(EMBED, HEADS), use_bias=qkv_bias, kernel_init=qkv_init, **common)
    self.out = Linear(width, width, axes=(HEADS, EMBED), kernel_init=out_init, **common)

  def __call__(self, x: jax.Array, context: jax.Array | None = None, *, causal: bool = False) -> jax.Array:
    """Attends from `x` (..., Lq, W) to `context` (..., Lk, W); self-attention when context is None."""
    context = x if context is None else context
    lead = x.shape[:-2]
    q = self.query(x).reshape(-1, x.shape[-2], self.heads, self.head_dim)
    k = self.key(context).reshape(-1, context.shape[-2], self.heads, self.head_dim)
    v = self.value(context).reshape(-1, context.shape[-2], self.heads, self.head_dim)
    backend = attention_backend(self.implementation, self.dtype, self.head_dim)
    if backend == "heads_first":
      y = heads_first_attention(q, k, v, causal=causal)
    else:
      y = jax.nn.dot_product_attention(q, k, v, is_causal=causal, implementation=backend)
    y = y.reshape(*lead, x.shape[-2], self.heads * self.head_dim)
    return self.out(y)


def drop_path(x: jax.Array, rate: float | jax.Array, rng: jax.Array | None) -> jax.Array:
  """Stochastic depth: zeroes whole samples (leading axis) of a residual branch with prob `rate`.

  Identity when no rng is given (evaluation) or `rate` is a Python 0; a traced rate (scanned layers) of 0
  keeps every sample and divides by 1, so it gives the same values.
  """
  if rng is None or (isinstance(rate, int | float) and rate == 0.0):
    return x
  keep = 1.0 - rate
  mask = jax.random.bernoulli(rng, keep, (x.shape[0],) + (1,) * (x.ndim - 1))
  return jnp.where(mask, x / keep, jnp.zeros_like(x)).astype(x.dtype)

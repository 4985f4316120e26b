"""The torch side of `symcost validate`: transformers models built from configs, and measured.

What is measured: parameters, FlopCounterMode FLOPs, saved bytes, cache contents. torch and transformers are
imported inside the functions that need them.

How each kind of model is called is INPUTS (a mapping's `validate` entry names one): token ids for a causal LM,
an encoder or an encoder–decoder, images, or audio features with decoder ids.
"""
from __future__ import annotations

import os

from symcost.errors import SymcostError

TORCH_HINT = "symcost validate needs the torch extra: pip install 'symcost[torch]'"
SEED = 0

# How a model is called (inputs) and what backward starts from, per kind of model: the `inputs` of a mapping's
# `validate` entry. `flops` is the loss of the FLOP count, `saved` the loss of the saved-bytes count.
INPUTS = {
    "causal_lm": {
        "call": "model(ids)",
        "flops": "logits.sum()",
        "saved": "cross-entropy (labels=ids)",
    },
    "seq2seq": {
        "call": "model(input_ids=ids, decoder_input_ids=ids): encoder and decoder both read the b×s ids",
        "flops": "logits.sum()",
        "saved": "cross-entropy (labels=ids; the decoder reads them shifted right)",
    },
    "encoder": {
        "call": "model(ids)",
        "flops": "the sum of every floating-point output (e.g. last_hidden_state.sum() + pooler_output.sum())",
        "saved": "the same sum (an encoder has no loss of its own)",
    },
    "image": {
        "call": "model(pixel_values=x): b images of num_channels × side × side, side the tiny length (or the "
                "config's image_size when the mapping names no length); they need no gradient",
        "flops": "the sum of every floating-point output (logits, or last_hidden_state and pooler_output)",
        "saved": "the same sum",
    },
    "speech_seq2seq": {
        "call": "model(input_features=x, decoder_input_ids=ids): b × num_mel_bins × 2·max_source_positions "
                "audio features (they need no gradient) and b×s decoder ids",
        "flops": "logits.sum()",
        "saved": "cross-entropy (labels=ids)",
    },
}
SUMMED = ("encoder", "image")  # kinds whose backward starts from the sum of their outputs


def _import_torch():
    """torch and transformers, quietly and offline; a SymcostError when the extra is not installed."""
    user_verbosity = "TRANSFORMERS_VERBOSITY" in os.environ
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        import torch
        import transformers
    except ImportError:
        raise SymcostError(TORCH_HINT) from None
    if not user_verbosity:
        transformers.logging.set_verbosity_error()
    return torch, transformers


def _hf_class(transformers, name: str):
    try:
        obj = getattr(transformers, name)
    except (AttributeError, ImportError, RuntimeError):
        obj = None
    if obj is None:
        raise SymcostError(
            f"transformers {transformers.__version__} has no {name}; symcost validate is checked with transformers==5.23.0"
        )
    return obj


def _hf_config(config_cls, data: dict, source: str, **extra):
    try:
        return config_cls.from_dict({**{k: v for k, v in data.items() if not k.startswith("_")}, **extra})
    except Exception as e:  # huggingface_hub's strict-dataclass validation errors, TypeError, ValueError, ...
        raise SymcostError(f"{source}: transformers rejects this config ({config_cls.__name__}): {_one_line(e)}") from None


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _build(what: str, source: str, fn, *args):
    """Build a model; transformers' own errors (a config it cannot realise) become a SymcostError."""
    try:
        return fn(*args)
    except SymcostError:
        raise
    except Exception as e:
        raise SymcostError(f"{source}: transformers could not build the {what}: {type(e).__name__}: {_one_line(e)}") from None


def count_params_meta(model_cls, hf_config) -> int:
    """Parameters of the full-size model built on the meta device (tied weights counted once)."""
    import torch

    with torch.device("meta"):
        model = model_cls(hf_config)
    return sum(p.numel() for p in model.parameters())


def build_tiny(model_cls, hf_config, inputs: str = "causal_lm"):
    """The tiny model: random weights (seeded, without disturbing the caller's RNG), fp32, on the CPU."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = model_cls(hf_config).to(dtype=torch.float32)
    if inputs == "causal_lm":
        model.loss_type = "ForCausalLM"  # GPT2LMHeadModel otherwise logs that loss_type=None is unrecognized
    return model


def _ids(model, b: int, s: int, inputs: str = "causal_lm", sized: bool = True):
    """What the model is called with (INPUTS): token ids [b, s], or images, or audio features and decoder ids."""
    import torch

    gen = torch.Generator().manual_seed(SEED + 1000 * b + s)
    config = model.config
    if inputs == "image":
        side = s if sized else config.image_size
        return torch.randn(b, config.num_channels, side, side, generator=gen)
    if inputs == "speech_seq2seq":
        frames = 2 * config.max_source_positions  # Whisper accepts exactly this many
        features = torch.randn(b, config.num_mel_bins, frames, generator=gen)
        return {"input_features": features,
                "decoder_input_ids": torch.randint(0, config.vocab_size, (b, s), generator=gen)}
    return torch.randint(0, config.vocab_size, (b, s), generator=gen)


def _forward(model, ids, inputs: str = "causal_lm", labels: bool = False):
    """One forward pass as INPUTS[inputs] describes it; with `labels`, a language model computes its loss too."""
    if inputs == "image":
        return model(pixel_values=ids)
    if inputs == "speech_seq2seq":
        extra = {"labels": ids["decoder_input_ids"]} if labels else {}
        return model(**ids, **extra, use_cache=False)
    if inputs == "causal_lm":
        return model(ids, labels=ids, use_cache=False) if labels else model(ids, use_cache=False)
    if inputs == "seq2seq":
        if labels and getattr(model.config, "decoder_start_token_id", None) is not None:
            return model(input_ids=ids, labels=ids, use_cache=False)  # decoder inputs: the labels shifted right
        return model(input_ids=ids, decoder_input_ids=ids, labels=ids if labels else None, use_cache=False)
    return model(ids)


def _loss(out, inputs: str = "causal_lm", labels: bool = False):
    """What backward starts from: the loss (labels), the logits' sum, or an encoder's outputs summed."""
    import torch

    if inputs not in SUMMED:
        return out.loss if labels else out.logits.sum()
    total = None
    for value in out.values():  # a ModelOutput: its non-None fields in order
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            total = value.sum() if total is None else total + value.sum()
    if total is None:
        raise SymcostError(f"{type(out).__name__} has no floating-point output to sum")
    return total


def matmul_flops(model, ids, train: bool, inputs: str = "causal_lm", raw: list | None = None) -> int:
    """FlopCounterMode's total for one forward (eval, no_grad) or one forward + backward (train, loss per INPUTS).

    torch's formula for a convolution's weight gradient ignores groups (a depthwise convolution's is counted
    groups times over); the count returned counts it as the convolution it is (CORRECTED_CONV). `raw`, a list,
    receives the counter's own total."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    conv_raw: list = []
    if train:
        model.train()
        with torch.random.fork_rng(devices=[]), FlopCounterMode(
                display=False, custom_mapping=_corrected_conv_backward(conv_raw)) as fc:
            _loss(_forward(model, ids, inputs), inputs).backward()
        model.zero_grad(set_to_none=True)
    else:
        model.eval()
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            _forward(model, ids, inputs)
    total = int(fc.get_total_flops())
    if raw is not None:
        conv = fc.get_flop_counts()["Global"].get(torch.ops.aten.convolution_backward, 0)
        raw.append(total - int(conv) + sum(conv_raw))
    return total


CORRECTED_CONV = ("the weight gradient of a convolution is counted as the convolution x * grad_out it is, "
                  "2·b·C_out·(C_in/groups)·∏kernel·∏out; torch.utils.flop_counter.conv_backward_flop counts it "
                  "as if groups were 1")


def _corrected_conv_backward(raw: list) -> dict:
    """A FlopCounterMode mapping for aten.convolution_backward: the input gradient as torch counts it, the weight
    gradient with groups (CORRECTED_CONV); torch's own figure of each call is appended to `raw`."""
    import torch
    from torch.utils.flop_counter import conv_backward_flop, conv_flop_count, get_shape

    def corrected(*args, out_val=None, **kwargs) -> int:  # aten.convolution_backward's own arguments (raw)
        torch_count = conv_backward_flop(*args, out_val=out_val, **kwargs)
        raw.append(torch_count)
        grad_out, x, w = (get_shape(a) for a in args[:3])
        transposed, output_mask = args[7], args[10]
        if transposed:
            return torch_count
        flops = 0
        if output_mask[0]:
            flops += conv_flop_count(grad_out, w, get_shape(out_val[0]), True)
        if output_mask[1]:
            flops += conv_flop_count(x, w, grad_out)  # the forward's products, once more
        return flops

    corrected._get_raw = True  # FlopCounterMode passes the tensors, not only their shapes
    return {torch.ops.aten.convolution_backward: corrected}


def saved_bytes(model, ids, inputs: str = "causal_lm") -> int:
    """Bytes saved for backward in train mode (a language model's cross-entropy loss, labels=ids), each storage once,
    no parameters."""
    import torch

    param_storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        st = t.untyped_storage()  # views share their storage: count it once
        seen.setdefault(st.data_ptr(), st.nbytes())
        return t  # the graph keeps t alive, so no data_ptr is reused while we record

    model.train()
    with torch.random.fork_rng(devices=[]):
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = _loss(_forward(model, ids, inputs, labels=True), inputs, labels=True)
        total = sum(n for ptr, n in seen.items() if ptr not in param_storages)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return total


def kv_cache_bytes(model, ids) -> int:
    """Bytes a transformers cache holds after one prefill (eval, no_grad): every layer's keys and values, or a
    state-space layer's states (Mamba's conv_states and recurrent_states)."""
    import torch

    model.eval()
    with torch.no_grad():
        out = model(ids, use_cache=True)
    cache = getattr(out, "past_key_values", None)
    return _cache_bytes(cache if cache is not None else out.cache_params)


def _cache_bytes(cache) -> int:
    import torch

    total = 0
    for layer in cache.layers:
        tensors = [getattr(layer, "keys", None), getattr(layer, "values", None)]
        for name in ("conv_states", "recurrent_states"):  # a linear-attention (state-space) layer's
            states = getattr(layer, name, None)
            if isinstance(states, dict):
                tensors += list(states.values())
            elif isinstance(states, (list, tuple)):
                tensors += list(states)
        total += sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))
    return total


def encoder_decoder_caches(model, batch, inputs: str) -> dict:
    """An encoder–decoder's generation, measured (eval, no_grad): the encoder runs once; a prefill of the decoder's
    b×t ids fills an EncoderDecoderCache; one decode step of one new token per sequence follows. Returns the bytes
    of its self-attention and cross-attention caches after the prefill (`self`, `cross`) and after the step
    (`step_self`, `step_cross`), and the step's FlopCounterMode FLOPs (`step_flops`)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    if inputs == "speech_seq2seq":
        source, ids = {"input_features": batch["input_features"]}, batch["decoder_input_ids"]
    else:
        source, ids = {"input_ids": batch}, batch
    gen = torch.Generator().manual_seed(SEED + 7)
    new = torch.randint(0, model.config.vocab_size, (ids.shape[0], 1), generator=gen)
    model.eval()
    with torch.no_grad():
        encoded = model.get_encoder()(**source)
        cache = model(encoder_outputs=encoded, decoder_input_ids=ids, use_cache=True).past_key_values
        out = {"self": _cache_bytes(cache.self_attention_cache), "cross": _cache_bytes(cache.cross_attention_cache)}
        with FlopCounterMode(display=False) as fc:
            cache = model(encoder_outputs=encoded, decoder_input_ids=new, past_key_values=cache,
                          use_cache=True).past_key_values
    out.update(step_self=_cache_bytes(cache.self_attention_cache), step_cross=_cache_bytes(cache.cross_attention_cache),
               step_flops=int(fc.get_total_flops()))
    return out

"""Which fields of a config a mapping reads, which it knowingly ignores, and which it does not know (an error).

Every field of a Hugging Face config is one of:
  read      a mapping rule (dims, options, requires, derived) names it;
  ignored   known not to change any shape or cost symcost derives: the mapping's `ignores`, or GENERIC (fields
            of every transformers config: token ids, generation settings, bookkeeping);
  unknown   anything else. A present unknown field whose value is not null is an error naming it: it may change
            the model, and a wrong number is worse than no number. A field transformers itself would not read is
            still unknown to symcost until a mapping says so; a user's own mapping (--path) can list it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from symcost.errors import SymcostError

# Fields every transformers config may carry that change no shape or cost symcost derives (transformers 5.23's
# PretrainedConfig, the generation settings older configs carry, and hub bookkeeping), by reason.
GENERIC = {
    "bookkeeping": (
        "architectures", "model_type", "transformers_version", "torch_dtype", "dtype", "_name_or_path",
        "auto_map", "custom_pipelines", "tokenizer_class", "finetuning_task", "prefix", "task_specific_params",
        "problem_type", "return_dict", "output_hidden_states", "output_attentions", "torchscript",
        "use_bfloat16", "tf_legacy_loss", "use_cache", "gradient_checkpointing", "chunk_size_feed_forward",
        "initializer_range", "is_encoder_decoder",
    ),
    "kernel choice: which implementation runs, not what it computes": (
        "attn_implementation", "_attn_implementation", "experts_implementation",
    ),
    "token ids": (
        "bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id", "decoder_start_token_id",
        "forced_bos_token_id", "forced_eos_token_id",
    ),
    "generation settings": (
        "max_length", "min_length", "do_sample", "early_stopping", "num_beams", "num_beam_groups",
        "diversity_penalty", "temperature", "top_k", "top_p", "typical_p", "repetition_penalty", "length_penalty",
        "no_repeat_ngram_size", "encoder_no_repeat_ngram_size", "bad_words_ids", "num_return_sequences",
        "output_scores", "return_dict_in_generate", "remove_invalid_values", "exponential_decay_length_penalty",
        "suppress_tokens", "begin_suppress_tokens", "forced_decoder_ids",
    ),
    "labels of a classification head the validated class does not build": ("id2label", "label2id", "num_labels"),
}

# Fields of every config that change the model, with the only value the shipped specs build.
GENERIC_REQUIRED = {
    "pruned_heads": ({}, "pruned attention heads change every pruned layer's shapes; no spec models them"),
    "add_cross_attention": (False, "cross-attention layers in a decoder-only model; no decoder-only spec has them"),
    "is_decoder": (False, "a decoder built from an encoder config (cross-attention, causal mask)"),
    "tie_encoder_decoder": (False, "encoder and decoder sharing weights"),
}


@dataclass
class Account:
    """What a mapping made of a config's fields, for --explain and validate."""

    read: dict = field(default_factory=dict)  # field -> value in the config
    defaulted: dict = field(default_factory=dict)  # name -> the class default used (field absent)
    ignored: dict = field(default_factory=dict)  # field -> reason
    unknown: list = field(default_factory=list)  # present null fields nobody knows (harmless: null)

    def as_json(self) -> dict:
        return {"read": sorted(self.read), "defaulted": sorted(self.defaulted),
                "ignored": {k: self.ignored[k] for k in sorted(self.ignored)}, "unknown_null": sorted(self.unknown)}

    def lines(self) -> list[str]:
        out = []
        if self.read:
            out.append("read: " + ", ".join(sorted(self.read)))
        if self.defaulted:
            out.append("absent, transformers' default: " + ", ".join(f"{k}={_short(v)}" for k, v in sorted(self.defaulted.items())))
        by_reason: dict[str, list] = {}
        for name, reason in self.ignored.items():
            by_reason.setdefault(reason, []).append(name)
        for reason in sorted(by_reason):
            out.append(f"ignored ({reason}): " + ", ".join(sorted(by_reason[reason])))
        if self.unknown:
            out.append("unknown, null: " + ", ".join(sorted(self.unknown)))
        return out


def ignore_table(mapping: dict, model_type: str) -> dict[str, str]:
    """field -> reason, from the mapping's `ignores` ({reason: [fields]})."""
    ignores = mapping.get("ignores", {})
    if not isinstance(ignores, dict) or not all(isinstance(v, list) for v in ignores.values()):
        raise SymcostError(f"the {model_type} mapping's 'ignores' must be an object of reason -> [fields]")
    return {str(name): str(reason) for reason, names in ignores.items() for name in names}


GENERIC_TABLE = {name: reason for reason, names in GENERIC.items() for name in names}


def account(config: dict, mapping: dict, model_type: str, reads: set, values: dict, defaulted: dict,
            source: str) -> Account:
    """Sort the config's fields; a present field that is neither read nor ignored, and not null, is an error."""
    own = ignore_table(mapping, model_type)
    acc = Account(read={k: values[k] for k in sorted(values)}, defaulted=dict(defaulted))
    strangers = []
    for name, value in config.items():
        if name.startswith("_") or name in reads:
            continue
        if name in own:
            acc.ignored[name] = own[name]
            continue
        if name in GENERIC_REQUIRED:
            expected, why = GENERIC_REQUIRED[name]
            if value not in (None, expected) and not (expected == {} and value == []):
                raise SymcostError(f"{source}: {name}={_short(value)} is not supported: {why}")
            continue
        if name in GENERIC_TABLE:
            acc.ignored[name] = GENERIC_TABLE[name]
        elif value is None:
            acc.unknown.append(name)
        else:
            strangers.append(name)
    if strangers:
        names = ", ".join(f"{n}={_short(config[n])}" for n in strangers[:8])
        raise SymcostError(
            f"{source}: the {model_type} mapping does not know the field{'s' if len(strangers) > 1 else ''} "
            f"{names}; a field that may change the model is never skipped silently",
            None,
            "if it changes no shape or cost, list it under \"ignores\" in a mapping of your own (a hf/ directory "
            "on --path); if it changes the model, the spec must model it first",
        )
    return acc


def _short(value) -> str:
    from symcost.analysis.rules import shown

    return shown(value)

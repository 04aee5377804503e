"""Preisach attention (Frydrych, arXiv 2605.23603): relay hysterons with learned thresholds in place of
softmax. ``relays``: the relay semantics, the sequential and exact parallel (cummax) forms, the soft relay and the
straight-through estimator; ``extremum_stack``: the paper's state (dominant extrema, wiping-out, binary-search
reads); ``layer``: the density and value-reading outputs, the O(1)-per-token decode state and the module."""

from hf_fundamentals.attention.preisach.extremum_stack import ExtremumStack, relay_states_stack
from hf_fundamentals.attention.preisach.layer import (
    VARIANTS,
    PreisachAttention,
    PreisachState,
    density_readout,
    initial_preisach_state,
    preisach_attention,
    preisach_drive,
    preisach_step,
    value_readout,
)
from hf_fundamentals.attention.preisach.relays import (
    RELAY_MODES,
    RelayState,
    default_thresholds,
    geometric_temperature,
    inverse_softplus,
    linear_recurrence_scan,
    relay_states,
    relay_states_parallel,
    relay_states_sequential,
    relay_states_ste,
    relay_step,
    relay_thresholds,
    soft_relay,
    soft_relay_sequential,
)

__all__ = [
    "RELAY_MODES",
    "VARIANTS",
    "ExtremumStack",
    "PreisachAttention",
    "PreisachState",
    "RelayState",
    "default_thresholds",
    "density_readout",
    "geometric_temperature",
    "initial_preisach_state",
    "inverse_softplus",
    "linear_recurrence_scan",
    "preisach_attention",
    "preisach_drive",
    "preisach_step",
    "relay_states",
    "relay_states_parallel",
    "relay_states_sequential",
    "relay_states_stack",
    "relay_states_ste",
    "relay_step",
    "relay_thresholds",
    "soft_relay",
    "soft_relay_sequential",
    "value_readout",
]
